# The core's types in one declaration file, as Linux's include/linux/mm_types.h
# (with the slab parts of slub_def.h and memcontrol.h): struct page and the
# zone, SLUB's kmem_cache / kmem_cache_cpu / kmem_cache_node, the memcg side
# (mem_cgroup, obj_cgroup, memcg_stock_pcp) and the machine (slub_machine).
# The modules' .pxd files declare their functions over these; the types of
# the lower layers the machine embeds stay with those layers, as mm_types.h
# includes <linux/rcupdate.h>, <linux/workqueue.h> and the lock headers:
# list_head (list.pxd), sched / vcpu / rcu_head (sched.pxd), mutex
# (mutex.pxd), workqueue / work_struct (kworker.pxd).
#
# Declarations, and at the end the walkers of the lists these structs are
# linked on (list_head, as <linux/list.h>: slab_caches, slab_root_caches,
# the machine's memcgs, a memcg's kmem_caches and objcg_list).
# slubcy/types.pyx exists only so that the cpdef enum below (stat_item) has
# its Python class, slubcy.types.stat_item.

from libc.stdint cimport uint64_t, uint32_t, uint16_t, uint8_t, int32_t, uintptr_t
from slubcy.list cimport list_head
from slubcy.sched cimport sched, rcu_head
from slubcy.mutex cimport mutex
from slubcy.kworker cimport workqueue

# --- struct page and the zone (mm/page_alloc.c, page_alloc.pxd) -------------

cdef enum:
    PAGE_SHIFT = 12
    PAGE_SIZE = 4096
    MAX_ORDER = 11          # orders 0..10, as the kernel's default MAX_ORDER

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
    uint32_t sl_partial     # 7.0's SL_partial: on its node's partial list (under list_lock;
                            # kept by add_partial/remove_partial in both generations, read by 7.0)
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


# --- SLUB (include/linux/slub_def.h), memcg, the machine -------------------

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
    # Linux 6.18's sheaf items, kept by 7.0 ([STAT]: its 26 are the eleven
    # above that 7.0 keeps -- ALLOC_/FREE_FASTPATH now meaning the sheaves --
    # and these fifteen); a 4.0 machine never counts them
    SHEAF_FLUSH
    SHEAF_REFILL
    SHEAF_ALLOC
    SHEAF_FREE
    BARN_GET
    BARN_GET_FAIL
    BARN_PUT
    BARN_PUT_FAIL
    FREE_RCU_SHEAF
    FREE_RCU_SHEAF_FAIL
    SHEAF_PREFILL_FAST
    SHEAF_PREFILL_SLOW
    SHEAF_PREFILL_OVERSIZE
    SHEAF_RETURN_FAST
    SHEAF_RETURN_SLOW
    NR_SLUB_STAT_ITEMS

# Per-cpu state, padded to six cache lines so two vCPUs never share a line.
# On a 7.0 machine only `stat` is used: it stands in for 7.0's s->cpu_stats
# (kmem_cache_cpu itself is gone there).
cdef struct kmem_cache_cpu:
    void **freelist          # first free object of c.page for this vCPU
    page *page               # the cpu slab (frozen)
    page *partial            # per-cpu partial slabs (frozen), chained by page.u.pc.next
    uint64_t stat[<int>NR_SLUB_STAT_ITEMS]
    char _pad[384 - 24 - 8 * <int>NR_SLUB_STAT_ITEMS]

# --- Linux 7.0's percpu sheaves and barns (mm/slub.c, sheaves.pyx) ----------
# struct slab_sheaf: a LIFO array of free objects of one cache.  The
# kernel's header unions rcu_head, barn_list and {capacity, pfmemalloc};
# here each has its own field.  `objects` is the trailing array, allocated
# with the header (the kernel's kzalloc of struct_size(sheaf, objects, n)):
# a pop is one load off the sheaf, no pointer to follow.
cdef struct kmem_cache

cdef struct slab_sheaf:
    rcu_head rcu             # call_rcu(rcu_free_sheaf) of a full rcu sheaf (first)
    list_head barn_list      # on the barn's sheaves_full / sheaves_empty
    kmem_cache *cache
    slab_sheaf *all_next     # departure: on the cache's list of every sheaf it has
                             # (see kmem_cache.sheaves_all)
    unsigned int size        # objects held
    unsigned int capacity
    int node                 # rcu sheaves: numa_mem_id() when it went to call_rcu
    int freed                # departure: "kfree()d", parked on sheaves_all (SHEAF_FREE)
    void *objects[1]         # [capacity]: the C struct hack, Cython's flexible array

# struct slub_percpu_sheaves, per cache per vCPU.  `lock` is the
# local_trylock_t: taken only by the thread running the vCPU (or a request
# run for it), never across a preemption point or an irq-enabled point.
cdef struct slub_percpu_sheaves:
    int lock
    int _pad0
    slab_sheaf *main         # never NULL while unlocked (the bootstrap sheaf without sheaves)
    slab_sheaf *spare        # empty, full, or NULL
    slab_sheaf *rcu_free     # kfree_rcu()'s sheaf being filled, or NULL
    char _pad[32]            # 64 bytes: no two vCPUs share a cache line

cdef enum:
    MAX_FULL_SHEAVES = 10    # barn limits (mm/slub.c)
    MAX_EMPTY_SHEAVES = 10

# struct node_barn (per cache per node): full and empty sheaves for any CPU.
cdef struct node_barn:
    int lock                 # spinlock_t (irqsave)
    list_head sheaves_full
    list_head sheaves_empty
    unsigned int nr_full     # read racily (data_race) against the limits
    unsigned int nr_empty

cdef struct kmem_cache_node:
    int list_lock
    long nr_partial
    list_head partial
    long nr_slabs            # atomic_long_t in the kernel (CONFIG_SLUB_DEBUG)
    long total_objects
    node_barn *barn          # 7.0: this node's barn (NULL for 4.0 and without sheaves)
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
    long nr_kmem_pages       # non-slab kmem pages charged to it (a charged kmalloc_large:
                             # __memcg_kmem_charge_page), each holding a css reference
                             # until freed (4.x-5.12); never reparented
    list_head kmem_caches    # its child caches, on their kmem_caches_node (4.13
                             # memcg->kmem_caches; 4.0 memcg->memcg_slab_caches)
    obj_cgroup *objcg        # its own obj_cgroup while online
    list_head objcg_list     # every obj_cgroup charging it, on their `list`: its own and its
                             # children's reparented ones (5.9 memcg->objcg_list), under
                             # css_set_lock
    list_head memcgs_node    # on slub_machine.memcgs (the kernel has no flat list: it walks
                             # the css tree with mem_cgroup_iter)
    double offline_time
    char name[48]

# struct obj_cgroup (Linux 5.9): what an object is charged to; reparented
# to the parent memcg on offline.
cdef struct obj_cgroup:
    rcu_head rcu
    mem_cgroup *memcg        # changed (reparented) under css_set_lock
    long refcnt              # see memcg.pyx: objects, its memcg's hold, the stocks caching it
    long nr_charged_bytes    # charged, not used by objects, in no stock (sub-page leftovers)
    list_head list           # on objcg_list of its memcg (5.9 objcg->list)

# struct memcg_stock_pcp, its obj_cgroup part (mm/memcontrol.c, 5.9): per
# vCPU, touched only by the thread running that vCPU.  Bytes pre-charged to
# cached_objcg's memcg in whole pages, and the references the stock holds on
# cached_objcg: one of its own and nr_refs spare ones it hands to objects.
cdef struct memcg_stock_pcp:
    obj_cgroup *cached_objcg
    long nr_bytes
    long nr_refs
    char _pad[40]            # 64 bytes: no two vCPUs share a cache line

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
    int slub_gen             # allocator generation: 40 (cpu slabs, the default) or 70
                             # (percpu sheaves and barns, Linux 7.0: sheaves.pyx)
    slab_sheaf bootstrap_sheaf   # 7.0: the zero-capacity `main` of caches without sheaves
    int rcu_barrier_in_shutdown  # 7.0: __kmem_cache_shutdown's rcu_barrier() (b55b423e8518);
                             # 0 only to show the race it closes (slubcy race)
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
    list_head slab_caches    # every live cache, newest first, on kmem_cache.list
    list_head slab_root_caches   # SLAB_ACCOUNT root caches (memcg_caches owners), newest
                             # first, on kmem_cache.root_caches_node (4.13 slab_root_caches)
    list_head memcgs         # every memcg, newest first, on mem_cgroup.memcgs_node
    mem_cgroup *root_mem_cgroup
    int next_memcg_id
    uint64_t kmemcg_ids[KMEMCG_ID_WORDS]   # allocated kmemcg ids (ida)
    int css_set_lock         # obj_cgroup.memcg, memcg.objcg_list, objcg page charges
    memcg_stock_pcp *memcg_stock     # per vCPU (nr_cpus)
    long nr_offlines
    long nr_dying
    long nr_caches_destroyed
    long nr_py_live          # slabs with a Python-API bitmap (page.py_live)
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
    kmem_cache_cpu *cpu_slab # nr_cpus + 1: the last counts work done on no vCPU (atomic)
    slub_percpu_sheaves *cpu_sheaves   # 7.0: per vCPU, else NULL (the generation test)
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
    list_head kmem_caches_node   # child: on its memcg's kmem_caches (4.13
                             # memcg_params.kmem_caches_node; 4.0 memcg_params->list)
    list_head list           # on slab_caches (s->list)
    list_head root_caches_node   # accounted root: on slab_root_caches (4.13
                             # memcg_params.__root_caches_node)
    int dead                 # its memcg went offline
    int use_freeptr_offset   # 6.x kmem_cache_args: the free pointer at freeptr_offset
    int freeptr_offset
    int no_cpu_partial       # the 2014 mail's proposal: kmem_cache_has_cpu_partial() is false
    int destroyed            # unlinked; freed after a grace period
    int accounted            # SLAB_ACCOUNT root cache with memcg_caches
    long shrink_pending      # deferred shrinks queued on it (keep it alive)
    unsigned int sheaf_capacity  # 7.0: objects per sheaf (calculate_sheaf_capacity), 0: none
    int sheaves_lock         # guards sheaves_all
    slab_sheaf *sheaves_all  # departure: every sheaf this cache allocated, chained by
                             # all_next.  A "freed" sheaf is parked here (freed = 1), not
                             # returned to malloc, until the cache goes: the Python API's
                             # double-free check and the usage counts may then read any
                             # vCPU's sheaves racily, bounded, without a use after free.
    list_head sheaves_parked # "freed" sheaves (on barn_list), reused by alloc_empty_sheaf
    long nr_sheaves_in_rcu   # 7.0: rcu sheaves handed to call_rcu, not yet back
    long v_slabs             # validate() scratch
    long v_objects
    long v_used
    long v_sheaf_hits        # validate() / free-check scratch: sheaf objects found per slab
    char name[64]
    kmem_cache_node node     # node[0]: the only node


# --- list walkers ---------------------------------------------------------
# list_first_entry_or_null() / the next entry or NULL at the head, one pair
# per list, so that walks keep the shape `x = first(..); while x != NULL:
# ...; x = next(.., x)`.  container_of(): the member's offset is taken on a
# local that is never read (no NULL-pointer arithmetic for UBSan to flag);
# the compiler folds it to a constant.

cdef inline kmem_cache *slab_caches_entry(list_head *pos) noexcept nogil:
    cdef kmem_cache x
    return <kmem_cache *>(<char *>pos - (<char *>&x.list - <char *>&x))

cdef inline kmem_cache *slab_caches_first(slub_machine *m) noexcept nogil:
    return NULL if m.slab_caches.next == &m.slab_caches else slab_caches_entry(m.slab_caches.next)

cdef inline kmem_cache *slab_caches_next(slub_machine *m, kmem_cache *s) noexcept nogil:
    return NULL if s.list.next == &m.slab_caches else slab_caches_entry(s.list.next)

cdef inline kmem_cache *root_caches_entry(list_head *pos) noexcept nogil:
    cdef kmem_cache x
    return <kmem_cache *>(<char *>pos - (<char *>&x.root_caches_node - <char *>&x))

cdef inline kmem_cache *slab_root_caches_first(slub_machine *m) noexcept nogil:
    if m.slab_root_caches.next == &m.slab_root_caches:
        return NULL
    return root_caches_entry(m.slab_root_caches.next)

cdef inline kmem_cache *slab_root_caches_next(slub_machine *m, kmem_cache *s) noexcept nogil:
    if s.root_caches_node.next == &m.slab_root_caches:
        return NULL
    return root_caches_entry(s.root_caches_node.next)

cdef inline kmem_cache *kmem_caches_entry(list_head *pos) noexcept nogil:
    cdef kmem_cache x
    return <kmem_cache *>(<char *>pos - (<char *>&x.kmem_caches_node - <char *>&x))

cdef inline kmem_cache *memcg_kmem_caches_first(mem_cgroup *memcg) noexcept nogil:
    if memcg.kmem_caches.next == &memcg.kmem_caches:
        return NULL
    return kmem_caches_entry(memcg.kmem_caches.next)

cdef inline kmem_cache *memcg_kmem_caches_next(mem_cgroup *memcg, kmem_cache *s) noexcept nogil:
    if s.kmem_caches_node.next == &memcg.kmem_caches:
        return NULL
    return kmem_caches_entry(s.kmem_caches_node.next)

cdef inline mem_cgroup *memcgs_entry(list_head *pos) noexcept nogil:
    cdef mem_cgroup x
    return <mem_cgroup *>(<char *>pos - (<char *>&x.memcgs_node - <char *>&x))

cdef inline mem_cgroup *memcgs_first(slub_machine *m) noexcept nogil:
    return NULL if m.memcgs.next == &m.memcgs else memcgs_entry(m.memcgs.next)

cdef inline mem_cgroup *memcgs_next(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    return NULL if memcg.memcgs_node.next == &m.memcgs else memcgs_entry(memcg.memcgs_node.next)

cdef inline obj_cgroup *objcg_list_entry(list_head *pos) noexcept nogil:
    cdef obj_cgroup x
    return <obj_cgroup *>(<char *>pos - (<char *>&x.list - <char *>&x))

cdef inline obj_cgroup *objcg_list_first(mem_cgroup *memcg) noexcept nogil:
    if memcg.objcg_list.next == &memcg.objcg_list:
        return NULL
    return objcg_list_entry(memcg.objcg_list.next)

cdef inline obj_cgroup *objcg_list_next(mem_cgroup *memcg, obj_cgroup *objcg) noexcept nogil:
    if objcg.list.next == &memcg.objcg_list:
        return NULL
    return objcg_list_entry(objcg.list.next)
