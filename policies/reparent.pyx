# cython: language_level=3
"""reparent -- Linux 5.3 (Roman Gushchin, "mm: reparent slab memory on cgroup
removal": f0a3a24b532d, fb2f2b0adb98), the 2014 thread's RFC idea done at the
cache level: mark the caches dead and shrink them after an RCU grace period
(as 4.11), and hand them (with their charges and memcg reference) to the
parent, so the dying memcg is freed at once."""
from slubcy.types cimport kmem_cache, mem_cgroup, slub_machine
from slubcy.slub cimport __kmem_cache_shrink
from slubcy.memcg cimport (memcg_offline_begin, memcg_kmem_caches_snapshot, kmem_cache_mark_dead,
                           kmem_cache_shrink_after_gp, memcg_reparent_caches, memcg_offline_end)
from slubcy.sched cimport synchronize_sched
from slubcy.policies.base cimport Policy, MAX_CHILD_CACHES


cdef int reparent_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    cdef kmem_cache *caches[MAX_CHILD_CACHES]
    cdef int i, n, rc = 0
    memcg_offline_begin(m, memcg)
    n = memcg_kmem_caches_snapshot(m, memcg, caches, MAX_CHILD_CACHES)
    for i in range(n):
        kmem_cache_mark_dead(caches[i], False)      # __kmemcg_cache_deactivate
        if kmem_cache_shrink_after_gp(caches[i]) != 0:
            rc = synchronize_sched(&m.sc, m.ipi_timeout)
            __kmem_cache_shrink(caches[i], False)
    memcg_reparent_caches(m, memcg)                # memcg_reparent_kmem_caches
    memcg_offline_end(m, memcg)
    return rc


cdef class ReparentPolicy(Policy):
    kernel = "Linux 5.3 fb2f2b0adb98 (Gushchin)"

    def __cinit__(self, *args, **kwargs):
        self.name = "reparent"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 0
        self.cpu_partial_dead_check = 1
        self.offline = reparent_offline
