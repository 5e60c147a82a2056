# The page allocator: a buddy allocator of 4 KiB frames, orders 0..MAX_ORDER-1,
# over one arena mapped at start, with a `struct page` per frame found by
# address arithmetic (virt_to_page is O(1)).  Mirrors mm/page_alloc.c in shape:
# free_area[order] lists, expand() on allocation, buddy merging on free.

from libc.stdint cimport uintptr_t
from slubcy.types cimport page, zone, PAGE_SHIFT, PAGE_SIZE, MAX_ORDER
from slubcy.atomic cimport unlikely

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


cdef int zone_init(zone *z, size_t nbytes) noexcept nogil
cdef void zone_release(zone *z) noexcept nogil
cdef void zone_populate(zone *z) noexcept nogil
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
    if unlikely(pg.flags & PG_tail):    # _compound_head: if (unlikely(head & 1))
        return z.mem_map + pg.head
    return pg

cdef inline page *virt_to_head_page(zone *z, const void *addr) noexcept nogil:
    return compound_head(z, virt_to_page(z, addr))
