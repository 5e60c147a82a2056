# The page allocator: a buddy allocator of 4 KiB frames, orders 0..MAX_ORDER-1,
# over one arena mapped at start, with a `struct page` per frame found by
# address arithmetic (virt_to_page is O(1)).  Mirrors mm/page_alloc.c in shape:
# free_area[order] lists, expand() on allocation, buddy merging on free.

from libc.stdint cimport uint64_t, uint32_t, uint16_t, uint8_t, int32_t, uintptr_t
from slubcy.list cimport list_head

cdef enum:
    PAGE_SHIFT = 12
    PAGE_SIZE = 4096
    MAX_ORDER = 11          # orders 0..10, as the kernel's default MAX_ORDER

# page->flags bits (the kernel's PG_* names where one exists)
cdef enum:
    PG_buddy = 1 << 0       # head of a free block in free_area[order]
    PG_head = 1 << 1        # head of an allocated block of order > 0 (compound page)
    PG_tail = 1 << 2        # tail of a compound page; page.head is the head's pfn
    PG_slab = 1 << 3        # head of a slab
    PG_large_kmalloc = 1 << 4   # head of a kmalloc_large() block (kernel: !PageSlab compound)
    PG_allocated = 1 << 5   # head of any allocated block (debug aid; the kernel uses refcounts)
    PG_slab_ctor = 1 << 6   # slab whose constructors run: no object of it may be freed yet
                            # (departure: the kernel's slab is unreachable then; ours is not)


# The per-cpu partial chain shares storage with lru, as in struct page: a slab
# is on a node list or on a cpu partial list, never both.
cdef struct partial_chain:
    page *next
    int32_t pages
    int32_t pobjects

cdef union page_links:
    list_head lru
    partial_chain pc

# struct page: 64 bytes, as on x86-64, and mem_map is cache-line aligned, so
# each frame's record has a cache line of its own as in the kernel's vmemmap:
# a compare-and-swap on one slab's `fc` does not evict its neighbours' records
# (with 56-byte records, two slabs in use on two vCPUs could share a line, and
# every free's compound_head() read missed).  `fc` is the (freelist, counters)
# pair that SLUB updates with cmpxchg_double; here both fit one 64-bit word
# (see slub.pxd).
cdef struct page:
    page_links u            # lru (node partial/full list, buddy list) or cpu partial chain
    uint64_t fc             # freelist | counters, updated by compare-and-swap only
    void *slab_cache        # struct kmem_cache * of a slab
    uintptr_t memcg_data    # page->mem_cgroup / page->obj_cgroups (one union in 5.9): the
                            # memcg a slab pins, or its obj_cgroup vector tagged with bit 0;
                            # read and set only through the accessors in slub.pxd
    uint32_t head           # tail pages: pfn of the compound head
    uint16_t flags
    uint8_t order           # head / buddy: order of the block
    uint8_t buddy           # PageBuddy (a page type, as the kernel's): 1 on the head of a
                            # free block; set and read only under zone->lock, so the
                            # buddy check never reads flags, which owners change unlocked
    uint32_t mark           # scratch epoch for free-object checks (on_freelist)
    uint32_t _pad2
    uint64_t py_live        # a slab's bitmap (uint64_t *) of the objects the Python API
                            # handed out and has not taken back (slub.pyx), or 0

cdef struct zone:
    char *base              # arena start (page aligned)
    size_t nr_pages
    page *mem_map           # cache-line aligned (mmap)
    # ZONE_PADDING: the read-mostly fields above are read by every free
    # (virt_to_page); the free lists and the lock below are written by
    # alloc_pages/__free_pages.  As in struct zone, a cache line apart.
    char _pad_readmostly[64]
    list_head free_area[MAX_ORDER]
    long nr_free[MAX_ORDER]     # free blocks per order
    long nr_alloc[MAX_ORDER]    # allocated blocks per order
    long pages_used
    long alloc_fail
    int lock                # zone->lock


cdef int zone_init(zone *z, size_t nbytes) noexcept nogil
cdef void zone_release(zone *z) noexcept nogil
cdef page *alloc_pages(zone *z, unsigned int order) noexcept nogil
cdef void __free_pages(zone *z, page *pg, unsigned int order) noexcept nogil
cdef int get_order(size_t size) noexcept nogil


cdef inline size_t page_to_pfn(zone *z, page *pg) noexcept nogil:
    return <size_t>(pg - z.mem_map)

cdef inline char *page_address(zone *z, page *pg) noexcept nogil:
    return z.base + (page_to_pfn(z, pg) << PAGE_SHIFT)

cdef inline bint addr_in_arena(zone *z, uintptr_t addr) noexcept nogil:
    return addr >= <uintptr_t>z.base and addr < <uintptr_t>z.base + (z.nr_pages << PAGE_SHIFT)

cdef inline page *virt_to_page(zone *z, const void *addr) noexcept nogil:
    return z.mem_map + ((<const char *>addr - z.base) >> PAGE_SHIFT)

cdef inline page *compound_head(zone *z, page *pg) noexcept nogil:
    if pg.flags & PG_tail:
        return z.mem_map + pg.head
    return pg

cdef inline page *virt_to_head_page(zone *z, const void *addr) noexcept nogil:
    return compound_head(z, virt_to_page(z, addr))
