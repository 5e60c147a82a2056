# cython: language_level=3
"""Memory cgroups for the slab allocator (mm/memcontrol.c, mm/slab_common.c)
and the primitives the dead-cache policies compose.

A memcg's references (refcnt, the css refcount):
  - 1 while online (dropped at the end of offline);
  - per charged slab page, when pages pin the memcg (Linux up to 5.2:
    css_get_many in try_charge) -- memcg.pages_pin_memcg;
  - 1 per child cache when they do not (Linux 5.3 reparenting: the cache holds
    a single memcg reference, handed to the parent on offline);
  - 1 per obj_cgroup charging it (Linux 5.9: its own, and its offline
    children's), handed to the parent on offline.
An obj_cgroup's references (refcnt; percpu_ref in 5.9): 1 held by its memcg
until offline, 1 per charged object, and, for each vCPU whose stock caches it,
1 + the stock's nr_refs spare ones.  Objects take and drop their reference
from the stock of the vCPU they are allocated and freed on, so the shared
count is touched once per OBJCG_REF_BATCH objects or when a stock switches
obj_cgroup -- the per-cpu mode of percpu_ref; it can reach zero only once no
stock caches the obj_cgroup, and needs no switch to atomic mode.
When it drops to zero the memcg is freed (css_free), no longer dying, and its
(empty) caches are destroyed.

Everything here is nogil C: offline runs from Python or from a worker loop.
"""

from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.stdio cimport snprintf
from libc.string cimport strncpy

from slubcy.atomic cimport (atomic_int_read, atomic_int_set, atomic_long_add,
                            atomic_long_add_release, atomic_long_read, atomic_long_sub_return,
                            atomic_long_xchg, atomic_ptr_read, atomic_ptr_set, ptr_write_once,
                            spin_lock, spin_unlock)
from slubcy.types cimport (slab_caches_first, slab_caches_next, slab_root_caches_first,
                           slab_root_caches_next, memcgs_first, memcgs_next,
                           memcg_kmem_caches_first, memcg_kmem_caches_next, objcg_list_first,
                           objcg_list_next)
from slubcy.list cimport list_head, INIT_LIST_HEAD, list_add, list_del, list_empty, list_splice_init
from slubcy.types cimport (KMEMCG_ID_WORDS, PAGE_SHIFT, PAGE_SIZE, kmem_cache, mem_cgroup,
                           memcg_stock_pcp, obj_cgroup, page, slub_machine)
from slubcy.page_alloc cimport virt_to_head_page, page_address
from slubcy.slub cimport (OBJCG_REF_BATCH, page_obj_cgroups, set_page_obj_cgroups, obj_full_size,
                          kmem_cache_open, kmem_cache_release, __kmem_cache_unlink, css_get_many,
                          css_put_many, page_memcg_pinned, set_page_memcg_pinned, SLAB_ACCOUNT, oo_objects, fc_objects, __kmem_cache_shrink,
                          flush_all, flush_all_caches, __flush_cpu_slab, discard_empty_partial_slabs)
from slubcy.sched cimport (monotonic, synchronize_sched, kick_all_cpus_sync, call_rcu, rcu_head,
                           rcu_read_lock_ext, rcu_read_unlock_ext)
from slubcy.sched cimport smp_processor_id
from slubcy.mutex cimport mutex_lock, mutex_unlock, mutex_is_locked, mutex_trylock
from slubcy.kworker cimport work_struct, queue_work, current_tid


# ---------------------------------------------------------------------------
# kmemcg ids (memcg_alloc_cache_id / memcg_free_cache_id): an ida

cdef int memcg_alloc_cache_id(slub_machine *m) noexcept nogil:
    cdef int i, b
    for i in range(KMEMCG_ID_WORDS):
        if m.kmemcg_ids[i] != ~(<uint64_t>0):
            for b in range(64):
                if not (m.kmemcg_ids[i] >> b) & 1:
                    m.kmemcg_ids[i] |= <uint64_t>1 << b
                    return i * 64 + b
    return -1


cdef void memcg_free_cache_id(slub_machine *m, int id) noexcept nogil:
    m.kmemcg_ids[id >> 6] &= ~(<uint64_t>1 << (id & 63))


# ---------------------------------------------------------------------------
# Creating memcgs and their caches

cdef mem_cgroup *mem_cgroup_create(slub_machine *m, const char *name, mem_cgroup *parent,
                                  double *waited=NULL) noexcept nogil:
    """cgroup_mkdir -> mem_cgroup_css_alloc + css_online, under cgroup_mutex
    (a sleeping mutex: it waits behind an offline the kworker is running): a
    child of `parent` (root if NULL) with a kmemcg id and, for objcg
    policies, its obj_cgroup.  NULL when no kmemcg id is left.  With
    `waited`, the seconds spent waiting for cgroup_mutex are stored there."""
    cdef mem_cgroup *memcg = <mem_cgroup *>calloc(1, sizeof(mem_cgroup))
    cdef obj_cgroup *objcg
    cdef double w
    if memcg == NULL:
        return NULL
    strncpy(memcg.name, name, sizeof(memcg.name) - 1)
    INIT_LIST_HEAD(&memcg.kmem_caches)
    INIT_LIST_HEAD(&memcg.objcg_list)
    memcg.parent = parent if parent != NULL else m.root_mem_cgroup
    memcg.refcnt = 1
    memcg.online = 1
    w = mutex_lock(&m.sc, &m.cgroup_mutex)     # cgroup_kn_lock_live()
    if waited != NULL:
        waited[0] = w
    spin_lock(&m.slab_lock)
    memcg.kmemcg_id = memcg_alloc_cache_id(m)
    if memcg.kmemcg_id < 0:
        spin_unlock(&m.slab_lock)
        mutex_unlock(&m.cgroup_mutex)
        free(memcg)
        return NULL
    css_get_many(memcg.parent, 1)       # a child pins its parent
    m.next_memcg_id += 1
    memcg.id = m.next_memcg_id
    list_add(&memcg.memcgs_node, &m.memcgs)
    if not m.per_memcg_caches:
        # memcg_online_kmem(): obj_cgroup_alloc
        objcg = <obj_cgroup *>calloc(1, sizeof(obj_cgroup))
        if objcg != NULL:
            objcg.memcg = memcg
            objcg.refcnt = 1            # held by its memcg
            spin_lock(&m.css_set_lock)
            objcg_list_add(objcg, memcg)
            spin_unlock(&m.css_set_lock)
            memcg.objcg = objcg
            memcg.refcnt += 1           # the objcg's reference on the memcg
    spin_unlock(&m.slab_lock)
    mutex_unlock(&m.cgroup_mutex)
    return memcg


cdef mem_cgroup *root_mem_cgroup_create(slub_machine *m) noexcept nogil:
    cdef mem_cgroup *root = <mem_cgroup *>calloc(1, sizeof(mem_cgroup))
    if root == NULL:
        return NULL
    strncpy(root.name, b"/", sizeof(root.name) - 1)
    root.online = 1
    root.refcnt = 1
    root.kmemcg_id = -1             # the root memcg is not accounted
    m.root_mem_cgroup = root
    INIT_LIST_HEAD(&root.kmem_caches)
    INIT_LIST_HEAD(&root.objcg_list)
    list_add(&root.memcgs_node, &m.memcgs)
    return root


cdef void utf8_trim(char *s, size_t n) noexcept nogil:
    """Cut the `n`-byte string `s` before a UTF-8 character it ends inside
    (snprintf truncates at a byte, not a character)."""
    cdef size_t start = n, want
    cdef unsigned char lead
    while start > 0 and ((<unsigned char>s[start - 1]) & 0xc0) == 0x80:
        start -= 1
    if start == 0:
        return
    start -= 1
    lead = <unsigned char>s[start]
    want = (1 if lead < 0x80 else 2 if (lead & 0xe0) == 0xc0 else
            3 if (lead & 0xf0) == 0xe0 else 4)
    if n - start < want:
        s[start] = 0


cdef kmem_cache *memcg_create_kmem_cache(mem_cgroup *memcg, kmem_cache *root) noexcept nogil:
    """memcg_create_kmem_cache(): the child cache "root(id:name)"; called with
    slab_mutex and slab_lock held.  NULL when memory is short.  Departure:
    the kernel's kasprintf()'ed name has no length limit; ours is cut to 63
    bytes, on a UTF-8 character boundary."""
    cdef slub_machine *m = root.m
    cdef char name[64]
    cdef kmem_cache *s
    cdef int n = snprintf(name, sizeof(name), "%s(%d:%s)", root.name, memcg.kmemcg_id, memcg.name)
    if n >= <int>sizeof(name):
        utf8_trim(name, sizeof(name) - 1)
    spin_unlock(&m.slab_lock)         # kmem_cache_open takes it to link the cache
    s = kmem_cache_open(m, name, root.object_size, root.align, root.flags & ~(<unsigned long>SLAB_ACCOUNT),
                        root.ctor, root.freeptr_offset if root.use_freeptr_offset else -1, 0)
    spin_lock(&m.slab_lock)
    if s == NULL:
        return NULL
    s.root = root
    s.memcg = memcg
    list_add(&s.kmem_caches_node, &memcg.kmem_caches)
    if not m.pages_pin_memcg:
        css_get_many(memcg, 1)          # Linux 5.3: the cache holds its memcg
    atomic_ptr_set(<void **>&root.memcg_caches[memcg.kmemcg_id], s)
    return s


cdef struct memcg_kmem_cache_create_work:
    work_struct work            # first: the work item is the struct
    mem_cgroup *memcg           # (key0)
    kmem_cache *root            # (key1)


cdef void memcg_kmem_cache_create_func(work_struct *w) noexcept nogil:
    """memcg_kmem_cache_create_func() -> memcg_create_kmem_cache() (4.0-5.8
    mm/memcontrol.c, mm/slab_common.c), on the kworker: under slab_mutex
    (get_online_cpus/get_online_mems too in the kernel; no CPU hotplug
    here), create the memcg's child of the root cache unless it exists or
    the memcg went offline meanwhile; then drop the memcg reference the
    scheduling took."""
    cdef memcg_kmem_cache_create_work *cw = <memcg_kmem_cache_create_work *>w
    cdef mem_cgroup *memcg = cw.memcg
    cdef kmem_cache *root = cw.root
    cdef slub_machine *m = root.m
    if smp_processor_id() >= 0:
        atomic_long_add(&m.creations_on_vcpu, 1)
    m.creation_tid = current_tid()
    mutex_lock(&m.sc, &m.slab_mutex)
    spin_lock(&m.slab_lock)
    if atomic_int_read(&memcg.online) and memcg.kmemcg_id >= 0 \
            and root.memcg_caches[memcg.kmemcg_id] == NULL:
        if memcg_create_kmem_cache(memcg, root) != NULL:
            m.nr_cache_creations += 1
    spin_unlock(&m.slab_lock)
    mutex_unlock(&m.slab_mutex)
    css_put_many(m, memcg, 1)
    free(cw)


cdef void memcg_kmem_cache_create_cancel(work_struct *w) noexcept nogil:
    """The machine is going away: the creation never runs."""
    free(w)


cdef void memcg_schedule_kmem_cache_create(mem_cgroup *memcg, kmem_cache *root) noexcept nogil:
    """memcg_schedule_kmem_cache_create() (4.0-5.8): queue the creation of
    `memcg`'s child of `root` on the kworker, holding a memcg reference
    (css_get) until it ran.  One pending item per (memcg, root cache): the
    allocations that miss meanwhile find it queued."""
    cdef slub_machine *m = root.m
    cdef memcg_kmem_cache_create_work *cw = <memcg_kmem_cache_create_work *>malloc(
        sizeof(memcg_kmem_cache_create_work))
    if cw == NULL:
        return                          # the next allocation tries again
    cw.work.func = memcg_kmem_cache_create_func
    cw.work.cancel = memcg_kmem_cache_create_cancel
    cw.work.key0 = <void *>memcg
    cw.work.key1 = <void *>root
    cw.memcg = memcg
    cw.root = root
    css_get_many(memcg, 1)
    if queue_work(&m.wq, &cw.work, True) != 0:
        css_put_many(m, memcg, 1)       # pending already (or the queue is stopped)
        free(cw)


cdef kmem_cache *memcg_kmem_get_cache(kmem_cache *s, mem_cgroup *memcg) noexcept nogil:
    """memcg_kmem_get_cache() (4.0-5.8): the cache an allocation by `memcg`
    comes from: its child of root cache `s` if it exists.  If not, its
    creation is queued on the kworker (memcg_schedule_kmem_cache_create)
    and this allocation is served from the root cache, uncharged, as the
    kernel does.  The root cache itself for unaccounted caches, the root
    memcg, an offline memcg, and objcg policies (one set of caches for all)."""
    cdef kmem_cache *c
    cdef int id
    if memcg == NULL or not s.accounted or not s.m.per_memcg_caches:
        return s
    id = memcg.kmemcg_id
    if id < 0 or not atomic_int_read(&memcg.online):
        return s
    c = <kmem_cache *>atomic_ptr_read(<void **>&s.memcg_caches[id])
    if c != NULL:
        return c
    memcg_schedule_kmem_cache_create(memcg, s)
    return s


# ---------------------------------------------------------------------------
# obj_cgroup charging (Linux 5.9: mm/memcontrol.c obj_cgroup_charge and its
# per-cpu byte stock, mm/slab.h memcg_slab_post_alloc_hook / free_hook)

cdef inline void objcg_list_add(obj_cgroup *objcg, mem_cgroup *memcg) noexcept nogil:
    """On memcg's objcg_list (css_set_lock held)."""
    list_add(&objcg.list, &memcg.objcg_list)


cdef inline void objcg_list_del(obj_cgroup *objcg, mem_cgroup *memcg) noexcept nogil:
    """Off memcg's objcg_list (css_set_lock held)."""
    list_del(&objcg.list)


cdef void free_objcg_rcu(rcu_head *head) noexcept nogil:
    free(head)          # rcu is the first member


cdef void obj_cgroup_release(slub_machine *m, obj_cgroup *objcg) noexcept nogil:
    """obj_cgroup_release() (5.9): the last reference went.  No object and
    no stock holds bytes of it, so what it still has pre-charged is whole
    pages: uncharged from its memcg, which loses the objcg's reference; the
    struct goes after a grace period."""
    cdef mem_cgroup *memcg
    cdef long nr_pages = atomic_long_xchg(&objcg.nr_charged_bytes, 0) >> PAGE_SHIFT
    spin_lock(&m.css_set_lock)
    memcg = objcg.memcg
    if nr_pages:
        atomic_long_add(&memcg.nr_pages, -nr_pages)     # __memcg_kmem_uncharge
    objcg_list_del(objcg, memcg)
    spin_unlock(&m.css_set_lock)
    call_rcu(&m.sc, &objcg.rcu, free_objcg_rcu)
    css_put_many(m, memcg, 1)


cdef inline void obj_cgroup_put_many(slub_machine *m, obj_cgroup *objcg, long n) noexcept nogil:
    if atomic_long_sub_return(&objcg.refcnt, n) == 0:
        obj_cgroup_release(m, objcg)


cdef inline void obj_cgroup_get_pcpu(slub_machine *m, obj_cgroup *objcg, int cpu) noexcept nogil:
    """obj_cgroup_get() for an object allocated on vCPU `cpu`: a spare
    reference of that vCPU's stock when it caches objcg (taking a batch from
    the shared count when it has none left), else one from the shared count."""
    cdef memcg_stock_pcp *stock = &m.memcg_stock[cpu]
    if stock.cached_objcg == objcg:
        if stock.nr_refs == 0:
            atomic_long_add(&objcg.refcnt, OBJCG_REF_BATCH)
            stock.nr_refs = OBJCG_REF_BATCH
        stock.nr_refs -= 1
    else:
        atomic_long_add(&objcg.refcnt, 1)


cdef inline void obj_cgroup_put_pcpu(slub_machine *m, obj_cgroup *objcg, int cpu) noexcept nogil:
    """obj_cgroup_put() for an object freed on vCPU `cpu`: into that vCPU's
    stock when it caches objcg (a batch goes back to the shared count when it
    holds too many; the stock's own reference keeps the count above zero)."""
    cdef memcg_stock_pcp *stock = &m.memcg_stock[cpu]
    if stock.cached_objcg == objcg:
        stock.nr_refs += 1
        if stock.nr_refs > 2 * OBJCG_REF_BATCH:
            stock.nr_refs -= OBJCG_REF_BATCH
            atomic_long_add(&objcg.refcnt, -OBJCG_REF_BATCH)
    else:
        obj_cgroup_put_many(m, objcg, 1)


cdef inline void obj_cgroup_memcg_charge(slub_machine *m, obj_cgroup *objcg, long nr_pages) noexcept nogil:
    """obj_cgroup_memcg() + __memcg_kmem_charge / __memcg_kmem_uncharge (5.9):
    nr_pages on the page counter of objcg's memcg.  Under css_set_lock, so
    that memcg_reparent_objcg moves a memcg's charge exactly (the kernel's
    page counters are hierarchical and need not: the parent's already holds
    its children's charges; here each memcg counts its own)."""
    spin_lock(&m.css_set_lock)
    atomic_long_add(&objcg.memcg.nr_pages, nr_pages)
    spin_unlock(&m.css_set_lock)


cdef void drain_obj_stock(slub_machine *m, memcg_stock_pcp *stock) noexcept nogil:
    """drain_obj_stock() (5.9): whole pages of the stock's bytes are
    uncharged from the cached objcg's memcg (the parent, once reparented),
    the sub-page rest goes to objcg.nr_charged_bytes; the stock's references
    go back."""
    cdef obj_cgroup *old = stock.cached_objcg
    cdef long nr_pages, refs
    if old == NULL:
        return
    if stock.nr_bytes:
        nr_pages = stock.nr_bytes >> PAGE_SHIFT
        if nr_pages:
            obj_cgroup_memcg_charge(m, old, -nr_pages)
        atomic_long_add(&old.nr_charged_bytes, stock.nr_bytes & (PAGE_SIZE - 1))
        stock.nr_bytes = 0
    refs = 1 + stock.nr_refs
    stock.nr_refs = 0
    stock.cached_objcg = NULL
    obj_cgroup_put_many(m, old, refs)


cdef bint consume_obj_stock(slub_machine *m, obj_cgroup *objcg, int cpu, long nr_bytes) noexcept nogil:
    """consume_obj_stock() (5.9): take nr_bytes pre-charged by this vCPU's
    stock, if it caches objcg and has them."""
    cdef memcg_stock_pcp *stock = &m.memcg_stock[cpu]
    if stock.cached_objcg == objcg and stock.nr_bytes >= nr_bytes:
        stock.nr_bytes -= nr_bytes
        return True
    return False


cdef void refill_obj_stock(slub_machine *m, obj_cgroup *objcg, int cpu, long nr_bytes) noexcept nogil:
    """refill_obj_stock() (5.9): give nr_bytes charged to objcg back to this
    vCPU's stock, switching it to objcg first (draining the old one; the
    stock takes a reference and objcg's leftover bytes); more than a page
    in stock is drained."""
    cdef memcg_stock_pcp *stock = &m.memcg_stock[cpu]
    if stock.cached_objcg != objcg:
        drain_obj_stock(m, stock)
        atomic_long_add(&objcg.refcnt, 1)       # obj_cgroup_get: the stock's own
        stock.cached_objcg = objcg
        stock.nr_bytes = atomic_long_xchg(&objcg.nr_charged_bytes, 0)
    stock.nr_bytes += nr_bytes
    if stock.nr_bytes > PAGE_SIZE:
        drain_obj_stock(m, stock)


cdef void obj_cgroup_charge(slub_machine *m, obj_cgroup *objcg, int cpu, long size) noexcept nogil:
    """obj_cgroup_charge() (5.9): from the stock, else whole pages on the
    memcg's page counter, the rest of the last page into the stock.  (No
    memory limit: it always succeeds.)"""
    cdef long nr_pages, nr_bytes
    if consume_obj_stock(m, objcg, cpu, size):
        return
    nr_pages = size >> PAGE_SHIFT
    nr_bytes = size & (PAGE_SIZE - 1)
    if nr_bytes:
        nr_pages += 1
    obj_cgroup_memcg_charge(m, objcg, nr_pages)
    if nr_bytes:
        refill_obj_stock(m, objcg, cpu, PAGE_SIZE - nr_bytes)


cdef inline void obj_cgroup_uncharge(slub_machine *m, obj_cgroup *objcg, int cpu, long size) noexcept nogil:
    """obj_cgroup_uncharge() (5.9)."""
    refill_obj_stock(m, objcg, cpu, size)


cdef obj_cgroup **memcg_alloc_page_obj_cgroups(kmem_cache *s, page *pg) noexcept nogil:
    """memcg_alloc_page_obj_cgroups() (5.9): the slab's vector of obj_cgroup
    pointers, one per object, made on its first accounted object and
    installed tagged (bit 0) in page->obj_cgroups; freed with the slab
    (memcg_free_page_obj_cgroups).  Deliberate departure: calloc, not
    kcalloc from a kmalloc cache of the machine -- freeing it into a
    kmalloc cache needs a vCPU, and a slab is discarded also where none is
    run (the workqueue's shrinks, cache destruction)."""
    cdef obj_cgroup **vec = page_obj_cgroups(pg)
    if vec != NULL:
        return vec
    vec = <obj_cgroup **>calloc(fc_objects(pg.fc), sizeof(obj_cgroup *))
    if vec == NULL:
        return NULL
    if not set_page_obj_cgroups(pg, vec):
        free(vec)                       # another vCPU's came first
    return page_obj_cgroups(pg)


cdef void memcg_slab_post_alloc_hook(kmem_cache *s, mem_cgroup *memcg, void *object,
                                     int cpu) noexcept nogil:
    """memcg_slab_pre_alloc_hook + memcg_slab_post_alloc_hook (mm/slab.h,
    5.9), after the allocation on vCPU `cpu`: charge obj_full_size(s) to the
    memcg's obj_cgroup and record it in the slab's vector.  Without a
    vector (out of memory) the object stays uncharged, as in the kernel."""
    cdef slub_machine *m = s.m
    cdef page *pg
    cdef obj_cgroup *objcg
    cdef obj_cgroup **vec
    cdef size_t idx
    if memcg == NULL or memcg.objcg == NULL or not s.accounted or object == NULL:
        return
    objcg = memcg.objcg
    obj_cgroup_charge(m, objcg, cpu, obj_full_size(s))
    pg = virt_to_head_page(&m.z, object)
    vec = memcg_alloc_page_obj_cgroups(s, pg)
    if vec == NULL:
        obj_cgroup_uncharge(m, objcg, cpu, obj_full_size(s))
        return
    idx = <size_t>(<char *>object - page_address(&m.z, pg)) // s.size
    obj_cgroup_get_pcpu(m, objcg, cpu)
    vec[idx] = objcg


cdef void memcg_slab_free_hook(kmem_cache *s, page *pg, void *object, int cpu) noexcept nogil:
    """memcg_slab_free_hook() (mm/slab.h, 5.9), before the free on vCPU
    `cpu`: uncharge the object from the obj_cgroup its vector records (its
    bytes go to that vCPU's stock) and drop its reference."""
    cdef obj_cgroup **vec = page_obj_cgroups(pg)
    cdef obj_cgroup *objcg
    cdef size_t idx
    if vec == NULL:
        return
    idx = <size_t>(<char *>object - page_address(&s.m.z, pg)) // s.size
    objcg = vec[idx]
    if objcg == NULL:
        return
    vec[idx] = NULL
    obj_cgroup_uncharge(s.m, objcg, cpu, obj_full_size(s))
    obj_cgroup_put_pcpu(s.m, objcg, cpu)


cdef void memcg_kmem_charge_page(page *pg, int order, mem_cgroup *memcg) noexcept nogil:
    """__memcg_kmem_charge_page() (4.x-5.12, from kmalloc_order with
    __GFP_ACCOUNT): charge a non-slab page block to `memcg` and point
    page->mem_cgroup at it.  The page holds one css reference (5.8's
    "decouple reference counting from page accounting"; before it, one per
    page): a dying memcg stays until its charged pages are freed.  These
    charges are not reparented (5.13 moved them to obj_cgroups)."""
    css_get_many(memcg, 1)
    atomic_long_add(&memcg.nr_kmem_pages, <long>1 << order)
    set_page_memcg_pinned(pg, memcg)


cdef void memcg_kmem_uncharge_page(slub_machine *m, page *pg, int order) noexcept nogil:
    """__memcg_kmem_uncharge_page(): the page block goes back to the page
    allocator; its charge and its css reference go (the last one may free
    an offline memcg).  Nothing to do for an uncharged block."""
    cdef mem_cgroup *memcg = page_memcg_pinned(pg)
    if memcg == NULL:
        return
    set_page_memcg_pinned(pg, NULL)
    atomic_long_add(&memcg.nr_kmem_pages, -(<long>1 << order))
    css_put_many(m, memcg, 1)


cdef void memcg_objcg_counts(slub_machine *m, mem_cgroup *memcg, objcg_counts *out) noexcept nogil:
    """Pages charged to memcg, and the bytes of them pre-charged and not
    used by objects: in the vCPUs' stocks caching its obj_cgroups and left
    over in those obj_cgroups.  Exact while no worker runs."""
    cdef obj_cgroup *objcg
    cdef long pre = 0
    cdef int cpu
    spin_lock(&m.css_set_lock)
    out.nr_pages = atomic_long_read(&memcg.nr_pages)
    objcg = objcg_list_first(memcg)
    while objcg != NULL:
        pre += atomic_long_read(&objcg.nr_charged_bytes)
        for cpu in range(m.nr_cpus):
            if m.memcg_stock[cpu].cached_objcg == objcg:
                pre += m.memcg_stock[cpu].nr_bytes
        objcg = objcg_list_next(memcg, objcg)
    spin_unlock(&m.css_set_lock)
    out.precharged = pre


cdef void memcg_free_objcgs(slub_machine *m) noexcept nogil:
    """Machine teardown: free every obj_cgroup still on a memcg's list."""
    cdef mem_cgroup *memcg = memcgs_first(m)
    cdef obj_cgroup *objcg
    cdef obj_cgroup *nxt
    while memcg != NULL:
        objcg = objcg_list_first(memcg)
        while objcg != NULL:
            nxt = objcg_list_next(memcg, objcg)
            free(objcg)
            objcg = nxt
        INIT_LIST_HEAD(&memcg.objcg_list)
        memcg.objcg = NULL
        memcg = memcgs_next(m, memcg)
    free(m.memcg_stock)
    m.memcg_stock = NULL


# ---------------------------------------------------------------------------
# Freeing memcgs, destroying dead caches

cdef void free_cache_rcu(rcu_head *head) noexcept nogil:
    kmem_cache_release(<kmem_cache *>head)      # rcu is the first member


cdef void free_memcg_rcu(rcu_head *head) noexcept nogil:
    free(head)


cdef void memcg_unlink_free(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """A freed memcg nothing refers to any more: off the list, freed after a
    grace period.  slab_lock held.  The caller must not touch the memcg
    afterwards unless a grace period waits for it (it is on a vCPU, or in a
    read-side section): the free may run at once."""
    if memcg.unlinked:
        return
    memcg.unlinked = 1
    list_del(&memcg.memcgs_node)
    call_rcu(&m.sc, &memcg.rcu, free_memcg_rcu)


cdef bint memcg_try_destroy_cache(slub_machine *m, kmem_cache *s) noexcept nogil:
    """Destroy a dead child cache if it may go (slab_lock held): empty, no
    deferred shrink still to run on it, and -- when pages pin the memcg --
    its memcg freed.  Off its memcg's list and the machine's, freed after a
    grace period (a racing free may still be reading it).  Returns True if
    its memcg reference (5.3 model) is to be dropped by the caller."""
    cdef mem_cgroup *memcg = s.memcg
    if s.destroyed or not s.dead or atomic_long_read(&s.node.nr_slabs) != 0 \
            or atomic_long_read(&s.shrink_pending) != 0:
        return False
    if m.pages_pin_memcg and not memcg.freed:
        return False
    __memcg_destroy_cache(m, s)
    return not m.pages_pin_memcg


cdef void __memcg_destroy_cache(slub_machine *m, kmem_cache *s) noexcept nogil:
    """Off its memcg's list and the machine's, freed after a grace period
    (slab_lock held; the cache holds no slab)."""
    cdef mem_cgroup *memcg = s.memcg
    # list_del(&s->memcg_params.kmem_caches_node): O(1), a reparented
    # parent's list holds every dead cache of its children
    list_del(&s.kmem_caches_node)
    s.destroyed = 1
    m.nr_caches_destroyed += 1
    __kmem_cache_unlink(s)
    call_rcu(&m.sc, &s.rcu, free_cache_rcu)
    if memcg.freed and list_empty(&memcg.kmem_caches):
        memcg_unlink_free(m, memcg)


cdef bint memcg_unregister_cache(slub_machine *m, kmem_cache *s) noexcept nogil:
    """Linux 3.16 memcg_unregister_all_caches(), for one cache after its
    kmem_cache_shrink(): `if (atomic_read(&cachep->memcg_params->nr_pages)
    == 0) memcg_unregister_cache(cachep)` -- a dead cache that holds no slab
    now is destroyed now, its memcg still dying or not.  True if it was."""
    cdef bint gone = False
    spin_lock(&m.slab_lock)
    if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) == 0 \
            and atomic_long_read(&s.shrink_pending) == 0:
        __memcg_destroy_cache(m, s)
        gone = True
    spin_unlock(&m.slab_lock)
    return gone


cdef void memcg_css_free(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """The last reference went: css_free -> memcg_destroy_kmem_caches.  Its
    caches are empty by now (the kernel BUG()s otherwise; here a cache with
    a deferred shrink still queued goes when that has run)."""
    cdef kmem_cache *s
    cdef kmem_cache *nxt
    cdef mem_cgroup *parent = memcg.parent
    spin_lock(&m.slab_lock)
    if memcg.freed or memcg.online:
        spin_unlock(&m.slab_lock)
        return
    memcg.freed = 1
    m.nr_dying -= 1
    # The memcg's call_rcu must be our last access to it: the caller may be
    # on no vCPU and in no read-side section (the kworker's final css_put in
    # css_killed_work_fn), so no grace period waits for it, and the memcg
    # may be freed as soon as its free is queued.  Destroying its last cache
    # in the loop would queue it (__memcg_destroy_cache) while the loop and
    # the check below still read it: hold that off (`unlinked` is only read
    # and written under slab_lock, which we hold) and unlink once, last.
    memcg.unlinked = 1
    s = memcg_kmem_caches_first(memcg)
    while s != NULL:
        nxt = memcg_kmem_caches_next(memcg, s)
        memcg_try_destroy_cache(m, s)
        s = nxt
    memcg.unlinked = 0
    if list_empty(&memcg.kmem_caches):
        memcg_unlink_free(m, memcg)     # queues the free: memcg is not touched after
    spin_unlock(&m.slab_lock)
    if parent != NULL:
        css_put_many(m, parent, 1)


cdef void memcg_cache_empty(slub_machine *m, kmem_cache *s) noexcept nogil:
    """A dead cache lost its last slab (or its deferred shrink ran): destroy
    it if it may go; in the 5.3 model drop its memcg reference.  Not when
    the policy unregisters dead caches only at offline (3.16: the last-page
    trigger of 3.8-3.15, memcg_release_pages(), was gone)."""
    cdef mem_cgroup *memcg
    cdef bint put
    if s.root == NULL or not m.unregister_on_empty:
        return
    spin_lock(&m.slab_lock)
    memcg = s.memcg
    put = memcg_try_destroy_cache(m, s)
    spin_unlock(&m.slab_lock)
    if put:
        css_put_many(m, memcg, 1)


cdef struct deferred_shrink:
    rcu_head head               # first: container_of is a cast
    kmem_cache *s
    deferred_shrink *next       # on m.deact_list once the grace period is over


cdef void kmemcg_deactivate_rcufn(rcu_head *head) noexcept nogil:
    """After the grace period (kmemcg_deactivate_rcufn, 4.11): hand the dead
    cache to the workqueue; no shrinking in the callback, which may run on a
    vCPU between two of its operations."""
    cdef deferred_shrink *d = <deferred_shrink *>head
    cdef slub_machine *m = d.s.m
    spin_lock(&m.deact_lock)
    d.next = <deferred_shrink *>m.deact_list
    m.deact_list = d
    spin_unlock(&m.deact_lock)


cdef long kmemcg_deactivate_workfn(slub_machine *m) noexcept nogil:
    """memcg_kmem_cache_wq's work (4.11 kmemcg_deactivate_workfn ->
    kmemcg_cache_deact_after_rcu -> __kmem_cache_shrink): one work item per
    dead cache handed over so far, oldest first, each shrinking its cache
    with its own flush_all(); each cache was kept alive for this by
    shrink_pending and may go now.  With m.deact_batch (the `barrier:batch`
    option, a departure) the flushes of the whole batch share one
    cross-vCPU request per vCPU (flush_all_caches) first.  A work item whose
    flush timed out (a vCPU did not answer) is requeued with the rest for
    the next pass.  Returns how many ran."""
    cdef deferred_shrink *d
    cdef deferred_shrink *nxt
    cdef deferred_shrink *batch = NULL
    cdef kmem_cache **caches
    cdef long i, n = 0, done = 0
    cdef int before
    # 4.11 kmemcg_deactivate_workfn shrinks under slab_mutex: nothing that
    # holds it (validate(), an offline, a cache creation) sees a shrink half
    # done.  Trylock, as cache_reap: the workqueue never waits here for an
    # offline that may wait for it; the work stays queued for the next pass.
    if not mutex_trylock(&m.slab_mutex):
        return 0
    spin_lock(&m.deact_lock)
    d = <deferred_shrink *>m.deact_list
    m.deact_list = NULL
    spin_unlock(&m.deact_lock)
    while d != NULL:                    # reverse: oldest first
        nxt = d.next
        d.next = batch
        batch = d
        d = nxt
        n += 1
    if n == 0:
        mutex_unlock(&m.slab_mutex)
        return 0
    if m.deact_batch:
        caches = <kmem_cache **>malloc(n * sizeof(kmem_cache *))
        if caches != NULL:
            d = batch
            for i in range(n):
                caches[i] = d.s
                d = d.next
            before = flush_all_caches(m, caches, <int>n)
            free(caches)
            if before != 0:
                kmemcg_deactivate_requeue(m, batch)
                mutex_unlock(&m.slab_mutex)
                return 0
    while batch != NULL:
        nxt = batch.next
        before = m.ipi_timeouts
        __kmem_cache_shrink(batch.s, False)
        if m.ipi_timeouts != before:
            # a vCPU did not answer in time: retry this one and the rest later
            kmemcg_deactivate_requeue(m, batch)
            break
        kmemcg_shrink_done(m, batch.s)
        free(batch)
        done += 1
        batch = nxt
    mutex_unlock(&m.slab_mutex)
    # release: a waiter on the count (rcu_barrier) sees the shrinks done
    atomic_long_add_release(&m.deact_done, done)
    return done


cdef void kmemcg_deactivate_requeue(slub_machine *m, deferred_shrink *batch) noexcept nogil:
    """Put work items back on the workqueue, for its next pass."""
    cdef deferred_shrink *nxt
    while batch != NULL:
        nxt = batch.next
        spin_lock(&m.deact_lock)
        batch.next = <deferred_shrink *>m.deact_list
        m.deact_list = batch
        spin_unlock(&m.deact_lock)
        batch = nxt


cdef void kmemcg_shrink_done(slub_machine *m, kmem_cache *s) noexcept nogil:
    """The deferred shrink of `s` is over: it no longer keeps `s` alive.  The
    count drops under slab_lock, with the destroy attempt, so no other path
    can destroy (and an RCU batch free) `s` between the two: this thread is
    on no vCPU and holds no read-side section."""
    cdef mem_cgroup *memcg
    cdef bint put
    spin_lock(&m.slab_lock)
    atomic_long_add(&s.shrink_pending, -1)
    memcg = s.memcg
    put = memcg_try_destroy_cache(m, s)
    spin_unlock(&m.slab_lock)
    if put:
        css_put_many(m, memcg, 1)


cdef void kmemcg_deactivate_drop(slub_machine *m) noexcept nogil:
    """Machine teardown: forget the queued deferred shrinks."""
    cdef deferred_shrink *d = <deferred_shrink *>m.deact_list
    cdef deferred_shrink *nxt
    m.deact_list = NULL
    while d != NULL:
        nxt = d.next
        free(d)
        d = nxt


cdef int kmem_cache_shrink_after_gp(kmem_cache *s) noexcept nogil:
    """Shrink `s` after an RCU grace period, asynchronously (Linux 4.11:
    call_rcu_sched -> kmemcg_deactivate_rcufn -> queue_work ->
    kmemcg_deactivate_workfn -> __kmem_cache_shrink).  Callbacks queued
    together share one grace period, and the shrinks they queue one
    workqueue pass.  -1 if out of memory (the caller then waits for a grace
    period itself)."""
    cdef deferred_shrink *d = <deferred_shrink *>malloc(sizeof(deferred_shrink))
    if d == NULL:
        return -1
    d.s = s
    # under slab_lock: a reparented dead cache on the list being offlined
    # may have been destroyed since the caller listed it (it then needs none)
    spin_lock(&s.m.slab_lock)
    if s.destroyed:
        spin_unlock(&s.m.slab_lock)
        free(d)
        return 0
    atomic_long_add(&s.shrink_pending, 1)
    spin_unlock(&s.m.slab_lock)
    atomic_long_add(&s.m.deact_queued, 1)
    call_rcu(&s.m.sc, &d.head, kmemcg_deactivate_rcufn)
    return 0


cdef int memcg_init(slub_machine *m) noexcept nogil:
    """The root memcg and the per-vCPU stocks (memcg_stock): -1 if out of
    memory."""
    m.memcg_stock = <memcg_stock_pcp *>calloc(m.nr_cpus, sizeof(memcg_stock_pcp))
    if m.memcg_stock == NULL or root_mem_cgroup_create(m) == NULL:
        return -1
    return 0


# ---------------------------------------------------------------------------
# Offline primitives for the policies (policies/*.pyx compose these)

cdef void memcg_offline_begin(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """css_offline, the part every kernel does: no new allocations (the
    kmemcg id's slots in the root caches are cleared and the id freed, as
    memcg_deactivate_kmem / memcg_free_cache_id do), the memcg is dying, and
    its caches are dead."""
    cdef kmem_cache *root
    cdef kmem_cache *s
    spin_lock(&m.slab_lock)
    atomic_int_set(&memcg.online, 0)
    memcg.offline_time = monotonic()
    if memcg.kmemcg_id >= 0:
        root = slab_root_caches_first(m)
        while root != NULL:
            atomic_ptr_set(<void **>&root.memcg_caches[memcg.kmemcg_id], NULL)
            root = slab_root_caches_next(m, root)
        memcg_free_cache_id(m, memcg.kmemcg_id)
        memcg.kmemcg_id = -1
    s = memcg_kmem_caches_first(memcg)
    while s != NULL:
        s.dead = 1
        s = memcg_kmem_caches_next(memcg, s)
    m.nr_offlines += 1
    m.nr_dying += 1
    spin_unlock(&m.slab_lock)


cdef void memcg_offline_end(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """The cgroup core drops the online reference: the memcg is freed now if
    nothing else pins it."""
    css_put_many(m, memcg, 1)


cdef int memcg_kmem_caches_snapshot(slub_machine *m, mem_cgroup *memcg, kmem_cache **out, int max) noexcept nogil:
    """Snapshot of up to `max` of a memcg's caches, newest first, taken under
    slab_lock (destroys unlink under it), for the caller to walk unlocked.
    Returns how many it stored; `max` of them may mean there are more."""
    cdef int n = 0
    cdef kmem_cache *s
    spin_lock(&m.slab_lock)
    s = memcg_kmem_caches_first(memcg)
    while s != NULL and n < max:
        out[n] = s
        n += 1
        s = memcg_kmem_caches_next(memcg, s)
    spin_unlock(&m.slab_lock)
    return n


cdef void kmem_cache_mark_dead(kmem_cache *s, bint no_cpu_partial) noexcept nogil:
    """Disable empty-slab caching: cpu_partial = min_partial = 0 (Linux 4.0
    __kmem_cache_shrink(s, deactivate=true) / __kmemcg_cache_deactivate).
    no_cpu_partial also makes kmem_cache_has_cpu_partial() false, the 2014
    mail's proposal."""
    atomic_int_set(&s.cpu_partial, 0)
    s.min_partial = 0
    if no_cpu_partial:
        s.no_cpu_partial = 1


cdef inline void memcg_move_nr_pages(mem_cgroup *memcg, mem_cgroup *parent) noexcept nogil:
    """The pages charged to `memcg` now count against `parent` (the kernel's
    hierarchical page counters need no move; ours are flat)."""
    cdef long pages = atomic_long_read(&memcg.nr_pages)
    atomic_long_add(&parent.nr_pages, pages)
    atomic_long_add(&memcg.nr_pages, -pages)


cdef void memcg_reparent_caches(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """Linux 5.3 (fb2f2b0adb98): splice the dying memcg's caches onto its
    parent and move their charges and references, so the memcg can be freed
    at once."""
    cdef mem_cgroup *parent = memcg.parent
    cdef kmem_cache *s
    cdef long n = 0
    spin_lock(&m.slab_lock)
    s = memcg_kmem_caches_first(memcg)
    while s != NULL:
        # WRITE_ONCE(s->memcg_params.memcg, parent): read unlocked by
        # memcg_charge_slab()/memcg_uncharge_slab()
        ptr_write_once(<void **>&s.memcg, parent)
        n += 1
        s = memcg_kmem_caches_next(memcg, s)
    list_splice_init(&memcg.kmem_caches, &parent.kmem_caches)
    memcg_move_nr_pages(memcg, parent)
    spin_unlock(&m.slab_lock)
    if n and not m.pages_pin_memcg:
        css_get_many(parent, n)
        css_put_many(m, memcg, n)


cdef void memcg_reparent_objcg(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """Linux 5.9 memcg_reparent_objcgs() (from memcg_offline_kmem): its
    obj_cgroup, and those of its children reparented to it before, now
    charge the parent -- objects, the stocks caching them (drained lazily:
    a stock's bytes are uncharged from objcg->memcg, the parent now) and
    their leftovers -- so the pages charged through them move to the
    parent's page counter with them, under css_set_lock (the kernel's
    hierarchical page counters need no move).  The memcg loses their
    references, and its hold on its own obj_cgroup (percpu_ref_kill)."""
    cdef obj_cgroup *objcg = memcg.objcg
    cdef obj_cgroup *iter
    cdef mem_cgroup *parent = memcg.parent
    cdef long n = 0
    if objcg == NULL:
        return
    memcg.objcg = NULL
    spin_lock(&m.css_set_lock)
    iter = objcg_list_first(memcg)
    while iter != NULL:
        atomic_ptr_set(<void **>&iter.memcg, parent)
        n += 1
        iter = objcg_list_next(memcg, iter)
    list_splice_init(&memcg.objcg_list, &parent.objcg_list)
    memcg_move_nr_pages(memcg, parent)
    spin_unlock(&m.css_set_lock)
    css_get_many(parent, n)
    css_put_many(m, memcg, n)
    obj_cgroup_put_many(m, objcg, 1)    # the memcg's hold on it


cdef int shrink_dead_caches(slub_machine *m) noexcept nogil:
    """The reaper's pass: shrink every dead cache that still has slabs.
    Returns how many it shrank (-1 if a vCPU did not answer)."""
    cdef kmem_cache *s
    cdef kmem_cache **batch
    cdef int n = 0, i, cap = 0, rc = 0, before
    # cache_reap's mutex_trylock(&slab_mutex): skip the pass while an
    # offline, a cache creation or validate() holds it
    if not mutex_trylock(&m.slab_mutex):
        return 0
    spin_lock(&m.slab_lock)
    s = slab_caches_first(m)
    while s != NULL:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            cap += 1
        s = slab_caches_next(m, s)
    batch = <kmem_cache **>calloc(cap + 1, sizeof(kmem_cache *))
    s = slab_caches_first(m)
    while s != NULL and batch != NULL and n < cap:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            batch[n] = s
            n += 1
        s = slab_caches_next(m, s)
    # the caches stay allocated while we shrink them (they are freed only
    # after a grace period, which waits for this section)
    rcu_read_lock_ext(&m.sc)
    spin_unlock(&m.slab_lock)
    for i in range(n):
        before = m.ipi_timeouts
        __kmem_cache_shrink(batch[i], False)
        if m.ipi_timeouts != before:
            rc = -1
    rcu_read_unlock_ext(&m.sc)
    mutex_unlock(&m.slab_mutex)
    free(batch)
    return rc if rc < 0 else n


cdef int cache_reap_dead(slub_machine *m, int cpu) noexcept nogil:
    """SLAB's cache_reap() (mm/slab.c) applied to the dead caches, for vCPU
    `cpu` by the thread running it (its worker at a quiescent point, or a
    thread that borrowed the idle vCPU): no cross-vCPU request.  Skipped
    (-1) when slab_mutex is taken, as cache_reap's mutex_trylock() skips
    the pass.  Else, for every dead cache not destroyed that holds slabs,
    flush this vCPU's cpu slab and cpu partial slabs (drain_array() of its
    own array_cache) and free the node's empty partial slabs
    (drain_freelist()).  The caches are collected under the lock and worked
    on after it (a discard may destroy the cache, which takes slab_mutex);
    they stay allocated meanwhile because the caller is on the vCPU,
    between two quiescent states (a read-side section).  Returns how many
    caches it reaped."""
    cdef kmem_cache *s
    cdef kmem_cache **batch
    cdef int n = 0, i, cap = 0
    # mutex_trylock(&slab_mutex): skip the pass while it is held (an offline
    # or a cache creation in progress); the list itself is walked under the
    # slab_lock spinlock
    if mutex_is_locked(&m.slab_mutex):
        return -1
    spin_lock(&m.slab_lock)
    s = slab_caches_first(m)
    while s != NULL:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            cap += 1
        s = slab_caches_next(m, s)
    if cap == 0:
        spin_unlock(&m.slab_lock)
        return 0
    batch = <kmem_cache **>malloc(cap * sizeof(kmem_cache *))
    s = slab_caches_first(m)
    while s != NULL and batch != NULL and n < cap:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            batch[n] = s
            n += 1
        s = slab_caches_next(m, s)
    spin_unlock(&m.slab_lock)
    for i in range(n):
        __flush_cpu_slab(batch[i], cpu)
        discard_empty_partial_slabs(batch[i])
    free(batch)
    return n


cdef void dead_cache_counts(slub_machine *m, dead_counts *out) noexcept nogil:
    """Dead caches not destroyed, of them those holding slabs, their
    pages, dying memcgs, offlines, caches destroyed."""
    cdef kmem_cache *s
    cdef long dead = 0, holding = 0, pages = 0
    spin_lock(&m.slab_lock)
    s = slab_caches_first(m)
    while s != NULL:
        if s.dead and not s.destroyed:
            dead += 1
            if atomic_long_read(&s.node.nr_slabs) > 0:
                holding += 1
                pages += atomic_long_read(&s.node.nr_slabs) << (s.oo >> 16)
        s = slab_caches_next(m, s)
    # written under slab_lock (offline, css_free, cache destroy): read there
    out.dying_memcgs = m.nr_dying
    out.offlines = m.nr_offlines
    out.caches_destroyed = m.nr_caches_destroyed
    spin_unlock(&m.slab_lock)
    out.dead_caches = dead
    out.leaked_caches = holding
    out.retained_pages = pages


# ---------------------------------------------------------------------------
# rmdir and the offline work item (kernel/cgroup.c, 4.0-4.11)

cdef struct css_offline_work:
    work_struct work            # first: the work item is the struct (css->destroy_work)
    slub_machine *m
    mem_cgroup *memcg
    double queued_at
    offline_done_fn done
    void *arg


cdef void css_killed_work_fn(work_struct *w) noexcept nogil:
    """css_killed_work_fn() on the kworker (cgroup_destroy_wq, one at a
    time): under cgroup_mutex, offline_css() -> mem_cgroup_css_offline(),
    i.e. the machine's policy (which may take slab_mutex too, and wait for
    grace periods while it holds both), then the reference kill_css took is
    dropped.  The kworker is on no vCPU: its reads of the caches are a
    read-side section.  The offline's latency runs from queueing to here."""
    cdef css_offline_work *ow = <css_offline_work *>w
    cdef slub_machine *m = ow.m
    cdef mem_cgroup *memcg = ow.memcg
    cdef int rc
    mutex_lock(&m.sc, &m.cgroup_mutex)
    rcu_read_lock_ext(&m.sc)
    rc = m.policy_offline(m, memcg, m.policy_data)
    rcu_read_unlock_ext(&m.sc)
    memcg.offline_pending = 0
    mutex_unlock(&m.cgroup_mutex)
    if rc != 0:
        atomic_long_add(&m.offline_errors, 1)
    css_put_many(m, memcg, 1)
    if ow.done != NULL:
        ow.done(ow.arg, monotonic() - ow.queued_at, rc)
    free(ow)


cdef void css_offline_cancel(work_struct *w) noexcept nogil:
    """The machine is going away before the offline ran: tell the waiter."""
    cdef css_offline_work *ow = <css_offline_work *>w
    if ow.done != NULL:
        ow.done(ow.arg, monotonic() - ow.queued_at, OFFLINE_CANCELLED)
    free(ow)


cdef int cgroup_rmdir(slub_machine *m, mem_cgroup *memcg, offline_done_fn done, void *arg,
                      double *waited) noexcept nogil:
    """cgroup_rmdir() -> cgroup_destroy_locked() -> kill_css(): under
    cgroup_mutex (held only for this), mark the memcg as going offline and
    queue its offline (css_killed_work_fn) on the kworker, holding a memcg
    reference until it ran; return without waiting for it.  done(arg,
    latency, rc) runs on the kworker when the offline is over (rc 0, -1 if
    a wait in it timed out, OFFLINE_CANCELLED if the machine went away
    first).  `waited` (if not NULL) gets the seconds rmdir waited for
    cgroup_mutex.  Returns 0, RMDIR_NO_POLICY, RMDIR_OFFLINE (going or gone
    offline already), RMDIR_NOMEM, or RMDIR_STOPPED (the kworker is gone)."""
    cdef css_offline_work *ow
    cdef double w
    if m.policy_offline == NULL:
        return RMDIR_NO_POLICY
    ow = <css_offline_work *>malloc(sizeof(css_offline_work))
    if ow == NULL:
        return RMDIR_NOMEM
    ow.work.func = css_killed_work_fn
    ow.work.cancel = css_offline_cancel
    ow.work.key0 = <void *>memcg
    ow.work.key1 = NULL
    ow.m = m
    ow.memcg = memcg
    ow.done = done
    ow.arg = arg
    w = mutex_lock(&m.sc, &m.cgroup_mutex)
    if waited != NULL:
        waited[0] = w
    if memcg.offline_pending or not atomic_int_read(&memcg.online):
        mutex_unlock(&m.cgroup_mutex)
        free(ow)
        return RMDIR_OFFLINE
    memcg.offline_pending = 1
    css_get_many(memcg, 1)              # kill_css: css_get(css)
    ow.queued_at = monotonic()
    if queue_work(&m.wq, &ow.work, False) != 0:
        memcg.offline_pending = 0
        mutex_unlock(&m.cgroup_mutex)
        css_put_many(m, memcg, 1)
        free(ow)
        return RMDIR_STOPPED
    mutex_unlock(&m.cgroup_mutex)
    return 0
