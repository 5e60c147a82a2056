# cython: language_level=3
"""Buddy page allocator over one mmap'ed arena (mm/page_alloc.c in miniature)."""

from libc.stdint cimport uint32_t, uint8_t
from libc.string cimport memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FAILED

from slubcy.atomic cimport (atomic_long_add, ptr_write_once, slab_word_set, spin_lock, spin_lock_init, spin_unlock,
                            u16_write_once, u8_write_once)
from slubcy.types cimport MAX_ORDER, PAGE_SHIFT, PAGE_SIZE, page, zone
from slubcy.list cimport INIT_LIST_HEAD, list_add, list_del, list_empty, list_head

cdef extern from "sys/mman.h" nogil:
    int MAP_NORESERVE
    int madvise(void *addr, size_t length, int advice)

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MADV_POPULATE_WRITE     /* Linux 5.14; older headers lack it */
    #define MADV_POPULATE_WRITE 23
    #endif
    """
    int MADV_POPULATE_WRITE


cdef void zone_populate(zone *z) noexcept nogil:
    """Fault in every frame of the arena and of mem_map, writable: a kernel's
    memory is present, so a model that pays a userspace first-touch fault
    (and the host zeroing the page) inside a timed section measures mmap,
    not SLUB.  MADV_POPULATE_WRITE (5.14+), else a non-destructive atomic
    add of 0 to each page: safe while the arena is in use."""
    cdef size_t off, size = z.nr_pages << PAGE_SHIFT
    cdef size_t map_size = z.nr_pages * sizeof(page)
    if madvise(z.base, size, MADV_POPULATE_WRITE) != 0:
        off = 0
        while off < size:
            atomic_long_add(<long *>(z.base + off), 0)
            off += PAGE_SIZE
    if madvise(<void *>z.mem_map, (map_size + PAGE_SIZE - 1) & ~(<size_t>PAGE_SIZE - 1),
               MADV_POPULATE_WRITE) != 0:
        off = 0
        while off < map_size:
            atomic_long_add(<long *>(<char *>z.mem_map + off), 0)
            off += PAGE_SIZE


cdef int get_order(size_t size) noexcept nogil:
    """The kernel's get_order(): smallest order whose block holds `size` bytes."""
    cdef int order = 0
    size = (size - 1) >> PAGE_SHIFT
    while size:
        size >>= 1
        order += 1
    return order


# The page map is read unlocked by slab_usage()'s pfn walk (as the kernel's
# pfn walkers -- kpageflags, compaction -- read page flags and order racily):
# flags, order, slab_cache and fc are written with WRITE_ONCE (relaxed).
cdef inline void set_buddy(page *pg, unsigned int order) noexcept nogil:
    u16_write_once(&pg.flags, PG_buddy)
    u8_write_once(&pg.order, <uint8_t>order)
    pg.buddy = 1


cdef int zone_init(zone *z, size_t nbytes) noexcept nogil:
    """Map the arena and hand every frame to the buddy lists (free_area_init +
    __free_pages_bootmem): largest naturally aligned blocks first."""
    cdef size_t pfn = 0
    cdef unsigned int order
    cdef void *mem
    memset(z, 0, sizeof(zone))
    z.nr_pages = nbytes >> PAGE_SHIFT
    if z.nr_pages == 0:
        return -1
    mem = mmap(NULL, z.nr_pages << PAGE_SHIFT, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if mem == MAP_FAILED:
        return -1
    z.base = <char *>mem
    # mem_map gets a mapping of its own, as the arena does: zero-filled, page
    # (so cache-line) aligned, and untouched entries cost no memory.  (calloc
    # would promise neither: once a large block was freed, glibc raises its
    # mmap threshold and serves the next one from the heap, dirty and resident.)
    mem = mmap(NULL, z.nr_pages * sizeof(page), PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if mem == MAP_FAILED:
        munmap(z.base, z.nr_pages << PAGE_SHIFT)
        z.base = NULL
        return -1
    z.mem_map = <page *>mem
    for order in range(MAX_ORDER):
        INIT_LIST_HEAD(&z.free_area[order])
    spin_lock_init(&z.lock)
    while pfn < z.nr_pages:
        order = MAX_ORDER - 1
        while order > 0 and ((pfn & ((<size_t>1 << order) - 1)) or pfn + (<size_t>1 << order) > z.nr_pages):
            order -= 1
        set_buddy(&z.mem_map[pfn], order)
        list_add(&z.mem_map[pfn].u.lru, &z.free_area[order])
        z.nr_free[order] += 1
        pfn += <size_t>1 << order
    return 0


cdef void zone_release(zone *z) noexcept nogil:
    if z.base != NULL:
        munmap(z.base, z.nr_pages << PAGE_SHIFT)
        z.base = NULL
    if z.mem_map != NULL:
        munmap(z.mem_map, z.nr_pages * sizeof(page))
        z.mem_map = NULL


cdef inline page *lru_to_page(list_head *l) noexcept nogil:
    # lru is the first member of struct page: container_of is a cast.
    return <page *>l


cdef void prep_compound_page(zone *z, page *pg, unsigned int order) noexcept nogil:
    cdef size_t i, head = page_to_pfn(z, pg)
    u16_write_once(&pg.flags, PG_allocated | (PG_head if order else 0))
    u8_write_once(&pg.order, <uint8_t>order)
    for i in range(1, <size_t>1 << order):
        u16_write_once(&pg[i].flags, PG_tail)
        pg[i].head = <uint32_t>head


cdef page *alloc_pages(zone *z, unsigned int order) noexcept nogil:
    """__rmqueue_smallest + expand(): take the smallest free block that fits and
    split the surplus halves back onto the lower free lists."""
    cdef unsigned int current
    cdef page *pg = NULL
    cdef page *buddy
    cdef size_t size
    if order >= MAX_ORDER:
        return NULL
    spin_lock(&z.lock)
    for current in range(order, MAX_ORDER):
        if not list_empty(&z.free_area[current]):
            pg = lru_to_page(z.free_area[current].next)
            list_del(&pg.u.lru)
            # no longer a buddy: a neighbour freed meanwhile must not merge it
            u16_write_once(&pg.flags, PG_allocated)
            pg.buddy = 0
            z.nr_free[current] -= 1
            break
    if pg == NULL:
        z.alloc_fail += 1
        spin_unlock(&z.lock)
        return NULL
    # expand(): hand the upper halves back, largest first
    size = <size_t>1 << current
    while current > order:
        current -= 1
        size >>= 1
        buddy = pg + size
        set_buddy(buddy, current)
        list_add(&buddy.u.lru, &z.free_area[current])
        z.nr_free[current] += 1
    z.nr_alloc[order] += 1
    z.pages_used += <long>1 << order
    spin_unlock(&z.lock)
    prep_compound_page(z, pg, order)
    ptr_write_once(&pg.slab_cache, NULL)
    pg.memcg_data = 0
    slab_word_set(&pg.fc, 0)
    return pg


cdef void __free_pages(zone *z, page *pg, unsigned int order) noexcept nogil:
    """__free_one_page(): merge with the buddy while it is free and of the same
    order, then put the combined block on its free list."""
    cdef size_t pfn = page_to_pfn(z, pg), buddy_pfn, i
    cdef page *buddy
    for i in range(1, <size_t>1 << order):
        u16_write_once(&pg[i].flags, 0)
        pg[i].head = 0
    u16_write_once(&pg.flags, 0)
    ptr_write_once(&pg.slab_cache, NULL)
    pg.memcg_data = 0
    slab_word_set(&pg.fc, 0)
    spin_lock(&z.lock)
    z.nr_alloc[order] -= 1
    z.pages_used -= <long>1 << order
    while order < MAX_ORDER - 1:
        buddy_pfn = pfn ^ (<size_t>1 << order)
        if buddy_pfn + (<size_t>1 << order) > z.nr_pages:
            break
        buddy = &z.mem_map[buddy_pfn]
        # page_is_buddy(): the page type, not flags (the owner of an
        # allocated neighbour writes its flags without zone->lock); order is
        # read only of a free block, which nobody else writes
        if not buddy.buddy or buddy.order != order:
            break
        list_del(&buddy.u.lru)
        z.nr_free[order] -= 1
        u16_write_once(&buddy.flags, 0)
        buddy.buddy = 0
        pfn &= buddy_pfn
        order += 1
    pg = &z.mem_map[pfn]
    set_buddy(pg, order)
    list_add(&pg.u.lru, &z.free_area[order])
    z.nr_free[order] += 1
    spin_unlock(&z.lock)
