# cython: language_level=3
"""nogil measurement kernels for slubcy.analysis.perf (and benchmarks/): the SLUB
fast and remote-free paths, their baselines (libc, a bare free list), a
replay of recorded op sequences, and resident-memory probes — timed inside C
so no Python call is in a timed loop."""

from libc.stdint cimport uintptr_t, uint64_t, uint32_t, int32_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport sysconf, _SC_PAGESIZE

import numpy as np

from slubcy.atomic cimport (atomic_u64_read, atomic_u64_set, cpu_relax, slab_cmpxchg, slab_word_read,
                            atomic_uptr_read, atomic_uptr_cmpxchg, atomic_int_read, atomic_int_set,
                            atomic_int_fetch_add, atomic_int_cmpxchg)
from slubcy.ring cimport ring, ring_push, ring_publish, ring_pop, rings_alloc, rings_free
from slubcy.types cimport PAGE_SIZE, kmem_cache, page, zone
from slubcy.machine cimport KmemCache, Machine
from slubcy.slub cimport __kmem_cache_shrink, fc_counters, fc_freelist, fc_inuse, fc_make
from slubcy.alloc cimport slab_alloc_node, slab_free, slab_alloc_bulk, slab_free_bulk
from slubcy.page_alloc cimport virt_to_head_page
from slubcy.sched cimport vcpu_take, vcpu_release, synchronize_sched, OWNER_CONTROLLER

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)

cdef extern from "sys/mman.h" nogil:
    int mincore(void *addr, size_t length, unsigned char *vec)

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
    (slab_alloc_node + virt_to_head_page + slab_free: the one entry, no memcg), in a nogil loop."""
    cdef kmem_cache *s = cache.get()
    cdef Machine m = cache.machine
    m.check_cpu(cpu)
    cdef long i
    cdef kmem_cache *from_cache
    cdef void *p
    cdef double t0, t1
    m.vcpu_enter(cpu)           # this thread runs vCPU `cpu` for the loop
    with nogil:
        t0 = now()
        for i in range(n):
            p = slab_alloc_node(s, NULL, cpu, 0, &from_cache)
            slab_free(s, virt_to_head_page(&s.m.z, p), p, cpu, 0)
        t1 = now()
    m.vcpu_exit(cpu)
    return t1 - t0


BULK_MAX = 1 << 24     # objects a bulk call of the kernels below takes at most


def bulk_rounds(KmemCache cache, long size, long rounds, int cpu=0):
    """Seconds for `rounds` kmem_cache_alloc_bulk + kmem_cache_free_bulk of
    `size` objects on one vCPU, in a nogil loop: the shape of the kernel's
    own bulk microbenchmark (slab_bulk_test01: bulk sizes 1..250, objects
    recycled through the cpu slab), no memcg, no Python per call."""
    cdef kmem_cache *s = cache.get()
    cdef Machine m = cache.machine
    m.check_cpu(cpu)
    if not 1 <= size <= BULK_MAX or rounds < 1:
        raise ValueError(f"size must be in 1..{BULK_MAX} and rounds >= 1")
    if cache.ctor is not None:
        raise ValueError(f"bulk_rounds: cache {cache.name} has a constructor (the loop "
                         "reports none of its exceptions)")
    cdef void **objs = <void **>malloc(size * sizeof(void *))
    if objs == NULL:
        raise MemoryError()
    cdef long r
    cdef size_t got = size
    cdef kmem_cache *from_cache
    cdef double t0, t1
    m.vcpu_enter(cpu)
    with nogil:
        t0 = now()
        for r in range(rounds):
            got = slab_alloc_bulk(s, NULL, size, objs, cpu, &from_cache)
            if got < <size_t>size:
                break
            slab_free_bulk(s, size, objs, cpu, 0)
        t1 = now()
    m.vcpu_exit(cpu)
    free(objs)
    if got < <size_t>size:
        raise MemoryError("arena exhausted")
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


# --- the floor: a bare intrusive free list --------------------------------

cdef extern from *:
    """
    /* An opaque use of p with a memory clobber: the compiler must assume p
       escaped and that any memory may have been read or written, so it can
       neither keep the list head in a register across it nor drop the
       loads and stores around it (the kernel's barrier() is the same asm). */
    static inline void slubcy_opaque(void *p) { __asm__ __volatile__("" : : "r"(p) : "memory"); }
    """
    void slubcy_opaque(void *p) nogil


cdef struct floor_list:
    void **head         # where kmem_cache_cpu keeps its freelist: in memory


cdef void floor_list_fill(floor_list *fl, char *buf, long nobjects, size_t size) noexcept:
    """Chain the `nobjects` objects of `buf` in address order, each holding
    the next in its first word (as SLUB's objects at offset 0)."""
    cdef long i
    cdef void **p
    fl.head = NULL
    for i in range(nobjects - 1, -1, -1):
        p = <void **>(buf + i * size)
        p[0] = fl.head
        fl.head = p
    slubcy_opaque(fl)           # the head escapes: it lives in memory, as c->freelist does


cdef long floor_list_count(floor_list *fl) noexcept:
    cdef long count = 0
    cdef void **p = fl.head
    while p != NULL:
        count += 1
        p = <void **>p[0]
    return count


def freelist_pairs(long n, size_t size=64, int nobjects=64):
    """Seconds for `n` pop + push pairs on a bare intrusive free list: `nobjects`
    objects of `size` bytes in one buffer, each free one holding the next free
    one in its first word (as SLUB's objects do at offset 0).  The floor under
    the fast path: slab_alloc pops c->freelist and slab_free pushes onto it,
    this loop does only that, with no statistics, no page lookup and no
    cpu-slab check.  Returns (seconds, objects on the list after the loop)."""
    if size < sizeof(void *) or nobjects < 1:
        raise ValueError("size must hold a pointer and nobjects be >= 1")
    cdef char *buf = <char *>calloc(nobjects, size)
    if buf == NULL:
        raise MemoryError()
    cdef floor_list fl
    cdef long i
    cdef void **p
    cdef double t0, t1
    floor_list_fill(&fl, buf, nobjects, size)
    with nogil:
        t0 = now()
        for i in range(n):
            p = fl.head                 # pop (slab_alloc: object = c->freelist)
            fl.head = <void **>p[0]     #      c->freelist = get_freepointer(object)
            slubcy_opaque(p)
            p[0] = fl.head              # push (slab_free: set_freepointer(object, c->freelist))
            fl.head = p                 #      c->freelist = object
            slubcy_opaque(p)
        t1 = now()
    cdef long count = floor_list_count(&fl)
    free(buf)
    return t1 - t0, count


# --- remote free: __slab_free's compare-and-swap against the fast path ------

def freelist_bulk_rounds(long rounds, long bulk, size_t size=64, int nobjects=64):
    """Seconds for `rounds` bulk pops of `bulk` objects off a bare intrusive
    free list into an array and their push back as one chain: the floor
    under kmem_cache_alloc_bulk + kmem_cache_free_bulk of objects of one
    slab (the pointer chase of the pops, the array, the chain's stores),
    with no page lookup, slab check or statistics.  Returns (seconds,
    objects on the list after the loop)."""
    if size < sizeof(void *) or nobjects < 1 or not 1 <= bulk <= nobjects or rounds < 1:
        raise ValueError("size must hold a pointer, 1 <= bulk <= nobjects, rounds >= 1")
    cdef char *buf = <char *>calloc(nobjects, size)
    cdef void **arr = <void **>calloc(bulk, sizeof(void *))
    if buf == NULL or arr == NULL:
        free(buf)
        free(arr)
        raise MemoryError()
    cdef floor_list fl
    cdef long r, i
    cdef void **p
    cdef void *chain
    cdef double t0, t1
    floor_list_fill(&fl, buf, nobjects, size)
    with nogil:
        t0 = now()
        for r in range(rounds):
            for i in range(bulk):       # kmem_cache_alloc_bulk's loop
                p = fl.head
                fl.head = <void **>p[0]
                arr[i] = p
            slubcy_opaque(arr)
            chain = <void *>fl.head     # build_detached_freelist + one push
            for i in range(bulk - 1, -1, -1):
                p = <void **>arr[i]
                p[0] = chain
                chain = p
            fl.head = <void **>chain
            slubcy_opaque(arr)
        t1 = now()
    cdef long count = floor_list_count(&fl)
    free(arr)
    free(buf)
    return t1 - t0, count


def cas_free_rounds(long nobjects, long rounds, size_t size=64):
    """The floor under a remote free: seconds spent pushing `nobjects`
    objects of `size` bytes, one at a time, onto a slab word of SLUB's own
    layout (slub.pxd fc_*: the freelist packed with inuse/objects/frozen)
    with the same compare-and-swap (slab_cmpxchg, a locked cmpxchg) that
    __slab_free uses: read the word, link the object to its freelist, count
    it out of inuse, CAS -- what __slab_free cannot avoid, with none of its
    checks, page lookup or list decisions.  `rounds` times over one buffer
    (the word refilled untimed); returns (seconds, objects on the list)."""
    if nobjects < 1 or rounds < 1 or size < sizeof(void *) or nobjects > 0x7fff:
        raise ValueError("nobjects in 1..32767, rounds >= 1, size must hold a pointer")
    if size % 8:        # the word stores the freelist as offset / 8 (slub.pxd fc_make)
        raise ValueError(f"size must be a multiple of 8, got {size}")
    cdef char *buf = <char *>calloc(nobjects, size)
    if buf == NULL:
        raise MemoryError()
    cdef zone z                 # only its base: fc_make/fc_freelist encode against it
    z.base = buf
    cdef uint64_t word, old, new
    cdef long r, i, count = 0
    cdef void *p
    cdef double t0, total = 0.0
    with nogil:
        for r in range(rounds):
            word = fc_counters(<uint32_t>nobjects, <uint32_t>nobjects, 1)    # all in use, frozen
            slubcy_opaque(&word)
            t0 = now()
            for i in range(nobjects):
                p = buf + i * size
                while True:
                    old = slab_word_read(&word)
                    (<void **>p)[0] = fc_freelist(&z, old)
                    new = fc_make(&z, p, old - 1)               # inuse - 1
                    if slab_cmpxchg(&word, old, new):
                        break
            total += now() - t0
        p = fc_freelist(&z, word)
        while p != NULL:
            count += 1
            p = (<void **>p)[0]
    count = count if fc_inuse(word) == 0 else -1
    free(buf)
    return total, count


def free_rounds(KmemCache cache, long nobjects, long rounds, int alloc_cpu=0, int free_cpu=0):
    """Seconds spent in free loops only: `rounds` times, allocate `nobjects`
    objects on vCPU `alloc_cpu` (untimed), then free them all, in allocation
    order, on vCPU `free_cpu` (timed).  free_cpu == alloc_cpu with objects of
    the cpu slab is the fast path (do_slab_free: page == c->page); another
    vCPU sends every free through __slab_free, whose cmpxchg_double on the
    slab's (freelist, counters) is a 64-bit compare-and-swap here.  This thread
    runs both vCPUs for the call (the Python API's own vcpu_enter)."""
    cdef kmem_cache *s = cache.get()
    cdef Machine m = cache.machine
    m.check_cpu(alloc_cpu)
    m.check_cpu(free_cpu)
    if nobjects < 1 or rounds < 1:
        raise ValueError("nobjects and rounds must be >= 1")
    cdef void **objs = <void **>malloc(nobjects * sizeof(void *))
    if objs == NULL:
        raise MemoryError()
    cdef long r, i, got = 0
    cdef kmem_cache *from_cache
    cdef void *p
    cdef double t0, total = 0.0
    m.vcpu_enter(alloc_cpu)
    if free_cpu != alloc_cpu:
        try:
            m.vcpu_enter(free_cpu)
        except BaseException:
            m.vcpu_exit(alloc_cpu)
            free(objs)
            raise
    with nogil:
        for r in range(rounds):
            got = 0
            while got < nobjects:
                p = slab_alloc_node(s, NULL, alloc_cpu, 0, &from_cache)
                if p == NULL:
                    break
                objs[got] = p
                got += 1
            t0 = now()
            for i in range(got):
                p = objs[i]
                slab_free(s, virt_to_head_page(&s.m.z, p), p, free_cpu, 0)
            total += now() - t0
            if got < nobjects:
                break
    if free_cpu != alloc_cpu:
        m.vcpu_exit(free_cpu)
    m.vcpu_exit(alloc_cpu)
    free(objs)
    if got < nobjects:
        raise MemoryError("arena exhausted")
    return total


# --- replay of a recorded op sequence --------------------------------------

cdef enum:
    OP_ALLOC_ = 0       # slots[slot] = kmem_cache_alloc(caches[cache], cpu)
    OP_FREE_ = 1        # kmem_cache_free(caches[cache], slots[slot], cpu)
    OP_SHRINK_ = 2      # kmem_cache_shrink(caches[cache])

OP_ALLOC, OP_FREE, OP_SHRINK = OP_ALLOC_, OP_FREE_, OP_SHRINK_


def replay(Machine m, caches, const int32_t[:, ::1] ops, uint64_t[::1] slots,
           uint64_t[::1] addrs=None):
    """Run a recorded op sequence (rows of op, cache, cpu, slot) through the
    core in one nogil loop: slab_alloc_node, slab_free and __kmem_cache_shrink, as
    the Python API would call them, without the argument checks.  This thread
    runs every vCPU while it replays (it lets them go around a shrink, whose
    flush_all then runs on each idle vCPU directly).  `slots` (zeroed, one per
    slot the sequence uses) receives the addresses; the caller must give a
    well-formed sequence (frees of live slots only).  `addrs` (one per op),
    if given, receives each allocation's and each free's object address,
    for replay_accesses().  Returns (seconds, objects live at the end)."""
    m.check_idle()
    cdef uint64_t *out = NULL
    if addrs is not None:
        if addrs.shape[0] < ops.shape[0]:
            raise ValueError("addrs needs one entry per op")
        out = &addrs[0]
    cdef int ncaches = len(caches)
    if ops.shape[1] != 4:
        raise ValueError("ops must have 4 columns: op, cache, cpu, slot")
    cdef kmem_cache **cs = <kmem_cache **>malloc(max(ncaches, 1) * sizeof(kmem_cache *))
    if cs == NULL:
        raise MemoryError()
    cdef int j, cpu, ncpu = m.m.nr_cpus
    cdef Py_ssize_t i, n = ops.shape[0]
    try:
        for j in range(ncaches):
            if (<KmemCache?>caches[j]).machine is not m:
                raise ValueError("a cache of another machine")
            cs[j] = (<KmemCache>caches[j]).get()
        for i in range(n):      # bounds once, not in the timed loop
            if (ops[i, 0] < 0 or ops[i, 0] > OP_SHRINK_ or not 0 <= ops[i, 1] < ncaches
                    or not 0 <= ops[i, 2] < ncpu or not 0 <= ops[i, 3] < slots.shape[0]):
                raise ValueError(f"op {i} out of range: {list(ops[i])}")
    except BaseException:
        free(cs)
        raise
    cdef kmem_cache *s
    cdef kmem_cache *from_cache
    cdef void *p
    cdef long live = 0
    cdef bint failed = False
    cdef double t0, t1
    with nogil:
        t0 = now()
        for cpu in range(ncpu):
            if not vcpu_take(&m.m.sc, cpu, OWNER_CONTROLLER):
                failed = True
        if not failed:
            for i in range(n):
                s = cs[ops[i, 1]]
                cpu = ops[i, 2]
                if ops[i, 0] == OP_ALLOC_:
                    p = slab_alloc_node(s, NULL, cpu, 0, &from_cache)
                    if p == NULL:
                        failed = True
                        break
                    slots[ops[i, 3]] = <uintptr_t>p
                    live += 1
                    if out != NULL:
                        out[i] = <uintptr_t>p
                elif ops[i, 0] == OP_FREE_:
                    p = <void *><uintptr_t>slots[ops[i, 3]]
                    if out != NULL:
                        out[i] = <uintptr_t>p
                    slab_free(s, virt_to_head_page(&s.m.z, p), p, cpu, 0)
                    slots[ops[i, 3]] = 0
                    live -= 1
                else:
                    for cpu in range(ncpu):
                        vcpu_release(&m.m.sc, cpu)
                    __kmem_cache_shrink(s, False)
                    for cpu in range(ncpu):
                        vcpu_take(&m.m.sc, cpu, OWNER_CONTROLLER)
        for cpu in range(ncpu):
            if m.m.sc.vcpus[cpu].owner == OWNER_CONTROLLER:
                vcpu_release(&m.m.sc, cpu)
        t1 = now()
    free(cs)
    if failed:
        raise RuntimeError("replay failed: a vCPU was busy or the arena ran out")
    return t1 - t0, live


def replay_accesses(const int32_t[:, ::1] ops, const uint64_t[::1] offs,
                    const uint32_t[::1] offsets, int ncpus, unsigned char[::1] arena):
    """The memory accesses of a core replay without the allocator, in a copy
    of the arena's layout: for each op of `ops` (bench.replay's rows) at the
    object's offset in the arena `offs[i]` (bench.replay's `addrs` less the
    arena's base), an allocation reads the object's free pointer (at its
    cache's `offsets[cache]`, as the fast path's get_freepointer) and a free
    writes it, linking the object to the last one freed on its vCPU
    (set_freepointer) -- the same objects touched in the same order, with
    none of SLUB's bookkeeping (cpu slab checks, statistics, slow paths,
    lists).  `arena`: a page-aligned buffer the size of the machine's arena
    (faulted in).  Returns seconds."""
    cdef Py_ssize_t i, n = ops.shape[0]
    cdef size_t size = arena.shape[0]
    if ops.shape[1] != 4:
        raise ValueError("ops must have 4 columns: op, cache, cpu, slot")
    if offs.shape[0] < n or ncpus < 1:
        raise ValueError("offs needs one entry per op, ncpus >= 1")
    for i in range(n):
        if (not 0 <= ops[i, 1] < offsets.shape[0] or not 0 <= ops[i, 2] < ncpus
                or offs[i] + offsets[ops[i, 1]] + sizeof(void *) > size):
            raise ValueError(f"op {i} out of range")
    cdef void **last = <void **>calloc(ncpus, sizeof(void *))
    if last == NULL:
        raise MemoryError()
    cdef char *base = <char *>&arena[0]
    cdef char *p
    cdef void *sink = NULL
    cdef double t0, t1
    with nogil:
        t0 = now()
        for i in range(n):
            p = base + offs[i] + offsets[ops[i, 1]]
            if ops[i, 0] == OP_ALLOC_:
                sink = (<void **>p)[0]
                slubcy_opaque(sink)
            elif ops[i, 0] == OP_FREE_:
                (<void **>p)[0] = last[ops[i, 2]]
                last[ops[i, 2]] = p
        t1 = now()
    free(last)
    return t1 - t0


# --- memory: metadata per page and resident bytes --------------------------

def struct_page_size():
    """sizeof(struct page): the metadata record of every 4 KiB frame."""
    return sizeof(page)


def metadata_regions(Machine m):
    """{name: (address, bytes)} of the arena and of the per-page metadata
    mapping: mem_map (a struct page per frame, as the kernel's)."""
    m.check_open()
    return {
        "arena": (<uintptr_t>m.m.z.base, m.m.z.nr_pages * PAGE_SIZE),
        "mem_map": (<uintptr_t>m.m.z.mem_map, m.m.z.nr_pages * sizeof(page)),
    }


def resident_bytes(uintptr_t addr, size_t length):
    """Bytes of [addr, addr + length) resident in RAM, by mincore(2) over
    the whole pages the range touches (anonymous memory: pages written or
    faulted in; never-touched pages of a MAP_NORESERVE mapping are not)."""
    cdef size_t pagesz = sysconf(_SC_PAGESIZE)
    cdef uintptr_t start = addr & ~(<uintptr_t>pagesz - 1)
    cdef size_t npages = (addr + length - start + pagesz - 1) // pagesz
    cdef unsigned char *vec = <unsigned char *>malloc(npages if npages else 1)
    if vec == NULL:
        raise MemoryError()
    cdef size_t i, resident = 0
    if mincore(<void *>start, npages * pagesz, vec) != 0:
        free(vec)
        raise OSError("mincore failed")
    for i in range(npages):
        resident += vec[i] & 1
    free(vec)
    return resident * pagesz


# --- the floor under larson on 2 or more threads: the same hand-overs, bare --

cdef struct floor_pool:         # one thread's objects of one size class
    void *local                 # its free objects, a LIFO only the owner touches
    char _pad0[56]
    uintptr_t remote            # objects freed by other threads, pushed with a CAS
    char _pad1[56]

cdef struct floor_thread:
    uint64_t ops
    uint64_t failures
    uint64_t remote             # objects of another thread freed (one CAS each)
    double t0, t1
    int running                 # a run() of this index is in progress (one at a time)
    char _pad[20]


GATE_TIMEOUT_S = 30.0     # seconds a LarsonFloor thread waits for start()


cdef class LarsonFloor:
    """The floor under the `larson` workload on N threads: the same loop
    (replace a random slot's object with one of a random size class, hand a
    share of the old objects to the next thread through the same ring, free
    what the previous thread handed over) over a bare allocator: per thread
    and class a LIFO free list, and for frees from another thread a list
    pushed with one compare-and-swap, taken whole by the owner when its
    LIFO runs dry.  The objects move between the cores as SLUB's do (the
    canary written at allocation, the free pointer at free, the CAS on a
    shared word for a remote free), with no slabs, statistics, vCPUs or
    quiescent states.

        f = LarsonFloor(2, [192, 640, 256]); threads call f.run(i, seconds)
        (f.start() opens the gate); f.seconds(), f.total_ops()
    """
    cdef int nthreads, ncls, nrings
    cdef long nslots, per_pool
    cdef uint32_t handoff
    cdef size_t region
    cdef char *mem
    cdef floor_pool *pools
    cdef floor_thread *threads
    cdef ring *rings
    cdef size_t *sizes
    cdef int go, ready

    def __init__(self, int nthreads, sizes, long nslots=1024, double handoff=0.25,
                 long ring_size=4096):
        cdef int t, k
        cdef long i
        cdef char *base
        cdef size_t biggest = 0
        if self.sizes != NULL:
            raise RuntimeError("LarsonFloor is already initialised")
        if not 1 <= nthreads <= 1024 or not sizes or not 1 <= nslots <= 1 << 24 \
                or not 0.0 <= handoff <= 1.0 or not 8 <= ring_size <= 1 << 24 \
                or ring_size & (ring_size - 1):
            raise ValueError("nthreads in 1..1024, sizes non-empty, nslots in 1..2^24, handoff "
                             "in [0, 1], ring_size a power of two in 8..2^24")
        if len(sizes) > 64:
            raise ValueError("at most 64 size classes")
        self.handoff = <uint32_t>min(handoff * 4294967296.0, 4294967295.0)
        # a thread's objects of a class: its slots, its ring, one in flight
        self.per_pool = nslots + ring_size + 8
        self.ncls, self.nslots = len(sizes), nslots
        self.sizes = <size_t *>calloc(self.ncls, sizeof(size_t))
        if self.sizes == NULL:
            raise MemoryError()
        for k, sz in enumerate(sizes):
            if not 16 <= sz <= 1 << 16:
                raise ValueError(f"size {sz} out of 16..65536")
            self.sizes[k] = (<size_t>sz + 15) & ~(<size_t>15)
            biggest = max(biggest, self.sizes[k])
        region = ((nslots + ring_size + 8) * biggest + 4095) // 4096 * 4096
        if region * nthreads * len(sizes) > 1 << 40:
            raise ValueError(f"{region * nthreads * len(sizes):,} bytes of pools: more than 1 TiB")
        self.region = region
        # every array zeroed as soon as it exists: __dealloc__ frees what is there
        self.rings = rings_alloc(nthreads, ring_size, 8 - 1)    # LARSON_HANDOVER_BATCH
        if self.rings == NULL:
            raise MemoryError()
        self.nrings = nthreads
        self.pools = <floor_pool *>aligned_alloc(64, nthreads * self.ncls * sizeof(floor_pool))
        self.threads = <floor_thread *>aligned_alloc(64, nthreads * sizeof(floor_thread))
        self.mem = <char *>aligned_alloc(4096, self.region * nthreads * self.ncls)
        if self.mem == NULL or self.pools == NULL or self.threads == NULL:
            raise MemoryError()
        memset(self.pools, 0, nthreads * self.ncls * sizeof(floor_pool))
        memset(self.threads, 0, nthreads * sizeof(floor_thread))
        for t in range(nthreads):
            for k in range(self.ncls):
                base = self.mem + (t * self.ncls + k) * self.region
                for i in range(self.per_pool - 1, -1, -1):
                    (<void **>(base + i * self.sizes[k]))[0] = self.pools[t * self.ncls + k].local
                    self.pools[t * self.ncls + k].local = base + i * self.sizes[k]
        self.nthreads = nthreads        # last: run() refuses an object not fully made

    def __dealloc__(self):
        rings_free(self.rings, self.nrings)
        free(self.threads)
        free(self.pools)
        free(self.mem)
        free(self.sizes)

    cdef inline floor_pool *pool_of(self, void *p) noexcept nogil:
        return &self.pools[(<size_t>(<char *>p - self.mem)) // self.region]

    cdef inline void *floor_alloc(self, int t, int k) noexcept nogil:
        cdef floor_pool *fp = &self.pools[t * self.ncls + k]
        cdef void *p = fp.local
        cdef uintptr_t got
        if p == NULL:                   # take what other threads freed, whole
            got = atomic_uptr_read(&fp.remote)
            while got != 0 and not atomic_uptr_cmpxchg(&fp.remote, got, 0):
                got = atomic_uptr_read(&fp.remote)
            p = <void *>got
            if p == NULL:
                return NULL
        fp.local = (<void **>p)[0]
        return p

    cdef inline void floor_free(self, int t, void *p) noexcept nogil:
        cdef floor_pool *fp = self.pool_of(p)
        cdef uintptr_t old
        if fp == &self.pools[t * self.ncls] or \
                (fp > &self.pools[t * self.ncls] and fp < &self.pools[(t + 1) * self.ncls]):
            (<void **>p)[0] = fp.local  # our own object: a plain push
            fp.local = p
            return
        while True:                     # another thread's: __slab_free's one CAS
            old = atomic_uptr_read(&fp.remote)
            (<void **>p)[0] = <void *>old
            if atomic_uptr_cmpxchg(&fp.remote, old, <uintptr_t>p):
                return

    def start(self, double timeout=10.0):
        """Wait until a run() of every thread is at the gate, then open it:
        they start their loops together.  TimeoutError if they are not all
        there within `timeout` seconds (the gate opens anyway)."""
        cdef double deadline = now() + timeout
        cdef bint late = False
        with nogil:
            while atomic_int_read(&self.ready) < self.nthreads:
                if now() > deadline:
                    late = True
                    break
                cpu_relax()
            atomic_int_set(&self.go, 1)
        if late:
            raise TimeoutError(f"only {self.ready} of {self.nthreads} threads reached the gate")

    def run(self, int t, double seconds, uint64_t seed=1, double gate_timeout=GATE_TIMEOUT_S):
        """Thread t's loop, for `seconds` after start() opens the gate (all
        threads run for the same time, as the workload's workers do: a
        thread that stopped early would leave the other's hand-overs
        unfreed).  Returns its operations (allocations + frees)."""
        if not 0 <= t < self.nthreads or not 0 <= seconds <= 3600:
            raise ValueError("t out of range, or seconds not in [0, 3600]")
        # one run per index, ever: two threads on one index would pop the
        # same LIFO unlocked (and could follow a canary as a free pointer),
        # and a second round would start past an open gate with the first
        # round's objects still in its slots
        if not atomic_int_cmpxchg(&self.threads[t].running, 0, 1):
            raise RuntimeError(f"thread index {t} has run (or is running): a LarsonFloor "
                               "runs once per index; make a new one")
        return self._run(t, seconds, seed, gate_timeout)

    cdef _run(self, int t, double seconds, uint64_t seed, double gate_timeout):
        cdef double deadline, gate_deadline
        cdef bint late = False
        cdef floor_thread *me = &self.threads[t]
        cdef ring *out = &self.rings[t]
        cdef ring *inq = &self.rings[(t + self.nthreads - 1) % self.nthreads]
        cdef void **slots = <void **>calloc(self.nslots, sizeof(void *))
        if slots == NULL:
            raise MemoryError()
        cdef uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + <uint64_t>t + 1
        cdef uint64_t done = 0, serial = 0, failures = 0, remote = 0, loops = 0
        cdef long i, k
        cdef void *p
        with nogil:
            atomic_int_fetch_add(&self.ready, 1)
            gate_deadline = now() + gate_timeout
            while not atomic_int_read(&self.go):
                if now() > gate_deadline:
                    late = True
                    break
                cpu_relax()
        if late:
            free(slots)
            raise TimeoutError(f"the gate was not opened (start()) within {gate_timeout:g} s")
        with nogil:
            me.t0 = now()
            deadline = me.t0 + seconds
            while True:
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                i = <long>(rng % <uint64_t>self.nslots)
                p = slots[i]
                if p != NULL:
                    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                    if not (self.nthreads > 1 and <uint32_t>(rng >> 32) < self.handoff
                            and ring_push(out, p)):
                        self.floor_free(t, p)
                        done += 1       # (a hand-over counts where it is freed)
                    slots[i] = NULL
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                k = <long>(rng % <uint64_t>self.ncls)
                p = self.floor_alloc(t, k)
                if p != NULL:           # the two words set_canary() writes
                    serial += 1
                    (<uint64_t *>p)[0] = <uintptr_t>p ^ 0x5EED5AB1E5CA1AB5ULL
                    (<uint64_t *>p)[1] = serial
                    done += 1
                else:
                    failures += 1
                slots[i] = p
                p = ring_pop(inq)
                if p != NULL:
                    if (<uint64_t *>p)[0] != (<uintptr_t>p ^ 0x5EED5AB1E5CA1AB5ULL):
                        failures += 1
                    self.floor_free(t, p)
                    done += 1
                    remote += 1
                loops += 1
                if (loops & 63) == 0:
                    ring_publish(out)
                    if now() >= deadline:
                        break
            me.t1 = now()
            ring_publish(out)
        me.ops = done
        me.failures = failures
        me.remote = remote
        free(slots)
        return done

    def seconds(self):
        """From the first thread's start to the last one's end."""
        return max(self.threads[t].t1 for t in range(self.nthreads)) - \
            min(self.threads[t].t0 for t in range(self.nthreads))

    def total_ops(self):
        return sum(self.threads[t].ops for t in range(self.nthreads))

    def failures(self):
        """Allocations that found no object, and canaries found wrong: 0."""
        return sum(self.threads[t].failures for t in range(self.nthreads))

    def remote_frees(self):
        """Objects freed by a thread other than their owner."""
        return sum(self.threads[t].remote for t in range(self.nthreads))


# --- the floor under an expedited grace period: bare QSBR between two threads -

cdef class QsbrFloor:
    """The floor under synchronize() with one busy reader: a bare QSBR
    grace period between two threads, as liburcu-qsbr's synchronize_rcu
    does it.  The reader pops and pushes a small free list (the fast path's
    floor, freelist_pairs) and, every `interval_ns`, reports a quiescent
    state by copying the writer's grace-period counter (a release store);
    the writer bumps the counter and waits until the reader has seen it.
    No vCPU, no IPI, no callback list: two cache-line transfers and half a
    reporting interval on average.

        q = QsbrFloor(); threading.Thread(target=q.reader, args=(300.0,)).start()
        lat = q.synchronize(1000)    # seconds per grace period, each
        q.stop()
    """
    cdef uint64_t lines[32]         # gp, seen and stop on lines of their own
    cdef uint64_t *gp
    cdef uint64_t *seen
    cdef uint64_t *stop_flag

    def __cinit__(self):
        cdef uintptr_t base = ((<uintptr_t>&self.lines[8]) & ~(<uintptr_t>63))
        self.gp = <uint64_t *>base
        self.seen = <uint64_t *>(base + 64)
        self.stop_flag = <uint64_t *>(base + 128)
        self.gp[0] = 0
        self.seen[0] = 0
        self.stop_flag[0] = 0

    def reader(self, double interval_ns=300.0):
        """The busy reader: until stop(), pop+push pairs on a small free
        list, with a quiescent-state report every `interval_ns` (by the
        clock, checked every 16 pairs): the same reporting period, in time,
        as the worker it stands for."""
        if not interval_ns > 0:
            raise ValueError("interval_ns must be > 0")
        cdef void *objs[8]
        cdef floor_list fl
        cdef long i
        cdef void **p
        cdef double period = interval_ns * 1e-9, next_report
        for i in range(8):
            objs[i] = <void *>(&objs[i + 1] if i < 7 else NULL)
        fl.head = <void **>&objs[0]
        with nogil:
            next_report = now() + period
            while not atomic_u64_read(self.stop_flag):
                for i in range(16):
                    p = fl.head
                    fl.head = <void **>p[0]
                    slubcy_opaque(p)
                    p[0] = fl.head
                    fl.head = p
                    slubcy_opaque(p)
                if now() >= next_report:
                    atomic_u64_set(self.seen, atomic_u64_read(self.gp))    # rcu_quiescent_state()
                    next_report += period

    def synchronize(self, long n, double timeout=5.0):
        """`n` grace periods, one after the other; their latencies (s).
        TimeoutError if one lasts `timeout` s (no reader running)."""
        if n < 1 or not timeout > 0:
            raise ValueError("n must be >= 1 and timeout > 0")
        out = np.empty(n, dtype=np.float64)
        cdef double[::1] lat = out
        cdef long i, spins
        cdef uint64_t target
        cdef double t0
        cdef bint timed_out = False
        with nogil:
            for i in range(n):
                t0 = now()
                target = atomic_u64_read(self.gp) + 1
                atomic_u64_set(self.gp, target)
                spins = 0
                while atomic_u64_read(self.seen) < target:
                    cpu_relax()
                    spins += 1
                    if (spins & 1023) == 0 and now() - t0 > timeout:
                        timed_out = True
                        break
                if timed_out:
                    break
                lat[i] = now() - t0
        if timed_out:
            raise TimeoutError(f"a grace period did not end within {timeout} s: "
                               "is a reader() running?")
        return out

    def stop(self):
        atomic_u64_set(self.stop_flag, 1)


def synchronize_rounds(Machine m, long n):
    """`n` synchronize_sched() calls, one after the other, from this thread
    (on no vCPU) in one nogil loop: each one's latency (s).  Beside
    QsbrFloor.synchronize, the model's grace period without the cost of a
    Python call around it."""
    m.check_open()
    if n < 1:
        raise ValueError("n must be >= 1")
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] lat = out
    cdef long i
    cdef int rc = 0
    cdef double t0
    with nogil:
        for i in range(n):
            t0 = now()
            rc = synchronize_sched(&m.m.sc, 5.0)
            lat[i] = now() - t0
            if rc != 0:
                break
    if rc != 0:
        raise TimeoutError("a grace period did not end within 5 s")
    return out


# --- the cost of moving a cache line between the two vCPUs' cores -------------

cdef class CachelinePingPong:
    """Two threads hand one cache line back and forth: the cost of moving a
    line between the CPUs they run on.  Every cross-vCPU free pays it a few
    times (the slab's struct page, the object), so scaling figures of
    workloads with remote frees depend on where the hypervisor or the OS
    places the two threads (same core complex or not): report it with them.

        pp = CachelinePingPong(); threading.Thread(target=pp.pong, args=(n,)).start()
        ns = pp.ping(n)      # one-way transfer, ns
    """
    cdef uint64_t line[16]     # the flag sits on a line of its own
    cdef uint64_t *flag

    def __cinit__(self):
        self.flag = <uint64_t *>((<uintptr_t>&self.line[8]) & ~(<uintptr_t>63))
        self.flag[0] = 0

    def pong(self, long n):
        cdef long i
        cdef uint64_t *f = self.flag
        with nogil:
            for i in range(n):
                while atomic_u64_read(f) != <uint64_t>(2 * i + 1):
                    pass
                atomic_u64_set(f, 2 * i + 2)

    def ping(self, long n):
        """Run after pong(n) started on another thread; ns per one-way
        transfer (timed from the first round trip on: pong is running)."""
        cdef long i
        cdef uint64_t *f = self.flag
        cdef double t0 = 0, t1
        if n < 2:
            raise ValueError("n must be >= 2")
        with nogil:
            for i in range(n):
                if i == 1:
                    t0 = now()
                atomic_u64_set(f, 2 * i + 1)
                while atomic_u64_read(f) != <uint64_t>(2 * i + 2):
                    pass
            t1 = now()
        return (t1 - t0) / (n - 1) / 2 * 1e9
