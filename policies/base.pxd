# What every dead-cache policy is: the kernel behaviours it selects and its
# offline, a nogil C function composed of the core's primitives.
from slubcy.types cimport mem_cgroup, slub_machine
from slubcy.machine cimport Machine

ctypedef int (*offline_fn)(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil

cdef enum:
    MAX_CHILD_CACHES = 256      # child caches of one memcg (one per accounted root cache)

cdef class Policy:
    cdef readonly str name
    cdef readonly object options
    cdef Machine machine
    cdef public int per_memcg_caches
    cdef public int pages_pin_memcg
    cdef public int cpu_partial_dead_check
    cdef public int deact_batch
    cdef public int unregister_on_empty
    cdef offline_fn offline
    cdef void *data
