# cython: language_level=3
"""vCPU ownership, cross-vCPU requests, QSBR grace periods, preemption points.

Ordering: a worker reports a quiescent state with smp_mb() then a release
store of its counter; synchronize_sched() issues smp_mb() and then waits until
every online vCPU's counter moved or it went offline (acquire loads).  So
every operation that started before synchronize_sched() has finished when it
returns, and every later operation sees the stores made before it (the
RCU+sync+free litmus test).
"""

from libc.stdint cimport uint64_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from libc.math cimport log
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, nanosleep

from slubcy.atomic cimport (atomic_int_cmpxchg, atomic_int_fetch_add, atomic_int_read,
                            atomic_int_set, atomic_long_add, atomic_long_add_release,
                            atomic_long_read, atomic_long_read_acquire,
                            atomic_ptr_set, atomic_u64_read, atomic_u64_set, cpu_relax, smp_mb,
                            spin_lock, spin_trylock, spin_unlock)

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)
cdef extern from *:
    """
    #include <unistd.h>
    #include <sys/syscall.h>
    static inline long slubcy_sched_gettid(void) { return (long)syscall(SYS_gettid); }
    """
    long sched_gettid "slubcy_sched_gettid"() nogil

cdef extern from *:
    """
    /* the vCPU this thread runs, -1 for none (smp_processor_id()) */
    static __thread int slubcy_this_cpu = -1;
    /* read-side sections this thread holds off any vCPU (rcu_read_lock_ext) */
    static __thread int slubcy_ext_depth = 0;
    /* splitmix64: seeds each vCPU's xorshift state from (seed, cpu) */
    static inline uint64_t slubcy_seed_rng(uint64_t seed, int cpu) {
        uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(cpu + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        return z ? z : 1;
    }
    """
    int this_cpu "slubcy_this_cpu"
    int ext_depth "slubcy_ext_depth"
    uint64_t seed_rng "slubcy_seed_rng"(uint64_t seed, int cpu) nogil


cdef int smp_processor_id() noexcept nogil:
    return this_cpu


cdef void rcu_read_lock_ext(sched *sc) noexcept nogil:
    """A read-side section for a thread on no vCPU (the reaper, the RCU
    thread running callbacks, the controller offlining a memcg): grace
    periods end only once no such section is open (but the caller's own)."""
    global ext_depth
    ext_depth += 1
    atomic_int_fetch_add(&sc.ext_readers, 1)


cdef void rcu_read_unlock_ext(sched *sc) noexcept nogil:
    global ext_depth
    ext_depth -= 1
    atomic_int_fetch_add(&sc.ext_readers, -1)


cdef inline int other_ext_readers(sched *sc) noexcept nogil:
    return atomic_int_read(&sc.ext_readers) - ext_depth


cdef double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef void pause_for(sched *sc, int cpu, long ns, int mode) noexcept nogil:
    """Be preempted for ns.  The vCPU still takes its interrupts: requests
    posted to it run meanwhile (as an IPI to a CPU whose task was preempted
    in __slab_free would), in slices of at most 20 us when sleeping."""
    cdef timespec ts
    cdef double end = monotonic() + ns * 1e-9, left
    while True:
        local_irq_enabled(sc, cpu)
        left = end - monotonic()
        if left <= 0:
            return
        if mode == PREEMPT_SLEEP:
            if left > 20e-6:
                left = 20e-6
            ts.tv_sec = 0
            ts.tv_nsec = <long>(left * 1e9)
            nanosleep(&ts, NULL)
        elif mode == PREEMPT_YIELD:
            sched_yield()
        else:
            cpu_relax()


cdef uint64_t rcu_jiffies(sched *sc) noexcept nogil:
    """The current tick (monotonic time / tick_ns); 0 without a tick."""
    cdef timespec ts
    if sc.tick_ns == 0:
        return 0
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return (<uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec) // <uint64_t>sc.tick_ns


cdef void backoff_wait(int *spins, long sleep_ns) noexcept nogil:
    """One step of a polling wait: spin (cpu_relax) the first 100 times,
    then yield the CPU the next 100, then sleep sleep_ns each time."""
    cdef timespec ts
    spins[0] += 1
    if spins[0] < 100:
        cpu_relax()
    elif spins[0] < 200:
        sched_yield()
    else:
        ts.tv_sec = 0
        ts.tv_nsec = sleep_ns
        nanosleep(&ts, NULL)


cdef inline void backoff(int *spins) noexcept nogil:
    """Wait a little, sleeping 50 us once spinning and yielding are done."""
    backoff_wait(spins, 50000)


cdef int sched_init(sched *sc, int nr_cpus, uint64_t seed) noexcept nogil:
    cdef int cpu
    memset(sc, 0, sizeof(sched))
    sc.nr_cpus = nr_cpus
    sc.vcpus = <vcpu *>aligned_alloc(64, nr_cpus * sizeof(vcpu))
    if sc.vcpus == NULL:
        return -1
    memset(sc.vcpus, 0, nr_cpus * sizeof(vcpu))
    for cpu in range(nr_cpus):
        sc.vcpus[cpu].rng = seed_rng(seed, cpu)
    sc.rng = seed_rng(seed, -1)
    for cpu in range(<int>NR_PREEMPT_POINTS):
        sc.points[cpu].context = PREEMPTIBLE
    # put_cpu_partial() runs with preemption disabled from its push on (4.0)
    sc.points[<int>PP_PUT_CPU_PARTIAL_AFTER_READ].context = PREEMPT_DISABLED
    sc.rcu_snap = <uint64_t *>calloc(nr_cpus, sizeof(uint64_t))
    sc.rcu_wait = <int *>calloc(nr_cpus, sizeof(int))
    sc.local_timer_next = <uint64_t *>calloc(nr_cpus, sizeof(uint64_t))
    if sc.rcu_snap == NULL or sc.rcu_wait == NULL or sc.local_timer_next == NULL:
        return -1
    return 0


cdef void sched_release(sched *sc) noexcept nogil:
    free(sc.vcpus)
    free(sc.rcu_snap)
    free(sc.rcu_wait)
    free(sc.local_timer_next)
    sc.vcpus = NULL
    sc.rcu_snap = NULL
    sc.rcu_wait = NULL
    sc.local_timer_fn = NULL
    sc.local_timer_next = NULL


cdef bint vcpu_borrow(sched *sc, int cpu, int token) noexcept nogil:
    """Own vCPU `cpu` (online) without making it this thread's vCPU: for work
    done on behalf of an idle vCPU."""
    cdef vcpu *v = &sc.vcpus[cpu]
    if not atomic_int_cmpxchg(&v.owner, OWNER_NONE, token):
        return False
    atomic_int_set(&v.online, 1)
    smp_mb()        # online before any read of shared state (see synchronize_sched)
    return True


cdef void vcpu_unborrow(sched *sc, int cpu) noexcept nogil:
    """Let go of vCPU `cpu`: serve a pending request, count a quiescent
    state, go offline (an extended quiescent state: ct_kernel_exit()/
    rcu_user_enter(), liburcu-qsbr's rcu_thread_offline()), free the owner.
    Release stores and no full barrier: nothing this thread does after it
    reads RCU-protected state, so only the order of what it did before
    matters (loads and stores before a release store stay before it); a
    grace period reads `online` with acquire and then fences.  A request
    posted after the ipi_state check finds the owner gone and is withdrawn
    and run by its sender (ipi_wait).  The full barrier stays on the way in
    (vcpu_borrow): going online must be visible before the first read."""
    cdef vcpu *v = &sc.vcpus[cpu]
    if atomic_int_read(&v.ipi_state) == IPI_POSTED:
        handle_ipi(sc, cpu)
    # the count moves too, so a grace period that saw this vCPU online sees
    # a change even if the vCPU is taken again before its next look
    atomic_u64_set(&v.qs_ctr, v.qs_ctr + 1)
    atomic_int_set(&v.online, 0)
    atomic_int_set(&v.owner, OWNER_NONE)


cdef bint vcpu_take(sched *sc, int cpu, int token) noexcept nogil:
    """Run on vCPU `cpu` from now on; False if another thread runs it."""
    global this_cpu
    if not vcpu_borrow(sc, cpu, token):
        return False
    this_cpu = cpu
    return True


cdef void vcpu_release(sched *sc, int cpu) noexcept nogil:
    """Stop running vCPU `cpu`: serve a pending request, go quiescent, let go."""
    global this_cpu
    vcpu_unborrow(sc, cpu)
    this_cpu = -1


cdef void handle_ipi(sched *sc, int cpu) noexcept nogil:
    """The owner runs a posted request (generic_smp_call_function_single_interrupt).
    An interrupt is taken at an instruction boundary: a store still in this
    vCPU's store buffer (see put_cpu_partial) is visible before the handler
    runs and before the sender sees the request done."""
    cdef vcpu *v = &sc.vcpus[cpu]
    if not atomic_int_cmpxchg(&v.ipi_state, IPI_POSTED, IPI_RUNNING):
        return
    store_buffer_drain(v)
    v.ipi_func(v.ipi_info, cpu)
    v.ipis_handled += 1
    atomic_int_set(&v.ipi_state, IPI_DONE)


cdef void store_buffer_drain(vcpu *v) noexcept nogil:
    """Make the vCPU's pending store visible (release)."""
    if v.sb_addr != NULL:
        atomic_ptr_set(v.sb_addr, v.sb_val)
        v.sb_addr = NULL
        smp_mb()


cdef int ipi_post(sched *sc, int cpu, smp_call_func_t func, void *info) noexcept nogil:
    """Take vCPU `cpu`'s request slot (one sender at a time) and either run
    func(info, cpu) at once -- no thread runs the vCPU: 0, slot released --
    or post it to the owner: 1, slot held until ipi_wait()."""
    cdef vcpu *v = &sc.vcpus[cpu]
    cdef int spins = 0
    # a worker keeps serving its own vCPU while it waits for the slot (the
    # current sender may be waiting for it)
    while not spin_trylock(&v.ipi_lock):
        local_irq_enabled(sc, this_cpu)
        backoff(&spins)
    if vcpu_borrow(sc, cpu, OWNER_CONTROLLER):
        func(info, cpu)
        vcpu_unborrow(sc, cpu)
        spin_unlock(&v.ipi_lock)
        return 0
    v.ipi_func = func
    v.ipi_info = info
    atomic_int_set(&v.ipi_state, IPI_POSTED)
    return 1


cdef int ipi_wait(sched *sc, int cpu, double deadline) noexcept nogil:
    """Wait until the request posted to `cpu` ran, then free its slot.  0, or
    -1 if `deadline` passed first (the request is withdrawn)."""
    cdef vcpu *v = &sc.vcpus[cpu]
    cdef int spins = 0, rc = 0
    while atomic_int_read(&v.ipi_state) != IPI_DONE:
        # a worker sending from its own vCPU keeps serving requests to it
        # (two workers flushing each other would otherwise wait forever)
        local_irq_enabled(sc, this_cpu)
        # the owner left without seeing it: withdraw it and run it ourselves
        if atomic_int_read(&v.owner) == OWNER_NONE and \
                atomic_int_cmpxchg(&v.ipi_state, IPI_POSTED, IPI_IDLE):
            if vcpu_borrow(sc, cpu, OWNER_CONTROLLER):
                v.ipi_func(v.ipi_info, cpu)
                vcpu_unborrow(sc, cpu)
                break
            atomic_int_set(&v.ipi_state, IPI_POSTED)
            continue
        if monotonic() > deadline and atomic_int_cmpxchg(&v.ipi_state, IPI_POSTED, IPI_IDLE):
            rc = -1
            break
        backoff(&spins)
    atomic_int_set(&v.ipi_state, IPI_IDLE)
    spin_unlock(&v.ipi_lock)
    return rc


cdef int smp_call_function_single(sched *sc, int cpu, smp_call_func_t func, void *info,
                                  double timeout) noexcept nogil:
    """Run func(info, cpu) on vCPU `cpu` and wait: directly if no thread runs
    it, else posted to its owner, who runs it at its next point with
    interrupts on (between two operations, or inside a slow path, see
    local_irq_enabled).  Returns 0, or -1 if `timeout` seconds passed (the
    request is withdrawn)."""
    cdef double deadline = monotonic() + timeout if timeout >= 0 else 1e300
    if cpu == this_cpu:             # our own vCPU: just call it
        func(info, cpu)
        return 0
    if ipi_post(sc, cpu, func, info):
        return ipi_wait(sc, cpu, deadline)
    return 0


cdef int on_each_cpu_cond(sched *sc, smp_cond_func_t cond, smp_call_func_t func, void *info,
                          double timeout) noexcept nogil:
    """on_each_cpu_cond() (kernel/smp.c): func(info, cpu) on every vCPU for
    which cond(cpu, info) holds (every vCPU if cond is NULL), and wait for
    all.  As smp_call_function_many(), the requests go to every target at
    once and the local vCPU's runs here meanwhile; each target takes its
    interrupt at its next irq-enabled point.  0, or -1 if a target did not
    answer within `timeout` seconds."""
    cdef double deadline = monotonic() + timeout if timeout >= 0 else 1e300
    cdef int cpu, rc = 0, me = this_cpu
    cdef unsigned char *posted = <unsigned char *>calloc(sc.nr_cpus, 1)
    if posted == NULL:      # out of memory: one vCPU at a time
        for cpu in range(sc.nr_cpus):
            if cond == NULL or cond(cpu, info):
                if smp_call_function_single(sc, cpu, func, info, timeout) != 0:
                    rc = -1
        return rc
    smp_mb()
    for cpu in range(sc.nr_cpus):
        if cpu != me and (cond == NULL or cond(cpu, info)):
            posted[cpu] = <unsigned char>ipi_post(sc, cpu, func, info)
    if me >= 0 and (cond == NULL or cond(me, info)):
        func(info, me)
    for cpu in range(sc.nr_cpus):
        if posted[cpu] and ipi_wait(sc, cpu, deadline) != 0:
            rc = -1
    free(posted)
    return rc


cdef void nop_ipi(void *info, int cpu) noexcept nogil:
    pass


cdef int kick_all_cpus_sync(sched *sc, double timeout) noexcept nogil:
    """kick_all_cpus_sync() (4.0 kernel/smp.c): smp_mb(), then an empty IPI
    to every vCPU, waited for.  It orders: every vCPU has taken an interrupt
    (so has drained its store buffer and will see what was stored before);
    it does not wait for preempt-disabled code in progress, which takes
    interrupts.  -1 on timeout."""
    return on_each_cpu_cond(sc, NULL, nop_ipi, NULL, timeout)


cdef int synchronize_sched(sched *sc, double timeout) noexcept nogil:
    """A grace period: wait until every vCPU that was online has reported a
    quiescent state or gone offline.  0, or -1 after `timeout` seconds."""
    cdef int cpu, spins = 0
    cdef double deadline = monotonic() + timeout if timeout >= 0 else 1e300
    cdef uint64_t *snap = <uint64_t *>calloc(sc.nr_cpus, sizeof(uint64_t))
    cdef int *wait = <int *>calloc(sc.nr_cpus, sizeof(int))
    cdef int pending = 0
    cdef bint ok = False
    cdef uint64_t start_tick = rcu_jiffies(sc)
    if snap == NULL or wait == NULL:
        free(snap)
        free(wait)
        return -1
    smp_mb()
    for cpu in range(sc.nr_cpus):
        # the caller's own vCPU is at a quiescent point: it is here
        if cpu != this_cpu and atomic_int_read(&sc.vcpus[cpu].online):
            snap[cpu] = atomic_u64_read(&sc.vcpus[cpu].qs_ctr)
            wait[cpu] = 1
            pending += 1
    if this_cpu >= 0:
        # a worker waiting here is between operations: quiescent (the kernel
        # task would sleep and the CPU context-switch), and it keeps serving
        # requests sent to its vCPU
        atomic_int_set(&sc.vcpus[this_cpu].online, 0)
    while True:
        local_irq_enabled(sc, this_cpu)
        if not pending:
            # and readers on no vCPU (the caller is not one of them); with a
            # tick, the grace period ends at the second tick boundary after
            # it started -- one to two ticks, as the kernel's, whose
            # rcu_gp_kthread waits a jiffy or more for quiescent states
            # (jiffies_till_first_fqs) and reports them from the tick
            if other_ext_readers(sc) <= 0 and (sc.tick_ns == 0 or rcu_jiffies(sc) > start_tick + 1):
                ok = True
                break
            if monotonic() > deadline:
                break
            backoff(&spins)
            continue
        for cpu in range(sc.nr_cpus):
            if wait[cpu] and (not atomic_int_read(&sc.vcpus[cpu].online) or
                              atomic_u64_read(&sc.vcpus[cpu].qs_ctr) != snap[cpu]):
                wait[cpu] = 0
                pending -= 1
        if pending:
            if monotonic() > deadline:
                break
            backoff(&spins)
    if this_cpu >= 0:
        atomic_int_set(&sc.vcpus[this_cpu].online, 1)
    smp_mb()
    free(snap)
    free(wait)
    return 0 if ok else -1


cdef inline void preempt_schedule(sched *sc, int cpu) noexcept nogil:
    """The task is switched out at a preemptible point (__schedule ->
    rcu_note_context_switch): a quiescent state for RCU-sched, and its vCPU
    stays quiescent -- as a CPU running another task or idle -- until the
    task runs again.  The vCPU keeps taking interrupts meanwhile."""
    cdef vcpu *v = &sc.vcpus[cpu]
    smp_mb()
    atomic_u64_set(&v.qs_ctr, v.qs_ctr + 1)
    atomic_int_set(&v.preempted, 1)
    atomic_int_set(&v.online, 0)


cdef inline void preempt_resume(sched *sc, int cpu) noexcept nogil:
    """The task runs again: its vCPU is no longer quiescent (as leaving an
    extended quiescent state: online before any further read)."""
    cdef vcpu *v = &sc.vcpus[cpu]
    atomic_int_set(&v.online, 1)
    smp_mb()
    atomic_int_set(&v.preempted, 0)


cdef inline double exp_draw(uint64_t *rng, double mean) noexcept nogil:
    """An exponential variate of the given mean (inverse CDF of a uniform)."""
    cdef double u = ((xorshift64(rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0)
    return -mean * log(u)


cdef void preempt_model_set(sched *sc, double rate, long slice_ns, bint fixed) noexcept nogil:
    """Switch the CONFIG_PREEMPT model on (rate > 0) or off."""
    cdef int cpu
    cdef double now = monotonic()
    sc.preempt_rate = rate
    sc.preempt_slice_ns = slice_ns
    sc.preempt_slice_fixed = fixed
    for cpu in range(sc.nr_cpus):
        sc.vcpus[cpu].need_resched_at = now + (exp_draw(&sc.vcpus[cpu].rng, 1.0 / rate)
                                               if rate > 0 else 0.0)
    smp_mb()
    atomic_int_set(&sc.preempt_model, 1 if rate > 0 else 0)


cdef void preempt_model_check(sched *sc, int cpu) noexcept nogil:
    """A preemptible point under the CONFIG_PREEMPT model: if a preemption
    request has come since the vCPU last looked (its need_resched_at has
    passed), the task is switched out here -- as the kernel preempts at the
    first preempt_enable() or interrupt return in preemptible code after
    need_resched is set -- for a slice, and the next request is drawn."""
    cdef vcpu *v = &sc.vcpus[cpu]
    cdef double now = monotonic()
    cdef long ns
    cdef PyThreadState *ts = NULL
    if now < v.need_resched_at:
        return
    ns = sc.preempt_slice_ns if sc.preempt_slice_fixed else \
        <long>exp_draw(&v.rng, <double>sc.preempt_slice_ns)
    v.model_preemptions += 1
    if PyGILState_Check():
        ts = PyEval_SaveThread()
    preempt_schedule(sc, cpu)
    pause_for(sc, cpu, ns, PREEMPT_SLEEP)
    preempt_resume(sc, cpu)
    if ts != NULL:
        PyEval_RestoreThread(ts)
    v.need_resched_at = monotonic() + exp_draw(&v.rng, 1.0 / sc.preempt_rate)


cdef void __preempt_point(sched *sc, int id, int cpu) noexcept nogil:
    """An enabled point: hold the thread if the controller armed a hold,
    else delay it with the configured probability.  At a PREEMPTIBLE point a
    thread on a vCPU is switched out for the while (quiescent for RCU-sched,
    see preempt_schedule); at a PREEMPT_DISABLED one its vCPU is only
    delayed.  Either way it takes its interrupts.  A thread that holds the
    GIL (a single-object call from Python) lets it go while it waits, so the
    controller can act."""
    cdef preemption_point *pp = &sc.points[id]
    cdef int spins = 0
    cdef bint switched
    cdef double deadline, t0
    cdef PyThreadState *ts = NULL
    if sc.preempt_model and cpu >= 0 and pp.context == PREEMPTIBLE:
        preempt_model_check(sc, cpu)
    if not pp.enabled:
        return
    if atomic_int_read(&pp.hold_armed) and atomic_int_cmpxchg(&pp.hold_armed, 1, 0):
        atomic_long_add(&pp.hits, 1)
        if pp.armed_tid == sched_gettid():
            # the thread that armed the hold (a call from Python, single or
            # bulk): nobody else may be there to release it -- do not park
            # it forever; wait_held() and release() say why
            atomic_int_set(&pp.hold_refused, 1)
            return
        if PyGILState_Check():
            ts = PyEval_SaveThread()
        switched = cpu >= 0 and pp.context == PREEMPTIBLE
        if switched:
            preempt_schedule(sc, cpu)
        atomic_int_set(&pp.held, cpu + 2)
        # bounded: a thread only its own (blocked) armer could release, as
        # the kworker held while its armer waits in memcg_offline(), must
        # not park for ever; it leaves, and release()/wait_held() say so
        deadline = monotonic() + pp.hold_timeout_ns * 1e-9
        while not atomic_int_read(&pp.release):
            local_irq_enabled(sc, cpu)          # a preempted task's CPU takes interrupts
            backoff(&spins)
            if monotonic() > deadline:
                atomic_int_set(&pp.hold_expired, 1)
                break
        atomic_int_set(&pp.release, 0)
        if switched:
            preempt_resume(sc, cpu)
        atomic_int_set(&pp.held, 0)
        if ts != NULL:
            PyEval_RestoreThread(ts)
        return
    if pp.threshold and <uint32_t>(xorshift64(&sc.vcpus[cpu].rng if cpu >= 0 else &sc.rng) >> 32) \
            < pp.threshold:
        atomic_long_add(&pp.hits, 1)
        if PyGILState_Check():
            ts = PyEval_SaveThread()
        switched = cpu >= 0 and pp.context == PREEMPTIBLE
        t0 = monotonic()
        if switched:
            preempt_schedule(sc, cpu)
        pause_for(sc, cpu, pp.duration_ns, pp.mode)
        if switched:
            preempt_resume(sc, cpu)
        if cpu >= 0:        # (only the vCPU's thread writes it)
            atomic_long_add(&sc.vcpus[cpu].injected_ns, <long>((monotonic() - t0) * 1e9))
        if ts != NULL:
            PyEval_RestoreThread(ts)


cdef void call_rcu(sched *sc, rcu_head *head, void (*func)(rcu_head *) noexcept nogil) noexcept nogil:
    """call_rcu_sched(): func(head) runs after a grace period."""
    head.func = func
    spin_lock(&sc.rcu_lock)
    head.next = sc.rcu_pending
    atomic_ptr_set(<void **>&sc.rcu_pending, head)
    atomic_long_add(&sc.rcu_queued, 1)
    spin_unlock(&sc.rcu_lock)


cdef rcu_head *rcu_take_pending(sched *sc) noexcept nogil:
    """Every callback queued so far, oldest first."""
    cdef rcu_head *batch
    cdef rcu_head *rev = NULL
    cdef rcu_head *nxt
    spin_lock(&sc.rcu_lock)
    batch = sc.rcu_pending
    atomic_ptr_set(<void **>&sc.rcu_pending, NULL)
    spin_unlock(&sc.rcu_lock)
    while batch != NULL:
        nxt = batch.next
        batch.next = rev
        rev = batch
        batch = nxt
    return rev


cdef long rcu_run_batch(sched *sc, rcu_head *batch) noexcept nogil:
    cdef rcu_head *nxt
    cdef long n = 0
    while batch != NULL:
        nxt = batch.next
        batch.func(batch)
        n += 1
        batch = nxt
    # release: whoever reads the new count (rcu_barrier's wait) sees what
    # the callbacks did
    atomic_long_add_release(&sc.rcu_done, n)
    return n


cdef long rcu_process_callbacks(sched *sc) noexcept nogil:
    """Advance the C callbacks without blocking (poll_state_synchronize_rcu
    style): start a grace period for what is pending by noting every online
    vCPU's quiescent-state count; once each has moved (or the vCPU went
    idle), run that batch here.  Any thread may call it; one at a time does
    the work.  Returns how many callbacks ran."""
    cdef int cpu, waiting = 0
    cdef long n
    cdef rcu_head *batch
    if not atomic_int_cmpxchg(&sc.rcu_busy, 0, 1):
        return 0
    if sc.rcu_cur == NULL:
        atomic_ptr_set(<void **>&sc.rcu_cur, rcu_take_pending(sc))
        if sc.rcu_cur != NULL:
            smp_mb()
            sc.rcu_gp_tick = rcu_jiffies(sc)
            for cpu in range(sc.nr_cpus):
                # the caller is between operations: it is quiescent already
                atomic_int_set(&sc.rcu_wait[cpu], cpu != this_cpu and atomic_int_read(&sc.vcpus[cpu].online))
                sc.rcu_snap[cpu] = atomic_u64_read(&sc.vcpus[cpu].qs_ctr)
        atomic_int_set(&sc.rcu_busy, 0)
        return 0
    for cpu in range(sc.nr_cpus):
        if sc.rcu_wait[cpu]:
            if not atomic_int_read(&sc.vcpus[cpu].online) or \
                    atomic_u64_read(&sc.vcpus[cpu].qs_ctr) != sc.rcu_snap[cpu]:
                atomic_int_set(&sc.rcu_wait[cpu], 0)
            else:
                waiting += 1
    smp_mb()
    if waiting or other_ext_readers(sc) > 0 or \
            (sc.tick_ns != 0 and rcu_jiffies(sc) <= sc.rcu_gp_tick + 1):
        atomic_int_set(&sc.rcu_busy, 0)
        return 0
    batch = sc.rcu_cur
    atomic_ptr_set(<void **>&sc.rcu_cur, NULL)
    atomic_long_add(&sc.rcu_gps, 1)
    atomic_int_set(&sc.rcu_busy, 0)
    # the callbacks run inside a read-side section, so what they touch is
    # not freed under them by a later batch: a vCPU's own (it is online and
    # reported its quiescent state just before), or an explicit one
    if this_cpu < 0:
        rcu_read_lock_ext(sc)
    n = rcu_run_batch(sc, batch)
    if this_cpu < 0:
        rcu_read_unlock_ext(sc)
    return n


# ---------------------------------------------------------------------------
# Per-vCPU timers: what a per-CPU deferrable delayed work is to the kernel
# (SLAB's cache_reap: schedule_delayed_work_on(cpu, ...) from
# start_cpu_timer()), run by each vCPU's own thread at its quiescent points.

cdef inline uint64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


cdef void local_timer_start(sched *sc, smp_call_func_t fn, void *data, long period_ns) noexcept nogil:
    """Arm the per-vCPU timer: fn(data, cpu) on every vCPU one period from
    now, then every period.  Set before the workers start."""
    cdef int cpu
    cdef uint64_t first = monotonic_ns() + <uint64_t>period_ns
    sc.local_timer_data = data
    sc.local_timer_period_ns = period_ns
    for cpu in range(sc.nr_cpus):
        sc.local_timer_next[cpu] = first
    smp_mb()
    sc.local_timer_fn = fn


cdef void local_timer_stop(sched *sc) noexcept nogil:
    sc.local_timer_fn = NULL
    smp_mb()


cdef void __run_local_timers(sched *sc, int cpu) noexcept nogil:
    """The timer softirq of vCPU `cpu` (run_timer_softirq): if its expiry
    passed, re-arm it one period from now and run it here, on this vCPU."""
    cdef smp_call_func_t fn = sc.local_timer_fn
    cdef uint64_t now
    if fn == NULL:
        return
    now = monotonic_ns()
    if now < sc.local_timer_next[cpu]:
        return
    sc.local_timer_next[cpu] = now + <uint64_t>sc.local_timer_period_ns
    fn(sc.local_timer_data, cpu)


cdef int rcu_barrier(sched *sc, double timeout) noexcept nogil:
    """rcu_barrier() for the C callbacks: return once every callback queued
    before the call has run, advancing them here (rcu_process_callbacks) as
    the RCU thread would.  Called on no vCPU, or by a vCPU's thread between
    operations (it serves its requests meanwhile).  0, or -1 after
    `timeout` seconds (< 0: no limit)."""
    cdef long target = atomic_long_read(&sc.rcu_queued)
    cdef double deadline = monotonic() + timeout if timeout >= 0 else 1e300
    cdef int spins = 0
    while atomic_long_read_acquire(&sc.rcu_done) < target:
        local_irq_enabled(sc, this_cpu)
        if rcu_process_callbacks(sc) == 0:
            if monotonic() > deadline:
                return -1
            backoff(&spins)
    return 0
