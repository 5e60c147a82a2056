# cython: language_level=3
"""Named preemption points in the slow paths, controlled from Python.

A point can delay the threads that pass it (probability, duration, and how
they wait: spin, yield or sleep — for statistics), or hold the next thread
that reaches it until released — for an exact interleaving in a test:

    pp = m.preempt_point("slab_free:before_cmpxchg")
    pp.arm_hold()
    ... a worker reaches the point ...
    cpu = pp.wait_held(timeout=5)      # the vCPU now parked there
    ... act from the controller ...
    pp.release()

Where a point is matters as much as when (CONFIG_PREEMPT): at a preemptible
point the thread's task is switched out, which is a quiescent state for
RCU-sched, so grace periods do not wait for it; at `put_cpu_partial:after_read`
preemption is disabled, so they do.  Every held or delayed vCPU keeps taking
its interrupts (cross-vCPU requests).  `CONTEXTS` says which is which.
"""
import re
import threading
import time

from slubcy.atomic cimport atomic_int_read, atomic_int_set, atomic_long_read
from slubcy.machine cimport Machine
from slubcy.sched cimport (sched, preemption_point as preempt_point_t, NR_PREEMPT_POINTS,
                           PREEMPT_SPIN, PREEMPT_YIELD, PREEMPT_SLEEP, PP_SLAB_FREE_BEFORE_CMPXCHG,
                           PP_PUT_CPU_PARTIAL, PP_PUT_CPU_PARTIAL_AFTER_READ,
                           PP_OFFLINE_AFTER_MARK_DEAD, PP_OFFLINE_BEFORE_SHRINK, PP_PCS_REFILL,
                           PP_PCS_FLUSH_SPARE, PREEMPTIBLE,
                           preempt_model_set)

POINTS = {
    "slab_free:before_cmpxchg": PP_SLAB_FREE_BEFORE_CMPXCHG,
    "put_cpu_partial": PP_PUT_CPU_PARTIAL,
    "put_cpu_partial:after_read": PP_PUT_CPU_PARTIAL_AFTER_READ,
    "offline:after_mark_dead": PP_OFFLINE_AFTER_MARK_DEAD,
    "offline:before_shrink": PP_OFFLINE_BEFORE_SHRINK,
    "sheaves:refill": PP_PCS_REFILL,
    "sheaves:flush_spare": PP_PCS_FLUSH_SPARE,
}
# preemptible (the task may be switched out: quiescent for RCU-sched) or not
CONTEXTS = {name: "preemptible" if name != "put_cpu_partial:after_read" else "preempt-disabled"
            for name in POINTS}
HOLD_TIMEOUT = 60.0     # s: how long a held thread waits for release() by default
HOLD_TIMEOUT_MAX = 86400.0
MODES = {"spin": PREEMPT_SPIN, "yield": PREEMPT_YIELD, "sleep": PREEMPT_SLEEP}
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_duration(text):
    """'50us' -> 50000 (ns).  Units ns, us, ms, s; a bare number is ns."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s)?\s*", str(text))
    if not m:
        raise ValueError(f"bad duration {text!r}: use e.g. 50us, 2ms, 100ns")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "ns"])


MODEL = "preempt"       # the CONFIG_PREEMPT model's name in a spec
SLICES = ("exp", "fixed")


def parse_model(text):
    """'RATE/s:SLICE[:exp|fixed]' -> (rate per second, slice ns, fixed)."""
    parts = str(text).split(":")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", parts[0])
    if len(parts) not in (2, 3) or not m:
        raise ValueError(f"bad preemption model {text!r}: RATE/s:SLICE[:exp|fixed], "
                         "e.g. 1000/s:3ms")
    rate = float(m.group(1))
    if not 0 < rate <= 1e6:
        raise ValueError(f"preemption rate must be in (0, 1e6] per second, got {rate}")
    slice_ns = parse_duration(parts[1])
    if not 0 < slice_ns <= 10_000_000_000:
        raise ValueError(f"time slice must be in (0, 10s], got {parts[1]!r}")
    dist = parts[2] if len(parts) == 3 else "exp"
    if dist not in SLICES:
        raise ValueError(f"bad slice distribution {dist!r}: one of {', '.join(SLICES)}")
    return rate, slice_ns, dist == "fixed"


def set_model(Machine machine, rate, slice="3ms", fixed=False):
    """The CONFIG_PREEMPT model: preemption requests (a tick or a wakeup
    with another task runnable sets need_resched) reach each vCPU as a
    Poisson process of `rate` per second; the task is switched out at its
    next preemptible point -- between two operations, or at any
    PREEMPTIBLE named point of the slow paths -- for a time slice
    (exponential of mean `slice`, or exactly `slice` with fixed=True),
    quiescent for RCU-sched and taking interrupts meanwhile.  rate=0 turns
    it off.  How often the race window is hit then follows from the time
    spent there, not from where a delay was put."""
    if machine.closed:
        from slubcy.errors import MachineClosed
        raise MachineClosed("the machine is closed")
    rate = float(rate)
    if not 0 <= rate <= 1e6:
        raise ValueError(f"preemption rate must be in [0, 1e6] per second, got {rate}")
    ns = slice if isinstance(slice, int) else parse_duration(slice)
    if not 0 < ns <= 10_000_000_000:
        raise ValueError(f"time slice must be in (0, 10s], got {slice!r}")
    preempt_model_set(&machine.m.sc, rate, ns, bool(fixed))


def model_preemptions(Machine machine):
    """Preemptions the CONFIG_PREEMPT model made, per vCPU."""
    return [machine.m.sc.vcpus[i].model_preemptions for i in range(machine.m.nr_cpus)]


def parse_spec(spec):
    """'POINT=PROB:DURATION[:MODE][,...]' -> [(point, prob, ns, mode)], and
    'preempt=RATE/s:SLICE[:exp|fixed]' (the CONFIG_PREEMPT model) ->
    ('preempt', rate, slice ns, fixed).

    e.g. 'slab_free:before_cmpxchg=0.01:50us', 'put_cpu_partial=1:2ms:sleep'
    or 'preempt=1000/s:3ms'."""
    out = []
    for item in filter(None, (x.strip() for x in str(spec).split(","))):
        if item.startswith(MODEL + "="):
            out.append((MODEL, *parse_model(item[len(MODEL) + 1:])))
            continue
        point, eq, rest = item.rpartition("=")
        if not eq or point not in POINTS:
            raise ValueError(f"bad preemption spec {item!r}: POINT=PROBABILITY:DURATION with "
                             f"POINT one of {', '.join(POINTS)}, or {MODEL}=RATE/s:SLICE")
        parts = rest.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad preemption spec {item!r}: expected PROBABILITY:DURATION[:MODE]")
        try:
            prob = float(parts[0])
        except ValueError:
            raise ValueError(f"bad probability {parts[0]!r} in {item!r}") from None
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {prob}")
        mode = parts[2] if len(parts) == 3 else "spin"
        if mode not in MODES:
            raise ValueError(f"bad mode {mode!r}: one of {', '.join(MODES)}")
        out.append((point, prob, parse_duration(parts[1]), mode))
    return out


cdef class PreemptPoint:
    cdef readonly Machine machine
    cdef readonly str name
    cdef int id

    def __cinit__(self, Machine machine, name):
        if name not in POINTS:
            raise ValueError(f"unknown preemption point {name!r}: one of {', '.join(POINTS)}")
        self.machine = machine
        self.name = name
        self.id = POINTS[name]

    cdef preempt_point_t *pp(self) except NULL:
        if self.machine.closed:
            from slubcy.errors import MachineClosed
            raise MachineClosed("the machine is closed")
        return &self.machine.m.sc.points[self.id]

    cdef void _update(self):
        cdef preempt_point_t *p = &self.machine.m.sc.points[self.id]
        atomic_int_set(&p.enabled, 1 if (p.threshold or atomic_int_read(&p.hold_armed)) else 0)

    def set_delay(self, probability, duration="0ns", mode="spin"):
        """Delay each thread passing the point with `probability` for
        `duration` ('50us', or ns as an int), spinning, yielding or sleeping."""
        cdef preempt_point_t *p = self.pp()
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if mode not in MODES:
            raise ValueError(f"bad mode {mode!r}: one of {', '.join(MODES)}")
        ns = duration if isinstance(duration, int) else parse_duration(duration)
        if ns < 0:
            raise ValueError("duration must be >= 0")
        p.duration_ns = ns
        p.mode = MODES[mode]
        p.threshold = min(int(float(probability) * 4294967296.0), 4294967295)
        self._update()

    def arm_hold(self, timeout=HOLD_TIMEOUT):
        """Hold the next thread that reaches the point, for at most `timeout`
        seconds (then it goes on by itself and release()/wait_held() raise
        Timeout: a hold nobody can release, as the kworker's while its armer
        waits in memcg_offline(), must not park it for ever).  Another thread
        must reach it: the thread that armed the hold is not held there (it
        would wait for its own release()); wait_held() then raises
        HoldRefused."""
        cdef preempt_point_t *p = self.pp()
        t = float(timeout)
        if not 0.0 < t <= HOLD_TIMEOUT_MAX:
            raise ValueError(f"hold timeout must be in (0, {HOLD_TIMEOUT_MAX:g}] s, got {timeout!r}")
        if atomic_int_read(&p.held):
            raise RuntimeError(f"{self.name}: a thread is already held here")
        atomic_int_set(&p.release, 0)
        atomic_int_set(&p.hold_refused, 0)
        atomic_int_set(&p.hold_expired, 0)
        p.hold_timeout_ns = <long>(t * 1e9)
        p.armed_tid = threading.get_native_id()
        atomic_int_set(&p.hold_armed, 1)
        self._update()

    @property
    def held(self):
        """The vCPU held at the point (-1: a thread on no vCPU), or None."""
        cdef int h = atomic_int_read(&self.pp().held)
        return h - 2 if h else None

    def wait_held(self, timeout=5.0):
        """Wait until a thread is held here; return its vCPU."""
        from slubcy.errors import Timeout
        deadline = time.monotonic() + timeout
        while self.held is None:
            self._check_refused()
            if time.monotonic() > deadline:
                raise Timeout(f"no thread reached {self.name} within {timeout} s")
            time.sleep(0.0002)
        return self.held

    def release(self, timeout=5.0):
        """Let the held thread go on (and wait until it has left the point)."""
        from slubcy.errors import Timeout
        cdef preempt_point_t *p = self.pp()
        if not atomic_int_read(&p.held):
            self._check_refused()
            raise RuntimeError(f"{self.name}: no thread is held here")
        atomic_int_set(&p.release, 1)
        deadline = time.monotonic() + timeout
        while atomic_int_read(&p.held):
            if time.monotonic() > deadline:
                raise Timeout(f"the thread held at {self.name} did not leave")
            time.sleep(0.0001)
        self._update()

    def _check_refused(self):
        cdef preempt_point_t *p = self.pp()
        if atomic_int_read(&p.hold_refused):
            atomic_int_set(&p.hold_refused, 0)
            from slubcy.errors import HoldRefused
            raise HoldRefused(f"{self.name}: the hold was reached by the thread that armed it, in "
                              "a call from Python; nobody could have released it, so it was not "
                              "held (arm it, then reach it from another thread)")
        if atomic_int_read(&p.hold_expired):
            atomic_int_set(&p.hold_expired, 0)
            from slubcy.errors import Timeout
            raise Timeout(f"{self.name}: the held thread was not released within "
                          f"{p.hold_timeout_ns * 1e-9:g} s and went on by itself")

    def disable(self):
        """No delays and no armed hold (a held thread is not released)."""
        cdef preempt_point_t *p = self.pp()
        p.threshold = 0
        atomic_int_set(&p.hold_armed, 0)
        self._update()

    @property
    def preemptible(self):
        """True where the kernel runs with preemption on: a thread stopped
        here is switched out, a quiescent state for RCU-sched."""
        return self.pp().context == PREEMPTIBLE

    @property
    def hits(self):
        return atomic_long_read(&self.pp().hits)
