# The one allocation entry and the one free entry (mm/slub.c slab_alloc_node()
# and slab_free(), with mm/slab.h's pre/post hooks), inline.  Everything that
# allocates or frees an object goes through here: the Python API (Machine),
# the workers (workers.pyx), the benchmark kernels (bench.pyx) and the trace
# replay, so the memcg charging and the Python API's bookkeeping happen the
# same way, in the kernel's order, whoever allocates.
#
#   slab_alloc_node:  slab_pre_alloc_hook   memcg_kmem_get_cache (4.0-5.8: the
#                                           memcg's child cache, or the root)
#                     __slab_alloc_node     the SLUB fast/slow path
#                     slab_post_alloc_hook  memcg_slab_post_alloc_hook (5.9:
#                                           obj_cgroup charge); py_live_mark
#   slab_free:        memcg_slab_free_hook  (5.9: uncharge), py_live_clear
#                     do_slab_free          the SLUB fast/slow path
#
# `hooks` says which of the caller's hooks run:
#   SLAB_HOOK_PY_LIVE  the Python API's record of the objects it handed out
#                      (slub_check.pyx py_live_*; a departure, no kernel
#                      structure);
#   SLAB_ALLOC_NOWAIT  not a hook: the allocation's gfp does not allow blocking
#                      (7.0 refills sheaves only for those that may block);
#   SLAB_HOOK_MEMCG    the objects may be charged: the free tests the slab's
#                      obj_cgroups.  This bit is the caller's copy of the
#                      kernel's memcg_kmem_enabled() static key, patched in
#                      at compile time: a caller whose objects were all
#                      allocated without a memcg (the benchmark kernels, as a
#                      kernel with no kmem-accounting memcg) leaves it out and
#                      its free costs nothing for memcg, as with the key off.
#                      Userspace has no code patching, so everyone else (the
#                      Python API, the workers, the replay) passes it and pays
#                      a load and a branch per free (DESIGN.md §8).
# On the allocation side the gate is `memcg` itself: NULL (no memcg, or a
# constant NULL in the benchmark kernels) costs one branch or nothing.

from slubcy.atomic cimport atomic_long_read, uptr_read_once, unlikely
from slubcy.types cimport page, kmem_cache, mem_cgroup
from slubcy.page_alloc cimport virt_to_head_page
from slubcy.slub cimport (__slab_alloc_node, do_slab_free,
                          kmem_cache_alloc_bulk, kmem_cache_free_bulk, page_has_obj_cgroups,
                          OBJCGS_TAG)
from slubcy.slub_check cimport py_live_mark, py_live_clear
from slubcy.memcg cimport memcg_kmem_get_cache, memcg_slab_post_alloc_hook, memcg_slab_free_hook

cdef enum:
    SLAB_HOOK_PY_LIVE = 1       # the Python API handed the object out / takes it back
    SLAB_HOOK_MEMCG = 2         # the object may be charged (memcg_kmem_enabled())
    SLAB_ALLOC_NOWAIT = 4       # (not a hook) the allocation may not block (GFP_NOWAIT):
                                # a 7.0 cache then never refills a sheaf for it


cdef int slab_free_memcg(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil


cdef inline void *slab_alloc_node(kmem_cache *root, mem_cgroup *memcg, int cpu, int hooks,
                                  kmem_cache **cachep) noexcept nogil:
    """slab_alloc_node(): an object of `root` (or of `memcg`'s child cache of
    it) on vCPU `cpu`; *cachep is the cache it came from.  NULL when the page
    allocator is exhausted (a constructor that raised leaves s.ctor_exc set
    and returns its object: the caller frees it with slab_free())."""
    cdef kmem_cache *s = root
    cdef void *object
    if memcg != NULL:                                           # slab_pre_alloc_hook
        s = memcg_kmem_get_cache(root, memcg)
    # (a 7.0 cache goes to its sheaves from __slab_alloc_node's miss)
    object = __slab_alloc_node(s, cpu, not (hooks & SLAB_ALLOC_NOWAIT))
    if object != NULL:                                          # slab_post_alloc_hook
        if memcg != NULL:
            memcg_slab_post_alloc_hook(s, memcg, object, cpu)
        if hooks & SLAB_HOOK_PY_LIVE:
            py_live_mark(s, object)
    cachep[0] = s
    return object


cdef inline int slab_free(kmem_cache *s, page *pg, void *x, int cpu, int hooks) noexcept nogil:
    """slab_free() of object `x` of slab `pg` (virt_to_head_page) of cache
    `s` on vCPU `cpu`: the memcg free hook first, as kmem_cache_free() does
    in 5.9, then do_slab_free().  Returns 0 only when a debug check refused
    the free (the memcg hook has run by then, as in the kernel)."""
    if hooks & SLAB_HOOK_PY_LIVE:
        py_live_clear(s, pg, x)
    # 5.9's memcg_slab_free_hook(): the memcg_kmem_enabled() static key
    # (SLAB_HOOK_MEMCG), then page_obj_cgroups(page).  Only slabs of
    # SLAB_ACCOUNT caches carry obj_cgroups; the tag shares the cache line of
    # the struct page virt_to_head_page() just read, so a READ_ONCE test
    # here, and the charged free out of line (alloc.pyx): neither its
    # acquire load nor its call joins the uncharged path.
    if (hooks & SLAB_HOOK_MEMCG) and unlikely(uptr_read_once(&pg.memcg_data) & OBJCGS_TAG):
        return slab_free_memcg(s, pg, x, cpu)
    return do_slab_free(s, pg, x, x, 1, cpu)        # (7.0: to free_to_pcs from its miss)


cdef inline size_t slab_alloc_bulk(kmem_cache *root, mem_cgroup *memcg, size_t size, void **p,
                                   int cpu, kmem_cache **cachep) noexcept nogil:
    """kmem_cache_alloc_bulk() with its hooks (5.9: slab_pre_alloc_hook, the
    loop, slab_post_alloc_hook over the array).  All or nothing: on
    exhaustion, or when a constructor raised, what was taken is freed and
    the count taken is returned (< size, or s.ctor_exc set)."""
    cdef kmem_cache *s = memcg_kmem_get_cache(root, memcg)
    cdef size_t got = kmem_cache_alloc_bulk(s, size, p, cpu), i
    cachep[0] = s
    if got < size or s.ctor_exc != NULL:
        kmem_cache_free_bulk(s, got, p, cpu)
        return got
    if memcg != NULL:
        for i in range(size):
            memcg_slab_post_alloc_hook(s, memcg, p[i], cpu)
    return size


cdef inline int slab_free_bulk(kmem_cache *s, size_t size, void **p, int cpu,
                               int hooks) noexcept nogil:
    """kmem_cache_free_bulk() with its hooks: the memcg free hook of each
    object (5.9: memcg_slab_free_hook over the array) first.  Returns the
    objects refused by a debug check."""
    cdef size_t i
    cdef page *pg
    if (hooks & SLAB_HOOK_PY_LIVE) and atomic_long_read(&s.m.nr_py_live) > 0:
        for i in range(size):               # (only when some slab has a bitmap)
            pg = virt_to_head_page(&s.m.z, p[i])
            if pg.py_live != 0:
                py_live_clear(<kmem_cache *>pg.slab_cache, pg, p[i])
    # (per-memcg caches charge whole slabs, not objects)
    if (hooks & SLAB_HOOK_MEMCG) and not s.m.per_memcg_caches:
        for i in range(size):
            pg = virt_to_head_page(&s.m.z, p[i])
            if page_has_obj_cgroups(pg):
                memcg_slab_free_hook(<kmem_cache *>pg.slab_cache, pg, p[i], cpu)
    return kmem_cache_free_bulk(s, size, p, cpu)
