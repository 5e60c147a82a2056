from slubcy.slub cimport slub_machine, mem_cgroup

cdef int naive_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil
