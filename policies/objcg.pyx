# cython: language_level=3
"""objcg -- Linux 5.9, "The new cgroup slab memory controller" (Gushchin,
20200623174037.3951353-1-guro@fb.com; 9855609bde03): no per-memcg caches;
each object records the obj_cgroup it is charged to, and offline reparents the
obj_cgroup, so the memcg is freed at once and no cache ever dies."""
from slubcy.types cimport mem_cgroup, slub_machine
from slubcy.memcg cimport memcg_offline_begin, memcg_reparent_objcg, memcg_offline_end
from slubcy.policies.base cimport Policy


cdef int objcg_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil:
    memcg_offline_begin(m, memcg)
    memcg_reparent_objcg(m, memcg)          # memcg_reparent_objcgs()
    memcg_offline_end(m, memcg)
    return 0


cdef class ObjcgPolicy(Policy):
    kernel = "Linux 5.9 9855609bde03 (Gushchin)"

    def __cinit__(self, *args, **kwargs):
        self.name = "objcg"
        self.per_memcg_caches = 0
        self.pages_pin_memcg = 0
        self.cpu_partial_dead_check = 1
        self.offline = objcg_offline
