# cython: language_level=3
"""barrier -- Linux 4.0 (d6e0b7fa1186 "slub: make dead caches discard free
slabs immediately"): mark dead (cpu_partial = min_partial = 0), wait until
every __slab_free that saw the cache alive is over, then flush and shrink;
put_cpu_partial() unfreezes at once when cpu_partial == 0.  Modes:
  kick   4.0: kick_all_cpus_sync() per cache -- an IPI round, a full memory
         barrier on every CPU; it does not wait for a free in progress: the
         put_cpu_partial() check closes the race by ordering;
  sync   4.7 (81ae6d03952c): synchronize_sched() per cache -- waits for
         preempt-disabled code (put_cpu_partial's body), never for a
         preempted task;
  async  4.11 (c9fc586403e7, 01fb58bcba63, Tejun Heo): call_rcu_sched() per
         cache, so one grace period serves a whole batch and offline does
         not wait (bugzilla 190841: rmdir blocked on synchronize_sched); after
         it, one work item per cache shrinks it (kmemcg_deactivate_workfn);
  batch  async, but the workqueue flushes a whole batch of dead caches with
         one cross-vCPU request per vCPU (a departure: fewer IPIs);
  none   test-only: the steps without any wait, to show what the wait does."""
from slubcy.types cimport kmem_cache, mem_cgroup, slub_machine
from slubcy.slub cimport __kmem_cache_shrink
from slubcy.memcg cimport (memcg_offline_begin, memcg_kmem_caches_snapshot, kmem_cache_mark_dead,
                           kmem_cache_shrink_after_gp, memcg_offline_end)
from slubcy.sched cimport (synchronize_sched, kick_all_cpus_sync, preempt_point,
                           PP_OFFLINE_AFTER_MARK_DEAD, PP_OFFLINE_BEFORE_SHRINK, smp_processor_id)
from slubcy.mutex cimport mutex_lock, mutex_unlock
from slubcy.policies.base cimport Policy, MAX_CHILD_CACHES

cdef enum:
    MODE_KICK = 0
    MODE_SYNC = 1
    MODE_ASYNC = 2
    MODE_BATCH = 3
    MODE_NONE = 4

MODES = {"kick": MODE_KICK, "sync": MODE_SYNC, "async": MODE_ASYNC, "batch": MODE_BATCH,
         "none": MODE_NONE}


cdef int barrier_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    cdef kmem_cache *caches[MAX_CHILD_CACHES]
    cdef int i, n, rc = 0, mode = <int><long>data, before = m.ipi_timeouts
    memcg_offline_begin(m, memcg)
    # memcg_deactivate_kmem_caches() (4.0-4.11): get_online_cpus(),
    # get_online_mems() (no CPU or memory hotplug here) and slab_mutex held
    # across the loop -- so in kick and sync modes across every per-cache
    # barrier, stalling child cache creation (and kmem_cache_create) that
    # long; the caller (css_killed_work_fn) holds cgroup_mutex as well
    mutex_lock(&m.sc, &m.slab_mutex)
    n = memcg_kmem_caches_snapshot(m, memcg, caches, MAX_CHILD_CACHES)
    for i in range(n):
        kmem_cache_mark_dead(caches[i], False)
        preempt_point(&m.sc, PP_OFFLINE_AFTER_MARK_DEAD, smp_processor_id())
        if (mode == MODE_ASYNC or mode == MODE_BATCH) and kmem_cache_shrink_after_gp(caches[i]) == 0:
            continue
        if mode == MODE_KICK:
            rc = kick_all_cpus_sync(&m.sc, m.ipi_timeout)
        elif mode == MODE_NONE:
            rc = 0
        else:
            rc = synchronize_sched(&m.sc, m.ipi_timeout)
        if rc != 0:
            break
        preempt_point(&m.sc, PP_OFFLINE_BEFORE_SHRINK, smp_processor_id())
        __kmem_cache_shrink(caches[i], False)
    mutex_unlock(&m.slab_mutex)
    memcg_offline_end(m, memcg)
    return -1 if rc != 0 or m.ipi_timeouts != before else 0


cdef class BarrierPolicy(Policy):
    kernel = "Linux 4.0 d6e0b7fa1186; sync 4.7 81ae6d03952c; async 4.11 01fb58bcba63"
    takes_options = True

    def __cinit__(self, options=None, *args, **kwargs):
        mode = options or "async"
        if mode not in MODES:
            raise ValueError(f"barrier mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.name = "barrier"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 1
        self.offline = barrier_offline
        self.data = <void *><long>MODES[mode]
        self.deact_batch = mode == "batch"

    def __init__(self, options=None):
        Policy.__init__(self, options or "async")
