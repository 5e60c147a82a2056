# cython: language_level=3
"""reap -- no barrier: at offline mark the caches dead and shrink them
(naive's offline), then reap the dead caches periodically, in one of two
ways.  Mainline SLUB never had a periodic reaper; each variant is a kernel
mechanism applied to the dead caches.  Specs: reap:ipi[:PERIOD],
reap:percpu[:PERIOD]; `reap` and `reap:PERIOD` are aliases of reap:ipi
(what `reap` always ran).  The race's parked slab lives until the next reap.

reap:ipi -- SLUB's per-cache flusher before the merge (2.6.22-rc): a work item
every 30 s (schedule_delayed_work(&s->flush, 30 * HZ)) IPI'd every CPU
(on_each_cpu(check_flush_cpu_slab)) to push its cpu slab back; removed by
"SLUB: Remove per cpu flusher" (Christoph Lameter, 28 Apr 2007,
Pine.LNX.4.64.0704282204470.29440@schroedinger.engr.sgi.com).  Here a reaper
thread on no vCPU shrinks every dead cache that holds slabs each PERIOD
(shrink_dead_caches: flush_all -- a cross-vCPU request to every vCPU with a
cpu slab of it -- then the node's empty slabs).  Default PERIOD: the
flusher's 30 s.

reap:percpu -- SLAB's cache_reap() (mm/slab.c): a per-CPU deferrable delayed
work every REAPTIMEOUT_AC = 2*HZ, skipped when slab_mutex is taken
(mutex_trylock), in which each CPU drains its own per-cpu caches and then
the node's free slabs; no IPI.  Applied to dead caches it is the 2014 mail's
"reaping periodically", and what Davydov's "slab: reap dead memcg caches
aggressively" (8/8 of cover.1401457502.git.vdavydov@parallels.com, May 2014,
withdrawn) did to cache_reap.  Here each vCPU's own worker thread runs the
pass for its vCPU at its quiescent points (run_local_timers ->
cache_reap_dead); an idle vCPU has no timer running, as a deferrable timer
does not wake an idle CPU.  Default PERIOD: REAPTIMEOUT_AC, 2 s.

Both defaults are the kernel's figures and longer than a workload run of a
second: such a run sees no periodic pass, only the one quiesce() forces
after everything was freed.  Pass a shorter PERIOD (e.g. reap:percpu:5ms) to
see the reaper at work during a run, as the tests do."""
import threading
import time
import weakref

from libc.stdlib cimport calloc, free

from slubcy.types cimport slub_machine
from slubcy.memcg cimport shrink_dead_caches, cache_reap_dead
from slubcy.sched cimport (local_timer_start, local_timer_stop, vcpu_borrow, vcpu_unborrow,
                           rcu_read_lock_ext, rcu_read_unlock_ext, OWNER_CONTROLLER)
from slubcy.preempt import parse_duration
from slubcy import errors
from slubcy.policies.base cimport Policy
from slubcy.machine cimport Machine
# offline is naive's (mark dead, no barrier, shrink); the reaper does the rest
from slubcy.policies.naive cimport naive_offline

VARIANTS = ("ipi", "percpu")
DEFAULT_PERIOD = {"ipi": "30s", "percpu": "2s"}     # flusher's 30 * HZ; REAPTIMEOUT_AC
MIN_PERIOD_NS = 1000                                # 1 us
MAX_PERIOD_NS = 3600 * 1000000000                   # an hour

cdef struct percpu_reaper:
    slub_machine *m
    long *passes            # per vCPU: passes run (each written by that vCPU's runner only)
    long *skipped           # per vCPU: passes skipped, slab_mutex taken


cdef void reap_percpu_timer(void *data, int cpu) noexcept nogil:
    """The per-vCPU timer's function: cache_reap() for this vCPU."""
    cdef percpu_reaper *r = <percpu_reaper *>data
    if cache_reap_dead(r.m, cpu) < 0:
        r.skipped[cpu] += 1
    else:
        r.passes[cpu] += 1


def _parse(options):
    """(variant, period in ns) from the option of a reap spec."""
    variant, period = "ipi", None
    if options is None or options == "":
        pass
    elif isinstance(options, str):
        head, _, rest = options.partition(":")
        if head in VARIANTS:
            variant = head
            if rest == "" and options.endswith(":"):
                raise ValueError(f"reap:{head}: empty PERIOD (reap:{head}[:PERIOD], e.g. reap:{head}:5ms)")
            period = rest or None
        elif rest:
            raise ValueError(f"unknown reap variant {head!r}: reap[:ipi|:percpu][:PERIOD]")
        else:
            period = head[len("period="):] if head.startswith("period=") else head
            try:
                parse_duration(period)
            except ValueError:
                raise ValueError(f"reap:{options}: neither a variant (ipi, percpu) nor a PERIOD "
                                 "(e.g. 10ms): reap[:ipi|:percpu][:PERIOD]") from None
    elif isinstance(options, (int, float)) and not isinstance(options, bool):
        period = options
    else:
        raise ValueError(f"reap: bad option {options!r}: reap[:ipi|:percpu][:PERIOD]")
    if period is None:
        period = DEFAULT_PERIOD[variant]
    if isinstance(period, str):
        try:
            ns = parse_duration(period)
        except ValueError as e:
            raise ValueError(f"reap:{variant}: {e}") from None
    else:
        ns = int(period * 1e9)
    if not MIN_PERIOD_NS <= ns <= MAX_PERIOD_NS:
        raise ValueError(f"reap:{variant}: the period must be between 1us and 3600s, got {period!r}")
    return variant, ns


def _reaper(mref, stop, double period):
    """The reap:ipi thread: every `period` s, one shrink_dead_caches pass
    over the machine `mref` refers to, while it lives and is not closed."""
    cdef Machine machine
    cdef ReapPolicy policy
    cdef slub_machine *m
    while not stop.wait(period):
        machine = mref()
        if machine is None or machine.closed:
            return
        policy = machine._policy_obj
        m = &machine.m
        with nogil:
            shrink_dead_caches(m)
        policy.reaps += 1
        machine = None
        policy = None


cdef class ReapPolicy(Policy):
    variants = VARIANTS         # `slubcy compare` runs each (slubcy.policies.compare_specs)
    takes_options = True
    cdef readonly str variant
    cdef readonly double period
    cdef object _thread
    cdef object _stop
    cdef public long reaps
    cdef percpu_reaper r
    cdef bint _timer_on

    def __cinit__(self, options=None, *args, **kwargs):
        self.name = "reap"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 0
        self.offline = naive_offline

    def __init__(self, options=None):
        variant, ns = _parse(options)
        self.variant = variant
        self.period = ns / 1e9
        Policy.__init__(self, options)
        self.name = f"reap:{variant}"

    def __repr__(self):
        return f"<policy {self.name}:{self.period:g}s>"

    @property
    def kernel(self):
        if self.variant == "percpu":
            return ("SLAB cache_reap (mm/slab.c, REAPTIMEOUT_AC) on dead caches: Davydov's "
                    "reaper patch of 30 May 2014 (cover.1401457502.git.vdavydov@parallels.com 8/8)")
        return "SLUB per-cpu flusher before 'SLUB: Remove per cpu flusher' (Lameter, Apr 2007)"

    def __dealloc__(self):
        free(self.r.passes)
        free(self.r.skipped)

    def start(self):
        if self.variant == "percpu":
            if self.r.passes == NULL:
                self.r.m = &self.machine.m
                self.r.passes = <long *>calloc(self.machine.m.nr_cpus, sizeof(long))
                self.r.skipped = <long *>calloc(self.machine.m.nr_cpus, sizeof(long))
                if self.r.passes == NULL or self.r.skipped == NULL:
                    raise MemoryError("reap:percpu: no memory for the per-vCPU counters")
            local_timer_start(&self.machine.m.sc, reap_percpu_timer, &self.r, <long>(self.period * 1e9))
            self._timer_on = True
            return
        self._stop = threading.Event()
        # the thread holds neither the policy nor the machine: a machine
        # dropped without close() is finalised, which stops it
        weakref.finalize(self.machine, self._stop.set)
        self._thread = threading.Thread(target=_reaper, args=(weakref.ref(self.machine), self._stop,
                                                              self.period),
                                        name="slubcy-reaper", daemon=True)
        self._thread.start()

    def stop(self):
        if self._timer_on:
            local_timer_stop(&self.machine.m.sc)
            self._timer_on = False
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    @property
    def passes(self):
        """reap:percpu: passes each vCPU ran (by its worker or by quiesce)."""
        if self.r.passes == NULL:
            return []
        return [self.r.passes[i] for i in range(self.machine.m.nr_cpus)]

    @property
    def skipped(self):
        """reap:percpu: passes each vCPU skipped because slab_mutex was taken."""
        if self.r.skipped == NULL:
            return []
        return [self.r.skipped[i] for i in range(self.machine.m.nr_cpus)]

    def quiesce(self, timeout=30.0):
        """Let the RCU callbacks run, then make sure a reap ran after
        everything was freed.  ipi: one reaper pass from this thread.
        percpu: every vCPU reaps once -- an idle vCPU (no worker) is
        borrowed and its pass run here; a vCPU a worker runs is left to
        its own timer, and this waits until it ran a whole pass."""
        cdef slub_machine *m = &self.machine.m
        cdef int rc
        Policy.quiesce(self)
        if self.variant == "percpu":
            self._quiesce_percpu(timeout)
            return
        with nogil:
            rcu_read_lock_ext(&m.sc)        # a thread on no vCPU: as the reaper
            rc = shrink_dead_caches(m)
            rcu_read_unlock_ext(&m.sc)
        self.reaps += 1
        if rc < 0:
            raise errors.Timeout("reap:ipi: a vCPU did not answer the reaper's flush in time")

    def _quiesce_percpu(self, double timeout):
        cdef slub_machine *m = &self.machine.m
        cdef int cpu, rc = -1
        cdef long start
        deadline = time.monotonic() + timeout
        for cpu in range(m.nr_cpus):
            start = self.r.passes[cpu]
            while True:
                rc = -1
                with nogil:
                    if vcpu_borrow(&m.sc, cpu, OWNER_CONTROLLER):
                        rc = cache_reap_dead(m, cpu)
                        if rc >= 0:
                            self.r.passes[cpu] += 1
                        vcpu_unborrow(&m.sc, cpu)
                if rc >= 0 or self.r.passes[cpu] >= start + 2:
                    break
                if time.monotonic() > deadline:
                    raise errors.Timeout(f"reap:percpu: vCPU {cpu} ran no reap pass in {timeout} s")
                time.sleep(min(self.period / 4, 0.001))

