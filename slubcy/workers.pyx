# cython: language_level=3
"""The workers: each workload's loop in nogil C, one thread per vCPU,
seeded (slubcy/workloads.py is the Python driver that runs them).

    fastpath  alloc + free pairs on the worker's own vCPU
    batch     N allocs, then N frees (the N-pattern of slab_bulk_test01)
    remote    each vCPU allocates and hands the objects to the next vCPU,
              which frees them (producer/consumer, __slab_free remotely)
    larson    random lifetimes in a slot array, random size classes, a share
              of the objects handed to the next vCPU to be freed there
    churn     container jobs: each creates a memcg, allocates from the
              accounted caches, frees its short-lived objects and goes
              offline; its dentry/inode-like objects outlive it and a
              shrinker on another vCPU frees them (run_churn)

Every live object carries a canary (its address ^ a key, and an allocation
serial) that the freeing side checks: an object handed out twice, or written
while free, shows up as a canary error.  Each worker reports a quiescent state
(and serves cross-vCPU requests) every QS_INTERVAL operations.
"""

from libc.stdint cimport uint64_t, uint32_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc

from libc.stdlib cimport realloc
from posix.time cimport timespec, nanosleep
from libc.stdio cimport snprintf
from slubcy.sched cimport sched_yield
from slubcy.ring cimport ring, ring_push, ring_publish, ring_pop, rings_alloc, rings_free
from slubcy.atomic cimport (atomic_int_fetch_add, atomic_int_read, atomic_int_set, atomic_long_read,
                            atomic_long_read_acquire, atomic_u64_read, atomic_u64_set)
from slubcy.types cimport kmem_cache, mem_cgroup, page, slub_machine
from slubcy.page_alloc cimport virt_to_head_page
from slubcy.alloc cimport slab_alloc_node, slab_free, SLAB_HOOK_MEMCG
from slubcy.memcg cimport mem_cgroup_create, cgroup_rmdir, OFFLINE_CANCELLED
from slubcy.kworker cimport flush_workqueue
from slubcy.sched cimport (sched, vcpu_take, vcpu_release, rcu_quiescent_state, rcu_softirq,
                           monotonic, local_irq_enabled, preempt_check_resched, xorshift64,
                           run_local_timers, backoff_wait, QS_INTERVAL)

cdef extern from *:
    """
    #define SLUBCY_CANARY_KEY 0x5EED5AB1E5CA1AB5ULL
    """
    const uint64_t CANARY_KEY "SLUBCY_CANARY_KEY"

cdef enum:
    LARSON_HANDOVER_BATCH = 8   # larson publishes its hand-overs 8 at a time


cpdef enum workload_kind:
    W_FASTPATH
    W_BATCH
    W_REMOTE
    W_LARSON
    W_CHURN

WORKLOADS = {"fastpath": W_FASTPATH, "batch": W_BATCH, "remote": W_REMOTE, "larson": W_LARSON,
             "churn": W_CHURN}


cdef struct worker:
    # set up by the controller
    sched *sc
    kmem_cache **caches
    int ncaches
    int cpu
    int kind
    long ops_target          # < 0: run until *stop
    int *stop
    int *phase_count         # workers done with their main loop
    int *drain_go            # the controller's go for the drain phase
    long batch
    long nslots
    uint32_t handoff         # probability (of 2^32) that larson hands an object over
    uint64_t rng
    ring *out                # to the next vCPU
    ring *inq                # from the previous vCPU
    # results
    long ops                 # read by the controller for progress
    long allocs
    long frees
    long remote_frees
    long canary_errors
    long alloc_failures
    long lost                # could not be freed at all (should stay 0)
    double seconds
    # churn
    slub_machine *m
    long job_objects
    uint32_t outlive         # probability (of 2^32) that an object outlives its job
    long jobs
    long memcg_failures
    offline_log offlines     # its jobs' offlines (written by the kworker only)
    int rmdir_errors         # rmdirs that could not queue the offline
    double rmdir_wait_us     # time rmdir waited for cgroup_mutex, in all
    double rmdir_wait_max_us
    double mkdir_wait_us     # ... and memcg creation
    int wait_caches          # a job starts by waiting for its child caches' creation
    double cache_wait_us     # ... how long, in all
    # churn's dcache: objects that outlive their job wait on a vCPU's LRU
    # (a FIFO over `pool`, capacity nslots) until a shrinker pass frees them
    double lifetime          # seconds an object stays cached after its job ended
    long reclaim_batch       # objects one shrinker pass frees at most (SHRINK_BATCH)
    long reclaim_every       # operations between two shrinker passes
    long lru_head
    long lru_tail
    double *lru_when         # when each LRU entry may be reclaimed
    long reclaimed           # objects the shrinker freed
    long evicted             # ... freed early because the LRU was full
    long cached              # objects that outlived their job
    double injected          # seconds of the main loop in named points' injected delays
    char _pad[64]


cdef inline uint64_t next_rand(uint64_t *state) noexcept nogil:
    return xorshift64(state)


cdef inline void set_canary(void *p, uint64_t serial) noexcept nogil:
    (<uint64_t *>p)[0] = <uintptr_t>p ^ CANARY_KEY
    (<uint64_t *>p)[1] = serial

cdef inline bint canary_ok(void *p) noexcept nogil:
    return (<uint64_t *>p)[0] == (<uintptr_t>p ^ CANARY_KEY)


cdef inline void *w_alloc(worker *w, kmem_cache *s, mem_cgroup *memcg=NULL) noexcept nogil:
    """An object of root cache `s` (of `memcg`'s child cache of it, or
    charged to `memcg`), through the one allocation entry."""
    cdef kmem_cache *from_cache
    cdef void *p = slab_alloc_node(s, memcg, w.cpu, 0, &from_cache)
    if p == NULL:
        w.alloc_failures += 1
        return NULL
    w.allocs += 1
    w.ops += 1
    set_canary(p, <uint64_t>w.allocs)
    return p


cdef inline void w_free(worker *w, void *p, bint remote) noexcept nogil:
    """Free p on this worker's vCPU, into the cache its slab belongs to
    (memcg_slab_free_hook first, as kmem_cache_free does in 5.9)."""
    cdef page *pg = virt_to_head_page(&w.caches[0].m.z, p)
    if not canary_ok(p):
        w.canary_errors += 1
    (<uint64_t *>p)[0] = 0
    if slab_free(<kmem_cache *>pg.slab_cache, pg, p, w.cpu, SLAB_HOOK_MEMCG):
        w.frees += 1
        w.ops += 1
        if remote:
            w.remote_frees += 1
    else:
        w.lost += 1


cdef inline bint w_tick(worker *w, long *n) noexcept nogil:
    """After an operation: a quiescent state every QS_INTERVAL; False to stop."""
    n[0] += 1
    local_irq_enabled(w.sc, w.cpu)      # between two operations interrupts are on
    preempt_check_resched(w.sc, w.cpu)  # ... and the task is preemptible
    if (n[0] & (QS_INTERVAL - 1)) == 0:
        ring_publish(w.out)
        rcu_quiescent_state(w.sc, w.cpu)
        rcu_softirq(w.sc, w.cpu)
        run_local_timers(w.sc, w.cpu)
        if atomic_int_read(w.stop):
            return False
    if w.ops_target >= 0 and w.ops >= w.ops_target:
        return False
    return True


cdef void drain_inq(worker *w) noexcept nogil:
    cdef void *p = ring_pop(w.inq)
    while p != NULL:
        w_free(w, p, True)
        p = ring_pop(w.inq)


cdef void run_fastpath(worker *w) noexcept nogil:
    cdef kmem_cache *s = w.caches[0]
    cdef long n = 0
    cdef void *p
    while True:
        p = w_alloc(w, s)
        if p != NULL:
            w_free(w, p, False)
        if not w_tick(w, &n):
            break


cdef void run_batch(worker *w, void **objs) noexcept nogil:
    cdef kmem_cache *s = w.caches[0]
    cdef long n = 0, i, got
    cdef bint go = True
    while go:
        got = 0
        for i in range(w.batch):
            objs[got] = w_alloc(w, s)
            if objs[got] != NULL:
                got += 1
            if not w_tick(w, &n):
                go = False
                break
        for i in range(got):
            w_free(w, objs[i], False)
            if not w_tick(w, &n) and go:
                go = False


cdef void run_remote(worker *w) noexcept nogil:
    """Allocate, hand to the next vCPU; free what the previous one sent."""
    cdef kmem_cache *s = w.caches[0]
    cdef long n = 0
    cdef void *p
    while True:
        p = w_alloc(w, s)
        if p != NULL and not ring_push(w.out, p):
            w_free(w, p, False)         # the consumer is behind: free it here
        p = ring_pop(w.inq)
        if p != NULL:
            w_free(w, p, True)
        if not w_tick(w, &n):
            break


cdef void run_larson(worker *w, void **slots) noexcept nogil:
    """larson: replace a random slot's object with a new one of a random
    cache; a share of the old objects is freed by the next vCPU (handed over
    through the ring 8 at a time, or at the next quiescent state)."""
    cdef long n = 0, i
    cdef void *p
    while True:
        i = <long>(next_rand(&w.rng) % <uint64_t>w.nslots)
        p = slots[i]
        if p != NULL:
            if <uint32_t>(next_rand(&w.rng) >> 32) < w.handoff and ring_push(w.out, p):
                pass
            else:
                w_free(w, p, False)
            slots[i] = NULL
        slots[i] = w_alloc(w, w.caches[next_rand(&w.rng) % <uint64_t>w.ncaches])
        p = ring_pop(w.inq)
        if p != NULL:
            w_free(w, p, True)
        if not w_tick(w, &n):
            break


cdef void offline_done(void *arg, double latency, int rc) noexcept nogil:
    """On the kworker, at the end of an offline: its latency (us) appended
    to the offline_log `arg` (a cancelled one is not counted)."""
    cdef offline_log *log = <offline_log *>arg
    cdef double *grown
    if rc == OFFLINE_CANCELLED:
        return
    if rc != 0:
        log.errors += 1
    if log.n == log.cap:
        log.cap = log.cap * 2 if log.cap else 1024
        grown = <double *>realloc(log.us, log.cap * sizeof(double))
        if grown == NULL:
            log.cap = log.n
            return
        log.us = grown
    log.us[log.n] = latency * 1e6
    log.n += 1


cdef void wait_kworker(worker *w) noexcept nogil:
    """Wait until the kworker has run what this worker queued (its child
    caches' creation), as a task that sleeps: quiescent between checks, and
    serving the requests posted to its vCPU."""
    cdef long target = atomic_long_read_acquire(&w.m.wq.queued)
    cdef int spins = 0
    while atomic_long_read_acquire(&w.m.wq.done) + atomic_long_read_acquire(&w.m.wq.cancelled) < target:
        rcu_quiescent_state(w.sc, w.cpu)
        if atomic_int_read(w.stop):
            return
        backoff_wait(&spins, 20000)


cdef inline void lru_add(worker *w, void **pool, void *p, double now) noexcept nogil:
    """list_lru_add(): p joins this vCPU's LRU of cached objects, to be
    reclaimed `lifetime` from now; a full LRU frees its oldest first."""
    cdef long n = w.nslots
    if w.lru_tail - w.lru_head == n:
        w_free(w, pool[w.lru_head % n], True)
        w.lru_head += 1
        w.evicted += 1
    pool[w.lru_tail % n] = p
    w.lru_when[w.lru_tail % n] = now + w.lifetime
    w.lru_tail += 1


cdef inline void churn_receive(worker *w, void **pool) noexcept nogil:
    """Cached objects another vCPU's job left behind (up to 4 at a time)
    join this vCPU's LRU."""
    cdef int i
    cdef void *p = ring_pop(w.inq)
    cdef double now
    if p == NULL:
        return
    now = monotonic()
    for i in range(4):
        lru_add(w, pool, p, now)
        p = ring_pop(w.inq)
        if p == NULL:
            return
    lru_add(w, pool, p, now)


cdef inline void churn_reclaim(worker *w, void **pool, long n) noexcept nogil:
    """Every reclaim_every operations, a shrinker pass (super_cache_scan ->
    prune_dcache_sb / prune_icache_sb walking the list_lru oldest first):
    free up to reclaim_batch cached objects whose time is up -- on this
    vCPU, whichever vCPU's job allocated them."""
    cdef long k = 0, size = w.nslots
    cdef double now
    churn_receive(w, pool)
    if n % w.reclaim_every != 0 or w.lru_head == w.lru_tail:
        return
    now = monotonic()
    while w.lru_head < w.lru_tail and k < w.reclaim_batch and \
            w.lru_when[w.lru_head % size] <= now:
        w_free(w, pool[w.lru_head % size], True)
        w.lru_head += 1
        w.reclaimed += 1
        k += 1


cdef void run_churn(worker *w, void **job, void **pool) noexcept nogil:
    """churn, shaped like containers: create a memcg, run a job that
    allocates job_objects objects from random accounted caches charged to
    it, and end it.  Its short-lived objects (files, buffers) are freed by
    the job itself; a share `outlive` of its dentry- and inode-like objects
    (the first two caches) outlive it, as a container's dentries and inodes
    stay in the dcache after its tasks exit -- whole slabs of them -- and
    are handed (with probability `handoff`, else kept on this vCPU) to the
    next vCPU's LRU, where a shrinker pass frees them `lifetime` later,
    concurrently with the offlines.  Then rmdir: the memcg's offline (the
    policy, under cgroup_mutex) is queued to the machine's kworker, as
    cgroup_rmdir queues css_killed_work_fn, and the next job starts; memcg
    creation and rmdir wait for cgroup_mutex while the kworker holds it
    (quiescent, serving requests, as a sleeping task's CPU).  The first
    allocation from each cache queues its child cache's creation on the
    kworker and is served from the root cache, uncharged; with wait_caches
    (the default) a job starts with one such allocation per cache and waits
    for the kworker to create its caches -- a real job outlives that
    workqueue latency by far, these microsecond jobs would not."""
    cdef long n = 0, k, got, ncached, idx
    cdef void *p
    cdef void **cached = job + w.job_objects + w.ncaches
    cdef kmem_cache *s
    cdef mem_cgroup *memcg
    cdef char name[48]
    cdef double waited
    cdef bint go = True
    cdef slub_machine *m = w.m
    while go:
        snprintf(name, sizeof(name), "job%d-%ld", w.cpu, w.jobs)
        waited = 0.0
        memcg = mem_cgroup_create(m, name, NULL, &waited)
        w.mkdir_wait_us += waited * 1e6
        if memcg == NULL:
            w.memcg_failures += 1
            churn_reclaim(w, pool, n)
            go = w_tick(w, &n)
            continue
        got = 0
        ncached = 0
        if w.wait_caches:
            for idx in range(w.ncaches):
                p = w_alloc(w, w.caches[idx], memcg)   # queues the creation; from the root
                if p != NULL:
                    job[got] = p
                    got += 1
            waited = monotonic()
            wait_kworker(w)
            w.cache_wait_us += (monotonic() - waited) * 1e6
        for k in range(w.job_objects):
            idx = <long>(next_rand(&w.rng) % <uint64_t>w.ncaches)
            p = w_alloc(w, w.caches[idx], memcg)
            if p != NULL:
                if idx < 2 and <uint32_t>(next_rand(&w.rng) >> 32) < w.outlive:
                    cached[ncached] = p
                    ncached += 1
                else:
                    job[got] = p
                    got += 1
            churn_reclaim(w, pool, n)
            if not w_tick(w, &n):
                go = False
                break
        for k in range(got):
            w_free(w, job[k], False)
            churn_reclaim(w, pool, n)
            if not w_tick(w, &n):
                go = False
        # the job's tasks exit; its cached dentries and inodes stay
        waited = monotonic()
        for k in range(ncached):
            if not (<uint32_t>(next_rand(&w.rng) >> 32) < w.handoff and ring_push(w.out, cached[k])):
                lru_add(w, pool, cached[k], waited)
        w.cached += ncached
        waited = 0.0
        if cgroup_rmdir(m, memcg, offline_done, &w.offlines, &waited) != 0:
            w.rmdir_errors += 1
        w.rmdir_wait_us += waited * 1e6
        if waited * 1e6 > w.rmdir_wait_max_us:
            w.rmdir_wait_max_us = waited * 1e6
        w.jobs += 1


cdef void worker_main(worker *w) noexcept nogil:
    cdef double t0
    cdef long inj0
    cdef void **scratch = NULL
    cdef void **job = NULL
    cdef long k
    if w.kind == W_BATCH:
        scratch = <void **>calloc(w.batch, sizeof(void *))
    elif w.kind == W_LARSON or w.kind == W_CHURN:
        scratch = <void **>calloc(w.nslots, sizeof(void *))
    if w.kind == W_CHURN:
        # the job's own objects, then its cached ones
        job = <void **>calloc(2 * w.job_objects + w.ncaches, sizeof(void *))
        w.lru_when = <double *>calloc(w.nslots, sizeof(double))
    t0 = monotonic()
    inj0 = atomic_long_read(&w.sc.vcpus[w.cpu].injected_ns)
    if w.kind == W_FASTPATH:
        run_fastpath(w)
    elif w.kind == W_BATCH:
        run_batch(w, scratch)
    elif w.kind == W_REMOTE:
        run_remote(w)
    elif w.kind == W_CHURN:
        run_churn(w, job, scratch)
    else:
        run_larson(w, scratch)
    w.seconds = monotonic() - t0
    w.injected = (atomic_long_read(&w.sc.vcpus[w.cpu].injected_ns) - inj0) * 1e-9
    ring_publish(w.out)
    # Phase 2: once every worker stopped producing and the controller has
    # sampled the machine, free what others handed over to us.
    atomic_int_fetch_add(w.phase_count, 1)
    k = 0
    while not atomic_int_read(w.drain_go):
        drain_inq(w)            # keep the rings moving (a full ring would stall)
        k += 1
        if (k & 63) == 0:
            rcu_quiescent_state(w.sc, w.cpu)
            rcu_softirq(w.sc, w.cpu)
            run_local_timers(w.sc, w.cpu)
            sched_yield()
    drain_inq(w)
    if w.kind == W_LARSON:          # the live objects stayed for the sample
        for k in range(w.nslots):
            if scratch[k] != NULL:
                w_free(w, scratch[k], False)
    elif w.kind == W_CHURN:         # the dcache is dropped (drop_caches)
        while w.lru_head < w.lru_tail:
            w_free(w, scratch[w.lru_head % w.nslots], True)
            w.lru_head += 1
        free(w.lru_when)
        w.lru_when = NULL
    free(scratch)
    free(job)


# ---------------------------------------------------------------------------
# The Python side: a Run holds the C state of one workload run.

from slubcy.machine cimport Machine, KmemCache
import threading
import time


cdef class VcpuWorkers:
    """One thread per vCPU 0..nworkers-1 running run_worker(i) with the GIL
    released: start() takes the vCPUs (CPUBusy if one is taken) and opens
    the start gate once every thread sits on its vCPU; the workers produce,
    bump phase_count, wait for drain_go, drain and leave their vCPUs."""

    cdef void run_worker(self, int i) noexcept nogil:
        pass

    def start(self):
        """Take every worker's vCPU (CPUBusy if one is taken) and start."""
        cdef int i
        self.machine.workers_begin(self.nworkers)
        self.threads = [threading.Thread(target=self._bound, args=(i,), name=f"slubcy-vcpu{i}",
                                         daemon=True) for i in range(self.nworkers)]
        try:
            # each thread sleeps at the start gate: none spins while the
            # next ones start (a thread start needs the CPU and the GIL)
            for t in self.threads:
                t.start()
            while atomic_int_read(&self.start_ready) < self.nworkers:
                time.sleep(0.0002)
        finally:
            self.started = time.monotonic()
            atomic_int_set(&self.start_go, 1)   # all together (or, on an error, to stop)

    def _bound(self, int i):
        cdef sched *sc = &self.machine.m.sc
        cdef timespec ts
        ts.tv_sec = 0
        ts.tv_nsec = 200000
        with nogil:
            while not vcpu_take(sc, i, i + 1):
                sched_yield()       # a controller call is on this vCPU for a moment
            atomic_int_fetch_add(&self.start_ready, 1)
            while not atomic_int_read(&self.start_go) and not atomic_int_read(&self.stop_flag):
                nanosleep(&ts, NULL)
            self.run_worker(i)
            vcpu_release(sc, i)

    def request_stop(self):
        atomic_int_set(&self.stop_flag, 1)

    @property
    def producing_done(self):
        return atomic_int_read(&self.phase_count) >= self.nworkers

    cdef wait_produced(self):
        """Until every worker is done producing (it then waits for drain_go)."""
        while atomic_int_read(&self.phase_count) < self.nworkers:
            time.sleep(0.0005)

    cdef drain_and_join(self):
        """Let the workers drain, join them, and flush the kworker: the
        offlines their jobs queued have run (and logged their latencies)."""
        atomic_int_set(&self.drain_go, 1)
        for t in self.threads:
            t.join()
        self.machine.workers_end(self.nworkers)
        with nogil:
            flush_workqueue(&self.machine.m.wq, -1.0)


cdef class Run(VcpuWorkers):
    """One run of a workload on `machine`: start(), then stop() or join()."""
    cdef worker *workers
    cdef ring *rings
    cdef kmem_cache **caches
    cdef readonly str kind_name
    cdef readonly list cache_objs

    def __cinit__(self, Machine machine, str kind, list caches, int nworkers, long ops_per_worker,
                  long batch=256, long slots=1024, double handoff=0.25, uint64_t seed=0,
                  long ring_size=4096, long job_objects=256, double outlive=0.1,
                  bint wait_caches=True, double lifetime=0.0, long reclaim_batch=128,
                  long reclaim_every=64):
        cdef int i
        if kind not in WORKLOADS:
            raise ValueError(f"unknown workload {kind!r}: one of {', '.join(WORKLOADS)}")
        if not 1 <= nworkers <= machine.m.nr_cpus:
            raise ValueError(f"{nworkers} workers need as many vCPUs; the machine has "
                             f"{machine.m.nr_cpus}")
        if not caches:
            raise ValueError("a workload needs at least one cache")
        if batch < 1 or slots < 1 or not 0.0 <= handoff <= 1.0 or ring_size < 2 \
                or ring_size & (ring_size - 1) or job_objects < 1 or not 0.0 <= outlive <= 1.0 \
                or not 0.0 <= lifetime <= 3600.0 or reclaim_batch < 1 or reclaim_every < 1:
            raise ValueError("bad workload parameters")
        if kind == "churn" and machine.m.policy_offline == NULL:
            raise ValueError("churn needs a machine with a dead-cache policy")
        self.machine = machine
        self.kind_name = kind
        self.cache_objs = caches
        self.nworkers = nworkers
        self.caches = <kmem_cache **>calloc(len(caches), sizeof(kmem_cache *))
        self.workers = <worker *>calloc(nworkers, sizeof(worker))
        # larson hands objects over in small batches (see ring); the other
        # workloads publish each object at once (churn's timing against the
        # offline matters)
        self.rings = rings_alloc(nworkers, ring_size,
                                 min(LARSON_HANDOVER_BATCH, ring_size) - 1 if kind == "larson" else 0)
        if self.caches == NULL or self.workers == NULL or self.rings == NULL:
            raise MemoryError()
        for i, c in enumerate(caches):
            self.caches[i] = (<KmemCache>c).get()
            if (<KmemCache>c).object_size < 16:
                raise ValueError(f"cache {(<KmemCache>c).name}: workloads need objects of >= 16 "
                                 "bytes (for the canary)")
        for i in range(nworkers):
            w = &self.workers[i]
            w.sc = &machine.m.sc
            w.caches = self.caches
            w.ncaches = len(caches)
            w.cpu = i
            w.kind = WORKLOADS[kind]
            w.ops_target = ops_per_worker
            w.stop = &self.stop_flag
            w.phase_count = &self.phase_count
            w.drain_go = &self.drain_go
            w.batch = batch
            w.nslots = slots
            w.handoff = <uint32_t>min(handoff * 4294967296.0, 4294967295.0)
            w.rng = (seed + 1) * 2654435761 + <uint64_t>i * 40503 + 1
            w.out = &self.rings[(i + 1) % nworkers]
            w.inq = &self.rings[i]
            w.m = &machine.m
            w.job_objects = job_objects
            w.outlive = <uint32_t>min(outlive * 4294967296.0, 4294967295.0)
            w.wait_caches = wait_caches
            w.lifetime = lifetime
            w.reclaim_batch = reclaim_batch
            w.reclaim_every = reclaim_every
        self.threads = []

    def __dealloc__(self):
        cdef int i
        # the kworker writes offline latencies into the workers
        if self.machine is not None and not self.machine.closed and self.workers != NULL:
            with nogil:
                flush_workqueue(&self.machine.m.wq, -1.0)
        if self.workers != NULL:
            for i in range(self.nworkers):
                free(self.workers[i].offlines.us)
        rings_free(self.rings, self.nworkers)
        free(self.workers)
        free(self.caches)

    cdef void run_worker(self, int i) noexcept nogil:
        worker_main(&self.workers[i])

    def ops(self):
        """Operations done so far, per worker (racy reads, for progress)."""
        return [self.workers[i].ops for i in range(self.nworkers)]

    def finish(self, sample=None):
        """Wait until every worker stopped producing, call sample() (the
        machine is quiet but objects are still live), then let the workers
        drain and join them.  Returns the per-worker results."""
        cdef int i
        self.wait_produced()
        try:
            sampled = sample() if sample is not None else None
        finally:
            self.drain_and_join()
        per = []
        for i in range(self.nworkers):
            w = &self.workers[i]
            per.append({"cpu": i, "ops": w.ops, "allocs": w.allocs, "frees": w.frees,
                        "remote_frees": w.remote_frees, "canary_errors": w.canary_errors,
                        "alloc_failures": w.alloc_failures, "lost": w.lost,
                        "seconds": w.seconds, "injected_s": w.injected, "jobs": w.jobs,
                        "memcg_failures": w.memcg_failures,
                        "offline_errors": w.offlines.errors + w.rmdir_errors,
                        "rmdir_wait_us": w.rmdir_wait_us, "rmdir_wait_max_us": w.rmdir_wait_max_us,
                        "mkdir_wait_us": w.mkdir_wait_us, "cache_wait_us": w.cache_wait_us, "cached": w.cached,
                        "reclaimed": w.reclaimed, "evicted": w.evicted,
                        "offline_us": [w.offlines.us[k] for k in range(w.offlines.n)]})
        return per, sampled
