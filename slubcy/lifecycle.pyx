# cython: language_level=3
"""A slub_machine's bring-up and teardown, in C.

slub_machine_init() brings the layers up bottom-first, as the kernel boots
(the CPUs, then the page allocator -- mm_init -- then the memcg root and
the per-cpu stocks, then the workqueue's kworker); the kmalloc caches and
a policy come after it, from the facade (kmem_cache_init's
create_kmalloc_caches needs the Python constructors' wrappers).  On failure
it undoes what it did.  slub_machine_release() tears down in the reverse
order: the kworker first (it finishes the item it runs and drops the rest),
then every RCU callback still queued (destroyed caches, freed memcgs), the
deferred shrinks, objcg vectors and obj_cgroups, the caches, the memcgs,
the Python API's bitmaps, the arena and the vCPUs.  Idempotent: a second
call finds empty lists and released layers.
"""
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdlib cimport free
from slubcy.types cimport (slub_machine, kmem_cache, mem_cgroup, slab_caches_first,
                           slab_caches_next, memcgs_first, memcgs_next)
from slubcy.list cimport INIT_LIST_HEAD
from slubcy.atomic cimport atomic_ptr_set
from slubcy.page_alloc cimport zone_init, zone_release, PG_slab
from slubcy.sched cimport sched_init, sched_release, rcu_run_batch, rcu_take_pending
from slubcy.slub cimport kmem_cache_release, memcg_free_page_obj_cgroups
from slubcy.slub_check cimport py_live_release_all
from slubcy.memcg cimport memcg_init, memcg_free_objcgs, kmemcg_deactivate_drop
from slubcy.kworker cimport workqueue_start, workqueue_stop


cdef int slub_machine_init(slub_machine *m, int nr_cpus, int nr_cpu_ids, size_t memory,
                           uint64_t seed, long tick_ns, double ipi_timeout) noexcept nogil:
    """Bring `m` up (its lists must be initialised, its fields zero).
    Returns MACHINE_OK or the MACHINE_* step that failed, `m` released."""
    INIT_LIST_HEAD(&m.slab_caches)
    INIT_LIST_HEAD(&m.slab_root_caches)
    INIT_LIST_HEAD(&m.memcgs)
    m.nr_cpus = nr_cpus
    m.nr_cpu_ids = nr_cpu_ids
    m.ipi_timeout = ipi_timeout
    # Linux 4.0 behaviour until a policy says otherwise
    m.per_memcg_caches = 1
    m.pages_pin_memcg = 1
    m.cpu_partial_dead_check = 1
    m.unregister_on_empty = 1
    if sched_init(&m.sc, nr_cpus, seed) != 0:
        return MACHINE_NOMEM_VCPUS
    m.sc.tick_ns = tick_ns
    if zone_init(&m.z, memory) != 0:
        sched_release(&m.sc)
        return MACHINE_NOMEM_ARENA
    if memcg_init(m) != 0:
        with gil:
            slub_machine_release(m)
        return MACHINE_NOMEM_MEMCG
    # the kworker: offlines (cgroup_destroy_wq) and child cache creation
    if workqueue_start(&m.wq) != 0:
        with gil:
            slub_machine_release(m)
        return MACHINE_NO_KWORKER
    return MACHINE_OK


cdef void slub_machine_release(slub_machine *m) noexcept:
    """Tear `m` down (with the GIL: a cache may hold a constructor's
    exception).  Nothing may run on it any more but the kworker, which this
    stops first."""
    cdef kmem_cache *s
    cdef kmem_cache *nxt_s
    cdef mem_cgroup *g
    cdef mem_cgroup *nxt_g
    cdef size_t pfn
    with nogil:
        workqueue_stop(&m.wq)
    # deferred frees (destroyed caches, freed memcgs) run now
    if m.sc.vcpus != NULL:
        rcu_run_batch(&m.sc, m.sc.rcu_cur)
        atomic_ptr_set(<void **>&m.sc.rcu_cur, NULL)
        rcu_run_batch(&m.sc, rcu_take_pending(&m.sc))
    kmemcg_deactivate_drop(m)
    # objcg vectors hang off slab pages
    if not m.per_memcg_caches and m.z.mem_map != NULL:
        for pfn in range(m.z.nr_pages):
            if m.z.mem_map[pfn].flags & PG_slab:
                memcg_free_page_obj_cgroups(&m.z.mem_map[pfn])
    memcg_free_objcgs(m)
    s = slab_caches_first(m)
    while s != NULL:
        nxt_s = slab_caches_next(m, s)
        Py_XDECREF(<PyObject *>s.ctor_exc)
        s.ctor_exc = NULL
        kmem_cache_release(s)
        s = nxt_s
    INIT_LIST_HEAD(&m.slab_caches)
    INIT_LIST_HEAD(&m.slab_root_caches)
    g = memcgs_first(m)
    while g != NULL:
        nxt_g = memcgs_next(m, g)
        free(g)
        g = nxt_g
    INIT_LIST_HEAD(&m.memcgs)
    py_live_release_all(m)
    zone_release(&m.z)
    sched_release(&m.sc)
