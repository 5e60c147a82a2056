# Memory cgroups for slab (memcg.pyx): creation, child caches, objcg
# charging, and the offline primitives the policies compose.
from slubcy.types cimport kmem_cache, mem_cgroup, page, slub_machine

cdef mem_cgroup *mem_cgroup_create(slub_machine *m, const char *name, mem_cgroup *parent,
                                  double *waited=*) noexcept nogil
cdef kmem_cache *memcg_kmem_get_cache(kmem_cache *s, mem_cgroup *memcg) noexcept nogil
# objcg (5.9): called on vCPU `cpu`, by the thread running it (its stock)
cdef void memcg_slab_post_alloc_hook(kmem_cache *s, mem_cgroup *memcg, void *object,
                                     int cpu) noexcept nogil
cdef void memcg_slab_free_hook(kmem_cache *s, page *pg, void *object, int cpu) noexcept nogil
cdef struct objcg_counts:
    long nr_pages               # pages charged to the memcg
    long precharged             # bytes of them no object uses (stocks, obj_cgroup leftovers)
cdef void memcg_objcg_counts(slub_machine *m, mem_cgroup *memcg, objcg_counts *out) noexcept nogil
cdef int memcg_init(slub_machine *m) noexcept nogil
cdef void memcg_free_objcgs(slub_machine *m) noexcept nogil

# offline primitives, in the order a policy uses them
cdef void memcg_offline_begin(slub_machine *m, mem_cgroup *memcg) noexcept nogil
cdef int memcg_kmem_caches_snapshot(slub_machine *m, mem_cgroup *memcg, kmem_cache **out, int max) noexcept nogil
cdef void kmem_cache_mark_dead(kmem_cache *s, bint no_cpu_partial) noexcept nogil
cdef void memcg_reparent_caches(slub_machine *m, mem_cgroup *memcg) noexcept nogil
cdef void memcg_reparent_objcg(slub_machine *m, mem_cgroup *memcg) noexcept nogil
cdef void memcg_offline_end(slub_machine *m, mem_cgroup *memcg) noexcept nogil
cdef int shrink_dead_caches(slub_machine *m) noexcept nogil
cdef int cache_reap_dead(slub_machine *m, int cpu) noexcept nogil
cdef bint memcg_unregister_cache(slub_machine *m, kmem_cache *s) noexcept nogil
# after a grace period, on the workqueue the machine's RCU thread runs: a
# machine with a policy runs it (Policy.attach, policies/base.pyx)
cdef int kmem_cache_shrink_after_gp(kmem_cache *s) noexcept nogil
cdef long kmemcg_deactivate_workfn(slub_machine *m) noexcept nogil
cdef void kmemcg_deactivate_drop(slub_machine *m) noexcept nogil
cdef struct dead_counts:         # (field names are the Python API's keys)
    long dead_caches            # dead caches not destroyed
    long leaked_caches          # of them, holding slabs
    long retained_pages         # their pages
    long dying_memcgs
    long offlines
    long caches_destroyed
cdef void dead_cache_counts(slub_machine *m, dead_counts *out) noexcept nogil
# called by the slab code (slub.pyx): css_put_many's last reference, and a
# dead cache's last slab gone
cdef void memcg_css_free(slub_machine *m, mem_cgroup *memcg) noexcept nogil
cdef void memcg_cache_empty(slub_machine *m, kmem_cache *s) noexcept nogil

# rmdir: queue the offline on the machine's kworker (css_killed_work_fn)
ctypedef void (*offline_done_fn)(void *arg, double latency, int rc) noexcept nogil
cdef enum:
    OFFLINE_CANCELLED = -2      # rc of an offline dropped because the machine closed
    RMDIR_NO_POLICY = 1
    RMDIR_OFFLINE = 2
    RMDIR_NOMEM = 3
    RMDIR_STOPPED = 4
cdef int cgroup_rmdir(slub_machine *m, mem_cgroup *memcg, offline_done_fn done, void *arg,
                      double *waited) noexcept nogil
cdef void memcg_kmem_charge_page(page *pg, int order, mem_cgroup *memcg) noexcept nogil
cdef void memcg_kmem_uncharge_page(slub_machine *m, page *pg, int order) noexcept nogil
