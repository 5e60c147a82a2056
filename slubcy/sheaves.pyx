# cython: language_level=3
"""Linux 7.0's percpu sheaves and barns: the slow paths (mm/slub.c of 7.0,
"slab: replace cpu (partial) slabs with sheaves", Babka).

Each function that mirrors a kernel function has its name.  `cpu` is the
vCPU running the step (-1: none, for the RCU thread, the kworker and a
shrink or destroy called from Python); statistics are counted there
(stat70).  What the kernel does with local_trylock / local_unlock on
`pcs->lock` is done here on the same field, only by the vCPU's thread.
"""

from libc.stdint cimport uint64_t, uint32_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from slubcy.atomic cimport (atomic_long_add, atomic_long_read, atomic_uint_read, long_read_once,
                            ptr_read_once, slab_cmpxchg, slab_word_read, slab_word_set, spin_lock,
                            spin_lock_init, spin_unlock)
from slubcy.list cimport list_head, INIT_LIST_HEAD, list_add, list_add_tail, list_del, list_empty
from slubcy.types cimport (page, zone, kmem_cache, kmem_cache_cpu, kmem_cache_node, slab_sheaf,
                           slub_percpu_sheaves, node_barn, slub_machine, stat_item, PAGE_SIZE,
                           MAX_FULL_SHEAVES, MAX_EMPTY_SHEAVES,
                           ALLOC_SLAB, BARN_GET, BARN_GET_FAIL, BARN_PUT, BARN_PUT_FAIL,
                           CMPXCHG_DOUBLE_FAIL, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL,
                           FREE_ADD_PARTIAL, FREE_RCU_SHEAF, FREE_RCU_SHEAF_FAIL,
                           FREE_REMOVE_PARTIAL, FREE_SLAB, SHEAF_ALLOC, SHEAF_FLUSH, SHEAF_FREE,
                           SHEAF_REFILL, FREE_FASTPATH, ALLOC_FASTPATH, ALLOC_SLOWPATH)
from slubcy.slub cimport (fc_counters, fc_freelist, fc_inuse, fc_make, fc_objects, get_freepointer,
                          set_freepointer, kmem_cache_debug, free_debug_processing,
                          alloc_debug_processing, new_slab,
                          discard_slab, build_detached_freelist, add_partial, remove_partial,
                          discard_empty_partial_slabs, free_partial, kmalloc_index,
                          lru_to_page)
from slubcy.sched cimport (call_rcu, rcu_head, on_each_cpu_cond, rcu_barrier, preempt_point,
                           preempt_check_resched, local_irq_enabled, PP_PCS_REFILL,
                           PP_PCS_FLUSH_SPARE, PP_SLAB_FREE_BEFORE_CMPXCHG)
from slubcy.page_alloc cimport get_order, page_address, virt_to_head_page


# ---------------------------------------------------------------------------
# Capacity, set-up, the sheaves themselves

cdef inline size_t kmalloc_size_roundup(size_t size) noexcept nogil:
    """kmalloc_size_roundup(): the kmalloc bucket a request of `size` gets
    (kmalloc_index's), or whole pages above the largest bucket."""
    cdef int i = kmalloc_index(size)
    if i == 1:
        return 96
    if i == 2:
        return 192
    if i > 0:
        return <size_t>1 << i
    return <size_t>PAGE_SIZE << get_order(size)


cdef unsigned int calculate_sheaf_capacity(kmem_cache *s, unsigned int args_capacity) noexcept nogil:
    """calculate_sheaf_capacity() (7.0): none for debug caches; else about
    half of the old cpu-partial object targets by s->size (4 / 12 / 26 /
    60), rounded up so that the sheaf fills its kmalloc bucket, and at least
    what kmem_cache_args asked for."""
    cdef unsigned int capacity
    cdef size_t size
    if kmem_cache_debug(s):
        return 0
    if s.size >= PAGE_SIZE:
        capacity = 4
    elif s.size >= 1024:
        capacity = 12
    elif s.size >= 256:
        capacity = 26
    else:
        capacity = 60
    size = kmalloc_size_roundup(SHEAF_HEADER_SIZE + sizeof(void *) * capacity)
    capacity = (size - SHEAF_HEADER_SIZE) // sizeof(void *)
    return capacity if capacity > args_capacity else args_capacity


cdef slab_sheaf *alloc_empty_sheaf(kmem_cache *s, int cpu) noexcept nogil:
    """alloc_empty_sheaf(): a zeroed sheaf of s->sheaf_capacity.  Departure:
    a sheaf once allocated is reused from the cache's parked ones, and goes
    back to malloc only with the cache (kmem_cache.sheaves_all)."""
    cdef slab_sheaf *sh = NULL
    spin_lock(&s.sheaves_lock)
    if not list_empty(&s.sheaves_parked):
        sh = <slab_sheaf *>(<char *>s.sheaves_parked.next - <size_t>&(<slab_sheaf *>0).barn_list)
        list_del(&sh.barn_list)
        sh.freed = 0
    spin_unlock(&s.sheaves_lock)
    if sh == NULL:
        sh = <slab_sheaf *>calloc(1, sizeof(slab_sheaf) + s.sheaf_capacity * sizeof(void *))
        if sh == NULL:
            return NULL
        sh.capacity = s.sheaf_capacity
        sh.cache = s
        spin_lock(&s.sheaves_lock)
        sh.all_next = s.sheaves_all
        s.sheaves_all = sh
        spin_unlock(&s.sheaves_lock)
    sh.size = 0
    sh.node = 0
    stat70(s, cpu, SHEAF_ALLOC)
    return sh


cdef void free_empty_sheaf(kmem_cache *s, slab_sheaf *sh, int cpu) noexcept nogil:
    """free_empty_sheaf(): kfree of an empty sheaf (parked, see above)."""
    sh.size = 0
    spin_lock(&s.sheaves_lock)
    sh.freed = 1
    list_add(&sh.barn_list, &s.sheaves_parked)
    spin_unlock(&s.sheaves_lock)
    stat70(s, cpu, SHEAF_FREE)


cdef int init_percpu_sheaves(kmem_cache *s, unsigned int args_capacity) noexcept nogil:
    """init_percpu_sheaves() and the node's barn (init_kmem_cache_nodes):
    each vCPU's main is an empty sheaf, or the machine's zero-capacity
    bootstrap sheaf for a cache without sheaves (its fast paths then always
    fail).  0, or -1 without memory (everything freed)."""
    cdef int cpu
    INIT_LIST_HEAD(&s.sheaves_parked)
    spin_lock_init(&s.sheaves_lock)
    s.sheaf_capacity = calculate_sheaf_capacity(s, args_capacity)
    s.cpu_sheaves = <slub_percpu_sheaves *>calloc(s.m.nr_cpus, sizeof(slub_percpu_sheaves))
    if s.cpu_sheaves == NULL:
        return -1
    if s.sheaf_capacity:
        s.node.barn = <node_barn *>calloc(1, sizeof(node_barn))
        if s.node.barn == NULL:
            free_percpu_sheaves(s)
            return -1
        spin_lock_init(&s.node.barn.lock)
        INIT_LIST_HEAD(&s.node.barn.sheaves_full)
        INIT_LIST_HEAD(&s.node.barn.sheaves_empty)
    for cpu in range(s.m.nr_cpus):
        if s.sheaf_capacity:
            s.cpu_sheaves[cpu].main = alloc_empty_sheaf(s, -1)
            if s.cpu_sheaves[cpu].main == NULL:
                free_percpu_sheaves(s)
                return -1
        else:
            s.cpu_sheaves[cpu].main = &s.m.bootstrap_sheaf
    return 0


cdef void free_percpu_sheaves(kmem_cache *s) noexcept nogil:
    """The cache's sheaves go back to malloc with it (every one, wherever it
    was: the caller flushed them or the machine is going)."""
    cdef slab_sheaf *sh = s.sheaves_all
    cdef slab_sheaf *nxt
    while sh != NULL:
        nxt = sh.all_next
        free(sh)
        sh = nxt
    s.sheaves_all = NULL
    free(s.node.barn)
    s.node.barn = NULL
    free(s.cpu_sheaves)
    s.cpu_sheaves = NULL


# ---------------------------------------------------------------------------
# The barn (per node: one here)

cdef inline slab_sheaf *barn_entry(list_head *pos) noexcept nogil:
    return <slab_sheaf *>(<char *>pos - <size_t>&(<slab_sheaf *>0).barn_list)


cdef slab_sheaf *barn_get_empty_sheaf(node_barn *barn) noexcept nogil:
    cdef slab_sheaf *sh = NULL
    if atomic_uint_read(&barn.nr_empty) == 0:        # data_race()
        return NULL
    spin_lock(&barn.lock)
    if barn.nr_empty:
        sh = barn_entry(barn.sheaves_empty.next)
        list_del(&sh.barn_list)
        barn.nr_empty -= 1
    spin_unlock(&barn.lock)
    return sh


cdef void barn_put_empty_sheaf(node_barn *barn, slab_sheaf *sh) noexcept nogil:
    spin_lock(&barn.lock)
    list_add(&sh.barn_list, &barn.sheaves_empty)
    barn.nr_empty += 1
    spin_unlock(&barn.lock)


cdef void barn_put_full_sheaf(node_barn *barn, slab_sheaf *sh) noexcept nogil:
    spin_lock(&barn.lock)
    list_add(&sh.barn_list, &barn.sheaves_full)
    barn.nr_full += 1
    spin_unlock(&barn.lock)


cdef slab_sheaf *barn_replace_empty_sheaf(node_barn *barn, slab_sheaf *empty) noexcept nogil:
    """barn_replace_empty_sheaf(): trade an empty sheaf for a full one, or
    NULL if the barn has none."""
    cdef slab_sheaf *full = NULL
    if atomic_uint_read(&barn.nr_full) == 0:
        return NULL
    spin_lock(&barn.lock)
    if barn.nr_full:
        full = barn_entry(barn.sheaves_full.next)
        list_del(&full.barn_list)
        list_add(&empty.barn_list, &barn.sheaves_empty)
        barn.nr_full -= 1
        barn.nr_empty += 1
    spin_unlock(&barn.lock)
    return full


cdef enum:
    E2BIG = 7
    ENOMEM = 12


cdef slab_sheaf *barn_replace_full_sheaf(node_barn *barn, slab_sheaf *full, int *err) noexcept nogil:
    """barn_replace_full_sheaf(): trade a full sheaf for an empty one.  NULL
    with *err = E2BIG when the barn holds its limit of full sheaves (read
    racily), ENOMEM when it has no empty one."""
    cdef slab_sheaf *empty = NULL
    if atomic_uint_read(&barn.nr_full) >= MAX_FULL_SHEAVES:
        err[0] = E2BIG
        return NULL
    spin_lock(&barn.lock)
    if barn.nr_empty:
        empty = barn_entry(barn.sheaves_empty.next)
        list_del(&empty.barn_list)
        list_add(&full.barn_list, &barn.sheaves_full)
        barn.nr_empty -= 1
        barn.nr_full += 1
    else:
        err[0] = ENOMEM
    spin_unlock(&barn.lock)
    return empty


# ---------------------------------------------------------------------------
# Slabs: 7.0's __slab_free, refill_objects, ___slab_alloc

cdef inline kmem_cache_cpu *stat_cpu(kmem_cache *s, int cpu) noexcept nogil:
    """The kmem_cache_cpu whose counters a slab helper shared with 4.0
    (new_slab: ORDER_FALLBACK) counts on."""
    return &s.cpu_slab[cpu if cpu >= 0 else s.m.nr_cpus]


cdef inline bint slab_update_freelist(kmem_cache *s, page *pg, uint64_t old, uint64_t new,
                                      int cpu) noexcept nogil:
    """slab_update_freelist(): the (freelist, counters) cmpxchg."""
    if slab_cmpxchg(&pg.fc, old, new):
        return True
    stat70(s, cpu, CMPXCHG_DOUBLE_FAIL)
    return False


cdef int __slab_free(kmem_cache *s, page *pg, void *head, void *tail, int cnt,
                     int cpu) noexcept nogil:
    """__slab_free() as 7.0 keeps it: push head..tail (`cnt` objects) on the
    slab's freelist by cmpxchg; list_lock only when the slab was full (it
    goes on the node partial list, tail) or becomes empty (discarded when
    the node holds min_partial slabs).  A non-full slab off the list is
    left alone: a refill isolated it and owns it.  No frozen slabs, no cpu
    partial lists.  0 only when a debug check refused the free."""
    cdef kmem_cache_node *n = &s.node
    cdef zone *z = &s.m.z
    cdef void *prior
    cdef uint64_t old
    cdef uint32_t inuse
    cdef bint was_full, on_node_partial = False, locked = False
    if kmem_cache_debug(s) and not free_debug_processing(s, pg, head, tail, cnt):
        return 0
    while True:
        if locked:
            spin_unlock(&n.list_lock)
            locked = False
        local_irq_enabled(&s.m.sc, cpu)
        old = slab_word_read(&pg.fc)
        prior = fc_freelist(z, old)
        set_freepointer(s, tail, prior)
        inuse = fc_inuse(old) - cnt
        was_full = prior == NULL
        if inuse == 0 or was_full:
            if was_full:
                # The 2014 race's moment -- a free into a full slab decided,
                # no cmpxchg yet -- is still preemptible in 7.0, before
                # spin_lock_irqsave; a task switched out here costs the same
                # as in 4.0, but nothing can go astray: the list decision is
                # made under list_lock, after it (the same named point, so
                # `--preempt slab_free:before_cmpxchg=...` hits both)
                preempt_point(&s.m.sc, PP_SLAB_FREE_BEFORE_CMPXCHG, cpu)
                local_irq_enabled(&s.m.sc, cpu)
            spin_lock(&n.list_lock)
            locked = True
            on_node_partial = pg.sl_partial != 0
        else:
            preempt_check_resched(&s.m.sc, cpu)
        if slab_update_freelist(s, pg, old, fc_make(z, head, fc_counters(inuse, fc_objects(old), 0)),
                                cpu):
            break
    if not locked:
        return 1
    if not was_full and not on_node_partial:
        spin_unlock(&n.list_lock)           # isolated by a refill: it owns the slab
        return 1
    if inuse == 0 and n.nr_partial >= <long>s.min_partial:
        # slab_empty:
        if on_node_partial:
            remove_partial(n, pg)
            stat70(s, cpu, FREE_REMOVE_PARTIAL)
        spin_unlock(&n.list_lock)
        stat70(s, cpu, FREE_SLAB)
        discard_slab(s, pg)
        return 1
    if was_full:
        add_partial(n, pg, DEACTIVATE_TO_TAIL)
        stat70(s, cpu, FREE_ADD_PARTIAL)
    spin_unlock(&n.list_lock)
    return 1


cdef void *get_freelist_nofreeze(kmem_cache *s, page *pg, int cpu) noexcept nogil:
    """get_freelist_nofreeze(): take the slab's whole freelist (inuse =
    objects); the slab is then full and off every list."""
    cdef uint64_t old
    while True:
        old = slab_word_read(&pg.fc)
        if slab_update_freelist(s, pg, old, fc_make(&s.m.z, NULL,
                                                    fc_counters(fc_objects(old), fc_objects(old), 0)),
                                cpu):
            return fc_freelist(&s.m.z, old)


cdef void __kmem_cache_free_bulk(kmem_cache *s, size_t size, void **p, int cpu) noexcept nogil:
    """__kmem_cache_free_bulk(): straight to the slabs (a sheaf's flush), one
    __slab_free per detached freelist.  p[] is consumed."""
    cdef page *pg
    cdef void *freelist
    cdef void *tail
    cdef int cnt
    while size:
        size = build_detached_freelist(s, size, p, &pg, &freelist, &tail, &cnt)
        if pg != NULL:
            __slab_free(<kmem_cache *>pg.slab_cache, pg, freelist, tail, cnt, cpu)


cdef size_t refill_objects(kmem_cache *s, void **p, size_t min, size_t max, int cpu) noexcept nogil:
    """refill_objects() (7.0, __refill_objects_node): `min`..`max` objects
    into p[].  get_partial_node_bulk isolates partial slabs under list_lock
    (their free counts read racily) until about `max` objects are there;
    each slab's whole freelist is taken (get_freelist_nofreeze) and the
    surplus goes back through __slab_free; slabs not needed go back on the
    list.  Then new slabs, whose rest goes to the partial head.  (One node:
    no remote nodes to try.)  Returns how many it got (< min: no memory)."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head isolated
    cdef list_head unused
    cdef list_head *pos
    cdef list_head *nxt
    cdef page *pg
    cdef void *object
    cdef void *head
    cdef void *tail
    cdef size_t filled = 0, avail = 0, nfree
    cdef int cnt
    cdef uint64_t w
    INIT_LIST_HEAD(&isolated)
    INIT_LIST_HEAD(&unused)
    if long_read_once(&n.nr_partial):
        # get_partial_node_bulk(): each isolated slab goes to the head of the
        # local list (list_add), so the last isolated is used first
        spin_lock(&n.list_lock)
        pos = n.partial.next
        while pos != &n.partial:
            nxt = pos.next
            pg = lru_to_page(pos)
            w = slab_word_read(&pg.fc)
            nfree = fc_objects(w) - fc_inuse(w)             # racy, as data_race()
            if nfree <= fc_objects(w):                      # (a sane count)
                if avail >= min and avail + nfree > max:
                    break
                remove_partial(n, pg)
                list_add(&pg.u.lru, &isolated)
                avail += nfree
                if avail >= max:
                    break
            pos = nxt
        spin_unlock(&n.list_lock)
    while not list_empty(&isolated):
        pos = isolated.next
        list_del(pos)
        pg = lru_to_page(pos)
        if filled >= max:
            list_add_tail(pos, &unused)     # not needed after all: put back below
            continue
        object = get_freelist_nofreeze(s, pg, cpu)
        while object != NULL and filled < max:
            p[filled] = object
            filled += 1
            object = get_freepointer(s, object)
        if object != NULL:
            # the surplus goes back to its slab
            head = object
            cnt = 1
            tail = object
            while get_freepointer(s, tail) != NULL:
                tail = get_freepointer(s, tail)
                cnt += 1
            __slab_free(s, pg, head, tail, cnt, cpu)
    if not list_empty(&unused):
        # __refill_objects_node's putback, under one list_lock: back on the
        # list, or discarded if empty and the node has min_partial slabs
        INIT_LIST_HEAD(&isolated)
        spin_lock(&n.list_lock)
        while not list_empty(&unused):
            pos = unused.next
            list_del(pos)
            pg = lru_to_page(pos)
            if fc_inuse(slab_word_read(&pg.fc)) == 0 and n.nr_partial >= <long>s.min_partial:
                list_add(pos, &isolated)
            else:
                add_partial(n, pg, DEACTIVATE_TO_HEAD)
        spin_unlock(&n.list_lock)
        while not list_empty(&isolated):
            pos = isolated.next
            list_del(pos)
            discard_slab(s, lru_to_page(pos))
    while filled < min:
        pg = new_slab(s, stat_cpu(s, cpu))
        if pg == NULL:
            break
        stat70(s, cpu, ALLOC_SLAB)
        # new_slab() returns it frozen with its whole freelist (the 4.0
        # shape): unfreeze it here, as 7.0's allocate_slab() leaves it
        object = fc_freelist(&s.m.z, pg.fc)
        cnt = 0
        while object != NULL and filled < max:
            p[filled] = object
            filled += 1
            cnt += 1
            object = get_freepointer(s, object)
        slab_word_set(&pg.fc, fc_make(&s.m.z, object, fc_counters(cnt, fc_objects(pg.fc), 0)))
        if object != NULL:
            spin_lock(&n.list_lock)
            add_partial(n, pg, DEACTIVATE_TO_HEAD)
            spin_unlock(&n.list_lock)
    return filled


cdef void *___slab_alloc(kmem_cache *s, int cpu) noexcept nogil:
    """___slab_alloc() of 7.0: one object, for an allocation the sheaves did
    not serve (it may not block, the trylock failed, or the cache has no
    sheaves): from a node partial slab by cmpxchg under list_lock, else a
    new slab whose rest goes on the partial list.  NULL when out of memory."""
    cdef kmem_cache_node *n = &s.node
    cdef page *pg
    cdef void *object
    cdef uint64_t old
    if long_read_once(&n.nr_partial):
        spin_lock(&n.list_lock)
        while n.partial.next != &n.partial:
            pg = lru_to_page(n.partial.next)
            old = slab_word_read(&pg.fc)
            object = fc_freelist(&s.m.z, old)
            if object == NULL:              # (cannot happen: a listed slab has free objects)
                remove_partial(n, pg)
                continue
            if slab_update_freelist(s, pg, old,
                                    fc_make(&s.m.z, get_freepointer(s, object),
                                            fc_counters(fc_inuse(old) + 1, fc_objects(old), 0)),
                                    cpu):
                if fc_inuse(old) + 1 == fc_objects(old):
                    remove_partial(n, pg)   # now full: off the list
                spin_unlock(&n.list_lock)
                if kmem_cache_debug(s):
                    alloc_debug_processing(s, pg, object)
                return object
        spin_unlock(&n.list_lock)
    pg = new_slab(s, stat_cpu(s, cpu))
    if pg == NULL:
        return NULL
    stat70(s, cpu, ALLOC_SLAB)
    object = fc_freelist(&s.m.z, pg.fc)
    slab_word_set(&pg.fc, fc_make(&s.m.z, get_freepointer(s, object),
                                  fc_counters(1, fc_objects(pg.fc), 0)))
    if kmem_cache_debug(s):
        alloc_debug_processing(s, pg, object)
    if fc_objects(pg.fc) > 1:
        spin_lock(&n.list_lock)
        add_partial(n, pg, DEACTIVATE_TO_HEAD)
        spin_unlock(&n.list_lock)
    return object


# ---------------------------------------------------------------------------
# Refill and flush

cdef int refill_sheaf(kmem_cache *s, slab_sheaf *sh, int cpu) noexcept nogil:
    """refill_sheaf(): fill the sheaf's free room from slabs; -ENOMEM if it
    could not be filled (what was got stays in it)."""
    cdef size_t to_fill = s.sheaf_capacity - sh.size
    cdef size_t filled
    if to_fill == 0:
        return 0
    filled = refill_objects(s, &sh.objects[sh.size], to_fill, to_fill, cpu)
    sh.size += <unsigned int>filled
    stat70_add(s, cpu, SHEAF_REFILL, <long>filled)
    return 0 if filled == to_fill else -ENOMEM


cdef void sheaf_flush_unused(kmem_cache *s, slab_sheaf *sh, int cpu) noexcept nogil:
    """sheaf_flush_unused(): every object of a sheaf no vCPU uses back to its
    slab."""
    stat70_add(s, cpu, SHEAF_FLUSH, sh.size)
    __kmem_cache_free_bulk(s, sh.size, &sh.objects[0], cpu)
    sh.size = 0


cdef slab_sheaf *alloc_full_sheaf(kmem_cache *s, int cpu) noexcept nogil:
    cdef slab_sheaf *sh = alloc_empty_sheaf(s, cpu)
    if sh == NULL:
        return NULL
    if refill_sheaf(s, sh, cpu) != 0:
        sheaf_flush_unused(s, sh, cpu)
        free_empty_sheaf(s, sh, cpu)
        return NULL
    return sh


cdef bint sheaf_flush_main(kmem_cache *s, int cpu) noexcept nogil:
    """sheaf_flush_main(): flush the vCPU's main sheaf, PCS_BATCH_MAX objects
    at a time with the lock dropped between batches.  Called with the lock
    held; returns with it dropped.  True if it emptied main."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef void *objects[PCS_BATCH_MAX]
    cdef unsigned int batch, remaining
    while True:
        batch = pcs.main.size if pcs.main.size < PCS_BATCH_MAX else PCS_BATCH_MAX
        remaining = pcs.main.size - batch
        memcpy(objects, &pcs.main.objects[remaining], batch * sizeof(void *))
        pcs.main.size = remaining
        pcs.lock = 0                        # local_unlock()
        stat70_add(s, cpu, SHEAF_FLUSH, batch)
        __kmem_cache_free_bulk(s, batch, objects, cpu)
        if remaining == 0:
            return True
        if pcs.lock:                        # local_trylock()
            return False
        pcs.lock = 1


cdef slab_sheaf *__pcs_replace_empty_main(kmem_cache *s, slub_percpu_sheaves *pcs, int cpu,
                                          bint can_block) noexcept nogil:
    """__pcs_replace_empty_main() (7.0): main is empty.  A non-empty spare
    swaps in; else the barn trades a full sheaf for the empty main; else,
    only for an allocation that may block, an empty sheaf (the spare, or
    the barn's) is refilled from slabs with the lock dropped, then
    installed -- the task may have been preempted meanwhile, and whatever
    changed is handled on relocking (a surplus sheaf goes to the barn
    regardless of its limits).  Returns main with the lock held, or NULL
    with it dropped."""
    cdef node_barn *barn = s.node.barn
    cdef slab_sheaf *full
    cdef slab_sheaf *empty
    if s.sheaf_capacity == 0:               # the bootstrap sheaf: no sheaves
        pcs.lock = 0
        return NULL
    if pcs.spare != NULL and pcs.spare.size > 0:
        full = pcs.spare
        pcs.spare = pcs.main
        pcs.main = full
        return full
    full = barn_replace_empty_sheaf(barn, pcs.main)
    if full != NULL:
        stat70(s, cpu, BARN_GET)
        pcs.main = full
        return full
    stat70(s, cpu, BARN_GET_FAIL)
    if not can_block:
        pcs.lock = 0
        return NULL
    if pcs.spare != NULL:
        empty = pcs.spare
        pcs.spare = NULL
    else:
        empty = barn_get_empty_sheaf(barn)
    pcs.lock = 0                            # local_unlock(): preemptible from here
    if empty != NULL:
        if refill_sheaf(s, empty, cpu) == 0:
            full = empty
        else:
            # very low on memory: don't bother with the barn
            sheaf_flush_unused(s, empty, cpu)
            free_empty_sheaf(s, empty, cpu)
            full = NULL
    else:
        full = alloc_full_sheaf(s, cpu)
    if full == NULL:
        return NULL
    # the window: a full sheaf in this task's hands, its slabs full and off
    # every list, invisible to a flush_all() on this vCPU
    preempt_point(&s.m.sc, PP_PCS_REFILL, cpu)
    local_irq_enabled(&s.m.sc, cpu)
    pcs.lock = 1                            # local_lock()
    if pcs.main.size == 0:
        barn_put_empty_sheaf(barn, pcs.main)
        pcs.main = full
        return full
    if pcs.spare == NULL:
        pcs.spare = full
        return pcs.main
    if pcs.spare.size == 0:
        barn_put_empty_sheaf(barn, pcs.spare)
        pcs.spare = full
        return pcs.main
    barn_put_full_sheaf(barn, full)         # over the limit if need be
    stat70(s, cpu, BARN_PUT)
    return pcs.main


cdef void __pcs_install_empty_sheaf(kmem_cache *s, slub_percpu_sheaves *pcs, slab_sheaf *empty,
                                    node_barn *barn, int cpu) noexcept nogil:
    """__pcs_install_empty_sheaf() (7.0), after relocking: without a spare
    (what nobody interrupting us leaves), the full main becomes the spare
    and the empty sheaf main.  Else a flush may have run while the lock was
    dropped: main with room keeps its place and the empty sheaf goes to the
    barn; a spare with room swaps in, the same; else the full main goes to
    the barn over its limit (BARN_PUT)."""
    cdef slab_sheaf *t
    if pcs.spare == NULL:
        pcs.spare = pcs.main
        pcs.main = empty
        return
    if pcs.main.size < s.sheaf_capacity:
        barn_put_empty_sheaf(barn, empty)
        return
    if pcs.spare.size < s.sheaf_capacity:
        t = pcs.main
        pcs.main = pcs.spare
        pcs.spare = t
        barn_put_empty_sheaf(barn, empty)
        return
    barn_put_full_sheaf(barn, pcs.main)
    stat70(s, cpu, BARN_PUT)
    pcs.main = empty


cdef bint __pcs_replace_full_main(kmem_cache *s, slub_percpu_sheaves *pcs, int cpu) noexcept nogil:
    """__pcs_replace_full_main() (7.0): main is full.  Without a spare, an
    empty barn sheaf becomes main (the full one the spare); a spare with
    room swaps in; else the barn trades an empty sheaf for the full main.
    The barn refuses two ways: E2BIG (it holds its limit of full sheaves:
    the full spare is flushed to slabs with the lock dropped and reused,
    BARN_PUT_FAIL) or ENOMEM (no empty sheaf: allocate one with the lock
    dropped).  Last resort: flush main in batches.  True with the lock
    held and room in main; False with it dropped (free to the slab)."""
    cdef node_barn *barn = s.node.barn
    cdef slab_sheaf *empty
    cdef slab_sheaf *to_flush
    cdef int err = 0
    if s.sheaf_capacity == 0:
        pcs.lock = 0
        return False
    if pcs.spare == NULL:
        empty = barn_get_empty_sheaf(barn)
        if empty != NULL:
            pcs.spare = pcs.main
            pcs.main = empty
            return True
    elif pcs.spare.size < s.sheaf_capacity:
        empty = pcs.spare
        pcs.spare = pcs.main
        pcs.main = empty
        return True
    else:
        empty = barn_replace_full_sheaf(barn, pcs.main, &err)
        if empty != NULL:
            stat70(s, cpu, BARN_PUT)
            pcs.main = empty
            return True
        if err == E2BIG:
            stat70(s, cpu, BARN_PUT_FAIL)
            to_flush = pcs.spare
            pcs.spare = NULL
            pcs.lock = 0                    # local_unlock(): preemptible from here
            # the window: a full sheaf off the vCPU, not yet on its slabs
            preempt_point(&s.m.sc, PP_PCS_FLUSH_SPARE, cpu)
            sheaf_flush_unused(s, to_flush, cpu)
            local_irq_enabled(&s.m.sc, cpu)
            pcs.lock = 1
            __pcs_install_empty_sheaf(s, pcs, to_flush, barn, cpu)
            return True                     # (main has room now, whatever happened)
    # alloc_empty: (ENOMEM, or no spare and no empty barn sheaf)
    pcs.lock = 0
    empty = alloc_empty_sheaf(s, cpu)       # GFP_NOWAIT
    local_irq_enabled(&s.m.sc, cpu)
    if empty != NULL:
        pcs.lock = 1
        __pcs_install_empty_sheaf(s, pcs, empty, barn, cpu)
        return True
    if err == ENOMEM:                       # (put_fail)
        stat70(s, cpu, BARN_PUT_FAIL)
    if pcs.lock:
        return False
    pcs.lock = 1
    if not sheaf_flush_main(s, cpu):
        return False
    if pcs.lock:
        return False
    pcs.lock = 1
    return pcs.main.size < s.sheaf_capacity


# ---------------------------------------------------------------------------
# The entry's 7.0 halves, out of line (see sheaves.pxd)

cdef void *slab_alloc_node_pcs(kmem_cache *s, int cpu, bint can_block) noexcept nogil:
    return slab_alloc_node_sheaves(s, cpu, can_block)


cdef int slab_free_pcs(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil:
    return slab_free_sheaves(s, pg, x, cpu)


# ---------------------------------------------------------------------------
# Bulk

cdef size_t kmem_cache_alloc_bulk_sheaves(kmem_cache *s, size_t size, void **p,
                                          int cpu) noexcept nogil:
    """kmem_cache_alloc_bulk() of 7.0: alloc_from_pcs_bulk() -- under one
    lock at a time, a block copied off the top of main (ALLOC_FASTPATH per
    object); an empty main is replaced by a non-empty spare or a full barn
    sheaf (BARN_GET), never refilled: with none (BARN_GET_FAIL) the rest
    comes from slabs in bulk (refill_objects), "otherwise we would just be
    copying arrays of pointers twice".  Returns how many (< size only when
    out of memory)."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef slab_sheaf *main
    cdef slab_sheaf *full
    cdef size_t i = 0, batch
    while i < size and s.sheaf_capacity:
        if pcs.lock:                        # local_trylock() failed
            break
        pcs.lock = 1
        main = pcs.main
        if main.size == 0:
            if pcs.spare != NULL and pcs.spare.size > 0:
                pcs.main = pcs.spare
                pcs.spare = main
                main = pcs.main
            else:
                full = barn_replace_empty_sheaf(s.node.barn, main)
                if full == NULL:
                    stat70(s, cpu, BARN_GET_FAIL)
                    pcs.lock = 0
                    break
                stat70(s, cpu, BARN_GET)
                pcs.main = full
                main = full
        batch = size - i if size - i < main.size else main.size
        main.size -= <unsigned int>batch
        memcpy(&p[i], &main.objects[main.size], batch * sizeof(void *))
        pcs.lock = 0
        stat70_add(s, cpu, ALLOC_FASTPATH, <long>batch)
        i += batch
    if i < size and kmem_cache_debug(s):
        # a debug cache's objects are checked one by one (alloc_debug_processing)
        while i < size:
            stat70(s, cpu, ALLOC_SLOWPATH)
            p[i] = ___slab_alloc(s, cpu)
            if p[i] == NULL:
                break
            i += 1
    elif i < size:
        i += refill_objects(s, p + i, size - i, size - i, cpu)
    return i


cdef int kmem_cache_free_bulk_sheaves(kmem_cache *s, size_t size, void **p,
                                      int cpu) noexcept nogil:
    """kmem_cache_free_bulk() of 7.0: free_to_pcs_bulk() -- under one lock
    at a time, as many objects as main has room for are copied onto it
    (FREE_FASTPATH per object).  A full main is replaced without dropping
    the lock: an empty barn sheaf (the full one becomes the spare), a spare
    with room, or the barn trades an empty sheaf for it; when the barn
    refuses (BARN_PUT_FAIL), or has no empty sheaf for a vCPU without a
    spare, the rest goes straight to the slabs as detached freelists.
    p[] is consumed.  Returns the objects a debug check refused."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef node_barn *barn = s.node.barn
    cdef slab_sheaf *main
    cdef slab_sheaf *empty
    cdef size_t i = 0, batch, j, rest
    cdef page *pg
    cdef void *freelist
    cdef void *tail
    cdef int cnt, refused = 0, err = 0
    while i < size and s.sheaf_capacity:
        if pcs.lock:                        # local_trylock() failed: fallback
            break
        pcs.lock = 1
        main = pcs.main
        if main.size == s.sheaf_capacity:
            if pcs.spare == NULL:
                empty = barn_get_empty_sheaf(barn)
                if empty == NULL:
                    pcs.lock = 0            # no_empty
                    break
                pcs.spare = main
                pcs.main = empty
            elif pcs.spare.size < s.sheaf_capacity:
                pcs.main = pcs.spare
                pcs.spare = main
            else:
                empty = barn_replace_full_sheaf(barn, main, &err)
                if empty == NULL:
                    stat70(s, cpu, BARN_PUT_FAIL)
                    pcs.lock = 0            # no_empty
                    break
                pcs.main = empty
            main = pcs.main
        batch = s.sheaf_capacity - main.size
        if batch > size - i:
            batch = size - i
        memcpy(&main.objects[main.size], &p[i], batch * sizeof(void *))
        main.size += <unsigned int>batch
        pcs.lock = 0
        stat70_add(s, cpu, FREE_FASTPATH, <long>batch)
        for j in range(batch):
            p[i + j] = NULL
        i += batch
    rest = size
    while rest:
        rest = build_detached_freelist(s, rest, p, &pg, &freelist, &tail, &cnt)
        if pg != NULL and not __slab_free(<kmem_cache *>pg.slab_cache, pg, freelist, tail, cnt, cpu):
            refused += cnt
    return refused


# ---------------------------------------------------------------------------
# kfree_rcu through rcu sheaves

cdef void rcu_free_sheaf(rcu_head *head) noexcept nogil:
    """rcu_free_sheaf(): the grace period of a full rcu sheaf is over: barn
    it as a full sheaf if the barn is under its limit, else flush it and
    keep it as an empty barn sheaf, or free it.  Runs on no vCPU."""
    cdef slab_sheaf *sh = <slab_sheaf *>head       # rcu is the first member
    cdef kmem_cache *s = sh.cache
    cdef node_barn *barn = s.node.barn
    # (departure: validate() holds check_lock to see no work half done; this
    # runs on the RCU thread, which validate() does not stop)
    spin_lock(&s.m.check_lock)
    if atomic_uint_read(&barn.nr_full) < MAX_FULL_SHEAVES:
        barn_put_full_sheaf(barn, sh)
        stat70(s, -1, BARN_PUT)
    else:
        stat70(s, -1, BARN_PUT_FAIL)
        sheaf_flush_unused(s, sh, -1)
        if atomic_uint_read(&barn.nr_empty) < MAX_EMPTY_SHEAVES:
            barn_put_empty_sheaf(barn, sh)
        else:
            free_empty_sheaf(s, sh, -1)
    atomic_long_add(&s.nr_sheaves_in_rcu, -1)
    spin_unlock(&s.m.check_lock)


cdef void rcu_free_sheaf_nobarn(rcu_head *head) noexcept nogil:
    """rcu_free_sheaf_nobarn(): a flushed (maybe partial) rcu sheaf: its
    objects go to their slabs, the sheaf is freed."""
    cdef slab_sheaf *sh = <slab_sheaf *>head
    cdef kmem_cache *s = sh.cache
    spin_lock(&s.m.check_lock)
    sheaf_flush_unused(s, sh, -1)
    free_empty_sheaf(s, sh, -1)
    atomic_long_add(&s.nr_sheaves_in_rcu, -1)
    spin_unlock(&s.m.check_lock)


cdef int kfree_rcu_sheaves(kmem_cache *s, page *pg, void *object, int cpu) noexcept nogil:
    """__kfree_rcu_sheaf() (7.0): push the object on the vCPU's rcu_free
    sheaf (the current one, an empty spare, an empty barn sheaf, or a new
    one); a full sheaf goes to call_rcu(rcu_free_sheaf).  0 if it could not
    (FREE_RCU_SHEAF_FAIL): the caller falls back to classic kfree_rcu."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef slab_sheaf *rcu_sheaf
    cdef slab_sheaf *empty
    if s.sheaf_capacity == 0 or pcs.lock:
        stat70(s, cpu, FREE_RCU_SHEAF_FAIL)
        return 0
    pcs.lock = 1
    rcu_sheaf = pcs.rcu_free
    if rcu_sheaf == NULL:
        if pcs.spare != NULL and pcs.spare.size == 0:
            rcu_sheaf = pcs.spare
            pcs.spare = NULL
        else:
            rcu_sheaf = barn_get_empty_sheaf(s.node.barn)
        if rcu_sheaf == NULL:
            pcs.lock = 0
            empty = alloc_empty_sheaf(s, cpu)       # GFP_NOWAIT, lock dropped
            if empty == NULL:
                stat70(s, cpu, FREE_RCU_SHEAF_FAIL)
                return 0
            pcs.lock = 1
            rcu_sheaf = empty
        pcs.rcu_free = rcu_sheaf
    rcu_sheaf.objects[rcu_sheaf.size] = object
    rcu_sheaf.size += 1
    if rcu_sheaf.size == s.sheaf_capacity:
        pcs.rcu_free = NULL
        rcu_sheaf.node = 0                          # numa_mem_id()
        atomic_long_add(&s.nr_sheaves_in_rcu, 1)
        call_rcu(&s.m.sc, &rcu_sheaf.rcu, rcu_free_sheaf)
    pcs.lock = 0
    stat70(s, cpu, FREE_RCU_SHEAF)
    return 1


# ---------------------------------------------------------------------------
# flush_all, shrink, shutdown

cdef void pcs_flush_all(kmem_cache *s, int cpu) noexcept nogil:
    """pcs_flush_all(): run on (or for) vCPU `cpu`: the spare is flushed and
    freed, rcu_free handed to call_rcu(rcu_free_sheaf_nobarn), main
    flushed (it stays, empty)."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef slab_sheaf *spare
    cdef slab_sheaf *rcu_free
    pcs.lock = 1
    spare = pcs.spare
    pcs.spare = NULL
    rcu_free = pcs.rcu_free
    pcs.rcu_free = NULL
    pcs.lock = 0
    if spare != NULL:
        sheaf_flush_unused(s, spare, cpu)
        free_empty_sheaf(s, spare, cpu)
    if rcu_free != NULL:
        atomic_long_add(&s.nr_sheaves_in_rcu, 1)
        call_rcu(&s.m.sc, &rcu_free.rcu, rcu_free_sheaf_nobarn)
    pcs.lock = 1
    sheaf_flush_main(s, cpu)


cdef void flush_cpu_sheaves(void *info, int cpu) noexcept nogil:
    pcs_flush_all(<kmem_cache *>info, cpu)


cdef bint has_pcs_used(int cpu, void *info) noexcept nogil:
    """has_pcs_used(): read remotely, as the kernel does."""
    cdef kmem_cache *s = <kmem_cache *>info
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    return (atomic_uint_read(&(<slab_sheaf *>ptr_read_once(<void **>&pcs.main)).size) != 0 or
            ptr_read_once(<void **>&pcs.spare) != NULL or
            ptr_read_once(<void **>&pcs.rcu_free) != NULL)


cdef int flush_all_sheaves(kmem_cache *s) noexcept nogil:
    """flush_all() of 7.0 (flush_all_cpus_locked): every vCPU whose sheaves
    are in use flushes them itself -- the kernel queues a work item on each
    such CPU and waits for it; here a cross-vCPU request, run by the
    vCPU's thread at its next irq-enabled or quiescent point (never inside
    a locked section), or by the sender on an idle vCPU.  -1 on a
    timeout."""
    if s.sheaf_capacity == 0:
        return 0
    if on_each_cpu_cond(&s.m.sc, has_pcs_used, flush_cpu_sheaves, s, s.m.ipi_timeout) != 0:
        s.m.ipi_timeouts += 1
        return -1
    return 0


cdef void barn_shrink(kmem_cache *s, node_barn *barn) noexcept nogil:
    """barn_shrink(): every barn sheaf is taken; full ones are flushed to
    slabs; all are freed."""
    cdef list_head full
    cdef list_head empty
    cdef slab_sheaf *sh
    if barn == NULL:
        return
    INIT_LIST_HEAD(&full)
    INIT_LIST_HEAD(&empty)
    spin_lock(&barn.lock)
    while not list_empty(&barn.sheaves_full):
        sh = barn_entry(barn.sheaves_full.next)
        list_del(&sh.barn_list)
        list_add(&sh.barn_list, &full)
    while not list_empty(&barn.sheaves_empty):
        sh = barn_entry(barn.sheaves_empty.next)
        list_del(&sh.barn_list)
        list_add(&sh.barn_list, &empty)
    barn.nr_full = 0
    barn.nr_empty = 0
    spin_unlock(&barn.lock)
    while not list_empty(&full):
        sh = barn_entry(full.next)
        list_del(&sh.barn_list)
        sheaf_flush_unused(s, sh, -1)
        free_empty_sheaf(s, sh, -1)
    while not list_empty(&empty):
        sh = barn_entry(empty.next)
        list_del(&sh.barn_list)
        free_empty_sheaf(s, sh, -1)


cdef int __kmem_cache_shrink_sheaves(kmem_cache *s) noexcept nogil:
    """__kmem_cache_shrink() of 7.0: flush_all, barn_shrink, then discard
    every empty partial slab; no RCU wait.  Departure: the kernel also
    sorts the rest of the partial list by free objects; it keeps its order
    here.  Returns 1 if slabs remain."""
    cdef kmem_cache_node *n = &s.node
    flush_all_sheaves(s)
    barn_shrink(s, n.barn)
    discard_empty_partial_slabs(s)
    return 1 if atomic_long_read(&n.nr_slabs) else 0


cdef int __kmem_cache_shutdown_sheaves(kmem_cache *s) noexcept nogil:
    """__kmem_cache_shutdown() of 7.0: flush every vCPU's sheaves
    (flush_all_cpus_locked: rcu_free sheaves go to call_rcu), then
    rcu_barrier() -- so that no rcu sheaf is still in flight (b55b423e8518)
    -- then barn_shrink and free_partial.  Fails (1) if slabs remain;
    the cache stays usable (the Python layer refuses the destroy).  (The
    kernel's kvfree_rcu_barrier_on_cache() before it flushes the rcu_free
    sheaves and waits too: the flush and the rcu_barrier() here cover it.)"""
    cdef kmem_cache_node *n = &s.node
    flush_all_sheaves(s)
    if s.m.rcu_barrier_in_shutdown:
        rcu_barrier(&s.m.sc, s.m.ipi_timeout)
    barn_shrink(s, n.barn)
    if atomic_long_read(&s.nr_sheaves_in_rcu):
        return 1                # a sheaf still in flight would land in a freed cache
    return free_partial(s)


# ---------------------------------------------------------------------------
# What the checks and counts need: the free objects the sheaves hold

cdef long sheaves_free_objects(kmem_cache *s) noexcept nogil:
    """Objects held by the cache's sheaves (every vCPU's, the barn's, in
    flight to call_rcu): free, though their slabs count them in use.  Read
    racily (a snapshot while vCPUs run; exact when they are quiet)."""
    cdef slab_sheaf *sh
    cdef long n = 0
    cdef unsigned int size
    if s.cpu_sheaves == NULL:
        return 0
    spin_lock(&s.sheaves_lock)
    sh = s.sheaves_all
    while sh != NULL:
        size = atomic_uint_read(&sh.size)
        n += size if size <= sh.capacity else sh.capacity
        sh = sh.all_next
    spin_unlock(&s.sheaves_lock)
    return n


cdef int sheaves_find(kmem_cache *s, page *pg, void *find, uint64_t *bits, void **hit,
                      uint64_t *free_bits) noexcept nogil:
    """The sheaves' objects of slab `pg` (of cache `s`), for the free checks
    and validate() (walk_free_objects): stop at `find`, or at an object
    whose bit is set in `bits` (*hit); else set each one's bit in
    `free_bits` (-1 if one is already set: an object twice free).  Returns
    how many of the slab's objects the sheaves hold.  Bounded racy reads
    (see kmem_cache.sheaves_all)."""
    cdef slab_sheaf *sh
    cdef unsigned int size, i
    cdef void *p
    cdef char *start = page_address(&s.m.z, pg)
    cdef uint64_t span = <uint64_t>PAGE_SIZE << pg.order, off
    cdef uint32_t idx
    cdef int count = 0
    if s.cpu_sheaves == NULL:
        return 0
    spin_lock(&s.sheaves_lock)
    sh = s.sheaves_all
    while sh != NULL:
        size = atomic_uint_read(&sh.size)
        if size > sh.capacity:
            size = sh.capacity
        for i in range(size):
            p = ptr_read_once(&sh.objects[i])
            off = <uint64_t>(<char *>p - start)
            if off >= span:
                continue
            count += 1
            idx = <uint32_t>((off * s.reciprocal_size) >> 32)
            if p == find or (bits != NULL and (bits[idx >> 6] >> (idx & 63)) & 1):
                hit[0] = p
                spin_unlock(&s.sheaves_lock)
                return count
            if free_bits != NULL:
                if (free_bits[idx >> 6] >> (idx & 63)) & 1:
                    spin_unlock(&s.sheaves_lock)
                    return -1
                free_bits[idx >> 6] |= <uint64_t>1 << (idx & 63)
        sh = sh.all_next
    spin_unlock(&s.sheaves_lock)
    return count
