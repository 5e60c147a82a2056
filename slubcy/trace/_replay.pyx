# cython: language_level=3
"""slubcy.trace._replay: the replay of a mapped kmem trace (slubcy.trace.mapping) in nogil C: one
worker thread per vCPU, each owning its vCPU as a workload's worker does
(slubcy/workers.pyx), running its own stream of operations in the trace's
order through the core's one allocation and free entry (slubcy/alloc.pxd).

Cross-vCPU order is kept where it matters, and only there:
  - a free never runs before its allocation: every allocation stores its
    object in a slot (one per traced allocation); an allocation freed on
    another vCPU publishes it with a release store, and that free waits for
    the slot with acquire loads (OPF_PUBLISH / OPF_WAIT);
  - a memcg exists before its group's accounted allocations: the group's
    first operation creates it (mem_cgroup_create, cgroup_mutex), and an
    allocation on another vCPU that needs it waits for it the same way;
  - a memcg goes offline after its group's last operation on every vCPU:
    each vCPU's last operation of the group counts down the group's vCPUs,
    and the one that reaches 0 rmdirs it (cgroup_rmdir: the policy's offline
    on the kworker), as the last task of a container exiting does.
Every wait points backwards in the trace's total order (timestamps), so no
two vCPUs wait for each other.  A waiting worker is quiescent and takes its
IPIs, as a task blocked between two operations.  Between two operations a
worker runs local_irq_enabled / preempt_check_resched, and every
QS_INTERVAL a quiescent state, rcu_softirq and run_local_timers, exactly as
w_tick does, so grace periods, IPIs and the policies' offlines run during a
replay.
"""

from libc.stdint cimport uint64_t, uint32_t, uint16_t, uint8_t, int32_t, uintptr_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport strncpy
from posix.time cimport timespec, nanosleep
from slubcy.sched cimport sched_yield
from slubcy.atomic cimport (atomic_int_fetch_add, atomic_int_read, atomic_int_set,
                            atomic_ptr_read, atomic_ptr_set, cpu_relax, u16_write_once)
from slubcy.types cimport kmem_cache, mem_cgroup, page, slub_machine
from slubcy.page_alloc cimport (virt_to_head_page, alloc_pages, __free_pages, page_address,
                                PG_large_kmalloc)
from slubcy.alloc cimport slab_alloc_node, slab_free, SLAB_HOOK_MEMCG
from slubcy.memcg cimport (mem_cgroup_create, cgroup_rmdir, OFFLINE_CANCELLED,
                           memcg_kmem_charge_page, memcg_kmem_uncharge_page)
from slubcy.kworker cimport flush_workqueue
from slubcy.workers cimport VcpuWorkers, offline_log, offline_done
from slubcy.sched cimport (sched, vcpu_take, vcpu_release, rcu_quiescent_state, rcu_softirq,
                           monotonic, local_irq_enabled, preempt_check_resched,
                           run_local_timers, backoff_wait, QS_INTERVAL)


cdef extern from "time.h" nogil:
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_THREAD_CPUTIME_ID

cdef inline double thread_cpu_time() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

# operation kinds and flags (slubcy.trace.mapping builds them: OP_DTYPE)
cpdef enum:
    OP_ALLOC = 0            # slab_alloc_node(caches[cache], memcg?)
    OP_FREE = 1             # slab_free() of slots[slot]
    OP_ALLOC_PAGES = 2      # kmalloc_large: alloc_pages(order)
    OP_FREE_PAGES = 3       # kfree of a kmalloc_large block: __free_pages

cpdef enum:
    OPF_PUBLISH = 1         # alloc freed on another vCPU: publish the slot (release)
    OPF_WAIT = 2            # free of an object another vCPU allocates: wait for its slot
    OPF_CHARGE = 4          # an accounted allocation: charged to the group's memcg
    OPF_MEMCG_CREATE = 8    # the group's first operation: create its memcg first
    OPF_GROUP_LAST = 16     # this vCPU's last operation of the group: count it down after
    OPF_LIVE = 32           # an allocation never freed in the trace (freed by the drain)

cdef packed struct op:
    uint8_t kind
    uint8_t flags
    uint16_t arg            # cache index (OP_ALLOC) or page order (OP_ALLOC_PAGES)
    int32_t group           # memcg group, -1 none
    uint32_t slot           # the allocation's slot
    uint32_t _pad

cdef struct group:
    mem_cgroup *memcg       # published (release) by its creator; FAILED if it could not be
    int pending             # vCPUs that still have operations of the group
    int created
    char name[48]

cdef void *SLOT_FAILED = <void *>1      # an allocation that failed (arena exhausted)

cdef struct rworker:
    sched *sc
    slub_machine *m
    kmem_cache **caches
    group *groups
    void **slots
    op *ops
    long nops
    int cpu
    int *stop
    int *phase_count
    int *drain_go
    # results
    long events              # operations done (progress; racy reads)
    long allocs
    long frees
    long remote_frees
    long page_allocs
    long page_frees
    long alloc_failures
    long skipped_frees       # frees of a failed allocation
    long waits               # remote frees / charges that found their slot not ready
    double wait_s
    long memcgs_created
    long memcg_failures
    long rmdirs
    long rmdir_errors
    double rmdir_wait_us
    long drained
    long drained_pages       # of which kmalloc_large blocks
    double seconds
    double cpu_seconds       # the main loop's thread CPU time (host load aside)
    char _pad[64]


cdef inline bint wait_ptr(rworker *w, void **p) noexcept nogil:
    """Wait, quiescent and taking IPIs, until *p is published; False if the
    replay is being stopped."""
    cdef int spins = 0, k
    cdef double t0 = monotonic()
    w.waits += 1
    # the other vCPU is most often running towards it: spin a while first
    for k in range(2048):
        cpu_relax()
        if atomic_ptr_read(p) != NULL:
            w.wait_s += monotonic() - t0
            return True
        if (k & 63) == 0:
            local_irq_enabled(w.sc, w.cpu)
    while atomic_ptr_read(p) == NULL:
        rcu_quiescent_state(w.sc, w.cpu)
        rcu_softirq(w.sc, w.cpu)
        run_local_timers(w.sc, w.cpu)
        if atomic_int_read(w.stop):
            return False
        backoff_wait(&spins, 20000)
    w.wait_s += monotonic() - t0
    return True


cdef inline mem_cgroup *group_memcg(rworker *w, group *g) noexcept nogil:
    cdef mem_cgroup *memcg = <mem_cgroup *>atomic_ptr_read(<void **>&g.memcg)
    if memcg == NULL:
        if not wait_ptr(w, <void **>&g.memcg):
            return NULL
        memcg = <mem_cgroup *>atomic_ptr_read(<void **>&g.memcg)
    return NULL if <void *>memcg == SLOT_FAILED else memcg


cdef void group_create(rworker *w, group *g) noexcept nogil:
    """cgroup_mkdir of the group's memcg, from this vCPU (cgroup_mutex: a
    waiter is quiescent and serves its IPIs)."""
    cdef mem_cgroup *memcg = mem_cgroup_create(w.m, g.name, NULL, NULL)
    if memcg == NULL:
        w.memcg_failures += 1
        atomic_ptr_set(<void **>&g.memcg, SLOT_FAILED)
        return
    w.memcgs_created += 1
    g.created = 1
    atomic_ptr_set(<void **>&g.memcg, memcg)


cdef void group_done(rworker *w, group *g, offline_log *log) noexcept nogil:
    """This vCPU ran its last operation of the group; the last vCPU to get
    here removes the memcg (its offline is queued to the kworker)."""
    cdef double waited = 0.0
    cdef mem_cgroup *memcg
    if atomic_int_fetch_add(&g.pending, -1) != 1:
        return
    memcg = <mem_cgroup *>atomic_ptr_read(<void **>&g.memcg)
    if memcg == NULL or <void *>memcg == SLOT_FAILED:
        return
    if cgroup_rmdir(w.m, memcg, offline_done, log, &waited) != 0:
        w.rmdir_errors += 1
    else:
        w.rmdirs += 1
    w.rmdir_wait_us += waited * 1e6


cdef inline void do_free(rworker *w, void *x, int kind) noexcept nogil:
    cdef page *pg = virt_to_head_page(&w.m.z, x)
    if kind == OP_FREE_PAGES:
        memcg_kmem_uncharge_page(w.m, pg, pg.order)     # (nothing if uncharged)
        __free_pages(&w.m.z, pg, pg.order)
        w.page_frees += 1
    else:
        slab_free(<kmem_cache *>pg.slab_cache, pg, x, w.cpu, SLAB_HOOK_MEMCG)
        w.frees += 1


cdef void replay_main(rworker *w, offline_log *log) noexcept nogil:
    cdef long i, n = 0
    cdef op *o
    cdef void *x
    cdef void **slot
    cdef mem_cgroup *memcg
    cdef kmem_cache *from_cache
    cdef page *pg
    cdef uint8_t fl
    for i in range(w.nops):
        o = &w.ops[i]
        fl = o.flags
        if fl & OPF_MEMCG_CREATE:
            group_create(w, &w.groups[o.group])
        slot = &w.slots[o.slot]
        if o.kind == OP_ALLOC:
            memcg = NULL
            if fl & OPF_CHARGE:
                memcg = group_memcg(w, &w.groups[o.group])
            x = slab_alloc_node(w.caches[o.arg], memcg, w.cpu, 0, &from_cache)
            if x == NULL:
                w.alloc_failures += 1
                x = SLOT_FAILED
            else:
                w.allocs += 1
            if fl & OPF_PUBLISH:
                atomic_ptr_set(slot, x)
            else:
                slot[0] = x
        elif o.kind == OP_ALLOC_PAGES:
            pg = alloc_pages(&w.m.z, o.arg)
            if pg == NULL:
                w.alloc_failures += 1
                x = SLOT_FAILED
            else:
                u16_write_once(&pg.flags, pg.flags | PG_large_kmalloc)
                if fl & OPF_CHARGE:                         # kmalloc_order, __GFP_ACCOUNT
                    memcg = group_memcg(w, &w.groups[o.group])
                    if memcg != NULL:
                        memcg_kmem_charge_page(pg, o.arg, memcg)
                x = page_address(&w.m.z, pg)
                w.page_allocs += 1
            if fl & OPF_PUBLISH:
                atomic_ptr_set(slot, x)
            else:
                slot[0] = x
        else:
            if fl & OPF_WAIT:
                x = atomic_ptr_read(slot)
                if x == NULL:
                    if not wait_ptr(w, slot):
                        break
                    x = atomic_ptr_read(slot)
                w.remote_frees += 1
            else:
                x = slot[0]
            if x == SLOT_FAILED:
                w.skipped_frees += 1
            else:
                do_free(w, x, o.kind)
        if fl & OPF_GROUP_LAST:
            group_done(w, &w.groups[o.group], log)
        w.events += 1
        # between two operations, as workers.pyx's w_tick
        n += 1
        local_irq_enabled(w.sc, w.cpu)
        preempt_check_resched(w.sc, w.cpu)
        if (n & (QS_INTERVAL - 1)) == 0:
            rcu_quiescent_state(w.sc, w.cpu)
            rcu_softirq(w.sc, w.cpu)
            run_local_timers(w.sc, w.cpu)
            if atomic_int_read(w.stop):
                break


cdef void worker_main(rworker *w, offline_log *log) noexcept nogil:
    cdef double t0 = monotonic()
    cdef double c0 = thread_cpu_time()
    cdef long i
    cdef timespec ts
    ts.tv_sec = 0
    ts.tv_nsec = 200000
    cdef op *o
    cdef void *x
    replay_main(w, log)
    w.seconds = monotonic() - t0
    w.cpu_seconds = thread_cpu_time() - c0
    # Phase 2: off its vCPU while the controller samples the machine (the
    # objects never freed are live; it validates with every vCPU idle),
    # then back on it to free them.
    vcpu_release(w.sc, w.cpu)
    atomic_int_fetch_add(w.phase_count, 1)
    while not atomic_int_read(w.drain_go):
        nanosleep(&ts, NULL)
    while not vcpu_take(w.sc, w.cpu, w.cpu + 1):
        sched_yield()       # a borrower (kworker, RCU thread) is on it for a moment
    for i in range(w.nops):
        o = &w.ops[i]
        if (o.flags & OPF_LIVE) and (o.kind == OP_ALLOC or o.kind == OP_ALLOC_PAGES):
            x = w.slots[o.slot]
            if x != NULL and x != SLOT_FAILED:
                do_free(w, x, OP_FREE_PAGES if o.kind == OP_ALLOC_PAGES else OP_FREE)
                w.slots[o.slot] = NULL
                w.drained += 1
                if o.kind == OP_ALLOC_PAGES:
                    w.drained_pages += 1
                if (w.drained & (QS_INTERVAL - 1)) == 0:
                    rcu_quiescent_state(w.sc, w.cpu)
                    rcu_softirq(w.sc, w.cpu)
                    run_local_timers(w.sc, w.cpu)
                else:
                    local_irq_enabled(w.sc, w.cpu)


# ---------------------------------------------------------------------------
# The Python side

from slubcy.machine cimport Machine, KmemCache
import threading
import time

import numpy as np

OP_DTYPE = np.dtype([("kind", np.uint8), ("flags", np.uint8), ("arg", np.uint16),
                     ("group", np.int32), ("slot", np.uint32), ("_pad", np.uint32)])
assert OP_DTYPE.itemsize == sizeof(op)


cdef class Replay(VcpuWorkers):
    """The C state of one replay on `machine`: `ops` (OP_DTYPE, every
    vCPU's stream back to back, `bounds[i]:bounds[i+1]` vCPU i's), the root
    caches `caches` that op.arg indexes, the memcg group names and the
    number of slots.  start(), then finish(sample)."""
    cdef rworker *workers
    cdef kmem_cache **caches
    cdef group *groups
    cdef void **slots
    cdef object ops_keep
    cdef offline_log log
    cdef readonly int ngroups

    def __cinit__(self, Machine machine, ops, bounds, list caches, list group_names,
                  group_cpus, long nslots):
        cdef int i, ncpus = len(bounds) - 1
        cdef op *base
        if not 1 <= ncpus <= machine.m.nr_cpus:
            raise ValueError(f"{ncpus} trace vCPUs; the machine has {machine.m.nr_cpus}")
        ops = np.ascontiguousarray(ops, dtype=OP_DTYPE)
        if len(group_names) and machine.m.policy_offline == NULL:
            raise ValueError("memcgs need a machine with a dead-cache policy")
        self.ops_keep = ops
        self.machine = machine
        self.nworkers = ncpus
        self.ngroups = len(group_names)
        self.caches = <kmem_cache **>calloc(max(1, len(caches)), sizeof(kmem_cache *))
        self.workers = <rworker *>calloc(ncpus, sizeof(rworker))
        self.groups = <group *>calloc(max(1, self.ngroups), sizeof(group))
        self.slots = <void **>calloc(max(1, nslots), sizeof(void *))
        if self.caches == NULL or self.workers == NULL or self.groups == NULL or self.slots == NULL:
            raise MemoryError()
        for i, c in enumerate(caches):
            self.caches[i] = (<KmemCache>c).get()
        for i, name in enumerate(group_names):
            b = name.encode()[:47]
            strncpy(self.groups[i].name, b, 47)
            self.groups[i].pending = int(group_cpus[i])
        base = <op *><uintptr_t>ops.ctypes.data if len(ops) else NULL
        for i in range(ncpus):
            w = &self.workers[i]
            w.sc = &machine.m.sc
            w.m = &machine.m
            w.caches = self.caches
            w.groups = self.groups
            w.slots = self.slots
            w.ops = base + <long>bounds[i] if base != NULL else NULL
            w.nops = <long>bounds[i + 1] - <long>bounds[i]
            w.cpu = i
            w.stop = &self.stop_flag
            w.phase_count = &self.phase_count
            w.drain_go = &self.drain_go
        self.threads = []

    def __dealloc__(self):
        if self.machine is not None and not self.machine.closed and self.workers != NULL:
            with nogil:         # the kworker writes into self.log
                flush_workqueue(&self.machine.m.wq, -1.0)
        free(self.log.us)
        free(self.workers)
        free(self.caches)
        free(self.groups)
        free(self.slots)

    cdef void run_worker(self, int i) noexcept nogil:
        worker_main(&self.workers[i], &self.log)

    def events(self):
        """Operations done so far, per worker (racy reads, for progress)."""
        return [self.workers[i].events for i in range(self.nworkers)]

    def finish(self, sample=None):
        """Wait until every worker ran its stream, call sample() (objects
        never freed are live), let the workers free them, join them and
        flush the kworker.  Returns (per-worker dicts, offline latencies
        in us, offline errors, sample's result)."""
        cdef int i
        self.wait_produced()
        # the workers are off their vCPUs until drain_go: the machine is the
        # controller's (object-level calls, validate())
        self.machine.workers_end(self.nworkers)
        try:
            sampled = sample() if sample is not None else None
        finally:
            self.machine.workers_resume(self.nworkers)
            self.drain_and_join()
        per = []
        for i in range(self.nworkers):
            w = &self.workers[i]
            per.append({"cpu": i, "events": w.events, "nops": w.nops,
                        "ops": w.allocs + w.frees + w.page_allocs + w.page_frees,
                        "allocs": w.allocs, "frees": w.frees, "remote_frees": w.remote_frees,
                        "page_allocs": w.page_allocs, "page_frees": w.page_frees,
                        "alloc_failures": w.alloc_failures, "skipped_frees": w.skipped_frees,
                        "waits": w.waits, "wait_s": w.wait_s,
                        "memcgs_created": w.memcgs_created, "memcg_failures": w.memcg_failures,
                        "rmdirs": w.rmdirs, "rmdir_errors": w.rmdir_errors,
                        "rmdir_wait_us": w.rmdir_wait_us, "drained": w.drained,
                        "drained_pages": w.drained_pages,
                        "seconds": w.seconds, "cpu_seconds": w.cpu_seconds})
        lat = [self.log.us[k] for k in range(self.log.n)]
        return per, lat, self.log.errors, sampled
