# Linux 7.0's SLUB (mm/slub.c after "slab: replace cpu (partial) slabs with
# sheaves"): percpu sheaves (main, spare, rcu_free) in front of the slabs,
# a per-node barn of full and empty sheaves, refill and flush in bulk, and
# the node partial lists as 7.0 keeps them (no frozen slabs, no cpu slab).
# A machine built with Machine(slub="7.0") gives every cache cpu_sheaves;
# slubcy/alloc.pxd's one entry and slub.pyx's flush / shrink / shutdown hand
# such caches to the functions here.  The structs are in types.pxd.
#
# Where work runs (DESIGN.md §12): a vCPU's sheaves are touched only by the
# thread running it, under its local trylock (`pcs.lock`), with no
# preemption point and no irq-enabled point inside; the kernel drops the
# lock midway in four places (refill, the full spare's flush, the
# ENOMEM allocation, sheaf_flush_main's batches) and so does this code,
# with a named preemption point in the first two.  flush_all() is a
# request each vCPU runs itself (the kernel's per-cpu flush work item).
#
# Lock order: cpu_sheaves lock -> barn.lock | list_lock (neither nests in
# the other here) -> sheaves_lock (the departure's list of every sheaf).

from libc.stdint cimport uint64_t
from slubcy.atomic cimport atomic_long_add, likely, unlikely
from slubcy.types cimport (page, kmem_cache, slab_sheaf, slub_percpu_sheaves, node_barn,
                           stat_item, ALLOC_FASTPATH, ALLOC_SLOWPATH, FREE_FASTPATH,
                           FREE_SLOWPATH)

cdef enum:
    PCS_BATCH_MAX = 32          # sheaf_flush_main(): objects flushed per lock drop
    SHEAF_HEADER_SIZE = 32      # sizeof(struct slab_sheaf) on 64-bit (7.0), for the capacity


cdef inline void stat70(kmem_cache *s, int cpu, stat_item si) noexcept nogil:
    """stat() of 7.0 (s->cpu_stats): counted on vCPU `cpu`, or, for work
    done on no vCPU (cpu < 0: the RCU thread, the kworker, a shrink from
    Python), atomically on the extra slot after the vCPUs'."""
    if cpu >= 0:
        s.cpu_slab[cpu].stat[<int>si] += 1
    else:
        atomic_long_add(<long *>&s.cpu_slab[s.m.nr_cpus].stat[<int>si], 1)

cdef inline void stat70_add(kmem_cache *s, int cpu, stat_item si, long v) noexcept nogil:
    """stat_add()."""
    if cpu >= 0:
        s.cpu_slab[cpu].stat[<int>si] += v
    else:
        atomic_long_add(<long *>&s.cpu_slab[s.m.nr_cpus].stat[<int>si], v)


# --- slow paths (sheaves.pyx) -------------------------------------------
cdef int init_percpu_sheaves(kmem_cache *s, unsigned int args_capacity) noexcept nogil
cdef void free_percpu_sheaves(kmem_cache *s) noexcept nogil
cdef unsigned int calculate_sheaf_capacity(kmem_cache *s, unsigned int args_capacity) noexcept nogil
cdef slab_sheaf *__pcs_replace_empty_main(kmem_cache *s, slub_percpu_sheaves *pcs, int cpu,
                                          bint can_block) noexcept nogil
cdef bint __pcs_replace_full_main(kmem_cache *s, slub_percpu_sheaves *pcs, int cpu) noexcept nogil
cdef void *___slab_alloc(kmem_cache *s, int cpu) noexcept nogil
cdef int __slab_free(kmem_cache *s, page *pg, void *head, void *tail, int cnt,
                     int cpu) noexcept nogil
cdef size_t kmem_cache_alloc_bulk_sheaves(kmem_cache *s, size_t size, void **p,
                                          int cpu) noexcept nogil
cdef int kmem_cache_free_bulk_sheaves(kmem_cache *s, size_t size, void **p,
                                      int cpu) noexcept nogil
cdef int kfree_rcu_sheaves(kmem_cache *s, page *pg, void *object, int cpu) noexcept nogil
cdef int flush_all_sheaves(kmem_cache *s) noexcept nogil
cdef int __kmem_cache_shrink_sheaves(kmem_cache *s) noexcept nogil
cdef int __kmem_cache_shutdown_sheaves(kmem_cache *s) noexcept nogil
cdef long sheaves_free_objects(kmem_cache *s) noexcept nogil
# the 7.0 halves below, out of line: the one entry (alloc.pxd) calls these,
# so that its 4.0 fast path stays small enough to inline into every loop
cdef void *slab_alloc_node_pcs(kmem_cache *s, int cpu, bint can_block) noexcept nogil
cdef int slab_free_pcs(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil
cdef int sheaves_find(kmem_cache *s, page *pg, void *find, uint64_t *bits, void **hit,
                      uint64_t *free_bits) noexcept nogil


# --- fast paths (7.0 alloc_from_pcs / free_to_pcs) -------------------------

cdef inline void *alloc_from_pcs(kmem_cache *s, int cpu, bint can_block) noexcept nogil:
    """alloc_from_pcs(): local_trylock, pop pcs->main; an empty main is
    replaced first (__pcs_replace_empty_main).  NULL: the slab path must
    serve it (trylock failed, no sheaves, or no sheaf to be had)."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef slab_sheaf *main
    cdef void *object
    if unlikely(pcs.lock):                  # local_trylock() failed
        return NULL
    pcs.lock = 1
    main = pcs.main
    if unlikely(main.size == 0):
        main = __pcs_replace_empty_main(s, pcs, cpu, can_block)
        if main == NULL:                    # (unlocked)
            return NULL
    main.size -= 1
    object = main.objects[main.size]
    pcs.lock = 0                            # local_unlock()
    stat70(s, cpu, ALLOC_FASTPATH)
    return object

cdef inline bint free_to_pcs(kmem_cache *s, void *object, int cpu) noexcept nogil:
    """free_to_pcs(): local_trylock, push on pcs->main; a full main is
    replaced first (__pcs_replace_full_main).  False: the caller frees to
    the slab (__slab_free)."""
    cdef slub_percpu_sheaves *pcs = &s.cpu_sheaves[cpu]
    cdef slab_sheaf *main
    if unlikely(pcs.lock):
        return False
    pcs.lock = 1
    main = pcs.main
    if unlikely(main.size == s.sheaf_capacity):
        if not __pcs_replace_full_main(s, pcs, cpu):    # (unlocked)
            return False
        main = pcs.main
    main.objects[main.size] = object
    main.size += 1
    pcs.lock = 0
    stat70(s, cpu, FREE_FASTPATH)
    return True

cdef inline void *slab_alloc_node_sheaves(kmem_cache *s, int cpu, bint can_block) noexcept nogil:
    """The SLUB part of 7.0's slab_alloc_node(): the sheaves, else one object
    from a slab (__slab_alloc_node -> ___slab_alloc).  (One node: no
    ALLOC_NODE_MISMATCH.)"""
    cdef void *object = alloc_from_pcs(s, cpu, can_block)
    if likely(object != NULL):
        return object
    stat70(s, cpu, ALLOC_SLOWPATH)
    return ___slab_alloc(s, cpu)

cdef inline int slab_free_sheaves(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil:
    """The SLUB part of 7.0's slab_free(), after the hooks: free_to_pcs(),
    else __slab_free() (FREE_SLOWPATH: a user free that missed the
    sheaves).  (One node and no pfmemalloc: no bypass.)  0 only when a
    debug check refused it."""
    if likely(free_to_pcs(s, x, cpu)):
        return 1
    stat70(s, cpu, FREE_SLOWPATH)
    return __slab_free(s, pg, x, x, 1, cpu)
