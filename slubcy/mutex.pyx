# cython: language_level=3
"""Sleeping mutexes: mutex_lock() / mutex_unlock() (kernel/locking/mutex.c).

cgroup_mutex and slab_mutex are sleeping mutexes in the kernel: a task that
waits for one calls schedule(), so its CPU context-switches -- a quiescent
state for RCU-sched -- and runs other work, interrupts included, meanwhile.
That is what lets css_killed_work_fn hold slab_mutex across
synchronize_sched() (Linux 4.7-4.9 memcg_deactivate_kmem_caches) while other
tasks queue up behind it without stalling the grace period.

Here a waiter on a vCPU (smp_processor_id() >= 0) reports a quiescent state
and goes offline for QSBR (vcpu.online = 0, as synchronize_sched() does for
its caller) and keeps serving the requests posted to its vCPU (flush_all,
kick_all_cpus_sync) until it gets the lock; then it is online again.  A
waiter on no vCPU (the kworker, the RCU thread, a Python thread) just waits.
A waiter that holds the GIL lets it go while it waits.  Waiters are served
in order (a ticket lock): the kernel's mutex hands over to the first waiter.

The short list updates of the slab and memcg code (slab_caches, memcg
lists, kmemcg ids, children lists) stay under the spinlock slab_lock, which
is taken from the free path (discard_slab -> destroy of an empty dead cache)
and is never held across a wait: see slubcy/slub.pxd.
"""

from libc.stdint cimport uint64_t
from posix.time cimport timespec, nanosleep

from slubcy.sched cimport sched_yield, PyThreadState, PyGILState_Check, PyEval_SaveThread, PyEval_RestoreThread
from slubcy.atomic cimport (atomic_int_read, atomic_int_set, atomic_u64_set, atomic_uint_cmpxchg,
                            atomic_uint_fetch_add, atomic_uint_read, atomic_uint_set, smp_mb)
from slubcy.sched cimport (sched, vcpu, smp_processor_id, handle_ipi, monotonic, IPI_POSTED,
                           backoff_wait)




cdef double mutex_lock_slowpath(sched *sc, mutex *lock, unsigned int ticket) noexcept nogil:
    """__mutex_lock_slowpath(): wait for our turn as a sleeping task would."""
    cdef int cpu = smp_processor_id(), spins = 0
    cdef vcpu *v = NULL
    cdef double t0 = monotonic(), waited
    cdef PyThreadState *tstate = NULL
    if PyGILState_Check():
        tstate = PyEval_SaveThread()
    if cpu >= 0:
        # schedule(): a context switch is a quiescent state, and the CPU
        # is idle for RCU-sched until the task runs again
        v = &sc.vcpus[cpu]
        smp_mb()
        atomic_u64_set(&v.qs_ctr, v.qs_ctr + 1)
        atomic_int_set(&v.online, 0)
    while atomic_uint_read(&lock.serving) != ticket:
        if v != NULL and atomic_int_read(&v.ipi_state) == IPI_POSTED:
            handle_ipi(sc, cpu)         # the sleeping task's CPU takes its interrupts
        backoff_wait(&spins, 20000)
    if v != NULL:
        atomic_int_set(&v.online, 1)
        smp_mb()        # online before any read of shared state (see synchronize_sched)
    waited = monotonic() - t0
    lock.contended += 1             # (under the lock now)
    lock.wait_seconds += waited
    if tstate != NULL:
        PyEval_RestoreThread(tstate)
    return waited


cdef double mutex_lock(sched *sc, mutex *lock) noexcept nogil:
    """mutex_lock(): returns the seconds spent waiting (0.0 uncontended)."""
    cdef unsigned int ticket = atomic_uint_fetch_add(&lock.next, 1)
    if atomic_uint_read(&lock.serving) == ticket:
        return 0.0
    return mutex_lock_slowpath(sc, lock, ticket)


cdef void mutex_unlock(mutex *lock) noexcept nogil:
    """mutex_unlock(): hand the lock to the next waiter in line."""
    atomic_uint_set(&lock.serving, lock.serving + 1)


cdef bint mutex_trylock(mutex *lock) noexcept nogil:
    """mutex_trylock(): take the lock if nobody holds or waits for it; never
    waits.  True if taken."""
    cdef unsigned int serving = atomic_uint_read(&lock.serving)
    return atomic_uint_cmpxchg(&lock.next, serving, serving + 1)


cdef bint mutex_is_locked(mutex *lock) noexcept nogil:
    return atomic_uint_read(&lock.next) != atomic_uint_read(&lock.serving)
