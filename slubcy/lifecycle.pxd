# A slub_machine's bring-up and teardown in C (slubcy/lifecycle.pyx): the
# Python facade (machine.pyx) checks the arguments and calls these.
from libc.stdint cimport uint64_t
from slubcy.types cimport slub_machine

cdef enum:
    MACHINE_OK = 0
    MACHINE_NOMEM_VCPUS = 1     # sched_init: the vCPUs
    MACHINE_NOMEM_ARENA = 2     # zone_init: the arena's mapping
    MACHINE_NOMEM_MEMCG = 3     # memcg_init: the root memcg and the stocks
    MACHINE_NO_KWORKER = 4      # workqueue_start: the kworker thread

cdef int slub_machine_init(slub_machine *m, int nr_cpus, int nr_cpu_ids, size_t memory,
                           uint64_t seed, long tick_ns, double ipi_timeout) noexcept nogil
cdef void slub_machine_release(slub_machine *m) noexcept
