# cython: language_level=3
"""reap -- mark dead without a barrier (as the seed proposed), shrink once,
and let a reaper thread shrink every dead cache every `period` (default
10ms): Davydov's "slab: reap dead memcg caches aggressively" (patch 8/8 of
cover.1401457502.git.vdavydov@parallels.com, May 2014, withdrawn).  The
race's parked slab lives until the next reap."""
import threading
import time

from slubcy.slub cimport slub_machine
from slubcy.memcg cimport shrink_dead_caches
from slubcy.preempt import parse_duration
from policies.base cimport Policy
# offline is naive's (mark dead, no barrier, shrink); the reaper does the rest
from policies.naive cimport naive_offline


cdef class ReapPolicy(Policy):
    kernel = "reaper patch of 30 May 2014 (cover.1401457502.git.vdavydov@parallels.com 8/8)"
    cdef readonly double period
    cdef object _thread
    cdef object _stop
    cdef public long reaps

    def __cinit__(self, options=None, *args, **kwargs):
        self.name = "reap"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 0
        self.offline = naive_offline

    def __init__(self, options=None):
        period = options or "10ms"
        if isinstance(period, str) and period.startswith("period="):
            period = period[len("period="):]
        ns = parse_duration(period) if isinstance(period, str) else int(period * 1e9)
        if ns <= 0:
            raise ValueError("the reap period must be > 0")
        self.period = ns / 1e9
        Policy.__init__(self, period)

    def start(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reaper, name="slubcy-reaper", daemon=True)
        self._thread.start()

    def _reaper(self):
        cdef slub_machine *m = &self.machine.m
        while not self._stop.wait(self.period):
            with nogil:
                shrink_dead_caches(m)
            self.reaps += 1

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def quiesce(self):
        """One reap period passes (and then one more pass, to be sure the
        reaper ran after everything was freed)."""
        Policy.quiesce(self)
        start = self.reaps
        deadline = time.monotonic() + 10 + 4 * self.period
        while self.reaps < start + 2 and time.monotonic() < deadline:
            time.sleep(self.period / 4)
