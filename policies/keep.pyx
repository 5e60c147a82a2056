# cython: language_level=3
"""keep -- Linux 3.16: at offline, shrink each cache once and unregister
(destroy) it if it holds no page at that moment; a cache that still holds
pages then is never unregistered and stays, with its memcg (dying), for
good.  memcg_unregister_all_caches() in 3.16 mm/memcontrol.c: kmem_cache_shrink,
then memcg_unregister_cache() only if memcg_params->nr_pages == 0 (the
last-page trigger of 3.8-3.15, memcg_release_pages(), had been removed by
Davydov before 3.16); Davydov, 30 May 2014: "we simply leak such caches
along with the owner memcg"."""
from slubcy.types cimport kmem_cache, mem_cgroup, slub_machine
from slubcy.slub cimport __kmem_cache_shrink, css_get_many
from slubcy.memcg cimport (memcg_offline_begin, memcg_kmem_caches_snapshot, memcg_offline_end,
                           memcg_unregister_cache)
from slubcy.policies.base cimport Policy, MAX_CHILD_CACHES


cdef int keep_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    """memcg_unregister_all_caches() (3.16)."""
    cdef kmem_cache *caches[MAX_CHILD_CACHES]
    cdef int i, n, rc = 0, before = m.ipi_timeouts
    memcg_offline_begin(m, memcg)
    n = memcg_kmem_caches_snapshot(m, memcg, caches, MAX_CHILD_CACHES)
    for i in range(n):
        __kmem_cache_shrink(caches[i], False)      # kmem_cache_shrink()
        if not memcg_unregister_cache(m, caches[i]):
            # never unregistered: its memcg_params keep the css reference
            # memcg_alloc_cache_params() took (css_get), which only
            # memcg_free_cache_params() at unregister would drop
            css_get_many(memcg, 1)
    memcg_offline_end(m, memcg)
    return -1 if m.ipi_timeouts != before else 0


cdef class KeepPolicy(Policy):
    kernel = "Linux 3.16 (memcg_unregister_all_caches)"
    leak_kind = ("never unregistered: 3.16 unregisters a cache only if it is empty at offline; "
                 "a cache with objects then keeps its memcg dying for good")

    def __cinit__(self, *args, **kwargs):
        self.name = "keep"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 0
        self.unregister_on_empty = 0        # only at offline
        self.offline = keep_offline
