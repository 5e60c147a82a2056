# cython: language_level=3
"""SLUB slow paths, geometry, debugging and validation (mm/slub.c, Linux 4.0).

Every function below that mirrors a kernel function has its name.  `c` is the
kmem_cache_cpu of the vCPU executing the step: statistics are counted there,
as the kernel's stat() counts on the current CPU.
"""

from libc.stdint cimport uint64_t, uint32_t, uint16_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset, strncpy
from libc.stdio cimport snprintf
from cpython.ref cimport PyObject, Py_INCREF

from slubcy.atomic cimport (atomic_int_read, atomic_int_set, atomic_long_add, atomic_long_read,
                            atomic_long_sub_return, atomic_u64_fetch_and, atomic_u64_or,
                            atomic_u64_read, long_read_once, long_write_once, ptr_read_once,
                            ptr_write_once, slab_cmpxchg, slab_word_read, slab_word_set, spin_lock,
                            spin_lock_init, spin_unlock, u16_read_once, u16_write_once, u8_read_once)
from slubcy.types cimport slab_caches_first, slab_caches_next
from slubcy.types cimport (ALLOC_FROM_PARTIAL, ALLOC_REFILL, ALLOC_SLAB, CMPXCHG_DOUBLE_FAIL,
                           CPUSLAB_FLUSH, CPU_PARTIAL_ALLOC, CPU_PARTIAL_DRAIN, CPU_PARTIAL_FREE,
                           CPU_PARTIAL_NODE, DEACTIVATE_BYPASS, DEACTIVATE_EMPTY, DEACTIVATE_FULL,
                           DEACTIVATE_REMOTE_FREES, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL,
                           FREE_ADD_PARTIAL, FREE_FROZEN, FREE_REMOVE_PARTIAL, FREE_SLAB,
                           FREE_SLOWPATH, MAX_MEMCG_CACHES, MAX_ORDER, ORDER_FALLBACK, PAGE_SHIFT,
                           PAGE_SIZE, kmem_cache, kmem_cache_cpu, kmem_cache_node, mem_cgroup, page,
                           slub_machine, stat_item, zone)
# The memcg side of the slab code (mm/memcontrol.c), called directly as
# mm/slub.c does: with the types in types.pxd neither .pxd cimports the
# other, and the two extension modules import each other's C functions at
# load (each exports its own before it imports the other's).
from slubcy.memcg cimport memcg_css_free, memcg_cache_empty
# Linux 7.0's percpu sheaves (sheaves.pyx): a 7.0 cache's set-up, flush,
# shrink and shutdown, which the entry points below hand over to
from slubcy.sheaves cimport (init_percpu_sheaves, free_percpu_sheaves, flush_all_sheaves,
                             __kmem_cache_shrink_sheaves, __kmem_cache_shutdown_sheaves,
                             kmem_cache_alloc_bulk_sheaves, kmem_cache_free_bulk_sheaves)
from slubcy.list cimport (list_head, INIT_LIST_HEAD, list_add, list_add_tail, list_del,
                          list_empty, list_splice)
from slubcy.sched cimport rcu_read_lock_ext, rcu_read_unlock_ext
from slubcy.sched cimport (preempt_point, kick_all_cpus_sync, on_each_cpu_cond,
                           local_irq_enabled, store_buffer_drain, vcpu, preempt_check_resched,
                           PP_SLAB_FREE_BEFORE_CMPXCHG, PP_PUT_CPU_PARTIAL,
                           PP_PUT_CPU_PARTIAL_AFTER_READ)
from slubcy.page_alloc cimport (alloc_pages, __free_pages, get_order, page_address,
                                virt_to_head_page, addr_in_arena, PG_slab, PG_slab_ctor)

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)

# ---------------------------------------------------------------------------
# Geometry: calculate_alignment, calculate_sizes, calculate_order, slab_order

cdef inline int fls(unsigned long x) noexcept nogil:
    cdef int r = 0
    while x:
        x >>= 1
        r += 1
    return r

cdef inline int ilog2(unsigned long x) noexcept nogil:
    return fls(x) - 1

cdef inline unsigned long ALIGN(unsigned long x, unsigned long a) noexcept nogil:
    return (x + a - 1) & ~(a - 1)

cdef inline int order_objects(int order, unsigned long size, int reserved) noexcept nogil:
    return <int>(((<unsigned long>PAGE_SIZE << order) - reserved) // size)

cdef inline unsigned long oo_make(int order, unsigned long size, int reserved) noexcept nogil:
    return (<unsigned long>order << OO_SHIFT) + order_objects(order, size, reserved)


cdef unsigned long calculate_alignment(unsigned long flags, unsigned long align,
                                       unsigned long size) noexcept nogil:
    """calculate_alignment(): SLAB_HWCACHE_ALIGN aligns to the cache line, halved
    while the object fits twice into it."""
    cdef unsigned long ralign
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        if ralign > align:
            align = ralign
    if align < ARCH_SLAB_MINALIGN:
        align = ARCH_SLAB_MINALIGN
    return ALIGN(align, sizeof(void *))


cdef int slab_order(slub_machine *m, int size, int min_objects, int max_order,
                    int fract_leftover, int reserved) noexcept nogil:
    """slab_order(): the smallest order >= slub_min_order holding min_objects
    whose leftover is at most 1/fract_leftover of the slab."""
    cdef int order, rem, min_order = m.slub_min_order
    cdef unsigned long slab_size
    if order_objects(min_order, size, reserved) > MAX_OBJS_PER_PAGE:
        return get_order(<size_t>size * MAX_OBJS_PER_PAGE) - 1
    order = fls(<unsigned long>min_objects * size - 1) - PAGE_SHIFT
    if order < min_order:
        order = min_order
    while order <= max_order:
        slab_size = <unsigned long>PAGE_SIZE << order
        if slab_size >= <unsigned long>min_objects * size + reserved:
            rem = <int>((slab_size - reserved) % size)
            if rem <= <long>(slab_size // fract_leftover):
                break
        order += 1
    return order


cdef int calculate_order(slub_machine *m, int size, int reserved) noexcept nogil:
    """calculate_order(): try min_objects = 4 * (fls(nr_cpu_ids) + 1) down to 2
    with leftover fractions 1/16, 1/8, 1/4; then one object per slab."""
    cdef int order, fraction, max_objects
    cdef int min_objects = m.slub_min_objects
    if not min_objects:
        min_objects = 4 * (fls(m.nr_cpu_ids) + 1)
    max_objects = order_objects(m.slub_max_order, size, reserved)
    if max_objects < min_objects:
        min_objects = max_objects
    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = slab_order(m, size, min_objects, m.slub_max_order, fraction, reserved)
            if order <= m.slub_max_order:
                return order
            fraction //= 2
        min_objects -= 1
    order = slab_order(m, size, 1, m.slub_max_order, 1, reserved)
    if order <= m.slub_max_order:
        return order
    order = slab_order(m, size, 1, MAX_ORDER, 1, reserved)
    if order < MAX_ORDER:
        return order
    return -1


cdef int calculate_sizes(kmem_cache *s, int forced_order) noexcept nogil:
    """calculate_sizes(): object layout (red zone, free pointer placement,
    alignment) and the slab order.  Returns 0 if the object cannot be placed."""
    cdef unsigned long flags = s.flags
    cdef unsigned long size = ALIGN(s.object_size, sizeof(void *))
    cdef int order
    # CONFIG_SLUB_DEBUG: poison the object only if nothing lives inside it
    if (flags & SLAB_POISON) and not (flags & SLAB_TYPESAFE_BY_RCU) and s.ctor == NULL:
        s.flags |= __OBJECT_POISON
    else:
        s.flags &= ~(<unsigned long>__OBJECT_POISON)
    # a red zone word right after the object if alignment left no gap
    if (flags & SLAB_RED_ZONE) and size == <unsigned long>s.object_size:
        size += sizeof(void *)
    s.inuse = <int>size
    # the free pointer cannot overlay an object that must stay intact while free
    if (flags & SLAB_TYPESAFE_BY_RCU) and s.use_freeptr_offset:
        # 6.x kmem_cache_args.freeptr_offset: a field the RCU readers may
        # find garbage in holds it, inside the object
        s.offset = s.freeptr_offset
    elif (flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON)) or s.ctor != NULL:
        s.offset = <int>size
        size += sizeof(void *)
    elif s.m.slub_gen >= 70:
        # 5.7+ (3202fa62fb43): the free pointer in the middle of the object,
        # away from where small overflows from the previous object land
        s.offset = (s.object_size // 2) & ~(<int>sizeof(void *) - 1)   # ALIGN_DOWN
    if flags & SLAB_RED_ZONE:
        # padding to catch writes before the start of the next object
        size += sizeof(void *)
    size = ALIGN(size, s.align)
    s.size = <int>size
    if forced_order >= 0:
        order = forced_order
    else:
        order = calculate_order(s.m, s.size, s.reserved)
    if order < 0:
        return 0
    s.oo = oo_make(order, size, s.reserved)
    s.min = oo_make(get_order(size), size, s.reserved)
    if oo_objects(s.oo) > oo_objects(s.max):
        s.max = s.oo
    return oo_objects(s.oo) != 0


cdef inline void set_min_partial(kmem_cache *s, unsigned long min) noexcept nogil:
    if min < MIN_PARTIAL:
        min = MIN_PARTIAL
    elif min > MAX_PARTIAL:
        min = MAX_PARTIAL
    s.min_partial = min


cdef int kmalloc_index(size_t size) noexcept nogil:
    """kmalloc_index(): the kmalloc cache for `size` (1 = kmalloc-96,
    2 = kmalloc-192, n = kmalloc-(1 << n)); -1 if larger than 8 KiB."""
    cdef int i
    if size == 0:
        return 0
    if size <= 8:
        return 3
    if 64 < size <= 96:
        return 1
    if 128 < size <= 192:
        return 2
    for i in range(4, KMALLOC_SHIFT_HIGH + 1):
        if size <= (<size_t>1 << i):
            return i
    return -1


cdef kmem_cache *kmem_cache_open(slub_machine *m, const char *name, size_t size, size_t align,
                                 unsigned long flags, void *ctor, int freeptr_offset,
                                 unsigned int sheaf_capacity) noexcept nogil:
    """kmem_cache_create() + kmem_cache_open(): NULL if the object cannot be
    placed in a slab or memory for the cache is short.  `freeptr_offset`
    (>= 0: 6.x kmem_cache_args.freeptr_offset, SLAB_TYPESAFE_BY_RCU caches)
    and `sheaf_capacity` (kmem_cache_args.sheaf_capacity: the least a 7.0
    cache's sheaves hold) come from the caller's checked arguments."""
    cdef kmem_cache *s = <kmem_cache *>calloc(1, sizeof(kmem_cache))
    if s == NULL:
        return NULL
    s.m = m
    strncpy(s.name, name, sizeof(s.name) - 1)
    s.object_size = <int>size
    s.flags = flags
    s.ctor = ctor
    s.use_freeptr_offset = freeptr_offset >= 0
    s.freeptr_offset = freeptr_offset if freeptr_offset >= 0 else 0
    s.align = <int>calculate_alignment(flags, align, size)
    s.reserved = 0      # the RCU head fits in struct page on 64-bit
    if not calculate_sizes(s, -1):
        free(s)
        return NULL
    s.reciprocal_size = <uint32_t>(((<uint64_t>1 << 32) + s.size - 1) // s.size)
    set_min_partial(s, ilog2(s.size) // 2)
    if not kmem_cache_has_cpu_partial(s):
        s.cpu_partial = 0
    elif s.size >= PAGE_SIZE:
        s.cpu_partial = 2
    elif s.size >= 1024:
        s.cpu_partial = 6
    elif s.size >= 256:
        s.cpu_partial = 13
    else:
        s.cpu_partial = 30
    spin_lock_init(&s.node.list_lock)
    INIT_LIST_HEAD(&s.node.partial)
    # one more than the vCPUs: the counters of work done on none (stat_off_cpu)
    s.cpu_slab = <kmem_cache_cpu *>aligned_alloc(CACHE_LINE_SIZE, (m.nr_cpus + 1) * sizeof(kmem_cache_cpu))
    if s.cpu_slab == NULL:
        free(s)
        return NULL
    memset(s.cpu_slab, 0, (m.nr_cpus + 1) * sizeof(kmem_cache_cpu))
    if m.slub_gen >= 70:
        # 7.0: kmem_cache_cpu and cpu partials are gone (cpu_partial reads 0)
        s.cpu_partial = 0
        if init_percpu_sheaves(s, sheaf_capacity) != 0:
            free(s.cpu_slab)
            free(s)
            return NULL
    if flags & SLAB_ACCOUNT:
        # a root cache of accounted objects: a child cache per kmemcg id
        s.memcg_caches = <kmem_cache **>calloc(MAX_MEMCG_CACHES, sizeof(kmem_cache *))
        if s.memcg_caches == NULL:
            free_percpu_sheaves(s)
            free(s.cpu_slab)
            free(s)
            return NULL
        s.accounted = 1
    spin_lock(&m.slab_lock)
    list_add(&s.list, &m.slab_caches)
    if s.accounted:
        list_add(&s.root_caches_node, &m.slab_root_caches)
    spin_unlock(&m.slab_lock)
    return s


cdef void __kmem_cache_unlink(kmem_cache *s) noexcept nogil:
    """Take a cache off the machine's lists; slab_lock held."""
    if s.list.next != NULL:
        list_del(&s.list)
    if s.accounted and s.root_caches_node.next != NULL:
        list_del(&s.root_caches_node)


cdef void kmem_cache_unlink(kmem_cache *s) noexcept nogil:
    spin_lock(&s.m.slab_lock)
    __kmem_cache_unlink(s)
    spin_unlock(&s.m.slab_lock)


cdef void kmem_cache_release(kmem_cache *s) noexcept nogil:
    """Free the struct (the caller unlinked it or is tearing the machine down)."""
    free(s.memcg_caches)
    free_percpu_sheaves(s)
    free(s.cpu_slab)
    free(s)


# ---------------------------------------------------------------------------
# Node lists and slab accounting

cdef inline bint cmpxchg_double_slab(kmem_cache_cpu *c, page *pg, uint64_t old,
                                     uint64_t new) noexcept nogil:
    """cmpxchg_double_slab(): one compare-and-swap of (freelist, counters);
    a failure is counted (CMPXCHG_DOUBLE_FAIL) and the caller retries."""
    if slab_cmpxchg(&pg.fc, old, new):
        return True
    stat(c, CMPXCHG_DOUBLE_FAIL)
    return False


# ---------------------------------------------------------------------------
# slub_debug: poisoning and red zones

cdef void init_object(kmem_cache *s, void *object, int val) noexcept nogil:
    """init_object(): poison the object and paint its red zone with `val`."""
    cdef unsigned char *p = <unsigned char *>object
    if s.flags & __OBJECT_POISON:
        memset(p, POISON_FREE, s.object_size - 1)
        p[s.object_size - 1] = POISON_END
    if s.flags & SLAB_RED_ZONE:
        memset(p + s.object_size, val, s.inuse - s.object_size)


cdef bint check_bytes_and_report(kmem_cache *s, unsigned char *start, int value,
                                 int nbytes) noexcept nogil:
    """check_bytes_and_report(): False if a byte differs; the range is
    restored ("Restoring ...") so one corruption is reported once."""
    cdef int i
    for i in range(nbytes):
        if start[i] != value:
            memset(start, value, nbytes)
            s.debug_errors += 1
            return False
    return True


cdef int check_object(kmem_cache *s, page *pg, void *object, int val) noexcept nogil:
    """check_object(): red zone (`val` says active or inactive), alignment
    padding and, for free objects, the poison.  The free pointer is checked by
    validate_cache() instead (it walks every freelist)."""
    cdef unsigned char *p = <unsigned char *>object
    cdef unsigned char *endobject = p + s.object_size
    if s.flags & SLAB_RED_ZONE:
        if not check_bytes_and_report(s, endobject, val, s.inuse - s.object_size):
            return 0
    elif (s.flags & SLAB_POISON) and s.object_size < s.inuse:
        check_bytes_and_report(s, endobject, POISON_INUSE, s.inuse - s.object_size)
    if s.flags & SLAB_POISON:
        if val != SLUB_RED_ACTIVE and (s.flags & __OBJECT_POISON):
            if (not check_bytes_and_report(s, p, POISON_FREE, s.object_size - 1)
                    or not check_bytes_and_report(s, p + s.object_size - 1, POISON_END, 1)):
                return 0
    return 1


cdef void alloc_debug_processing(kmem_cache *s, page *pg, void *object) noexcept nogil:
    """alloc_debug_processing().  Departure: a corrupted free object is
    repaired and counted, not quarantined with its whole slab."""
    check_object(s, pg, object, SLUB_RED_INACTIVE)
    init_object(s, object, SLUB_RED_ACTIVE)


cdef bint free_debug_processing(kmem_cache *s, page *pg, void *head, void *tail,
                               int cnt) noexcept nogil:
    """free_debug_processing(): if a red zone of the list was overwritten,
    nothing of it is freed ("Object at 0x%p not freed").  The pointer checks
    of the kernel (check_valid_pointer, on_freelist, slab_cache) run before
    every free from Python, debug or not: see check_objects()."""
    cdef void *object = head
    cdef int i
    for i in range(cnt):
        if not check_object(s, pg, object, SLUB_RED_ACTIVE):
            return False
        object = get_freepointer(s, object) if i + 1 < cnt else NULL
    object = head
    for i in range(cnt):
        init_object(s, object, SLUB_RED_INACTIVE)
        object = get_freepointer(s, object) if i + 1 < cnt else NULL
    return True


# ---------------------------------------------------------------------------
# Slab allocation and freeing

cdef bint run_ctor(kmem_cache *s, void *object) noexcept nogil:
    with gil:
        try:
            (<object>s.ctor)(<uintptr_t>object)
            return True
        except BaseException as e:
            # The kernel's constructors cannot fail; ours are Python callables.
            # Keep the first error for the Python layer to raise.
            if s.ctor_exc == NULL:
                Py_INCREF(e)
                s.ctor_exc = <void *>e
            return False


cdef inline bint setup_object(kmem_cache *s, page *pg, void *object) noexcept nogil:
    if s.flags & (SLAB_RED_ZONE | __OBJECT_POISON):     # setup_object_debug()
        init_object(s, object, SLUB_RED_INACTIVE)
    if s.ctor != NULL:
        return run_ctor(s, object)
    return True


cdef page *allocate_slab(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    """allocate_slab(): the preferred order, else the minimum (ORDER_FALLBACK)."""
    cdef unsigned long oo = s.oo
    cdef page *pg = alloc_pages(&s.m.z, oo_order(oo))
    if pg == NULL:
        oo = s.min
        pg = alloc_pages(&s.m.z, oo_order(oo))
        if pg == NULL:
            return NULL
        stat(c, ORDER_FALLBACK)
    slab_word_set(&pg.fc, fc_counters(0, oo_objects(oo), 0))
    return pg


cdef page *new_slab(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    """new_slab(): a frozen slab whose whole freelist (in address order) is
    about to be taken by the allocating vCPU."""
    cdef page *pg = allocate_slab(s, c)
    cdef char *start
    cdef char *p
    cdef int idx, objects
    if pg == NULL:
        return NULL
    objects = fc_objects(pg.fc)
    inc_slabs_node(s, objects)
    ptr_write_once(&pg.slab_cache, s)        # (the page map's readers: slab_usage)
    pg.memcg_data = 0
    pg.sl_partial = 0
    memcg_charge_slab(s, pg)
    u16_write_once(&pg.flags, pg.flags | PG_slab | PG_slab_ctor)
    start = page_address(&s.m.z, pg)
    if s.flags & SLAB_POISON:
        memset(start, POISON_INUSE, <size_t>PAGE_SIZE << pg.order)
    p = start
    for idx in range(objects):
        if not setup_object(s, pg, p):
            # a Python constructor raised: no half-constructed slab is used
            u16_write_once(&pg.flags, pg.flags & ~PG_slab_ctor)
            discard_slab(s, pg)
            return NULL
        set_freepointer(s, p, p + s.size if idx + 1 < objects else NULL)
        p += s.size
    slab_word_set(&pg.fc, fc_make(&s.m.z, start, fc_counters(objects, objects, 1)))
    u16_write_once(&pg.flags, pg.flags & ~PG_slab_ctor)
    return pg


cdef void discard_slab(kmem_cache *s, page *pg) noexcept nogil:
    """discard_slab() + free_slab().  Departure: SLAB_TYPESAFE_BY_RCU slabs
    are freed at once, not after call_rcu (no object is read after free
    here).  A dead cache that lost its last slab is reported to the memcg
    code (destroy when empty)."""
    cdef unsigned int order = pg.order
    if pg.py_live != 0:                 # (all clear: the slab is empty)
        free(<void *>pg.py_live)
        pg.py_live = 0
        atomic_long_add(&s.m.nr_py_live, -1)
    dec_slabs_node(s, fc_objects(pg.fc))
    unaccount_slab_page(s, pg)
    memcg_uncharge_slab(s, pg)
    u16_write_once(&pg.flags, pg.flags & ~PG_slab)
    __free_pages(&s.m.z, pg, order)
    if s.dead and atomic_long_read(&s.node.nr_slabs) == 0:
        memcg_cache_empty(s.m, s)


# ---------------------------------------------------------------------------
# memcg charging of slab pages (memcg_charge_slab / memcg_uncharge_slab)

cdef void css_get_many(mem_cgroup *memcg, long n) noexcept nogil:
    atomic_long_add(&memcg.refcnt, n)


cdef void css_put_many(slub_machine *m, mem_cgroup *memcg, long n) noexcept nogil:
    """Drop n references; the last one frees the (offline) memcg: css_free."""
    if atomic_long_sub_return(&memcg.refcnt, n) == 0:
        memcg_css_free(m, memcg)


cdef inline void memcg_charge_slab(kmem_cache *s, page *pg) noexcept nogil:
    """Charge a child cache's new slab to its memcg; up to Linux 5.2 each
    charged page also pins the memcg (css_get_many in try_charge).
    READ_ONCE(s->memcg_params.memcg), as 5.3's memcg_charge_slab(): the
    reparenting offline may change it (memcg_reparent_caches)."""
    cdef mem_cgroup *memcg = <mem_cgroup *>ptr_read_once(<void **>&s.memcg)
    cdef long n = <long>1 << pg.order
    if memcg == NULL:
        return
    atomic_long_add(&memcg.nr_pages, n)
    if s.m.pages_pin_memcg:
        css_get_many(memcg, n)
        set_page_memcg_pinned(pg, memcg)


cdef inline void unaccount_slab_page(kmem_cache *s, page *pg) noexcept nogil:
    """unaccount_slab_page() (mm/slab.h, 5.9): a slab's obj_cgroup vector
    is freed with it.  (Its slab page is charged to no memcg: each object
    is.)"""
    memcg_free_page_obj_cgroups(pg)


cdef inline void memcg_uncharge_slab(kmem_cache *s, page *pg) noexcept nogil:
    """memcg_uncharge_slab(): a per-memcg cache's slab page goes.  Never
    reads an obj_cgroup vector as a memcg (page_memcg_pinned).  The
    cache's memcg is read once, READ_ONCE(s->memcg_params.memcg) as 5.3's
    memcg_uncharge_slab() does: memcg_reparent_caches() on the kworker may
    be moving the cache to the parent meanwhile (WRITE_ONCE).  The memcg
    read stays valid for the call: the caller is on a vCPU in an operation
    (an RCU-sched read-side section), and a memcg is freed by call_rcu."""
    cdef mem_cgroup *memcg = page_memcg_pinned(pg)
    cdef long n = <long>1 << pg.order
    if memcg != NULL:                   # pinned: uncharge what was charged
        set_page_memcg_pinned(pg, NULL)
        atomic_long_add(&memcg.nr_pages, -n)
        css_put_many(s.m, memcg, n)
        return
    memcg = <mem_cgroup *>ptr_read_once(<void **>&s.memcg)
    if memcg != NULL:                   # charged to the cache's (maybe reparented) memcg
        atomic_long_add(&memcg.nr_pages, -n)


cdef void *get_freelist(kmem_cache *s, kmem_cache_cpu *c, page *pg) noexcept nogil:
    """get_freelist(): take the slab's freelist for the cpu freelist; the slab
    stays frozen only if there was something to take."""
    cdef uint64_t old, new
    cdef void *freelist
    while True:
        old = slab_word_read(&pg.fc)
        freelist = fc_freelist(&s.m.z, old)
        new = fc_make(&s.m.z, NULL, fc_counters(fc_objects(old), fc_objects(old), freelist != NULL))
        if cmpxchg_double_slab(c, pg, old, new):
            return freelist


cdef void *acquire_slab(kmem_cache *s, kmem_cache_cpu *c, kmem_cache_node *n, page *pg,
                        int mode, int *objects) noexcept nogil:
    """acquire_slab(): freeze a node-partial slab and take it off the list;
    mode 1 also takes its whole freelist (for the cpu slab)."""
    cdef uint64_t old = slab_word_read(&pg.fc), new
    cdef void *freelist = fc_freelist(&s.m.z, old)
    cdef uint32_t nobj = fc_objects(old)
    objects[0] = <int>(nobj - fc_inuse(old))
    if mode:
        new = fc_make(&s.m.z, NULL, fc_counters(nobj, nobj, 1))
    else:
        new = fc_make(&s.m.z, freelist, fc_counters(fc_inuse(old), nobj, 1))
    if not cmpxchg_double_slab(c, pg, old, new):
        return NULL
    remove_partial(n, pg)
    return freelist


cdef void *get_partial_node(kmem_cache *s, kmem_cache_cpu *c, kmem_cache_node *n) noexcept nogil:
    """get_partial_node(): the first slab becomes the cpu slab, more go to the
    cpu partial list until more than cpu_partial/2 objects are available."""
    cdef void *object = NULL
    cdef void *t
    cdef list_head *pos
    cdef list_head *nxt
    cdef page *pg
    cdef int available = 0, objects
    # get_partial_node(): "racy check.  If we mistakenly see no partial
    # slabs then we just allocate an empty slab" -- an unlocked READ_ONCE
    if long_read_once(&n.nr_partial) == 0:
        return NULL
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        nxt = pos.next
        pg = lru_to_page(pos)
        t = acquire_slab(s, c, n, pg, object == NULL, &objects)
        if t == NULL:
            break
        available += objects
        if object == NULL:
            c.page = pg
            stat(c, ALLOC_FROM_PARTIAL)
            object = t
        else:
            put_cpu_partial(s, c, pg, 0)
            stat(c, CPU_PARTIAL_NODE)
        if not kmem_cache_has_cpu_partial(s) or available > atomic_int_read(&s.cpu_partial) // 2:
            break
        pos = nxt
    spin_unlock(&n.list_lock)
    return object


cdef void *new_slab_objects(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    """new_slab_objects(): a node-partial slab, else a new one (get_any_partial
    has no other node to look at)."""
    cdef void *freelist = get_partial_node(s, c, &s.node)
    cdef page *pg
    if freelist != NULL:
        return freelist
    pg = new_slab(s, c)
    if pg == NULL:
        return NULL
    if c.page != NULL:
        flush_slab(s, c)
    # page->freelist = NULL: nobody else can see the new slab yet
    freelist = fc_freelist(&s.m.z, pg.fc)
    slab_word_set(&pg.fc, fc_make(&s.m.z, NULL, pg.fc))
    stat(c, ALLOC_SLAB)
    c.page = pg
    return freelist


cdef void *__slab_alloc(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    """__slab_alloc(): refill the cpu freelist from the cpu slab (get_freelist),
    else the next cpu partial slab, else a node partial or new slab.  The
    kernel's gotos (redo, load_freelist, new_slab) are the loop's branches."""
    cdef page *pg = c.page
    cdef void *freelist
    while True:
        if pg != NULL:
            # redo: (no node or pfmemalloc mismatch to handle)
            freelist = c.freelist
            if freelist == NULL:
                freelist = get_freelist(s, c, pg)
                if freelist == NULL:
                    c.page = NULL
                    stat(c, DEACTIVATE_BYPASS)
                    pg = NULL
                    continue        # goto new_slab
                stat(c, ALLOC_REFILL)
            # load_freelist:
            c.freelist = <void **>get_freepointer(s, freelist)
            return freelist
        # new_slab:
        if c.partial != NULL:
            pg = c.partial
            c.page = pg
            c.partial = pg.u.pc.next
            stat(c, CPU_PARTIAL_ALLOC)
            c.freelist = NULL
            continue                # goto redo
        freelist = new_slab_objects(s, c)
        if freelist == NULL:
            return NULL             # slab_out_of_memory()
        pg = c.page
        if not kmem_cache_debug(s):
            c.freelist = <void **>get_freepointer(s, freelist)
            return freelist
        # Only entered in the debug case: one object, the rest goes back.
        alloc_debug_processing(s, pg, freelist)
        deactivate_slab(s, c, pg, get_freepointer(s, freelist))
        c.page = NULL
        c.freelist = NULL
        return freelist


cdef enum slab_modes:
    M_NONE
    M_PARTIAL
    M_FULL
    M_FREE


cdef void deactivate_slab(kmem_cache *s, kmem_cache_cpu *c, page *pg, void *freelist) noexcept nogil:
    """deactivate_slab(): give the cpu freelist back to the slab and unfreeze
    it onto the node partial list (head, or tail after remote frees), as full,
    or discard it when empty and the node has min_partial slabs."""
    cdef kmem_cache_node *n = &s.node
    cdef zone *z = &s.m.z
    cdef int lock = 0, tail = DEACTIVATE_TO_HEAD
    cdef slab_modes l = M_NONE, m = M_NONE
    cdef void *nextfree
    cdef void *prior
    cdef void *new_freelist
    cdef uint64_t old, new
    cdef uint32_t inuse
    if fc_freelist(z, slab_word_read(&pg.fc)) != NULL:
        stat(c, DEACTIVATE_REMOTE_FREES)
        tail = DEACTIVATE_TO_TAIL
    # Stage one: free all cpu objects but the last back to the page freelist
    # while it is still frozen (no list lock needed).
    while freelist != NULL:
        nextfree = get_freepointer(s, freelist)
        if nextfree == NULL:
            break
        while True:
            old = slab_word_read(&pg.fc)
            prior = fc_freelist(z, old)
            set_freepointer(s, freelist, prior)
            new = fc_make(z, freelist, old - 1)      # inuse--
            if cmpxchg_double_slab(c, pg, old, new):
                break
        freelist = nextfree
    # Stage two: unfreeze, with list membership set up before the cmpxchg.
    while True:
        old = slab_word_read(&pg.fc)
        inuse = fc_inuse(old)
        if freelist != NULL:
            inuse -= 1
            set_freepointer(s, freelist, fc_freelist(z, old))
            new_freelist = freelist
        else:
            new_freelist = fc_freelist(z, old)
        # deactivate_slab(): the unlocked peek at n->nr_partial (READ_ONCE);
        # the lock is taken below for the list change it decides
        if inuse == 0 and long_read_once(&n.nr_partial) >= <long>s.min_partial:
            m = M_FREE
        elif new_freelist != NULL:
            m = M_PARTIAL
            if not lock:
                lock = 1
                # taking the lock keeps acquire_slab() from seeing a frozen slab
                spin_lock(&n.list_lock)
        else:
            m = M_FULL
            if kmem_cache_debug(s) and not lock:
                lock = 1
                spin_lock(&n.list_lock)
        if l != m:
            if l == M_PARTIAL:
                remove_partial(n, pg)
            # (l == M_FULL: remove_full(), a no-op without SLAB_STORE_USER)
            if m == M_PARTIAL:
                add_partial(n, pg, tail)
                stat(c, <stat_item>tail)
            elif m == M_FULL:
                stat(c, DEACTIVATE_FULL)
        l = m
        new = fc_make(z, new_freelist, fc_counters(inuse, fc_objects(old), 0))
        if cmpxchg_double_slab(c, pg, old, new):
            break
    if lock:
        spin_unlock(&n.list_lock)
    if m == M_FREE:
        stat(c, DEACTIVATE_EMPTY)
        discard_slab(s, pg)
        stat(c, FREE_SLAB)


cdef void unfreeze_partials(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    """unfreeze_partials(): move the cpu partial slabs to the node list (tail),
    discarding empty ones once the node holds min_partial slabs."""
    cdef kmem_cache_node *n = &s.node
    cdef page *pg
    cdef page *discard_page = NULL
    cdef uint64_t old
    cdef bint locked = False
    while c.partial != NULL:
        pg = c.partial
        c.partial = pg.u.pc.next
        if not locked:
            spin_lock(&n.list_lock)
            locked = True
        while True:
            old = slab_word_read(&pg.fc)
            if cmpxchg_double_slab(c, pg, old, old & ~(<uint64_t>1 << 31)):   # frozen = 0
                break
        if fc_inuse(old) == 0 and n.nr_partial >= <long>s.min_partial:
            pg.u.pc.next = discard_page
            discard_page = pg
        else:
            add_partial(n, pg, DEACTIVATE_TO_TAIL)
            stat(c, FREE_ADD_PARTIAL)
    if locked:
        spin_unlock(&n.list_lock)
    while discard_page != NULL:
        pg = discard_page
        discard_page = pg.u.pc.next
        stat(c, DEACTIVATE_EMPTY)
        discard_slab(s, pg)
        stat(c, FREE_SLAB)


cdef void put_cpu_partial(kmem_cache *s, kmem_cache_cpu *c, page *pg, int drain) noexcept nogil:
    """put_cpu_partial(): push a frozen slab on the cpu partial list, first
    draining the list to the node when it holds more than cpu_partial objects.
    Only the owning vCPU runs this, so the kernel's this_cpu_cmpxchg loop is a
    plain store here.  Linux 4.0 (d6e0b7fa) runs it with preemption disabled
    and, when the policy models 4.0 or later, unfreezes at once a cache whose
    cpu_partial is 0 (dead): a push that lands before the offline's barrier
    is on a list the shrink's flush_all() drains, one after it sees
    cpu_partial == 0."""
    cdef page *oldpage
    cdef int pages = 0, pobjects = 0, cpu = <int>(c - s.cpu_slab), cpu_partial
    cdef uint64_t w
    cdef vcpu *v
    if drain:
        # From __slab_free, before preempt_disable(): preemptible, interrupts
        # on; the window in which a freshly frozen slab is on no list yet.
        # (Not from get_partial_node, which holds list_lock: irqs off.)
        preempt_point(&s.m.sc, PP_PUT_CPU_PARTIAL, cpu)
        local_irq_enabled(&s.m.sc, cpu)
    # preempt_disable(): from here on the vCPU is not quiescent for RCU-sched
    oldpage = c.partial
    if oldpage != NULL:
        pobjects = oldpage.u.pc.pobjects
        pages = oldpage.u.pc.pages
        if drain and pobjects > atomic_int_read(&s.cpu_partial):
            unfreeze_partials(s, c)
            oldpage = NULL
            pobjects = 0
            pages = 0
            stat(c, CPU_PARTIAL_DRAIN)
    pages += 1
    w = slab_word_read(&pg.fc)
    pobjects += <int>(fc_objects(w) - fc_inuse(w))
    pg.u.pc.pages = pages
    pg.u.pc.pobjects = pobjects
    pg.u.pc.next = oldpage
    if drain and s.m.sc.points[<int>PP_PUT_CPU_PARTIAL_AFTER_READ].enabled:
        # Store buffering, as x86-TSO allows: this_cpu_cmpxchg() is no locked
        # instruction and no barrier separates it from the dead check, so the
        # check's load of s->cpu_partial may be satisfied before the store to
        # c->partial is visible to other CPUs.  The model makes that window
        # explicit: the load first, the store held in the vCPU's one-entry
        # store buffer, which an interrupt drains before its handler runs
        # (handle_ipi) and which drains by itself after the point.
        cpu_partial = atomic_int_read(&s.cpu_partial)
        v = &s.m.sc.vcpus[cpu]
        v.sb_addr = <void **>&c.partial
        v.sb_val = pg
        preempt_point(&s.m.sc, PP_PUT_CPU_PARTIAL_AFTER_READ, cpu)
        store_buffer_drain(v)
    else:
        c.partial = pg
        cpu_partial = atomic_int_read(&s.cpu_partial)
    if s.m.cpu_partial_dead_check and cpu_partial == 0:
        # (4.0: local_irq_save; unfreeze_partials; local_irq_restore)
        unfreeze_partials(s, c)
    # preempt_enable()


cdef int __slab_free(kmem_cache *s, kmem_cache_cpu *c, page *pg, void *head, void *tail,
                     int cnt) noexcept nogil:
    """__slab_free(): push the detached list head..tail (`cnt` objects; one for
    a single free) on the slab's freelist by compare-and-swap.
    A full slab gets frozen onto this vCPU's partial list; an emptied slab is
    discarded when the node holds min_partial slabs; a slab that gains its
    first free object is added to the node list (caches without cpu partials)."""
    cdef kmem_cache_node *n = &s.node
    cdef zone *z = &s.m.z
    cdef void *prior
    cdef uint64_t old
    cdef uint32_t inuse
    cdef bint was_frozen, frozen, locked = False
    stat(c, FREE_SLOWPATH)
    if kmem_cache_debug(s) and not free_debug_processing(s, pg, head, tail, cnt):
        return 0
    while True:
        if locked:
            spin_unlock(&n.list_lock)
            locked = False
        # interrupts are on: a request already pending is taken here, before
        # the counters are read, so the one taken at the point below is one
        # that arrived inside the window (an IPI lands at the instruction
        # boundary where it arrives, not at the next place we look)
        local_irq_enabled(&s.m.sc, <int>(c - s.cpu_slab))
        old = slab_word_read(&pg.fc)
        prior = fc_freelist(z, old)
        set_freepointer(s, tail, prior)
        inuse = fc_inuse(old) - cnt
        was_frozen = fc_frozen(old)
        frozen = was_frozen
        if (inuse == 0 or prior == NULL) and not was_frozen:
            if kmem_cache_has_cpu_partial(s) and prior == NULL:
                # Slab was on no list before and will be partially empty:
                # defer the list move and freeze it instead.
                frozen = True
            else:
                # Needs to be taken off a list: speculatively take the lock.
                spin_lock(&n.list_lock)
                locked = True
        if not locked:
            # The new counters are computed, the cmpxchg not done.  (Under
            # list_lock the kernel cannot be preempted: spin_lock_irqsave.)
            if frozen and not was_frozen:
                # the 2014 race's window: a full slab about to be frozen onto
                # this vCPU's partial list, the cache read as alive
                preempt_point(&s.m.sc, PP_SLAB_FREE_BEFORE_CMPXCHG, <int>(c - s.cpu_slab))
            else:
                # preemptible all the same (the CONFIG_PREEMPT model)
                preempt_check_resched(&s.m.sc, <int>(c - s.cpu_slab))
            local_irq_enabled(&s.m.sc, <int>(c - s.cpu_slab))
        if cmpxchg_double_slab(c, pg, old,
                               fc_make(z, head, fc_counters(inuse, fc_objects(old), frozen))):
            break
    if not locked:
        if frozen and not was_frozen:
            put_cpu_partial(s, c, pg, 1)
            stat(c, CPU_PARTIAL_FREE)
        if was_frozen:
            stat(c, FREE_FROZEN)
        return 1
    if inuse == 0 and n.nr_partial >= <long>s.min_partial:
        # slab_empty:
        if prior != NULL:
            remove_partial(n, pg)
            stat(c, FREE_REMOVE_PARTIAL)
        # (else remove_full(): no full list without SLAB_STORE_USER)
        spin_unlock(&n.list_lock)
        stat(c, FREE_SLAB)
        discard_slab(s, pg)
        return 1
    if not kmem_cache_has_cpu_partial(s) and prior == NULL:
        add_partial(n, pg, DEACTIVATE_TO_TAIL)
        stat(c, FREE_ADD_PARTIAL)
    spin_unlock(&n.list_lock)
    return 1


cdef size_t build_detached_freelist(kmem_cache *s, size_t size, void **p, page **df_page,
                                   void **df_freelist, void **df_tail, int *df_cnt) noexcept nogil:
    """build_detached_freelist() (Linux 4.6): from the end of p[0..size), chain
    the objects of one slab into a list (processed entries become NULL),
    looking ahead past at most 3 objects of other slabs.  Returns the size of
    what is left to scan."""
    cdef size_t first_skipped_index = 0
    cdef int lookahead = 3
    cdef void *object = NULL
    # The kernel's direct map and vmemmap are at constant addresses; the
    # arena's two bases are read once here, not after every store below.
    cdef zone z
    cdef page *pg
    cdef void *freelist
    cdef int cnt = 1
    z.base = s.m.z.base
    z.mem_map = s.m.z.mem_map
    df_page[0] = NULL
    while size:
        size -= 1
        object = p[size]
        if object != NULL:
            break
    if object == NULL:
        return 0
    # (the list's head and count in registers, written out at the end)
    set_freepointer(s, object, NULL)
    pg = virt_to_head_page(&z, object)
    df_tail[0] = object
    freelist = object
    p[size] = NULL
    while size:
        size -= 1
        object = p[size]
        if object == NULL:
            continue
        if pg == virt_to_head_page(&z, object):
            set_freepointer(s, object, freelist)
            freelist = object
            cnt += 1
            p[size] = NULL
            continue
        lookahead -= 1
        if not lookahead:
            break
        if not first_skipped_index:
            first_skipped_index = size + 1
    df_page[0] = pg
    df_freelist[0] = freelist
    df_cnt[0] = cnt
    return first_skipped_index


cdef int kmem_cache_free_bulk(kmem_cache *s, size_t size, void **p, int cpu) noexcept nogil:
    """kmem_cache_free_bulk() (Linux 4.6): one do_slab_free() per detached
    list, into the slab's own cache (a memcg child of s: cache_from_obj).
    p[] is consumed (set to NULL).  Returns the number of objects a debug
    check refused to free."""
    cdef page *pg
    cdef void *freelist
    cdef void *tail
    cdef int cnt, refused = 0
    if s.cpu_sheaves != NULL:                       # 7.0: free_to_pcs_bulk()
        return kmem_cache_free_bulk_sheaves(s, size, p, cpu)
    while size:
        size = build_detached_freelist(s, size, p, &pg, &freelist, &tail, &cnt)
        if pg == NULL:
            continue
        if not do_slab_free(<kmem_cache *>pg.slab_cache, pg, freelist, tail, cnt, cpu):
            refused += cnt
    return refused


cdef size_t kmem_cache_alloc_bulk(kmem_cache *s, size_t size, void **p, int cpu) noexcept nogil:
    """kmem_cache_alloc_bulk() (Linux 4.6): pop c->freelist directly, calling
    the slow path when it runs dry.  Like the kernel it counts no
    ALLOC_FASTPATH/ALLOC_SLOWPATH (the slow path's own items are counted).
    Returns how many objects were allocated (< size only when out of memory)."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    cdef void *object
    cdef void *freelist = c.freelist
    cdef size_t i
    if s.cpu_sheaves != NULL:                       # 7.0: alloc_from_pcs_bulk()
        return kmem_cache_alloc_bulk_sheaves(s, size, p, cpu)
    # c->freelist is kept in a register for the loop and written back before
    # the slow path reads it and at the end: the vCPU owns c throughout (the
    # kernel's loop runs with interrupts off), and a store to p[] could
    # otherwise alias it and force a reload for every object.
    for i in range(size):
        object = freelist
        if object == NULL:
            c.freelist = NULL
            object = __slab_alloc(s, c)
            if object == NULL:
                return i
            p[i] = object
            freelist = c.freelist
            continue
        freelist = get_freepointer(s, object)
        p[i] = object
    c.freelist = <void **>freelist
    return size


# ---------------------------------------------------------------------------
# Flushing, shrinking, shutdown

cdef void flush_slab(kmem_cache *s, kmem_cache_cpu *c) noexcept nogil:
    stat(c, CPUSLAB_FLUSH)
    deactivate_slab(s, c, c.page, c.freelist)
    c.page = NULL
    c.freelist = NULL


cdef void __flush_cpu_slab(kmem_cache *s, int cpu) noexcept nogil:
    """__flush_cpu_slab(): runs on (or for) vCPU `cpu`."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    if c.page != NULL:
        flush_slab(s, c)
    unfreeze_partials(s, c)


cdef void flush_cpu_slab(void *info, int cpu) noexcept nogil:
    __flush_cpu_slab(<kmem_cache *>info, cpu)


cdef bint has_cpu_slab(int cpu, void *info) noexcept nogil:
    """has_cpu_slab(): read remotely, as the kernel does (c->page || c->partial)."""
    cdef kmem_cache_cpu *c = &(<kmem_cache *>info).cpu_slab[cpu]
    return c.page != NULL or c.partial != NULL


cdef int flush_all(kmem_cache *s) noexcept nogil:
    """flush_all(): on_each_cpu_cond(has_cpu_slab, flush_cpu_slab).  Every
    vCPU with a cpu slab or partials flushes its own per-cpu state, the
    requests posted to all of them at once: a running vCPU at its next
    irq-enabled point (an IPI), an idle one directly.  -1 if a vCPU did not
    answer in time.  A 7.0 cache flushes its sheaves (flush_all_sheaves)."""
    if s.cpu_sheaves != NULL:
        return flush_all_sheaves(s)
    if on_each_cpu_cond(&s.m.sc, has_cpu_slab, flush_cpu_slab, s, s.m.ipi_timeout) != 0:
        s.m.ipi_timeouts += 1
        return -1
    return 0


cdef struct cache_batch:
    kmem_cache **caches
    int n


cdef void flush_cpu_slabs(void *info, int cpu) noexcept nogil:
    cdef cache_batch *b = <cache_batch *>info
    cdef int i
    for i in range(b.n):
        __flush_cpu_slab(b.caches[i], cpu)


cdef bint has_cpu_slabs(int cpu, void *info) noexcept nogil:
    cdef cache_batch *b = <cache_batch *>info
    cdef int i
    for i in range(b.n):
        if has_cpu_slab(cpu, b.caches[i]):
            return True
    return False


cdef int flush_all_caches(slub_machine *m, kmem_cache **caches, int n) noexcept nogil:
    """flush_all() of `n` caches with one cross-vCPU request per vCPU that has
    a cpu slab in any of them.  Deliberate departure, used only by the
    `barrier:batch` option: the kernel flushes each cache with its own
    on_each_cpu_cond() (one work item per dead cache, 4.11).  -1 on a
    timeout."""
    cdef cache_batch b
    b.caches = caches
    b.n = n
    if on_each_cpu_cond(&m.sc, has_cpu_slabs, flush_cpu_slabs, &b, m.ipi_timeout) != 0:
        m.ipi_timeouts += 1
        return -1
    return 0


cdef int __kmem_cache_shrink(kmem_cache *s, bint deactivate) noexcept nogil:
    """__kmem_cache_shrink() of Linux 4.0: flush, discard every empty slab of
    the node partial list, and put the fullest slabs (at most
    SHRINK_PROMOTE_MAX free objects) at its head, fewest free first.  With
    `deactivate`, first mark the cache dead (cpu_partial = min_partial = 0).
    Returns 1 if slabs remain.  A 7.0 cache: __kmem_cache_shrink_sheaves."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head discard
    cdef list_head promote[SHRINK_PROMOTE_MAX]
    cdef list_head *pos
    cdef list_head *nxt
    cdef page *pg
    cdef uint64_t w
    cdef int i, nfree, nobj
    if s.cpu_sheaves != NULL:
        return __kmem_cache_shrink_sheaves(s)
    if deactivate:
        atomic_int_set(&s.cpu_partial, 0)
        s.min_partial = 0
        # s->cpu_partial is checked locklessly (see put_cpu_partial)
        kick_all_cpus_sync(&s.m.sc, s.m.ipi_timeout)
    flush_all(s)
    INIT_LIST_HEAD(&discard)
    for i in range(SHRINK_PROMOTE_MAX):
        INIT_LIST_HEAD(&promote[i])
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        nxt = pos.next
        pg = lru_to_page(pos)
        w = slab_word_read(&pg.fc)
        nobj = fc_objects(w)
        nfree = nobj - <int>fc_inuse(w)
        if nfree == nobj:
            list_del(pos)
            list_add(pos, &discard)
            long_write_once(&n.nr_partial, n.nr_partial - 1)
        elif nfree <= SHRINK_PROMOTE_MAX:
            list_del(pos)
            list_add(pos, &promote[nfree - 1])
        pos = nxt
    i = SHRINK_PROMOTE_MAX - 1
    while i >= 0:
        list_splice(&promote[i], &n.partial)
        i -= 1
    spin_unlock(&n.list_lock)
    while not list_empty(&discard):
        pos = discard.next
        list_del(pos)
        discard_slab(s, lru_to_page(pos))
    return 1 if atomic_long_read(&n.nr_slabs) else 0


cdef long discard_empty_partial_slabs(kmem_cache *s) noexcept nogil:
    """The discard half of __kmem_cache_shrink(), with no flush_all(): free
    every empty slab of the node partial list (what SLAB's cache_reap() does
    to a node's free slabs with drain_freelist()).  Returns how many."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head discard
    cdef list_head *pos
    cdef list_head *nxt
    cdef uint64_t w
    cdef long count = 0
    if long_read_once(&n.nr_partial) == 0:       # racy check, as get_partial_node's
        return 0
    INIT_LIST_HEAD(&discard)
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        nxt = pos.next
        w = slab_word_read(&lru_to_page(pos).fc)
        if fc_inuse(w) == 0:
            remove_partial(n, lru_to_page(pos))
            list_add(pos, &discard)
        pos = nxt
    spin_unlock(&n.list_lock)
    while not list_empty(&discard):
        pos = discard.next
        list_del(pos)
        discard_slab(s, lru_to_page(pos))
        count += 1
    return count


cdef int __kmem_cache_shutdown(kmem_cache *s) noexcept nogil:
    """kmem_cache_close(): flush, free the empty partial slabs (free_partial),
    and fail (1) if any slab is left.  Unlike the kernel, a failed shutdown
    leaves the cache fully usable: the Python layer refuses the destroy.
    A 7.0 cache: __kmem_cache_shutdown_sheaves."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head *pos
    cdef list_head *nxt
    cdef page *pg
    if s.cpu_sheaves != NULL:
        return __kmem_cache_shutdown_sheaves(s)
    flush_all(s)
    return free_partial(s)


cdef int free_partial(kmem_cache *s) noexcept nogil:
    """free_partial(): discard the empty node-partial slabs (under
    list_lock, as kmem_cache_close does); 1 if slabs remain."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head *pos
    cdef list_head *nxt
    cdef page *pg
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        nxt = pos.next
        pg = lru_to_page(pos)
        if fc_inuse(slab_word_read(&pg.fc)) == 0:
            remove_partial(n, pg)
            discard_slab(s, pg)
        pos = nxt
    spin_unlock(&n.list_lock)
    if long_read_once(&n.nr_partial) or atomic_long_read(&n.nr_slabs):
        return 1
    return 0
