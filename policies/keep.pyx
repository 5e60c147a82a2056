# cython: language_level=3
"""keep -- Linux 3.16: shrink each cache once at offline; a cache with pages
left stays, with its memcg, until the pages are gone (which the empty slabs
SLUB keeps around never are).  memcg_unregister_all_caches() in 3.16
mm/memcontrol.c; Davydov, 30 May 2014: "we simply leak such caches along with
the owner memcg"."""
from slubcy.slub cimport slub_machine, mem_cgroup, kmem_cache, __kmem_cache_shrink
from slubcy.memcg cimport memcg_offline_begin, memcg_caches, memcg_offline_end
from policies.base cimport Policy, MAX_CHILD_CACHES


cdef int keep_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    cdef kmem_cache *caches[MAX_CHILD_CACHES]
    cdef int i, n, rc = 0, before = m.ipi_timeouts
    memcg_offline_begin(m, memcg)
    n = memcg_caches(m, memcg, caches, MAX_CHILD_CACHES)
    for i in range(n):
        __kmem_cache_shrink(caches[i], False)      # kmem_cache_shrink()
    memcg_offline_end(m, memcg)
    return -1 if m.ipi_timeouts != before else 0


cdef class KeepPolicy(Policy):
    kernel = "Linux 3.16 (memcg_unregister_all_caches)"

    def __cinit__(self, *args, **kwargs):
        self.name = "keep"
        self.per_memcg_caches = 1
        self.pages_pin_memcg = 1
        self.cpu_partial_dead_check = 0
        self.offline = keep_offline
