# vCPUs and what runs on them: ownership (one thread per vCPU at a time),
# cross-vCPU requests (the IPIs of flush_all / kick_all_cpus_sync), QSBR
# quiescent states (the userspace synchronize_sched) and named preemption
# points in the slow paths.

from libc.stdint cimport uint64_t, uint32_t
from slubcy.atomic cimport atomic_int_read, atomic_ptr_read, atomic_u64_set, smp_mb

ctypedef void (*smp_call_func_t)(void *info, int cpu) noexcept nogil

# what a waiting thread calls: give up the host CPU, or the GIL (every module
# that waits cimports these from here)
cdef extern from "sched.h" nogil:
    int sched_yield()

cdef extern from "Python.h" nogil:
    ctypedef struct PyThreadState
    int PyGILState_Check()
    PyThreadState *PyEval_SaveThread()
    void PyEval_RestoreThread(PyThreadState *)

# Named preemption points (the CLI's and tests' names in slubcy.preempt.POINTS)
cpdef enum preempt_point_id:
    PP_SLAB_FREE_BEFORE_CMPXCHG     # __slab_free: a full slab's freeze decided, no cmpxchg yet (preemptible)
    PP_PUT_CPU_PARTIAL              # put_cpu_partial, before its preempt_disable() (preemptible)
    PP_PUT_CPU_PARTIAL_AFTER_READ   # put_cpu_partial, preemption off: its cpu_partial load done,
                                    # its store to c->partial still in the store buffer
    PP_OFFLINE_AFTER_MARK_DEAD      # memcg offline: caches marked dead (preemptible)
    PP_OFFLINE_BEFORE_SHRINK        # memcg offline: before the shrink (preemptible)
    PP_PCS_REFILL                   # 7.0 __pcs_replace_empty_main: cpu_sheaves lock dropped, an
                                    # empty sheaf refilled from slabs, not yet installed (preemptible)
    PP_PCS_FLUSH_SPARE              # 7.0 __pcs_replace_full_main: lock dropped, the full spare
                                    # taken off the vCPU (barn full: E2BIG), not yet flushed
                                    # to its slabs (preemptible)
    NR_PREEMPT_POINTS

# What a thread stopped at a point means to the rest of the machine
# (CONFIG_PREEMPT): in a preemptible region the task is switched out, which is
# a quiescent state for RCU-sched (rcu_note_context_switch) -- its vCPU is
# quiescent until the task runs again; with preemption disabled (interrupts
# on) the vCPU is delayed but not quiescent.  Either way the vCPU takes its
# interrupts (cross-vCPU requests) meanwhile.
cpdef enum preempt_context:
    PREEMPTIBLE
    PREEMPT_DISABLED

cpdef enum preempt_mode:
    PREEMPT_SPIN
    PREEMPT_YIELD
    PREEMPT_SLEEP

cdef struct preemption_point:
    int enabled             # the only field the hot path reads
    uint32_t threshold      # delay with probability threshold / 2^32
    long duration_ns
    int mode
    int hold_armed          # the next thread to arrive is held
    int held                # cpu + 2 of the held thread (1: not on a vCPU), 0 if none
    int release             # set by the controller to let it go
    long hits               # delays and holds taken (atomic: any thread at the point)
    int context             # preempt_context of the code around the point
    long armed_tid          # gettid() of the thread that armed the hold
    int hold_refused        # the armer itself reached its hold (holding the GIL): not held
    long hold_timeout_ns    # a held thread leaves by itself after this long
    int hold_expired        # it did: nobody released it in time

# IPI request states
cdef enum:
    IPI_IDLE = 0
    IPI_POSTED = 1
    IPI_RUNNING = 2
    IPI_DONE = 3

cdef enum:
    OWNER_NONE = 0
    OWNER_CONTROLLER = -1   # the Python thread acting on an idle vCPU
    QS_INTERVAL = 64        # worker loops report a quiescent state every 64 operations

cdef struct vcpu:
    int owner               # OWNER_NONE, OWNER_CONTROLLER or a worker's token
    int online              # QSBR: not quiescent (an owner is running)
    uint64_t qs_ctr         # quiescent states reported
    int ipi_lock            # one sender at a time
    int ipi_state
    smp_call_func_t ipi_func
    void *ipi_info
    uint64_t rng            # xorshift64 state for preemption probabilities
    long ipis_handled
    void **sb_addr          # a store not yet visible to other vCPUs (a one-entry store
    void *sb_val            # buffer): an interrupt drains it before its handler runs
    int preempted           # its task is switched out at a preemptible point
    double need_resched_at  # CONFIG_PREEMPT model: when the next preemption request comes
    long model_preemptions  # ... and how many it acted on
    long injected_ns        # time its task spent switched out or delayed by a named
                            # point's injected delay (importance sampling, not a cost:
                            # workloads take it out of throughput)
    char _pad[20]           # 128 bytes: no two vCPUs share a cache line

# call_rcu() from C (nogil): the machine's RCU thread runs the callbacks
# after a grace period, many to one period.
cdef struct rcu_head:
    rcu_head *next
    void (*func)(rcu_head *head) noexcept nogil

cdef struct sched:
    int nr_cpus
    vcpu *vcpus
    long tick_ns            # 0: a grace period ends as soon as every vCPU has passed a
                            # quiescent state (QSBR); else not before the second tick of
                            # this length after it started (Machine(hz=...): the kernel's
                            # grace-period machinery runs from the scheduling-clock tick)
    uint64_t rcu_gp_tick    # the tick the C callbacks' current grace period started in
    preemption_point points[<int>NR_PREEMPT_POINTS]
    # CONFIG_PREEMPT model (slubcy.preempt: "preempt=RATE/s:SLICE"): preemption
    # requests (need_resched: a tick or wakeup with another task runnable)
    # reach each vCPU as a Poisson process; the task is switched out at its
    # next preemptible point for a time slice drawn from an exponential
    int preempt_model       # the only field the hot path reads
    double preempt_rate     # requests per second per vCPU
    long preempt_slice_ns   # mean time switched out
    int preempt_slice_fixed # 1: every slice lasts exactly preempt_slice_ns
    int running_workers
    uint64_t rng            # for preemption points passed off any vCPU
    int rcu_lock
    # rcu_pending and rcu_cur are written with release stores (under rcu_lock
    # and rcu_busy respectively) so that rcu_softirq and rcu_state_info() may peek
    # at them unlocked; the counters are atomic for the same readers
    rcu_head *rcu_pending    # newest first
    long rcu_queued
    long rcu_done            # added with release: rcu_barrier()'s waiter acquires it
    long rcu_gps             # grace periods completed for C callbacks
    int rcu_busy             # one thread advances the batch at a time
    int ext_readers          # read-side sections of threads on no vCPU
    rcu_head *rcu_cur        # the batch waiting for its grace period
    uint64_t *rcu_snap       # per vCPU: qs_ctr when that grace period started
    int *rcu_wait            # per vCPU: still owes a quiescent state
    # A per-vCPU timer (run_local_timers): local_timer_fn(data, cpu) runs on
    # each vCPU, by the thread running it, at its first quiescent point past
    # local_timer_next[cpu], then every local_timer_period_ns (a deferrable
    # per-CPU delayed work: no IPI; a vCPU nobody runs does not fire it).
    smp_call_func_t local_timer_fn   # fn(data, cpu), as a cross-vCPU call's, run locally
    void *local_timer_data
    long local_timer_period_ns
    uint64_t *local_timer_next   # per vCPU: CLOCK_MONOTONIC ns of its next expiry


cdef int sched_init(sched *sc, int nr_cpus, uint64_t seed) noexcept nogil
cdef void sched_release(sched *sc) noexcept nogil
cdef bint vcpu_take(sched *sc, int cpu, int token) noexcept nogil
cdef void vcpu_release(sched *sc, int cpu) noexcept nogil
cdef void handle_ipi(sched *sc, int cpu) noexcept nogil
cdef void store_buffer_drain(vcpu *v) noexcept nogil
cdef int smp_call_function_single(sched *sc, int cpu, smp_call_func_t func, void *info,
                                  double timeout) noexcept nogil
cdef int kick_all_cpus_sync(sched *sc, double timeout) noexcept nogil
ctypedef bint (*smp_cond_func_t)(int cpu, void *info) noexcept nogil
cdef int on_each_cpu_cond(sched *sc, smp_cond_func_t cond, smp_call_func_t func, void *info,
                          double timeout) noexcept nogil
cdef int synchronize_sched(sched *sc, double timeout) noexcept nogil
cdef int rcu_barrier(sched *sc, double timeout) noexcept nogil
cdef void __preempt_point(sched *sc, int id, int cpu) noexcept nogil
cdef void preempt_model_check(sched *sc, int cpu) noexcept nogil
cdef void preempt_model_set(sched *sc, double rate, long slice_ns, bint fixed) noexcept nogil
cdef double monotonic() noexcept nogil
cdef void backoff_wait(int *spins, long sleep_ns) noexcept nogil
cdef uint64_t rcu_jiffies(sched *sc) noexcept nogil
cdef void call_rcu(sched *sc, rcu_head *head, void (*func)(rcu_head *) noexcept nogil) noexcept nogil
cdef rcu_head *rcu_take_pending(sched *sc) noexcept nogil
cdef long rcu_run_batch(sched *sc, rcu_head *batch) noexcept nogil
cdef long rcu_process_callbacks(sched *sc) noexcept nogil
cdef void rcu_read_lock_ext(sched *sc) noexcept nogil
cdef void rcu_read_unlock_ext(sched *sc) noexcept nogil
cdef int smp_processor_id() noexcept nogil


cdef inline void local_irq_enabled(sched *sc, int cpu) noexcept nogil:
    """A point where the kernel runs with interrupts on: a request posted to
    this vCPU (an IPI) is taken here.  One load and a branch when none is."""
    if cpu >= 0 and atomic_int_read(&sc.vcpus[cpu].ipi_state) == IPI_POSTED:
        handle_ipi(sc, cpu)

cdef inline void rcu_quiescent_state(sched *sc, int cpu) noexcept nogil:
    """Between two operations: a full barrier, the QS, a full barrier
    (liburcu-qsbr's rcu_quiescent_state: smp_mb, store, smp_mb), then any
    pending cross-vCPU request.  The second barrier keeps the next
    operation's loads after the QS is visible: without it (a store then a
    load, which x86-TSO may reorder) the next operation could read a pointer
    before the grace period sees the QS, and the grace period could end
    while that pointer is in use."""
    cdef vcpu *v = &sc.vcpus[cpu]
    smp_mb()
    atomic_u64_set(&v.qs_ctr, v.qs_ctr + 1)
    smp_mb()
    if atomic_int_read(&v.ipi_state) == IPI_POSTED:
        handle_ipi(sc, cpu)

cdef inline void rcu_softirq(sched *sc, int cpu) noexcept nogil:
    """A worker's turn, every 16th quiescent state, to run the RCU callbacks
    whose grace period is over (the kernel runs them in softirq on the CPU
    that notices).  Only from a worker's own loop: a callback may flush
    other vCPUs."""
    if (sc.vcpus[cpu].qs_ctr & 15) == 0 and (atomic_ptr_read(<void **>&sc.rcu_cur) != NULL or
                                              atomic_ptr_read(<void **>&sc.rcu_pending) != NULL):
        rcu_process_callbacks(sc)

cdef inline uint64_t xorshift64(uint64_t *state) noexcept nogil:
    """Marsaglia's xorshift64: the vCPUs' and workloads' cheap random numbers."""
    cdef uint64_t x = state[0]
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    state[0] = x
    return x

cdef inline void preempt_point(sched *sc, int id, int cpu) noexcept nogil:
    """A named preemption point: a plain load and branch when disabled."""
    if sc.points[id].enabled or sc.preempt_model:
        __preempt_point(sc, id, cpu)

cdef inline void preempt_check_resched(sched *sc, int cpu) noexcept nogil:
    """Between two operations (preemptible code): act on a pending
    preemption request of the CONFIG_PREEMPT model."""
    if sc.preempt_model and cpu >= 0:
        preempt_model_check(sc, cpu)

# Per-vCPU timers (sched.pyx)
cdef void local_timer_start(sched *sc, smp_call_func_t fn, void *data, long period_ns) noexcept nogil
cdef void local_timer_stop(sched *sc) noexcept nogil
cdef void __run_local_timers(sched *sc, int cpu) noexcept nogil
cdef bint vcpu_borrow(sched *sc, int cpu, int token) noexcept nogil
cdef void vcpu_unborrow(sched *sc, int cpu) noexcept nogil

cdef inline void run_local_timers(sched *sc, int cpu) noexcept nogil:
    """run_local_timers() from a vCPU's own thread at a quiescent point, right
    after rcu_softirq(): its per-vCPU timer, if one is set and due.  A
    single load and branch when no timer is set."""
    if sc.local_timer_fn != NULL:
        __run_local_timers(sc, cpu)
