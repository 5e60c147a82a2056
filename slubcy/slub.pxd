# SLUB, as in mm/slub.c of Linux 4.0: struct kmem_cache, kmem_cache_cpu,
# kmem_cache_node, the slab page's (freelist, counters) word, the fast paths
# (inline here so workload loops in other modules inline them) and the slow
# paths (slub.pyx).
#
# Deliberate departures from the kernel, each said where it matters:
#  - one NUMA node; no pfmemalloc; no tid: a vCPU is run by one thread at a
#    time and cross-vCPU work is executed by the owner (an "IPI"), so the
#    per-cpu fast path needs no this_cpu_cmpxchg_double (see DESIGN.md);
#  - (freelist, counters) are packed in one 64-bit word updated with a 64-bit
#    compare-and-swap where SLUB uses cmpxchg_double.

from libc.stdint cimport uint64_t, uint32_t, uintptr_t
from libc.stdlib cimport free
from slubcy.list cimport list_head, list_add, list_add_tail, list_del
from slubcy.sheaves cimport slab_alloc_node_pcs, slab_free_pcs
from slubcy.atomic cimport (atomic_long_add, atomic_uptr_cmpxchg, atomic_uptr_read, likely,
                            long_write_once, test_slow_fastpath, unlikely)
from slubcy.types cimport (page, zone, PAGE_SIZE, PAGE_SHIFT, kmem_cache, kmem_cache_cpu,
                           kmem_cache_node, mem_cgroup, obj_cgroup, slub_machine, stat_item,
                           ALLOC_FASTPATH, ALLOC_SLOWPATH, FREE_FASTPATH, DEACTIVATE_TO_TAIL)

# include/linux/slab.h flag values
cdef enum:
    SLAB_CONSISTENCY_CHECKS = 0x00000100
    SLAB_RED_ZONE = 0x00000400
    SLAB_POISON = 0x00000800
    SLAB_HWCACHE_ALIGN = 0x00002000
    SLAB_CACHE_DMA = 0x00004000
    SLAB_STORE_USER = 0x00010000
    SLAB_RECLAIM_ACCOUNT = 0x00020000
    SLAB_PANIC = 0x00040000
    SLAB_TYPESAFE_BY_RCU = 0x00080000
    SLAB_TRACE = 0x00200000
    SLAB_ACCOUNT = 0x04000000
    # internal (mm/slub.c)
    __OBJECT_POISON = 0x80000000
    SLAB_DEBUG_FLAGS = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS

# include/linux/poison.h
cdef enum:
    POISON_INUSE = 0x5a
    POISON_FREE = 0x6b
    POISON_END = 0xa5
    SLUB_RED_INACTIVE = 0xbb
    SLUB_RED_ACTIVE = 0xcc

cdef enum:
    OO_SHIFT = 16
    OO_MASK = (1 << 16) - 1
    MAX_OBJS_PER_PAGE = 32767
    MIN_PARTIAL = 5
    MAX_PARTIAL = 10
    SHRINK_PROMOTE_MAX = 32
    CACHE_LINE_SIZE = 64
    ARCH_SLAB_MINALIGN = 8
    KMALLOC_SHIFT_LOW = 3
    KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1   # SLUB: kmalloc caches up to 8 KiB
    KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
    KMALLOC_MAX_SIZE = 1 << (10 + PAGE_SHIFT)   # MAX_ORDER - 1 + PAGE_SHIFT
    NR_KMALLOC = KMALLOC_SHIFT_HIGH + 1
    TRACK_SIZE = 0      # struct track is not kept: SLAB_STORE_USER is not supported

cdef enum:
    OBJCG_REF_BATCH = 64     # references a stock takes from (gives back to) objcg.refcnt at once

# --- the (freelist, counters) word ---------------------------------------
# bits 0..15 inuse, 16..30 objects, 31 frozen (struct page counters), and the
# freelist in bits 32..63 as ((object - arena base) >> 3) + 1, 0 being NULL.

cdef inline uint32_t fc_inuse(uint64_t w) noexcept nogil:
    return <uint32_t>(w & 0xffff)

cdef inline uint32_t fc_objects(uint64_t w) noexcept nogil:
    return <uint32_t>((w >> 16) & 0x7fff)

cdef inline bint fc_frozen(uint64_t w) noexcept nogil:
    return (w >> 31) & 1

cdef inline uint64_t fc_counters(uint32_t inuse, uint32_t objects, bint frozen) noexcept nogil:
    return <uint64_t>inuse | (<uint64_t>objects << 16) | (<uint64_t>frozen << 31)

cdef inline void *fc_freelist(zone *z, uint64_t w) noexcept nogil:
    cdef uint64_t enc = w >> 32
    if enc == 0:
        return NULL
    return z.base + ((enc - 1) << 3)

cdef extern from *:
    """
    #define SLUBCY_LOW32 0xffffffffULL
    """
    const uint64_t LOW32 "SLUBCY_LOW32"

cdef inline uint64_t fc_make(zone *z, void *freelist, uint64_t counters) noexcept nogil:
    if freelist == NULL:
        return counters & LOW32
    return (((<uint64_t>(<char *>freelist - z.base) >> 3) + 1) << 32) | (counters & LOW32)


cdef inline int oo_order(unsigned long x) noexcept nogil:
    return <int>(x >> OO_SHIFT)

cdef inline int oo_objects(unsigned long x) noexcept nogil:
    return <int>(x & OO_MASK)

cdef inline void *get_freepointer(kmem_cache *s, void *object) noexcept nogil:
    return (<void **>(<char *>object + s.offset))[0]

cdef inline void set_freepointer(kmem_cache *s, void *object, void *fp) noexcept nogil:
    (<void **>(<char *>object + s.offset))[0] = fp

cdef inline bint kmem_cache_debug(kmem_cache *s) noexcept nogil:
    return (s.flags & SLAB_DEBUG_FLAGS) != 0

cdef inline bint kmem_cache_has_cpu_partial(kmem_cache *s) noexcept nogil:
    # CONFIG_SLUB_CPU_PARTIAL=y; no_cpu_partial is the 2014 mail's proposal for
    # dead caches ("make kmem_cache_has_cpu_partial return false")
    return not kmem_cache_debug(s) and not s.no_cpu_partial

cdef inline void stat(kmem_cache_cpu *c, stat_item si) noexcept nogil:
    # raw_cpu_inc(s->cpu_slab->stat[si]): only the owning vCPU writes its counters
    c.stat[<int>si] += 1


# --- page->mem_cgroup / page->obj_cgroups (include/linux/memcontrol.h, 5.9) --
# One word: the memcg a slab page pins (Linux up to 5.2, pages_pin_memcg), or
# the slab's obj_cgroup vector (5.9) with bit 0 set so that it can never be
# taken for a memcg.

cdef enum:
    OBJCGS_TAG = 0x1         # (unsigned long)vec | 0x1UL in memcg_alloc_page_obj_cgroups

cdef inline obj_cgroup **page_obj_cgroups(page *pg) noexcept nogil:
    """page_obj_cgroups(): the slab's obj_cgroup vector, or NULL."""
    cdef uintptr_t v = atomic_uptr_read(&pg.memcg_data)
    if v & OBJCGS_TAG:
        return <obj_cgroup **>(v & ~(<uintptr_t>OBJCGS_TAG))
    return NULL

cdef inline bint page_has_obj_cgroups(page *pg) noexcept nogil:
    return (atomic_uptr_read(&pg.memcg_data) & OBJCGS_TAG) != 0

cdef inline mem_cgroup *page_memcg_pinned(page *pg) noexcept nogil:
    """page->mem_cgroup of a slab page that pins its memcg, or NULL."""
    cdef uintptr_t v = pg.memcg_data
    if v & OBJCGS_TAG:
        return NULL
    return <mem_cgroup *>v

cdef inline void set_page_memcg_pinned(page *pg, mem_cgroup *memcg) noexcept nogil:
    pg.memcg_data = <uintptr_t>memcg

cdef inline bint set_page_obj_cgroups(page *pg, obj_cgroup **vec) noexcept nogil:
    """Install a vector on a slab that has none (cmpxchg); False if another
    vCPU installed one first."""
    return atomic_uptr_cmpxchg(&pg.memcg_data, 0, <uintptr_t>vec | OBJCGS_TAG)

cdef inline void memcg_free_page_obj_cgroups(page *pg) noexcept nogil:
    """memcg_free_page_obj_cgroups() (mm/slab.h, 5.9): the vector goes with
    its slab."""
    cdef obj_cgroup **vec = page_obj_cgroups(pg)
    if vec != NULL:
        pg.memcg_data = 0
        free(vec)

cdef inline size_t obj_full_size(kmem_cache *s) noexcept nogil:
    """obj_full_size() (mm/slab.h, 5.9): what an accounted object charges,
    its slot and its pointer in the obj_cgroup vector."""
    return <size_t>s.size + sizeof(obj_cgroup *)


# --- slow paths (slub.pyx) -------------------------------------------------
cdef void *__slab_alloc(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil
cdef page *new_slab(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil
cdef void discard_slab(kmem_cache *s, page *pg) noexcept nogil
cdef size_t build_detached_freelist(kmem_cache *s, size_t size, void **p, page **df_page,
                                   void **df_freelist, void **df_tail, int *df_cnt) noexcept nogil
cdef int __slab_free(kmem_cache *s, kmem_cache_cpu *c, page *pg, void *head, void *tail,
                     int cnt) noexcept nogil
cdef int kmem_cache_free_bulk(kmem_cache *s, size_t size, void **p, int cpu) noexcept nogil
cdef size_t kmem_cache_alloc_bulk(kmem_cache *s, size_t size, void **p, int cpu) noexcept nogil
cdef void put_cpu_partial(kmem_cache *s, kmem_cache_cpu *c, page *pg, int drain) noexcept nogil
cdef void unfreeze_partials(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil
cdef void deactivate_slab(kmem_cache *s, kmem_cache_cpu *c, page *pg, void *freelist) noexcept nogil
cdef void flush_slab(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil
cdef void __flush_cpu_slab(kmem_cache *s, int cpu) noexcept nogil
cdef int flush_all(kmem_cache *s) noexcept nogil
cdef int flush_all_caches(slub_machine *m, kmem_cache **caches, int n) noexcept nogil
cdef int __kmem_cache_shrink(kmem_cache *s, bint deactivate) noexcept nogil
cdef int __kmem_cache_shutdown(kmem_cache *s) noexcept nogil
cdef long discard_empty_partial_slabs(kmem_cache *s) noexcept nogil
cdef int free_partial(kmem_cache *s) noexcept nogil

cdef kmem_cache *kmem_cache_open(slub_machine *m, const char *name, size_t size, size_t align,
                                 unsigned long flags, void *ctor, int freeptr_offset,
                                 unsigned int sheaf_capacity) noexcept nogil
cdef void kmem_cache_release(kmem_cache *s) noexcept nogil
cdef void kmem_cache_unlink(kmem_cache *s) noexcept nogil
cdef void __kmem_cache_unlink(kmem_cache *s) noexcept nogil
cdef int calculate_sizes(kmem_cache *s, int forced_order) noexcept nogil
cdef int kmalloc_index(size_t size) noexcept nogil

# Checks behind the Python API (slub_check.pyx).  Codes returned by check_objects():
cdef enum:
    OBJ_OK = 0
    OBJ_OUTSIDE_ARENA
    OBJ_NOT_SLAB
    OBJ_WRONG_CACHE
    OBJ_NOT_OBJECT
    OBJ_DUPLICATE            # twice in the same request
    OBJ_ALREADY_FREE         # on a freelist: a double free
    OBJ_CONSTRUCTING         # in a slab whose constructors are running (PG_slab_ctor)

cdef int check_object(kmem_cache *s, page *pg, void *object, int val) noexcept nogil
cdef bint free_debug_processing(kmem_cache *s, page *pg, void *head, void *tail,
                                int cnt) noexcept nogil
cdef void alloc_debug_processing(kmem_cache *s, page *pg, void *object) noexcept nogil
cdef struct cache_counts_t:      # (field names are cache_info()'s keys)
    long nr_slabs
    long nr_partial
    long total_objects
    long partial_free_objects   # free objects on node-partial slabs (count_free)
    long cpu_slabs
    long cpu_partial_slabs
cdef void css_put_many(slub_machine *m, mem_cgroup *memcg, long n) noexcept nogil
cdef void css_get_many(mem_cgroup *memcg, long n) noexcept nogil


cdef inline page *lru_to_page(list_head *l) noexcept nogil:
    return <page *>l     # lru is the first member of struct page


# n->nr_partial changes under list_lock, but get_partial_node(),
# deactivate_slab() and the shrink paths peek at it without the lock, as the
# kernel does (a plain read there, data_race() in KCSAN's terms): the
# updates are WRITE_ONCE and the peeks READ_ONCE (relaxed, plain movs on x86).
# sl_partial is 7.0's SL_partial (slab_set_node_partial()), under list_lock.
cdef inline void add_partial(kmem_cache_node *n, page *pg, int tail) noexcept nogil:
    long_write_once(&n.nr_partial, n.nr_partial + 1)
    pg.sl_partial = 1
    if tail == DEACTIVATE_TO_TAIL:
        list_add_tail(&pg.u.lru, &n.partial)
    else:
        list_add(&pg.u.lru, &n.partial)

cdef inline void remove_partial(kmem_cache_node *n, page *pg) noexcept nogil:
    list_del(&pg.u.lru)
    pg.sl_partial = 0
    long_write_once(&n.nr_partial, n.nr_partial - 1)

cdef inline void inc_slabs_node(kmem_cache *s, int objects) noexcept nogil:
    atomic_long_add(&s.node.nr_slabs, 1)
    atomic_long_add(&s.node.total_objects, objects)

cdef inline void dec_slabs_node(kmem_cache *s, int objects) noexcept nogil:
    atomic_long_add(&s.node.nr_slabs, -1)
    atomic_long_add(&s.node.total_objects, -objects)


# --- fast paths ------------------------------------------------------------

cdef inline void *__slab_alloc_node(kmem_cache *s, int cpu, bint can_block) noexcept nogil:
    """__slab_alloc_node() (the name since 6.1): pop c->freelist; the slow
    path refills it.  Returns NULL only when the page allocator is
    exhausted.  No hooks: allocate through slubcy.alloc.slab_alloc_node().
    A 7.0 cache's cpu freelist is always NULL: its allocations take the
    unlikely branch to 7.0's sheaves (slab_alloc_node_pcs), so this fast
    path has no generation test in it."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    cdef void *object = c.freelist
    if unlikely(object == NULL):            # slab_alloc_node: unlikely(!object || ...)
        if s.cpu_sheaves != NULL:
            return slab_alloc_node_pcs(s, cpu, can_block)
        object = __slab_alloc(s, c)
        stat(c, ALLOC_SLOWPATH)
        return object
    c.freelist = <void **>get_freepointer(s, object)
    stat(c, ALLOC_FASTPATH)
    test_slow_fastpath()        # nothing, except in a test-only slowed build
    return object

cdef inline int do_slab_free(kmem_cache *s, page *pg, void *head, void *tail, int cnt,
                             int cpu) noexcept nogil:
    """do_slab_free(): push a detached list head..tail of `cnt` objects of slab
    `pg` onto c->freelist when `pg` is the cpu slab, else __slab_free().
    Returns 0 only when a debug check refused the free."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    if likely(pg == c.page):                # do_slab_free: likely(page == c->page)
        set_freepointer(s, tail, c.freelist)
        c.freelist = <void **>head
        stat(c, FREE_FASTPATH)
        return 1
    if s.cpu_sheaves != NULL:               # a 7.0 cache (never a cpu slab): one object
        return slab_free_pcs(s, pg, head, cpu)
    return __slab_free(s, c, pg, head, tail, cnt)

