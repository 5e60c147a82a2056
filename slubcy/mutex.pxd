# Sleeping mutexes (kernel/locking/mutex.c), for the locks the kernel holds
# across a grace period: cgroup_mutex and slab_mutex.  A waiter on a vCPU
# context-switches in the kernel: here its vCPU goes quiescent for RCU-sched
# and keeps taking cross-vCPU requests while it waits (see mutex.pyx).
from slubcy.sched cimport sched

cdef struct mutex:
    unsigned int next        # ticket of the next locker (FIFO, as the mutex wait list)
    unsigned int serving     # ticket of the holder
    long contended           # lockers that had to wait
    double wait_seconds      # ... and how long, in all

cdef double mutex_lock(sched *sc, mutex *lock) noexcept nogil
cdef void mutex_unlock(mutex *lock) noexcept nogil
cdef bint mutex_trylock(mutex *lock) noexcept nogil
cdef bint mutex_is_locked(mutex *lock) noexcept nogil
