# cython: language_level=3
"""SLUB's checks behind the Python API and validate(): the free checks
(check_objects: arena, slab, cache, object start, double free), the Python
API's record of the objects it handed out (py_live_*), the counts behind
cache_info()/slab_usage_info() (each vCPU counts its own per-cpu state),
and validate() (mm/slub.c validate_slab_cache and its helpers, Linux 4.0).
Split from slub.pyx, which keeps the algorithm and slub_debug's per-object
checks (check_object, free_debug_processing) that the slow paths call.
"""

from libc.stdint cimport uint64_t, uint32_t, uint16_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset
from libc.stdio cimport snprintf
from slubcy.atomic cimport (atomic_long_add, atomic_long_read, atomic_u64_fetch_and, atomic_u64_or,
                            atomic_u64_read, ptr_read_once, slab_cmpxchg, slab_word_read, spin_lock,
                            spin_unlock, u16_read_once, u8_read_once)
from slubcy.types cimport (slab_caches_first, slab_caches_next, memcgs_first, memcgs_next,
                           memcg_kmem_caches_first, memcg_kmem_caches_next)
from slubcy.types cimport (PAGE_SIZE, MAX_ORDER, kmem_cache, kmem_cache_cpu, kmem_cache_node,
                           mem_cgroup, page, slub_machine, zone, slab_sheaf, slub_percpu_sheaves,
                           node_barn)
from slubcy.list cimport list_head
from slubcy.sched cimport rcu_read_lock_ext, rcu_read_unlock_ext
from slubcy.sched cimport on_each_cpu_cond
from slubcy.page_alloc cimport page_address, virt_to_head_page, addr_in_arena, PG_slab, PG_slab_ctor
from slubcy.slub cimport *     # the algorithm's declarations, inline helpers and OBJ_* codes
from slubcy.sheaves cimport sheaves_find, sheaves_free_objects

# ---------------------------------------------------------------------------
# Checks for the Python API and validate()

cdef uint32_t mark_range(slub_machine *m, uint32_t span) noexcept nogil:
    """Reserve `span` fresh values of page.mark (the scratch tag of the free
    checks and validate()); returns the first.  Before the 32-bit counter
    wraps, every page's mark is reset, so no stale tag can be mistaken for a
    fresh one."""
    cdef size_t pfn
    cdef uint32_t top = <uint32_t>0xffffffffU
    if m.epoch > top - span - 1:
        for pfn in range(m.z.nr_pages):
            if m.z.mem_map[pfn].mark != 0:      # (reading keeps untouched entries unmapped)
                m.z.mem_map[pfn].mark = 0
        m.epoch = 0
    m.epoch += 1
    cdef uint32_t first = m.epoch
    m.epoch += span
    return first


cdef inline uint64_t slab_offset(kmem_cache *s, page *pg, void *p) noexcept nogil:
    """Offset of `p` in the slab whose head page is `pg`, for a `p` inside
    it: buddy blocks are aligned to their size from the arena base, so a
    mask (page_address() would divide by sizeof(struct page))."""
    return <uint64_t>(<char *>p - s.m.z.base) & ((<uint64_t>PAGE_SIZE << pg.order) - 1)


cdef inline uint32_t obj_to_index(kmem_cache *s, uint64_t off) noexcept nogil:
    """obj_to_index(): reciprocal_divide(offset, reciprocal_size) -- exact
    for any multiple of size below 4 MiB (q * (2^32 + e) >> 32 == q while
    q * e < 2^32)."""
    return <uint32_t>((off * s.reciprocal_size) >> 32)


cdef inline bint bit_test_and_set(uint64_t *bits, uint32_t i) noexcept nogil:
    cdef uint64_t mask = <uint64_t>1 << (i & 63)
    cdef bint was = (bits[i >> 6] & mask) != 0
    bits[i >> 6] |= mask
    return was


cdef inline bint bit_test(uint64_t *bits, uint32_t i) noexcept nogil:
    return (bits[i >> 6] >> (i & 63)) & 1


cdef inline bint valid_offset(kmem_cache *s, page *pg, uint64_t off) noexcept nogil:
    """check_valid_pointer() on an offset into slab `pg`: an object start
    (a non-multiple of size fails idx * size == off) of one of its objects."""
    cdef uint64_t idx = obj_to_index(s, off)
    return idx * <uint64_t>s.size == off and idx < fc_objects(pg.fc)


cdef int classify_object(kmem_cache *s, void *p, page **pgp) noexcept nogil:
    cdef zone *z = &s.m.z
    cdef page *pg
    if not addr_in_arena(z, <uintptr_t>p):
        return OBJ_OUTSIDE_ARENA
    pg = virt_to_head_page(z, p)
    if not (pg.flags & PG_slab):
        return OBJ_NOT_SLAB
    if pg.flags & PG_slab_ctor:
        return OBJ_CONSTRUCTING
    if pg.slab_cache != <void *>s and (<kmem_cache *>pg.slab_cache).root != s:
        return OBJ_WRONG_CACHE          # (a memcg child cache of s is s: cache_from_obj)
    if not valid_offset(s, pg, slab_offset(s, pg, p)):
        return OBJ_NOT_OBJECT
    pgp[0] = pg
    return OBJ_OK


cdef int walk_free_objects(kmem_cache *s, page *pg, uint64_t *bits, void *find,
                           void **hit, int *on_page) noexcept nogil:
    """Visit the free objects of slab `pg`: its own freelist and, for a cpu
    slab, the cpu freelist (on_freelist()).  Stop at the first that is
    `find`, or whose bit is set in `bits` when `hit` is given (returned in
    *hit); else, with `bits`, set the bit of each (indexed by obj_to_index).
    Returns the number of free objects (those on the page's own list in
    *on_page), or -1 on a corrupt (too long, stray or looping) list."""
    cdef kmem_cache_cpu *c
    cdef void *p
    cdef int cpu, count = 0, limit = fc_objects(pg.fc)
    cdef int pass_
    cdef char *start = page_address(&s.m.z, pg)
    cdef uint64_t off, size = <uint64_t>PAGE_SIZE << pg.order
    for pass_ in range(s.m.nr_cpus + 1):
        if pass_ == 0:
            p = fc_freelist(&s.m.z, slab_word_read(&pg.fc))
        else:
            c = &s.cpu_slab[pass_ - 1]
            if c.page != pg:
                continue
            p = c.freelist
        while p != NULL:
            count += 1
            off = <uint64_t>(<char *>p - start)     # (p < start wraps: too large)
            if count > limit or off >= size or not valid_offset(s, pg, off):
                return -1
            if p == find:
                hit[0] = p
                return count
            if bits != NULL:
                if hit != NULL:
                    if bit_test(bits, obj_to_index(s, off)):
                        hit[0] = p
                        return count
                elif bit_test_and_set(bits, obj_to_index(s, off)):
                    return -1           # on two freelists, or a loop
            p = get_freepointer(s, p)
        if pass_ == 0 and on_page != NULL:
            on_page[0] = count
    if s.cpu_sheaves != NULL:
        # 7.0: the free objects the sheaves hold (main, spare, rcu_free of
        # every vCPU, the barn's, those in flight to call_rcu)
        pass_ = sheaves_find(s, pg, find, bits if hit != NULL else NULL, hit,
                             bits if hit == NULL else NULL)
        if pass_ < 0:
            return -1
        count += pass_
        if hit == NULL and bits != NULL:        # (validate()'s walk: under check_lock)
            s.v_sheaf_hits += pass_
        if count > limit:
            return -1
    return count


cdef int check_objects(kmem_cache *s, void **objs, size_t n, size_t *bad) noexcept nogil:
    """Before freeing objs[0..n): each must be a live object of `s` (the checks
    of free_debug_processing, for every cache): inside the arena, in a slab of
    this cache, at an object start, not twice in the request and not on any
    freelist (on_freelist()).  Returns OBJ_OK or the first problem, its index
    in *bad.  One object: a walk of its slab's freelists.  More: each slab
    touched gets a scratch bitmap of its requested objects (its slot in the
    table is its page.mark, from mark_range()), then each such slab's
    freelists are walked once against it.  -1 if out of memory."""
    cdef slub_machine *m = s.m
    cdef page *pg = NULL
    cdef void *hit = NULL
    cdef int code = OBJ_OK
    if n == 1:
        code = classify_object(s, objs[0], &pg)
        if code == OBJ_OK and py_live_test(s, pg, objs[0]):
            bad[0] = 0
            return OBJ_OK               # handed out by the Python API, not taken back
        if code == OBJ_OK and walk_free_objects(<kmem_cache *>pg.slab_cache, pg, NULL, objs[0],
                                                &hit, NULL) > 0 and hit != NULL:
            code = OBJ_ALREADY_FREE
        bad[0] = 0
        return code
    if n == 0:
        return OBJ_OK
    spin_lock(&m.check_lock)            # page.mark tags are this call's until it returns
    code = __check_objects(s, objs, n, bad)
    spin_unlock(&m.check_lock)
    return code


cdef int __check_objects(kmem_cache *s, void **objs, size_t n, size_t *bad) noexcept nogil:
    cdef slub_machine *m = s.m
    cdef size_t i, j, ntouched = 0, wps, cap
    cdef page *pg = NULL
    cdef page **touched
    cdef page **grown
    cdef uint64_t *bits
    cdef uint64_t *more = NULL
    cdef char *start = NULL
    cdef uint64_t off, size = 0
    cdef void *hit = NULL
    cdef int code = OBJ_OK
    cdef uint32_t base
    wps = (<size_t>oo_objects(s.oo) + 63) >> 6      # every slab of s (or a child) fits
    cap = 16 if n > 16 else n
    touched = <page **>malloc(cap * sizeof(page *))
    bits = <uint64_t *>calloc(cap * wps, sizeof(uint64_t))
    if touched == NULL or bits == NULL:
        free(touched)
        free(bits)
        return -1
    base = mark_range(m, <uint32_t>n)
    for i in range(n):
        # objects of a bulk request come slab by slab: the previous object's
        # slab needs no new classification, only an object-start check
        off = <uint64_t>(<char *>objs[i] - start)
        if pg != NULL and off < size:
            if not valid_offset(s, pg, off):
                code = OBJ_NOT_OBJECT
        else:
            code = classify_object(s, objs[i], &pg)
            if code == OBJ_OK:
                start = page_address(&m.z, pg)
                size = <uint64_t>PAGE_SIZE << pg.order
        if code != OBJ_OK:
            bad[0] = i
            break
        if pg.mark < base or pg.mark >= base + ntouched:
            if ntouched == cap:                 # grow the table (at most n slabs)
                cap = cap * 2 if cap * 2 < n else n
                grown = <page **>realloc(touched, cap * sizeof(page *))
                if grown != NULL:
                    touched = grown
                    more = <uint64_t *>realloc(bits, cap * wps * sizeof(uint64_t))
                if grown == NULL or more == NULL:
                    free(touched)
                    free(bits)
                    return -1
                bits = more
                memset(bits + ntouched * wps, 0, (cap - ntouched) * wps * sizeof(uint64_t))
            pg.mark = base + <uint32_t>ntouched
            touched[ntouched] = pg
            ntouched += 1
        if bit_test_and_set(bits + (pg.mark - base) * wps, obj_to_index(s, <uint64_t>(<char *>objs[i] - start))):
            code = OBJ_DUPLICATE
            bad[0] = i
            break
    if code == OBJ_OK:
        for i in range(ntouched):
            hit = NULL
            if walk_free_objects(<kmem_cache *>touched[i].slab_cache, touched[i], bits + i * wps,
                                 NULL, &hit, NULL) > 0 and hit != NULL:
                code = OBJ_ALREADY_FREE
                for j in range(n):
                    if objs[j] == hit:
                        bad[0] = j
                        break
                break
    free(bits)
    free(touched)
    return code


# The Python API's record of the objects it handed out: a bitmap per slab
# (page.py_live), set by kmem_cache_alloc() from Python and cleared by every
# free from Python, so a single-object free that finds its bit set needs no
# walk of the freelists.  Departure, and no kernel structure: SLUB's debug
# free checks (on_freelist) always walk.  A set bit means "live" for sure
# (only Python frees take back what Python handed out); a clear bit means
# "walk to know" (objects of bulk calls and of workers have none).

cdef void py_live_mark(kmem_cache *s, void *p) noexcept nogil:
    """Python handed out `p`: set its bit (the slab's bitmap is made on
    first use; without memory the bit is just not set)."""
    cdef page *pg = virt_to_head_page(&s.m.z, p)
    cdef uint64_t bits = slab_word_read(&pg.py_live)
    cdef uint32_t idx
    if bits == 0:
        bits = <uint64_t><uintptr_t>calloc((<size_t>fc_objects(pg.fc) + 63) >> 6, sizeof(uint64_t))
        if bits == 0:
            return
        if slab_cmpxchg(&pg.py_live, 0, bits):
            atomic_long_add(&s.m.nr_py_live, 1)
        else:                           # another thread made it first
            free(<void *><uintptr_t>bits)
            bits = slab_word_read(&pg.py_live)
    idx = obj_to_index(s, slab_offset(s, pg, p))
    atomic_u64_or(<uint64_t *><uintptr_t>bits + (idx >> 6), <uint64_t>1 << (idx & 63))


cdef inline bint py_live_test(kmem_cache *s, page *pg, void *p) noexcept nogil:
    cdef uint64_t bits = slab_word_read(&pg.py_live)
    cdef uint32_t idx
    if bits == 0:
        return False
    idx = obj_to_index(s, slab_offset(s, pg, p))
    return (atomic_u64_read(<uint64_t *><uintptr_t>bits + (idx >> 6)) >> (idx & 63)) & 1


cdef void py_live_clear(kmem_cache *s, page *pg, void *p) noexcept nogil:
    """Before a free from Python (a clear bit is always safe: it only means
    the next check walks)."""
    cdef uint64_t bits = slab_word_read(&pg.py_live)
    cdef uint32_t idx
    if bits != 0:
        idx = obj_to_index(s, slab_offset(s, pg, p))
        atomic_u64_fetch_and(<uint64_t *><uintptr_t>bits + (idx >> 6), ~(<uint64_t>1 << (idx & 63)))


cdef void py_live_release_all(slub_machine *m) noexcept nogil:
    """Machine teardown: free the bitmaps of the slabs still in use."""
    cdef size_t pfn = 0
    cdef page *pg
    while m.nr_py_live > 0 and pfn < m.z.nr_pages:
        pg = &m.z.mem_map[pfn]
        if pg.py_live != 0:
            free(<void *><uintptr_t>pg.py_live)
            pg.py_live = 0
            m.nr_py_live -= 1
        pfn += 1


cdef int object_is_live(kmem_cache *s, void *object) noexcept nogil:
    """1 if `object` is an allocated object of `s`, else the OBJ_* problem."""
    cdef size_t bad
    cdef void *objs[1]
    objs[0] = object
    cdef int code = check_objects(s, objs, 1, &bad)
    return 1 if code == OBJ_OK else -code


cdef struct cpu_usage:
    kmem_cache **caches
    int n
    long *freelist              # [nr_cpus]: objects on the vCPU's cpu freelists of `caches`
    long *cpu_slabs             # [nr_cpus]: its cpu slabs
    long *cpu_partial           # [nr_cpus]: slabs on its cpu partial lists


cdef void cpu_usage_fn(void *info, int cpu) noexcept nogil:
    """Run by vCPU `cpu` itself (its owner at an irq-enabled point, or the
    sender on an idle vCPU it borrowed): its kmem_cache_cpu of each cache,
    which only it writes.  It may be stopped inside an operation (held or
    preempted at a point), so the walks stay bounded all the same."""
    cdef cpu_usage *u = <cpu_usage *>info
    cdef kmem_cache *s
    cdef kmem_cache_cpu *c
    cdef page *pg
    cdef long fl = 0, slabs = 0, partial = 0, chain
    cdef int i
    for i in range(u.n):
        s = u.caches[i]
        c = &s.cpu_slab[cpu]
        fl += cpu_freelist_count(s, cpu)
        if c.page != NULL:
            slabs += 1
        pg = c.partial
        chain = 0
        while pg != NULL and chain <= atomic_long_read(&s.node.nr_slabs):
            chain += 1
            pg = pg.u.pc.next
        partial += chain
    u.freelist[cpu] = fl
    u.cpu_slabs[cpu] = slabs
    u.cpu_partial[cpu] = partial


cdef int cpu_usage_collect(slub_machine *m, kmem_cache **caches, int n, long *freelist,
                           long *cpu_slabs, long *cpu_partial) noexcept nogil:
    """Sum over vCPUs of cpu_usage_fn for `caches` (which the caller keeps
    allocated: a read-side section or the cache's calls in flight): one
    cross-vCPU request per vCPU, as flush_all() sends, since a running
    vCPU's freelist lives in objects its owner writes (the kernel's slabinfo
    never walks other CPUs' freelists).  0, or -1 if a vCPU did not answer
    in time (its part is left out)."""
    cdef cpu_usage u
    cdef int cpu, rc
    cdef long *buf = <long *>calloc(3 * <size_t>m.nr_cpus, sizeof(long))
    freelist[0] = 0
    cpu_slabs[0] = 0
    cpu_partial[0] = 0
    if buf == NULL:
        return -1
    u.caches = caches
    u.n = n
    u.freelist = buf
    u.cpu_slabs = buf + m.nr_cpus
    u.cpu_partial = buf + 2 * m.nr_cpus
    rc = on_each_cpu_cond(&m.sc, NULL, cpu_usage_fn, &u, m.ipi_timeout)
    if rc != 0:
        m.ipi_timeouts += 1
    for cpu in range(m.nr_cpus):
        freelist[0] += u.freelist[cpu]
        cpu_slabs[0] += u.cpu_slabs[cpu]
        cpu_partial[0] += u.cpu_partial[cpu]
    free(buf)
    return rc


cdef int cache_counts(kmem_cache *s, cache_counts_t *out) noexcept nogil:
    """Numbers behind /proc/slabinfo and tools/vm/slabinfo: nr_slabs,
    nr_partial, total_objects, free objects on node-partial slabs
    (count_partial(n, count_free)), cpu slabs, cpu partial slabs.  The
    per-cpu ones are read by each vCPU (cpu_usage_collect).  The caller
    keeps `s` allocated and has released the GIL.  0, or -1 on an IPI
    timeout."""
    cdef kmem_cache_node *n = &s.node
    cdef list_head *pos
    cdef uint64_t w
    cdef long partial_free = 0, freelist
    cdef int rc
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        w = slab_word_read(&lru_to_page(pos).fc)
        partial_free += fc_objects(w) - fc_inuse(w)
        pos = pos.next
    out.nr_partial = n.nr_partial
    spin_unlock(&n.list_lock)
    rc = cpu_usage_collect(s.m, &s, 1, &freelist, &out.cpu_slabs, &out.cpu_partial_slabs)
    out.nr_slabs = atomic_long_read(&n.nr_slabs)
    out.total_objects = atomic_long_read(&n.total_objects)
    out.partial_free_objects = partial_free
    return rc


cdef long cpu_freelist_count(kmem_cache *s, int cpu) noexcept nogil:
    """Objects on vCPU `cpu`'s freelist of `s`, read by that vCPU (or with
    the machine quiet).  It may be stopped inside an operation: follow only
    free pointers to object starts inside its cpu slab, at most a slab's
    objects."""
    cdef kmem_cache_cpu *c = &s.cpu_slab[cpu]
    cdef page *pg = c.page
    cdef char *p = <char *>c.freelist
    cdef char *start
    cdef size_t span
    cdef long n = 0, limit
    if pg == NULL or p == NULL:
        return 0
    start = page_address(&s.m.z, pg)
    span = <size_t>PAGE_SIZE << pg.order
    limit = <long>(span // s.size)
    while p != NULL and n < limit:
        if p < start or <size_t>(p - start) >= span or <size_t>(p - start) % s.size != 0:
            break
        n += 1
        p = <char *>get_freepointer(s, p)
    return n


cdef int slab_usage(slub_machine *m, kmem_cache *only, long *in_use, long *slots,
                    long *pages) noexcept nogil:
    """Objects in use, object slots and slab pages of cache `only` (NULL: of
    every cache), in one pass over the page map: the slabs' inuse counts
    minus the objects on cpu freelists (taken from their slab, but free),
    which each vCPU counts (cpu_usage_collect).  While vCPUs run, a
    snapshot: the page map is read with READ_ONCE (as the kernel's pfn
    walkers do), each page once.  The caller keeps `only` allocated and has
    released the GIL.  0, or -1 on an IPI timeout or out of memory."""
    cdef zone *z = &m.z
    cdef size_t pfn = 0
    cdef page *pg
    cdef long used = 0, total = 0, npages = 0, freelist, cpu_slabs, cpu_partial
    cdef kmem_cache *s
    cdef kmem_cache **caches
    cdef int nr = 0, rc = 0, cpu_
    cdef uint16_t flags
    cdef uint64_t w
    cdef unsigned int order
    while pfn < z.nr_pages:
        pg = &z.mem_map[pfn]
        flags = u16_read_once(&pg.flags)
        if flags & PG_slab and (only == NULL or ptr_read_once(&pg.slab_cache) == <void *>only):
            w = slab_word_read(&pg.fc)
            order = u8_read_once(&pg.order)
            used += fc_inuse(w)
            total += fc_objects(w)
            npages += <long>1 << order
            pfn += <size_t>1 << order
        else:
            pfn += 1
    if only != NULL:
        rc = cpu_usage_collect(m, &only, 1, &freelist, &cpu_slabs, &cpu_partial)
        freelist += sheaves_free_objects(only)      # 7.0: free, counted in use by their slabs
    else:
        # every cache: a read-side section keeps those destroyed meanwhile
        # allocated (they are freed by call_rcu) until their vCPUs answered
        rcu_read_lock_ext(&m.sc)
        spin_lock(&m.slab_lock)
        s = slab_caches_first(m)
        while s != NULL:
            nr += 1
            s = slab_caches_next(m, s)
        caches = <kmem_cache **>malloc((nr + 1) * sizeof(kmem_cache *))
        if caches != NULL:
            nr = 0
            s = slab_caches_first(m)
            while s != NULL:
                caches[nr] = s
                nr += 1
                s = slab_caches_next(m, s)
        spin_unlock(&m.slab_lock)
        if caches != NULL:
            rc = cpu_usage_collect(m, caches, nr, &freelist, &cpu_slabs, &cpu_partial)
            for cpu_ in range(nr):
                freelist += sheaves_free_objects(caches[cpu_])
            free(caches)
        else:
            rc = -1
            freelist = 0
        rcu_read_unlock_ext(&m.sc)
    in_use[0] = used - freelist
    slots[0] = total
    pages[0] = npages
    return rc


cdef int validate_lists(kmem_cache *s, uint32_t ON_NODE, uint32_t ON_CPU, char *err,
                        size_t errlen) noexcept nogil:
    """The node partial list and every cpu slab / cpu partial list of `s`:
    well formed, of this cache, frozen where they must be, each slab on one
    list only (marked in page.mark for validate_slab)."""
    cdef slub_machine *m = s.m
    cdef zone *z = &m.z
    cdef kmem_cache_node *n = &s.node
    cdef kmem_cache_cpu *c
    cdef list_head *pos
    cdef page *pg
    cdef long nr_partial = 0, chain
    cdef int cpu
    spin_lock(&n.list_lock)
    pos = n.partial.next
    while pos != &n.partial:
        pg = lru_to_page(pos)
        nr_partial += 1
        if nr_partial > n.nr_partial + 1 or pos.next == NULL or pos.next.prev != pos:
            spin_unlock(&n.list_lock)
            snprintf(err, errlen, "%s: node partial list corrupt", s.name)
            return -1
        if not (pg.flags & PG_slab) or pg.slab_cache != <void *>s:
            spin_unlock(&n.list_lock)
            snprintf(err, errlen, "%s: node partial list holds a page not of this cache", s.name)
            return -1
        if fc_frozen(pg.fc):
            spin_unlock(&n.list_lock)
            snprintf(err, errlen, "%s: frozen slab %p on the node partial list", s.name,
                     page_address(z, pg))
            return -1
        pg.mark = ON_NODE
        pos = pos.next
    spin_unlock(&n.list_lock)
    if nr_partial != n.nr_partial:
        snprintf(err, errlen, "%s: nr_partial %ld but %ld slabs on the list", s.name,
                 n.nr_partial, nr_partial)
        return -1
    for cpu in range(m.nr_cpus):
        c = &s.cpu_slab[cpu]
        if c.freelist != NULL and c.page == NULL:
            snprintf(err, errlen, "%s: cpu %d has a freelist but no cpu slab", s.name, cpu)
            return -1
        if c.page != NULL:
            pg = c.page
            if not (pg.flags & PG_slab) or pg.slab_cache != <void *>s or not fc_frozen(pg.fc):
                snprintf(err, errlen, "%s: cpu %d slab is not a frozen slab of this cache", s.name, cpu)
                return -1
            if pg.mark == ON_NODE or (ON_CPU <= pg.mark < ON_CPU + <uint32_t>m.nr_cpus):
                snprintf(err, errlen, "%s: cpu %d slab %p is on another list too", s.name, cpu,
                         page_address(z, pg))
                return -1
            pg.mark = ON_CPU + cpu
        pg = c.partial
        chain = 0
        while pg != NULL:
            chain += 1
            if chain > atomic_long_read(&n.nr_slabs) or not (pg.flags & PG_slab) \
                    or pg.slab_cache != <void *>s or not fc_frozen(pg.fc):
                snprintf(err, errlen, "%s: cpu %d partial list corrupt", s.name, cpu)
                return -1
            if pg.mark == ON_NODE or (ON_CPU <= pg.mark < ON_CPU + <uint32_t>m.nr_cpus):
                snprintf(err, errlen, "%s: cpu %d partial slab %p is on another list too", s.name,
                         cpu, page_address(z, pg))
                return -1
            pg.mark = ON_CPU + cpu
            pg = pg.u.pc.next
    s.v_slabs = 0
    s.v_objects = 0
    s.v_used = 0
    s.v_sheaf_hits = 0
    if s.cpu_sheaves != NULL:
        return validate_sheaves(s, err, errlen)
    return 0


cdef int validate_sheaves(kmem_cache *s, char *err, size_t errlen) noexcept nogil:
    """7.0: every vCPU has a main sheaf (the bootstrap one without sheaves),
    no sheaf holds more than its capacity, a spare and the barn's sheaves
    are of this cache, the barn's counts match its lists and its full
    sheaves are full."""
    cdef slub_percpu_sheaves *pcs
    cdef node_barn *barn = s.node.barn
    cdef slab_sheaf *sh
    cdef list_head *pos
    cdef slab_sheaf *three[3]
    cdef unsigned int nr
    cdef int cpu, k
    for cpu in range(s.m.nr_cpus):
        pcs = &s.cpu_sheaves[cpu]
        if pcs.main == NULL or (s.sheaf_capacity == 0 and pcs.main != &s.m.bootstrap_sheaf):
            snprintf(err, errlen, "%s: cpu %d has no main sheaf", s.name, cpu)
            return -1
        if pcs.lock:
            snprintf(err, errlen, "%s: cpu %d sheaves left locked", s.name, cpu)
            return -1
        three[0] = pcs.main
        three[1] = pcs.spare
        three[2] = pcs.rcu_free
        for k in range(3):
            sh = three[k]
            if sh != NULL and sh != &s.m.bootstrap_sheaf and (sh.cache != s or sh.freed or
                                                           sh.size > sh.capacity):
                snprintf(err, errlen, "%s: cpu %d sheaf corrupt (size %u of %u)", s.name, cpu,
                         sh.size, sh.capacity)
                return -1
    if barn == NULL:
        return 0
    spin_lock(&barn.lock)
    nr = 0
    pos = barn.sheaves_full.next
    while pos != &barn.sheaves_full and nr <= barn.nr_full:
        sh = <slab_sheaf *>(<char *>pos - <size_t>&(<slab_sheaf *>0).barn_list)
        if sh.size != sh.capacity or sh.cache != s:
            spin_unlock(&barn.lock)
            snprintf(err, errlen, "%s: barn full sheaf with %u of %u objects", s.name, sh.size,
                     sh.capacity)
            return -1
        nr += 1
        pos = pos.next
    if nr != barn.nr_full:
        spin_unlock(&barn.lock)
        snprintf(err, errlen, "%s: barn nr_full %u but %u sheaves on its list", s.name,
                 barn.nr_full, nr)
        return -1
    nr = 0
    pos = barn.sheaves_empty.next
    while pos != &barn.sheaves_empty and nr <= barn.nr_empty:
        sh = <slab_sheaf *>(<char *>pos - <size_t>&(<slab_sheaf *>0).barn_list)
        if sh.size != 0:
            spin_unlock(&barn.lock)
            snprintf(err, errlen, "%s: barn empty sheaf holds %u objects", s.name, sh.size)
            return -1
        nr += 1
        pos = pos.next
    spin_unlock(&barn.lock)
    if nr != barn.nr_empty:
        snprintf(err, errlen, "%s: barn nr_empty %u but %u sheaves on its list", s.name,
                 barn.nr_empty, nr)
        return -1
    return 0


cdef int validate_slab(kmem_cache *s, page *pg, uint32_t ON_NODE, uint32_t ON_CPU, char *err,
                       size_t errlen) noexcept nogil:
    """validate_slab(): one slab's counters, freelists, debug bytes and list
    membership against what validate_lists() marked.  Adds to s.v_*."""
    cdef slub_machine *m = s.m
    cdef zone *z = &m.z
    cdef uint64_t w = slab_word_read(&pg.fc)
    cdef int objects = fc_objects(w), nfree, on_page, i
    cdef char *start = page_address(z, pg)
    cdef bint on_cpu_list = ON_CPU <= pg.mark < ON_CPU + <uint32_t>m.nr_cpus
    cdef uint64_t free_bits[(MAX_OBJS_PER_PAGE + 64) >> 6]     # 4 KiB: which objects are free
    s.v_slabs += 1
    s.v_objects += objects
    if not ((pg.order == oo_order(s.oo) and objects == oo_objects(s.oo)) or
            (pg.order == oo_order(s.min) and objects == oo_objects(s.min))):
        snprintf(err, errlen, "%s: slab %p has order %d with %d objects", s.name,
                 start, <int>pg.order, objects)
        return -1
    memset(free_bits, 0, ((<size_t>objects + 63) >> 6) * sizeof(uint64_t))
    nfree = walk_free_objects(s, pg, free_bits, NULL, NULL, &on_page)
    if nfree < 0:
        snprintf(err, errlen, "%s: slab %p freelist corrupt", s.name, start)
        return -1
    if pg.py_live != 0:
        # what the Python API handed out and took no back must be in use
        for i in range((objects + 63) >> 6):
            if (<uint64_t *><uintptr_t>pg.py_live)[i] & free_bits[i]:
                snprintf(err, errlen, "%s: slab %p: a free object is marked as handed out "
                         "to Python (py_live)", s.name, start)
                return -1
    if kmem_cache_debug(s):
        for i in range(objects):
            if not check_object(s, pg, start + <size_t>i * s.size,
                                SLUB_RED_INACTIVE if bit_test(free_bits, i) else SLUB_RED_ACTIVE):
                snprintf(err, errlen, "%s: object %p: red zone or poison overwritten", s.name,
                         start + <size_t>i * s.size)
                return -1
    # page inuse counts the cpu freelist's objects as in use (they are taken
    # from the page): it must equal objects minus the page freelist
    if <int>fc_inuse(w) != objects - on_page:
        snprintf(err, errlen, "%s: slab %p inuse %d but %d of %d objects on its freelist",
                 s.name, start, <int>fc_inuse(w), on_page, objects)
        return -1
    s.v_used += objects - nfree
    if s.cpu_sheaves != NULL:
        # 7.0: nothing is frozen; a slab is on the node list (SL_partial) iff
        # its own freelist has objects -- those whose objects all sit in
        # sheaves are full and off-list, as get_freelist_nofreeze leaves them
        if fc_frozen(w):
            snprintf(err, errlen, "%s: frozen slab %p under sheaves", s.name, start)
            return -1
        if (pg.mark == ON_NODE) != (pg.sl_partial != 0):
            snprintf(err, errlen, "%s: slab %p SL_partial %d disagrees with the node list",
                     s.name, start, <int>pg.sl_partial)
            return -1
        if on_page > 0 and pg.mark != ON_NODE:
            snprintf(err, errlen, "%s: slab %p has free objects but is on no list", s.name, start)
            return -1
        if on_page == 0 and pg.mark == ON_NODE:
            snprintf(err, errlen, "%s: full slab %p on the partial list", s.name, start)
            return -1
        return 0
    if fc_frozen(w):
        if not on_cpu_list:
            snprintf(err, errlen, "%s: frozen slab %p belongs to no cpu", s.name, start)
            return -1
    else:
        if on_cpu_list:
            snprintf(err, errlen, "%s: cpu slab %p is not frozen", s.name, start)
            return -1
        if nfree > 0 and pg.mark != ON_NODE:
            snprintf(err, errlen, "%s: slab %p has free objects but is on no list", s.name, start)
            return -1
        if nfree == 0 and pg.mark == ON_NODE:
            snprintf(err, errlen, "%s: full slab %p on the partial list", s.name, start)
            return -1
    return 0


cdef int validate_counts(kmem_cache *s, char *err, size_t errlen) noexcept nogil:
    cdef kmem_cache_node *n = &s.node
    cdef long held
    if s.cpu_sheaves != NULL:
        held = sheaves_free_objects(s)
        if held != s.v_sheaf_hits:
            snprintf(err, errlen, "%s: sheaves hold %ld objects but %ld are objects of its slabs",
                     s.name, held, s.v_sheaf_hits)
            return -1
    if s.v_slabs != atomic_long_read(&n.nr_slabs) or s.v_objects != atomic_long_read(&n.total_objects):
        snprintf(err, errlen, "%s: node counts %ld slabs / %ld objects but found %ld / %ld",
                 s.name, atomic_long_read(&n.nr_slabs), atomic_long_read(&n.total_objects),
                 s.v_slabs, s.v_objects)
        return -1
    return 0


cdef int validate_cache(kmem_cache *s, char *err, size_t errlen, long *in_use) noexcept nogil:
    """validate_slab_cache(): every slab of the cache, every list it is on, and
    every counter must agree.  0 if consistent, else -1 with a message."""
    cdef slub_machine *m = s.m
    cdef zone *z = &m.z
    cdef page *pg
    cdef size_t pfn = 0
    cdef uint32_t ON_NODE, ON_CPU
    cdef int rc = 0
    spin_lock(&m.check_lock)
    ON_NODE = mark_range(m, <uint32_t>(m.nr_cpus + 1))
    ON_CPU = ON_NODE + 1      # + cpu
    rc = validate_lists(s, ON_NODE, ON_CPU, err, errlen)
    while pfn < z.nr_pages and rc == 0:
        pg = &z.mem_map[pfn]
        if not (pg.flags & PG_slab) or pg.slab_cache != <void *>s:
            pfn += 1
            continue
        pfn += <size_t>1 << pg.order
        rc = validate_slab(s, pg, ON_NODE, ON_CPU, err, errlen)
    # the counts too under check_lock: 7.0's rcu sheaf callbacks (on no
    # vCPU) take it before they flush a sheaf or discard a slab
    if rc == 0:
        rc = validate_counts(s, err, errlen)
    spin_unlock(&m.check_lock)
    if rc != 0:
        return -1
    if in_use != NULL:
        in_use[0] = s.v_used
    return 0


cdef int validate_all(slub_machine *m, char *err, size_t errlen) noexcept nogil:
    """validate_cache() of every cache in one pass over the page map (each
    cache's objects in use are left in its v_used), then the memcgs'
    child-cache lists and the page allocator's counts."""
    cdef zone *z = &m.z
    cdef page *pg
    cdef size_t pfn = 0
    cdef kmem_cache *s
    cdef uint32_t ON_NODE, ON_CPU
    cdef int rc = 0
    spin_lock(&m.check_lock)
    ON_NODE = mark_range(m, <uint32_t>(m.nr_cpus + 1))
    ON_CPU = ON_NODE + 1
    spin_lock(&m.slab_lock)
    s = slab_caches_first(m)
    while s != NULL and rc == 0:
        rc = validate_lists(s, ON_NODE, ON_CPU, err, errlen)
        s = slab_caches_next(m, s)
    while pfn < z.nr_pages and rc == 0:
        pg = &z.mem_map[pfn]
        if not (pg.flags & PG_slab):
            pfn += 1
            continue
        pfn += <size_t>1 << pg.order
        rc = validate_slab(<kmem_cache *>pg.slab_cache, pg, ON_NODE, ON_CPU, err, errlen)
    s = slab_caches_first(m)
    while s != NULL and rc == 0:
        rc = validate_counts(s, err, errlen)
        s = slab_caches_next(m, s)
    if rc == 0:
        rc = validate_memcgs(m, err, errlen)
    spin_unlock(&m.slab_lock)
    spin_unlock(&m.check_lock)
    if rc == 0:
        rc = validate_zone(&m.z, err, errlen)
    return rc


cdef int validate_memcgs(slub_machine *m, char *err, size_t errlen) noexcept nogil:
    """Each memcg's child-cache list (memcg->kmem_caches): linked both ways,
    every cache on it charged to that memcg and not destroyed.  Called with
    slab_lock held (the lists' lock)."""
    cdef mem_cgroup *g = memcgs_first(m)
    cdef kmem_cache *s
    cdef list_head *prev
    while g != NULL:
        prev = &g.kmem_caches
        s = memcg_kmem_caches_first(g)
        while s != NULL:
            if s.kmem_caches_node.prev != prev or s.memcg != g or s.destroyed:
                snprintf(err, errlen, "memcg %s: child cache list broken at %s", g.name, s.name)
                return -1
            prev = &s.kmem_caches_node
            s = memcg_kmem_caches_next(g, s)
        g = memcgs_next(m, g)
    return 0


cdef int validate_zone(zone *z, char *err, size_t errlen) noexcept nogil:
    """The page allocator's books: free blocks (nr_free per order) plus pages
    in use add up to the zone's pages.  Takes zone->lock (the counts' lock)."""
    cdef long free_pages = 0, used
    cdef int order
    spin_lock(&z.lock)
    for order in range(MAX_ORDER):
        free_pages += z.nr_free[order] << order
    used = z.pages_used
    spin_unlock(&z.lock)
    if free_pages + used != <long>z.nr_pages:
        snprintf(err, errlen, "page allocator: %ld free + %ld used != %ld pages",
                 free_pages, used, <long>z.nr_pages)
        return -1
    return 0
