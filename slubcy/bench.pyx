# cython: language_level=3
"""nogil measurement loops for benchmarks/: the SLUB fast path and its
baselines, timed inside C so no Python call is in the loop."""

from libc.stdint cimport uintptr_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from slubcy.machine cimport KmemCache, Machine
from slubcy.slub cimport kmem_cache, slab_alloc, slab_free
from slubcy.page_alloc cimport virt_to_head_page

cdef extern from *:
    """
    #include <stdlib.h>
    /* Called through volatile pointers so the compiler cannot pair up and
       elide malloc/free (GCC removes free(malloc(n)) otherwise). */
    static void *(*volatile slubcy_libc_malloc)(size_t) = malloc;
    static void (*volatile slubcy_libc_free)(void *) = free;
    """
    void *slubcy_libc_malloc(size_t) nogil
    void slubcy_libc_free(void *) nogil


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def fastpath_pairs(KmemCache cache, long n, int cpu=0):
    """Seconds for `n` kmem_cache_alloc + kmem_cache_free pairs on one vCPU
    (slab_alloc + virt_to_head_page + slab_free), in a nogil loop."""
    cdef kmem_cache *s = cache.get()
    cdef Machine m = cache.machine
    m._cpu(cpu)
    cdef long i
    cdef void *p
    cdef double t0, t1
    with nogil:
        t0 = now()
        for i in range(n):
            p = slab_alloc(s, cpu)
            slab_free(s, virt_to_head_page(&s.m.z, p), p, cpu)
        t1 = now()
    return t1 - t0


def libc_pairs(long n, size_t size):
    """Seconds for `n` libc malloc(size) + free pairs in the same kind of loop."""
    cdef long i
    cdef void *p
    cdef double t0, t1
    with nogil:
        t0 = now()
        for i in range(n):
            p = slubcy_libc_malloc(size)
            slubcy_libc_free(p)
        t1 = now()
    return t1 - t0
