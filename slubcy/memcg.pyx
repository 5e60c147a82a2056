# cython: language_level=3
"""Memory cgroups for the slab allocator (mm/memcontrol.c, mm/slab_common.c)
and the primitives the dead-cache policies compose.

A memcg's references (refcnt, the css refcount):
  - 1 while online (dropped at the end of offline);
  - per charged slab page, when pages pin the memcg (Linux up to 5.2:
    css_get_many in try_charge) -- memcg.pages_pin_memcg;
  - 1 per child cache when they do not (Linux 5.3 reparenting: the cache holds
    a single memcg reference, handed to the parent on offline);
  - 1 for its obj_cgroup (Linux 5.9), handed to the parent on offline.
When it drops to zero the memcg is freed (css_free), no longer dying, and its
(empty) caches are destroyed.

Everything here is nogil C: offline runs from Python or from a worker loop.
"""

from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.stdio cimport snprintf
from libc.string cimport strncpy

from slubcy.page_alloc cimport (page, virt_to_head_page, page_address, spin_lock, spin_unlock,
                                atomic_long_add, atomic_long_read, atomic_int_set, atomic_int_read,
                                PAGE_SIZE)
from slubcy.slub cimport (kmem_cache, slub_machine, mem_cgroup, obj_cgroup, kmem_cache_open,
                          kmem_cache_release, __kmem_cache_unlink,
                          css_get_many, css_put_many, KMEMCG_ID_WORDS, SLAB_ACCOUNT, oo_objects,
                          fc_objects, __kmem_cache_shrink, flush_all, flush_all_caches,
                          __flush_cpu_slab, discard_empty_partial_slabs)
from slubcy.sched cimport (monotonic, synchronize_sched, kick_all_cpus_sync, call_rcu, rcu_head,
                           rcu_read_lock_ext, rcu_read_unlock_ext, spin_trylock)

cdef extern from *:
    """
    #define slubcy_load_ptr(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define slubcy_store_ptr(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
    static inline long slubcy_long_sub_fetch(long *p, long v) { return __atomic_sub_fetch(p, v, __ATOMIC_ACQ_REL); }
    """
    kmem_cache *load_cache "slubcy_load_ptr"(kmem_cache **p) nogil
    void store_cache "slubcy_store_ptr"(kmem_cache **p, kmem_cache *v) nogil
    mem_cgroup *load_memcg "slubcy_load_ptr"(mem_cgroup **p) nogil
    void store_memcg "slubcy_store_ptr"(mem_cgroup **p, mem_cgroup *v) nogil
    long long_sub_fetch "slubcy_long_sub_fetch"(long *p, long v) nogil


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

cdef mem_cgroup *mem_cgroup_create(slub_machine *m, const char *name, mem_cgroup *parent) noexcept nogil:
    """mem_cgroup_css_alloc + css_online: a child of `parent` (root if NULL)
    with a kmemcg id and, for objcg policies, its obj_cgroup.  NULL when no
    kmemcg id is left."""
    cdef mem_cgroup *memcg = <mem_cgroup *>calloc(1, sizeof(mem_cgroup))
    cdef obj_cgroup *objcg
    if memcg == NULL:
        return NULL
    strncpy(memcg.name, name, sizeof(memcg.name) - 1)
    memcg.parent = parent if parent != NULL else m.root_mem_cgroup
    memcg.refcnt = 1
    memcg.online = 1
    css_get_many(memcg.parent, 1)       # a child pins its parent
    spin_lock(&m.slab_mutex)
    memcg.kmemcg_id = memcg_alloc_cache_id(m)
    if memcg.kmemcg_id < 0:
        spin_unlock(&m.slab_mutex)
        free(memcg)
        return NULL
    m.next_memcg_id += 1
    memcg.id = m.next_memcg_id
    memcg.next = m.memcgs
    if m.memcgs != NULL:
        m.memcgs.prev = memcg
    m.memcgs = memcg
    if not m.per_memcg_caches:
        objcg = <obj_cgroup *>calloc(1, sizeof(obj_cgroup))
        if objcg != NULL:
            objcg.memcg = memcg
            objcg.refcnt = 1            # held by its memcg
            objcg.next = m.objcgs
            m.objcgs = objcg
            memcg.objcg = objcg
            memcg.refcnt += 1           # the objcg's reference on the memcg
    spin_unlock(&m.slab_mutex)
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
    root.next = m.memcgs
    if m.memcgs != NULL:
        m.memcgs.prev = root
    m.memcgs = root
    return root


cdef kmem_cache *memcg_create_kmem_cache(mem_cgroup *memcg, kmem_cache *root) noexcept nogil:
    """memcg_create_kmem_cache(): the child cache "root(id:name)"; called with
    slab_mutex held.  NULL when memory is short."""
    cdef slub_machine *m = root.m
    cdef char name[64]
    cdef kmem_cache *s
    snprintf(name, sizeof(name), "%s(%d:%s)", root.name, memcg.kmemcg_id, memcg.name)
    spin_unlock(&m.slab_mutex)         # kmem_cache_open takes it to link the cache
    s = kmem_cache_open(m, name, root.object_size, root.align, root.flags & ~(<unsigned long>SLAB_ACCOUNT),
                        root.ctor)
    spin_lock(&m.slab_mutex)
    if s == NULL:
        return NULL
    s.root = root
    s.memcg = memcg
    s.memcg_prev = NULL                 # list_add(&s->memcg_params.children_node, ...)
    s.memcg_next = memcg.caches
    if memcg.caches != NULL:
        memcg.caches.memcg_prev = s
    memcg.caches = s
    if not m.pages_pin_memcg:
        css_get_many(memcg, 1)          # Linux 5.3: the cache holds its memcg
    store_cache(&root.memcg_caches[memcg.kmemcg_id], s)
    return s


cdef kmem_cache *memcg_kmem_get_cache(kmem_cache *s, mem_cgroup *memcg) noexcept nogil:
    """memcg_kmem_get_cache(): the cache an allocation by `memcg` comes from:
    its child of root cache `s`, created on first use.  The root cache itself
    for unaccounted caches, the root memcg, an offline memcg, and objcg
    policies (one set of caches for all)."""
    cdef kmem_cache *c
    cdef int id
    if memcg == NULL or not s.accounted or not s.m.per_memcg_caches:
        return s
    id = memcg.kmemcg_id
    if id < 0 or not atomic_int_read(&memcg.online):
        return s
    c = load_cache(&s.memcg_caches[id])
    if c != NULL:
        return c
    spin_lock(&s.m.slab_mutex)
    c = s.memcg_caches[id]
    if c == NULL and memcg.online:
        c = memcg_create_kmem_cache(memcg, s)
    spin_unlock(&s.m.slab_mutex)
    return c if c != NULL else s


# ---------------------------------------------------------------------------
# obj_cgroup charging (Linux 5.9: memcg_slab_post_alloc_hook / free_hook)

cdef int memcg_alloc_page_obj_cgroups(kmem_cache *s, page *pg) noexcept nogil:
    """A vector of obj_cgroup pointers, one per object of the slab (kept in
    page.memcg, which the objcg model does not otherwise use)."""
    if pg.memcg == NULL:
        pg.memcg = calloc(fc_objects(pg.fc), sizeof(obj_cgroup *))
    return pg.memcg != NULL


cdef void memcg_slab_post_alloc_hook(kmem_cache *s, mem_cgroup *memcg, void *object) noexcept nogil:
    cdef page *pg
    cdef obj_cgroup *objcg
    cdef size_t idx
    if memcg == NULL or memcg.objcg == NULL or not s.accounted or object == NULL:
        return
    objcg = memcg.objcg
    pg = virt_to_head_page(&s.m.z, object)
    if not memcg_alloc_page_obj_cgroups(s, pg):
        return
    idx = <size_t>(<char *>object - page_address(&s.m.z, pg)) // s.size
    atomic_long_add(&objcg.refcnt, 1)
    atomic_long_add(&load_memcg(&objcg.memcg).nr_bytes, s.size)
    (<obj_cgroup **>pg.memcg)[idx] = objcg


cdef void free_objcg_rcu(rcu_head *head) noexcept nogil:
    free(head)          # rcu is the first member


cdef void obj_cgroup_put(slub_machine *m, obj_cgroup *objcg) noexcept nogil:
    cdef mem_cgroup *memcg
    cdef obj_cgroup **pp
    if long_sub_fetch(&objcg.refcnt, 1) == 0:
        # obj_cgroup_release(): its memcg reference goes, the struct after
        # a grace period
        memcg = load_memcg(&objcg.memcg)
        spin_lock(&m.slab_mutex)
        pp = &m.objcgs
        while pp[0] != NULL:
            if pp[0] == objcg:
                pp[0] = objcg.next
                break
            pp = &pp[0].next
        spin_unlock(&m.slab_mutex)
        call_rcu(&m.sc, &objcg.rcu, free_objcg_rcu)
        css_put_many(m, memcg, 1)


cdef void memcg_slab_free_hook(kmem_cache *s, page *pg, void *object) noexcept nogil:
    cdef obj_cgroup **vec
    cdef obj_cgroup *objcg
    cdef size_t idx
    if s.m.per_memcg_caches or pg.memcg == NULL:
        return
    vec = <obj_cgroup **>pg.memcg
    idx = <size_t>(<char *>object - page_address(&s.m.z, pg)) // s.size
    objcg = vec[idx]
    if objcg == NULL:
        return
    vec[idx] = NULL
    atomic_long_add(&load_memcg(&objcg.memcg).nr_bytes, -s.size)
    obj_cgroup_put(s.m, objcg)


# ---------------------------------------------------------------------------
# Freeing memcgs, destroying dead caches

cdef void free_cache_rcu(rcu_head *head) noexcept nogil:
    kmem_cache_release(<kmem_cache *>head)      # rcu is the first member


cdef void free_memcg_rcu(rcu_head *head) noexcept nogil:
    free(head)


cdef void memcg_unlink_free(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """A freed memcg nothing refers to any more: off the list, freed after a
    grace period.  slab_mutex held."""
    if memcg.unlinked:
        return
    memcg.unlinked = 1
    if memcg.prev != NULL:
        memcg.prev.next = memcg.next
    elif m.memcgs == memcg:
        m.memcgs = memcg.next
    if memcg.next != NULL:
        memcg.next.prev = memcg.prev
    call_rcu(&m.sc, &memcg.rcu, free_memcg_rcu)


cdef bint memcg_try_destroy_cache(slub_machine *m, kmem_cache *s) noexcept nogil:
    """Destroy a dead child cache if it may go (slab_mutex held): empty, no
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
    (slab_mutex held; the cache holds no slab)."""
    cdef mem_cgroup *memcg = s.memcg
    # list_del(&s->memcg_params.children_node): O(1), a reparented parent's
    # list holds every dead cache of its children
    if s.memcg_prev != NULL:
        s.memcg_prev.memcg_next = s.memcg_next
    else:
        memcg.caches = s.memcg_next
    if s.memcg_next != NULL:
        s.memcg_next.memcg_prev = s.memcg_prev
    s.destroyed = 1
    m.nr_caches_destroyed += 1
    __kmem_cache_unlink(s)
    call_rcu(&m.sc, &s.rcu, free_cache_rcu)
    if memcg.freed and memcg.caches == NULL:
        memcg_unlink_free(m, memcg)


cdef bint memcg_unregister_cache(slub_machine *m, kmem_cache *s) noexcept nogil:
    """Linux 3.16 memcg_unregister_all_caches(), for one cache after its
    kmem_cache_shrink(): `if (atomic_read(&cachep->memcg_params->nr_pages)
    == 0) memcg_unregister_cache(cachep)` -- a dead cache that holds no slab
    now is destroyed now, its memcg still dying or not.  True if it was."""
    cdef bint gone = False
    spin_lock(&m.slab_mutex)
    if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) == 0 \
            and atomic_long_read(&s.shrink_pending) == 0:
        __memcg_destroy_cache(m, s)
        gone = True
    spin_unlock(&m.slab_mutex)
    return gone


cdef void memcg_css_free(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """The last reference went: css_free -> memcg_destroy_kmem_caches.  Its
    caches are empty by now (the kernel BUG()s otherwise; here a cache with
    a deferred shrink still queued goes when that has run)."""
    cdef kmem_cache *s
    cdef kmem_cache *nxt
    cdef mem_cgroup *parent = memcg.parent
    spin_lock(&m.slab_mutex)
    if memcg.freed or memcg.online:
        spin_unlock(&m.slab_mutex)
        return
    memcg.freed = 1
    m.nr_dying -= 1
    s = memcg.caches
    while s != NULL:
        nxt = s.memcg_next
        memcg_try_destroy_cache(m, s)
        s = nxt
    if memcg.caches == NULL:
        memcg_unlink_free(m, memcg)
    spin_unlock(&m.slab_mutex)
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
    spin_lock(&m.slab_mutex)
    memcg = s.memcg
    put = memcg_try_destroy_cache(m, s)
    spin_unlock(&m.slab_mutex)
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
    """memcg_kmem_cache_wq's work (kmemcg_deactivate_workfn ->
    __kmemcg_cache_deactivate_after_rcu, 4.11): flush and shrink every dead
    cache handed over so far, oldest first; each was kept alive for this by
    shrink_pending and may go now.  The flushes of the whole batch share one
    cross-vCPU request per vCPU (flush_all_caches).  Returns how many."""
    cdef deferred_shrink *d
    cdef deferred_shrink *nxt
    cdef deferred_shrink *batch = NULL
    cdef kmem_cache **caches
    cdef long i, n = 0
    cdef int rc
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
        return 0
    caches = <kmem_cache **>malloc(n * sizeof(kmem_cache *))
    if caches != NULL:
        d = batch
        for i in range(n):
            caches[i] = d.s
            d = d.next
        rc = flush_all_caches(m, caches, <int>n)
        free(caches)
        if rc != 0:
            # a vCPU did not answer in time (held at a preemption point, say):
            # requeue the batch for the next pass rather than wait out one
            # timeout per cache in the shrinks' own flushes
            while batch != NULL:
                nxt = batch.next
                spin_lock(&m.deact_lock)
                batch.next = <deferred_shrink *>m.deact_list
                m.deact_list = batch
                spin_unlock(&m.deact_lock)
                batch = nxt
            return 0
    while batch != NULL:                # (out of memory: each shrink flushes by itself)
        nxt = batch.next
        __kmem_cache_shrink(batch.s, False)
        kmemcg_shrink_done(m, batch.s)
        free(batch)
        batch = nxt
    atomic_long_add(&m.deact_done, n)
    return n


cdef void kmemcg_shrink_done(slub_machine *m, kmem_cache *s) noexcept nogil:
    """The deferred shrink of `s` is over: it no longer keeps `s` alive.  The
    count drops under slab_mutex, with the destroy attempt, so no other path
    can destroy (and an RCU batch free) `s` between the two: this thread is
    on no vCPU and holds no read-side section."""
    cdef mem_cgroup *memcg
    cdef bint put
    spin_lock(&m.slab_mutex)
    atomic_long_add(&s.shrink_pending, -1)
    memcg = s.memcg
    put = memcg_try_destroy_cache(m, s)
    spin_unlock(&m.slab_mutex)
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
    # under slab_mutex: a reparented dead cache on the list being offlined
    # may have been destroyed since the caller listed it (it then needs none)
    spin_lock(&s.m.slab_mutex)
    if s.destroyed:
        spin_unlock(&s.m.slab_mutex)
        free(d)
        return 0
    atomic_long_add(&s.shrink_pending, 1)
    spin_unlock(&s.m.slab_mutex)
    atomic_long_add(&s.m.deact_queued, 1)
    call_rcu(&s.m.sc, &d.head, kmemcg_deactivate_rcufn)
    return 0


cdef void memcg_init(slub_machine *m) noexcept nogil:
    m.memcg_release = memcg_css_free
    m.cache_empty = memcg_cache_empty
    root_mem_cgroup_create(m)


# ---------------------------------------------------------------------------
# Offline primitives for the policies (policies/*.pyx compose these)

cdef void memcg_offline_begin(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """css_offline, the part every kernel does: no new allocations (the
    kmemcg id's slots in the root caches are cleared and the id freed, as
    memcg_deactivate_kmem / memcg_free_cache_id do), the memcg is dying, and
    its caches are dead."""
    cdef kmem_cache *root
    cdef kmem_cache *s
    spin_lock(&m.slab_mutex)
    atomic_int_set(&memcg.online, 0)
    memcg.offline_time = monotonic()
    if memcg.kmemcg_id >= 0:
        root = m.accounted_roots
        while root != NULL:
            store_cache(&root.memcg_caches[memcg.kmemcg_id], NULL)
            root = root.root_next
        memcg_free_cache_id(m, memcg.kmemcg_id)
        memcg.kmemcg_id = -1
    s = memcg.caches
    while s != NULL:
        s.dead = 1
        s = s.memcg_next
    m.nr_offlines += 1
    m.nr_dying += 1
    spin_unlock(&m.slab_mutex)


cdef void memcg_offline_end(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """The cgroup core drops the online reference: the memcg is freed now if
    nothing else pins it."""
    css_put_many(m, memcg, 1)


cdef int memcg_caches(slub_machine *m, mem_cgroup *memcg, kmem_cache **out, int max) noexcept nogil:
    """Snapshot of up to `max` of a memcg's caches, newest first, taken under
    slab_mutex (destroys unlink under it), for the caller to walk unlocked.
    Returns how many it stored; `max` of them may mean there are more."""
    cdef int n = 0
    cdef kmem_cache *s
    spin_lock(&m.slab_mutex)
    s = memcg.caches
    while s != NULL and n < max:
        out[n] = s
        n += 1
        s = s.memcg_next
    spin_unlock(&m.slab_mutex)
    return n


cdef void kmem_cache_mark_dead(kmem_cache *s, bint seed_style) noexcept nogil:
    """Disable empty-slab caching: cpu_partial = min_partial = 0 (Linux 4.0
    __kmem_cache_shrink(s, deactivate=true) / __kmemcg_cache_deactivate).
    seed_style also makes kmem_cache_has_cpu_partial() false, the seed
    mail's proposal."""
    atomic_int_set(&s.cpu_partial, 0)
    s.min_partial = 0
    if seed_style:
        s.no_cpu_partial = 1


cdef void memcg_reparent_caches(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """Linux 5.3 (fb2f2b0adb98): splice the dying memcg's caches onto its
    parent and move their charges and references, so the memcg can be freed
    at once."""
    cdef mem_cgroup *parent = memcg.parent
    cdef kmem_cache *s
    cdef kmem_cache *last = NULL
    cdef long n = 0, pages
    spin_lock(&m.slab_mutex)
    s = memcg.caches
    while s != NULL:
        s.memcg = parent
        last = s
        n += 1
        s = s.memcg_next
    if last != NULL:
        last.memcg_next = parent.caches
        if parent.caches != NULL:
            parent.caches.memcg_prev = last
        parent.caches = memcg.caches
        memcg.caches = NULL
    pages = atomic_long_read(&memcg.nr_pages)
    atomic_long_add(&parent.nr_pages, pages)
    atomic_long_add(&memcg.nr_pages, -pages)
    spin_unlock(&m.slab_mutex)
    if n and not m.pages_pin_memcg:
        css_get_many(parent, n)
        css_put_many(m, memcg, n)


cdef void memcg_reparent_objcg(slub_machine *m, mem_cgroup *memcg) noexcept nogil:
    """Linux 5.9 memcg_reparent_objcgs(): the obj_cgroup now charges the
    parent; the memcg loses the objcg's reference."""
    cdef obj_cgroup *objcg = memcg.objcg
    cdef mem_cgroup *parent = memcg.parent
    cdef long bytes_
    if objcg == NULL:
        return
    memcg.objcg = NULL
    css_get_many(parent, 1)
    store_memcg(&objcg.memcg, parent)
    bytes_ = atomic_long_read(&memcg.nr_bytes)
    atomic_long_add(&parent.nr_bytes, bytes_)
    atomic_long_add(&memcg.nr_bytes, -bytes_)
    css_put_many(m, memcg, 1)
    obj_cgroup_put(m, objcg)        # the memcg's hold on it


cdef int shrink_dead_caches(slub_machine *m) noexcept nogil:
    """The reaper's pass: shrink every dead cache that still has slabs.
    Returns how many it shrank (-1 if a vCPU did not answer)."""
    cdef kmem_cache *s
    cdef kmem_cache **batch
    cdef int n = 0, i, cap = 0, rc = 0, before
    spin_lock(&m.slab_mutex)
    s = m.slab_caches
    while s != NULL:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            cap += 1
        s = s.next
    batch = <kmem_cache **>calloc(cap + 1, sizeof(kmem_cache *))
    s = m.slab_caches
    while s != NULL and batch != NULL and n < cap:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            batch[n] = s
            n += 1
        s = s.next
    # the caches stay allocated while we shrink them (they are freed only
    # after a grace period, which waits for this section)
    rcu_read_lock_ext(&m.sc)
    spin_unlock(&m.slab_mutex)
    for i in range(n):
        before = m.ipi_timeouts
        __kmem_cache_shrink(batch[i], False)
        if m.ipi_timeouts != before:
            rc = -1
    rcu_read_unlock_ext(&m.sc)
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
    if not spin_trylock(&m.slab_mutex):
        return -1
    s = m.slab_caches
    while s != NULL:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            cap += 1
        s = s.next
    if cap == 0:
        spin_unlock(&m.slab_mutex)
        return 0
    batch = <kmem_cache **>malloc(cap * sizeof(kmem_cache *))
    s = m.slab_caches
    while s != NULL and batch != NULL and n < cap:
        if s.dead and not s.destroyed and atomic_long_read(&s.node.nr_slabs) > 0:
            batch[n] = s
            n += 1
        s = s.next
    spin_unlock(&m.slab_mutex)
    for i in range(n):
        __flush_cpu_slab(batch[i], cpu)
        discard_empty_partial_slabs(batch[i])
    free(batch)
    return n


cdef void dead_cache_counts(slub_machine *m, long *out) noexcept nogil:
    """[dead caches not destroyed, of them holding slabs, their pages,
    dying memcgs, offlines, caches destroyed]"""
    cdef kmem_cache *s
    cdef long dead = 0, holding = 0, pages = 0
    spin_lock(&m.slab_mutex)
    s = m.slab_caches
    while s != NULL:
        if s.dead and not s.destroyed:
            dead += 1
            if atomic_long_read(&s.node.nr_slabs) > 0:
                holding += 1
                pages += atomic_long_read(&s.node.nr_slabs) << (s.oo >> 16)
        s = s.next
    spin_unlock(&m.slab_mutex)
    out[0] = dead
    out[1] = holding
    out[2] = pages
    out[3] = m.nr_dying
    out[4] = m.nr_offlines
    out[5] = m.nr_caches_destroyed
