# cython: language_level=3
"""naive -- the 2014 mail's plan without its barrier (Davydov, 19 May 2014,
537A4D27.1050909@parallels.com): mark the cache dead (cpu_partial =
min_partial = 0, kmem_cache_has_cpu_partial() false) and shrink it.  A
__slab_free that decided to freeze a full slab before the mark and does its
cmpxchg after the shrink parks the slab on a per-cpu partial list for good:
with kmem_cache_has_cpu_partial() false no later free of that cache enters
put_cpu_partial() (whose drain would unfreeze the list), so the slab stays
until something flushes that vCPU's partials for that cache again -- and in
`naive` nothing does (no reaper, no later shrink; compare `reap`)."""
from slubcy.types cimport kmem_cache, mem_cgroup, slub_machine
from slubcy.slub cimport __kmem_cache_shrink
from slubcy.memcg cimport (memcg_offline_begin, memcg_kmem_caches_snapshot, kmem_cache_mark_dead,
                           memcg_offline_end)
from slubcy.sched cimport (preempt_point, PP_OFFLINE_AFTER_MARK_DEAD, PP_OFFLINE_BEFORE_SHRINK,
                           smp_processor_id)
from slubcy.policies.base cimport Policy, MAX_CHILD_CACHES


cdef int naive_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    cdef kmem_cache *caches[MAX_CHILD_CACHES]
    cdef int i, n, before = m.ipi_timeouts
    memcg_offline_begin(m, memcg)
    n = memcg_kmem_caches_snapshot(m, memcg, caches, MAX_CHILD_CACHES)
    for i in range(n):
        kmem_cache_mark_dead(caches[i], True)
    preempt_point(&m.sc, PP_OFFLINE_AFTER_MARK_DEAD, smp_processor_id())
    preempt_point(&m.sc, PP_OFFLINE_BEFORE_SHRINK, smp_processor_id())
    for i in range(n):
        __kmem_cache_shrink(caches[i], False)      # no barrier before it
    memcg_offline_end(m, memcg)
    return -1 if m.ipi_timeouts != before else 0


cdef class NaivePolicy(Policy):
    kernel = "proposal of 19 May 2014 (537A4D27.1050909@parallels.com), no barrier"
    leak_kind = ("parked by the race: a free slab left on a vCPU's partial list of a dead "
                 "cache, which nothing drains")

    def __cinit__(self, *args, **kwargs):
        self.name = "naive"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 0
        self.offline = naive_offline
