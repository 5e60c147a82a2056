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


cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t slubcy_pp_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void slubcy_pp_store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    unsigned long long pp_load "slubcy_pp_load"(unsigned long long *p) nogil
    void pp_store "slubcy_pp_store"(unsigned long long *p, unsigned long long v) nogil


cdef class CachelinePingPong:
    """Two threads hand one cache line back and forth: the cost of moving a
    line between the CPUs they run on.  Every cross-vCPU free pays it a few
    times (the slab's struct page, the object), so scaling figures of
    workloads with remote frees depend on where the hypervisor or the OS
    places the two threads (same core complex or not): report it with them.

        pp = CachelinePingPong(); threading.Thread(target=pp.pong, args=(n,)).start()
        ns = pp.ping(n)      # one-way transfer, ns
    """
    cdef unsigned long long line[16]     # the flag sits on a line of its own
    cdef unsigned long long *flag

    def __cinit__(self):
        self.flag = <unsigned long long *>((<uintptr_t>&self.line[8]) & ~(<uintptr_t>63))
        self.flag[0] = 0

    def pong(self, long n):
        cdef long i
        cdef unsigned long long *f = self.flag
        with nogil:
            for i in range(n):
                while pp_load(f) != <unsigned long long>(2 * i + 1):
                    pass
                pp_store(f, 2 * i + 2)

    def ping(self, long n):
        """Run after pong(n) started on another thread; ns per one-way
        transfer (timed from the first round trip on: pong is running)."""
        cdef long i
        cdef unsigned long long *f = self.flag
        cdef double t0 = 0, t1
        if n < 2:
            raise ValueError("n must be >= 2")
        with nogil:
            for i in range(n):
                if i == 1:
                    t0 = now()
                pp_store(f, 2 * i + 1)
                while pp_load(f) != <unsigned long long>(2 * i + 2):
                    pass
            t1 = now()
        return (t1 - t0) / (n - 1) / 2 * 1e9
