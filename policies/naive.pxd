from slubcy.types cimport mem_cgroup, slub_machine

cdef int naive_offline(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil
