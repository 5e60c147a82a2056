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
from slubcy.atomic cimport atomic_uptr_cmpxchg, atomic_uptr_read
from slubcy.list cimport list_head
from slubcy.page_alloc cimport page, zone, PAGE_SIZE, PAGE_SHIFT
from slubcy.sched cimport sched, rcu_head
from slubcy.mutex cimport mutex
from slubcy.kworker cimport workqueue

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

# include/linux/slub_def.h enum stat_item, in the kernel's order
cpdef enum stat_item:
    ALLOC_FASTPATH
    ALLOC_SLOWPATH
    FREE_FASTPATH
    FREE_SLOWPATH
    FREE_FROZEN
    FREE_ADD_PARTIAL
    FREE_REMOVE_PARTIAL
    ALLOC_FROM_PARTIAL
    ALLOC_SLAB
    ALLOC_REFILL
    ALLOC_NODE_MISMATCH
    FREE_SLAB
    CPUSLAB_FLUSH
    DEACTIVATE_FULL
    DEACTIVATE_EMPTY
    DEACTIVATE_TO_HEAD
    DEACTIVATE_TO_TAIL
    DEACTIVATE_REMOTE_FREES
    DEACTIVATE_BYPASS
    ORDER_FALLBACK
    CMPXCHG_DOUBLE_CPU_FAIL
    CMPXCHG_DOUBLE_FAIL
    CPU_PARTIAL_ALLOC
    CPU_PARTIAL_FREE
    CPU_PARTIAL_NODE
    CPU_PARTIAL_DRAIN
    NR_SLUB_STAT_ITEMS

# Per-cpu state, padded to four cache lines so two vCPUs never share a line.
cdef struct kmem_cache_cpu:
    void **freelist          # first free object of c.page for this vCPU
    page *page               # the cpu slab (frozen)
    page *partial            # per-cpu partial slabs (frozen), chained by page.u.pc.next
    uint64_t stat[<int>NR_SLUB_STAT_ITEMS]
    char _pad[256 - 24 - 8 * <int>NR_SLUB_STAT_ITEMS]

cdef struct kmem_cache_node:
    int list_lock
    long nr_partial
    list_head partial
    long nr_slabs            # atomic_long_t in the kernel (CONFIG_SLUB_DEBUG)
    long total_objects
    # No `full` list: the kernel keeps one only for SLAB_STORE_USER caches,
    # which slubcy does not support.

cdef enum:
    MAX_MEMCG_CACHES = 4096  # kmemcg ids (memcg_caches slots) live at once
    KMEMCG_ID_WORDS = 64     # MAX_MEMCG_CACHES bits

# struct mem_cgroup, the part the slab code needs (mm/memcontrol.c).
cdef struct mem_cgroup:
    rcu_head rcu             # first: freed after a grace period
    int id                   # css id, never reused
    int kmemcg_id            # slot in the root caches' memcg_caches, -1 once offline
    mem_cgroup *parent
    int online
    int offline_pending      # rmdir queued its offline (kill_css); not yet run
    int freed                # css_free() ran: no longer dying
    int unlinked             # off the machine's list, queued for freeing
    long refcnt              # css references: see memcg.pyx
    long nr_pages            # kmem pages charged: its child caches' slab pages, or (objcg)
                             # the whole pages its obj_cgroups charged (page_counter)
    kmem_cache *caches       # its child caches, linked by kmem_cache.memcg_next
    obj_cgroup *objcg        # its own obj_cgroup while online
    obj_cgroup *objcg_list   # every obj_cgroup charging it: its own and its children's
                             # reparented ones (5.9 memcg->objcg_list), under css_set_lock
    mem_cgroup *next         # every memcg of the machine (doubly linked)
    mem_cgroup *prev
    double offline_time
    char name[48]

# struct obj_cgroup (Linux 5.9): what an object is charged to; reparented
# to the parent memcg on offline.
cdef struct obj_cgroup:
    rcu_head rcu
    mem_cgroup *memcg        # changed (reparented) under css_set_lock
    long refcnt              # see memcg.pyx: objects, its memcg's hold, the stocks caching it
    long nr_charged_bytes    # charged, not used by objects, in no stock (sub-page leftovers)
    obj_cgroup *next         # on objcg_list of its memcg (doubly linked)
    obj_cgroup *prev

# struct memcg_stock_pcp, its obj_cgroup part (mm/memcontrol.c, 5.9): per
# vCPU, touched only by the thread running that vCPU.  Bytes pre-charged to
# cached_objcg's memcg in whole pages, and the references the stock holds on
# cached_objcg: one of its own and nr_refs spare ones it hands to objects.
cdef struct memcg_stock_pcp:
    obj_cgroup *cached_objcg
    long nr_bytes
    long nr_refs
    char _pad[40]            # 64 bytes: no two vCPUs share a cache line

cdef enum:
    OBJCG_REF_BATCH = 64     # references a stock takes from (gives back to) objcg.refcnt at once

ctypedef void (*memcg_hook_t)(slub_machine *m, mem_cgroup *memcg) noexcept nogil
ctypedef void (*cache_hook_t)(slub_machine *m, kmem_cache *s) noexcept nogil

# The machine-wide part the core needs: the page allocator and the CPU counts.
cdef struct slub_machine:
    zone z
    sched sc                 # vCPUs: ownership, IPIs, grace periods, preemption points
    double ipi_timeout       # seconds a cross-vCPU request may wait (< 0: forever)
    int ipi_timeouts         # requests that timed out (flush_all incomplete)
    int nr_cpus              # vCPUs (each with a kmem_cache_cpu per cache)
    int nr_cpu_ids           # possible CPUs: only sizes slabs (calculate_order)
    int slub_min_objects
    int slub_min_order
    int slub_max_order
    uint32_t epoch           # last page.mark handed out (mark_range) by the free checks and validate
    int check_lock           # one user of page.mark at a time (Python threads may race)
    # kernel behaviours a dead-cache policy selects (memcg.pyx, policies/)
    int per_memcg_caches     # 1: a child cache per memcg (3.16 .. 5.8); 0: objcg (5.9)
    int pages_pin_memcg      # 1: each charged slab page pins its memcg (until 5.2)
    int cpu_partial_dead_check   # put_cpu_partial unfreezes when cpu_partial == 0 (4.0)
    int unregister_on_empty  # a dead cache whose last slab goes is destroyed then (if its
                             # memcg may let it go); 0: only at offline (3.16 keep)
    # Locks.  slab_lock: a spinlock for the short list updates below (taken
    # from the free path too: discard_slab -> destroy of an empty dead
    # cache), never held across a wait.  slab_mutex and cgroup_mutex: the
    # kernel's sleeping mutexes (slubcy/mutex.pyx), held across grace
    # periods and IPI rounds by the kworker's offlines (4.0-4.9
    # memcg_deactivate_kmem_caches holds slab_mutex across every per-cache
    # barrier); a waiter on a vCPU is quiescent and serves requests.
    int slab_lock
    mutex slab_mutex         # child cache creation, kmem_cache_create/destroy, 4.0-4.9 deactivation
    mutex cgroup_mutex       # memcg create, rmdir, and each offline (css_killed_work_fn)
    # the kworker (slubcy/kworker.pyx): offlines and child cache creations
    workqueue wq
    long nr_cache_creations  # child caches created by the kworker
    long creations_on_vcpu   # ... by a thread on a vCPU (must stay 0)
    long creation_tid        # thread that ran the last creation (gettid)
    long offline_errors      # offline work items whose waits timed out
    # lists (under slab_lock)
    kmem_cache *slab_caches  # every live cache, newest first
    kmem_cache *accounted_roots  # SLAB_ACCOUNT root caches (memcg_caches owners)
    mem_cgroup *memcgs       # every memcg, newest first
    mem_cgroup *root_mem_cgroup
    int next_memcg_id
    uint64_t kmemcg_ids[KMEMCG_ID_WORDS]   # allocated kmemcg ids (ida)
    int css_set_lock         # obj_cgroup.memcg, memcg.objcg_list, objcg page charges
    memcg_stock_pcp *memcg_stock     # per vCPU (nr_cpus)
    long nr_offlines
    long nr_dying
    long nr_caches_destroyed
    long nr_py_live          # slabs with a Python-API bitmap (page.py_live)
    memcg_hook_t memcg_release   # css refcount hit zero: css_free (memcg.pyx)
    cache_hook_t cache_empty     # a dead cache lost its last slab (memcg.pyx)
    # memcg_kmem_cache_wq (4.11): dead caches whose grace period is over wait
    # here to be shrunk by the workqueue (the RCU thread), off the vCPUs
    int deact_lock
    void *deact_list
    long deact_queued        # deferred shrinks queued (at call_rcu time)
    long deact_done          # ... and done by the workqueue
    int deact_batch          # barrier:batch: one flush request per vCPU for a whole batch
    # the dead-cache policy's offline (policies/): 0, or -1 if a wait timed out
    int (*policy_offline)(slub_machine *m, mem_cgroup *memcg, void *data) noexcept nogil
    void *policy_data

cdef struct kmem_cache:
    rcu_head rcu             # first: a destroyed child cache is freed after a grace period
    kmem_cache_cpu *cpu_slab
    unsigned long flags
    unsigned long min_partial
    int size                 # object + metadata
    int object_size
    int offset               # free pointer offset
    int cpu_partial          # objects kept on per-cpu partial lists
    unsigned long oo         # order << OO_SHIFT | objects
    unsigned long max
    unsigned long min
    int inuse                # offset to metadata
    int align
    int reserved
    uint32_t reciprocal_size # reciprocal_value(size): obj_to_index() without a divide
    void *ctor               # PyObject * (borrowed; the Python KmemCache keeps it alive)
    void *ctor_exc           # first exception a ctor raised (owned reference) or NULL
    long debug_errors        # corruptions found (and repaired) by debug checks
    slub_machine *m
    mem_cgroup *memcg        # owner of a child cache (memcg_params.memcg), else NULL
    kmem_cache *root         # root cache of a child cache, else NULL
    kmem_cache **memcg_caches    # root: child cache per kmemcg_id (memcg_params)
    kmem_cache *memcg_next   # next child cache of the same memcg
    kmem_cache *memcg_prev   # ... and the previous one (children_node: a list_head)
    kmem_cache *next         # slab_caches list (doubly linked: O(1) unlink)
    kmem_cache *prev
    kmem_cache *root_next    # accounted_roots list (slab_root_caches)
    int dead                 # its memcg went offline
    int no_cpu_partial       # the seed's proposal: kmem_cache_has_cpu_partial() is false
    int destroyed            # unlinked; freed after a grace period
    int accounted            # SLAB_ACCOUNT root cache with memcg_caches
    long shrink_pending      # deferred shrinks queued on it (keep it alive)
    long v_slabs             # validate() scratch
    long v_objects
    long v_used
    char name[64]
    kmem_cache_node node     # node[0]: the only node


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
    # CONFIG_SLUB_CPU_PARTIAL=y; no_cpu_partial is the seed's proposal for
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

cdef kmem_cache *kmem_cache_open(slub_machine *m, const char *name, size_t size, size_t align,
                                 unsigned long flags, void *ctor) noexcept nogil
cdef void kmem_cache_release(kmem_cache *s) noexcept nogil
cdef void kmem_cache_unlink(kmem_cache *s) noexcept nogil
cdef void __kmem_cache_unlink(kmem_cache *s) noexcept nogil
cdef int calculate_sizes(kmem_cache *s, int forced_order) noexcept nogil
cdef int kmalloc_index(size_t size) noexcept nogil

# Checks behind the Python API (slub.pyx).  Codes returned by check_objects():
cdef enum:
    OBJ_OK = 0
    OBJ_OUTSIDE_ARENA
    OBJ_NOT_SLAB
    OBJ_WRONG_CACHE
    OBJ_NOT_OBJECT
    OBJ_DUPLICATE            # twice in the same request
    OBJ_ALREADY_FREE         # on a freelist: a double free
    OBJ_CONSTRUCTING         # in a slab whose constructors are running (PG_slab_ctor)

cdef int check_objects(kmem_cache *s, void **objs, size_t n, size_t *bad) noexcept nogil
cdef int object_is_live(kmem_cache *s, void *object) noexcept nogil
cdef int check_object(kmem_cache *s, page *pg, void *object, int val) noexcept nogil
cdef void py_live_mark(kmem_cache *s, void *p) noexcept nogil
cdef void py_live_clear(kmem_cache *s, page *pg, void *p) noexcept nogil
cdef void py_live_release_all(slub_machine *m) noexcept nogil
cdef int validate_cache(kmem_cache *s, char *err, size_t errlen, long *in_use) noexcept nogil
cdef int validate_all(slub_machine *m, char *err, size_t errlen) noexcept nogil
cdef void cache_counts(kmem_cache *s, long *out) noexcept nogil
cdef void slab_usage(slub_machine *m, kmem_cache *only, long *in_use, long *slots,
                     long *pages) noexcept nogil
cdef int check_object(kmem_cache *s, page *pg, void *object, int val) noexcept nogil
cdef void css_put_many(slub_machine *m, mem_cgroup *memcg, long n) noexcept nogil
cdef void css_get_many(mem_cgroup *memcg, long n) noexcept nogil


# --- fast paths ------------------------------------------------------------

cdef inline void *slab_alloc(kmem_cache *s, int cpu) noexcept nogil:
    """slab_alloc_node(): pop c->freelist; the slow path refills it.  Returns
    NULL only when the page allocator is exhausted."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    cdef void *object = c.freelist
    if object == NULL:
        object = __slab_alloc(s, c)
        stat(c, ALLOC_SLOWPATH)
        return object
    c.freelist = <void **>get_freepointer(s, object)
    stat(c, ALLOC_FASTPATH)
    return object

cdef inline int do_slab_free(kmem_cache *s, page *pg, void *head, void *tail, int cnt,
                             int cpu) noexcept nogil:
    """do_slab_free(): push a detached list head..tail of `cnt` objects of slab
    `pg` onto c->freelist when `pg` is the cpu slab, else __slab_free().
    Returns 0 only when a debug check refused the free."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    if pg == c.page:
        set_freepointer(s, tail, c.freelist)
        c.freelist = <void **>head
        stat(c, FREE_FASTPATH)
        return 1
    return __slab_free(s, c, pg, head, tail, cnt)

cdef inline int slab_free(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil:
    """slab_free() of one object; `pg` is its slab (virt_to_head_page)."""
    return do_slab_free(s, pg, x, x, 1, cpu)
