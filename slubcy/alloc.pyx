# cython: language_level=3
"""The out-of-line half of the one free entry (alloc.pxd): slab_free() of an
object of a SLAB_ACCOUNT cache, whose slab may carry obj_cgroup charges.  Kept out of line so that the
inline entry's unaccounted path has no call joining it (a call would make
gcc reload s->cpu_slab after the hook branch on every free)."""

from slubcy.types cimport kmem_cache, page
from slubcy.slub cimport do_slab_free, page_has_obj_cgroups
from slubcy.memcg cimport memcg_slab_free_hook


cdef int slab_free_memcg(kmem_cache *s, page *pg, void *x, int cpu) noexcept nogil:
    """slab_free() of an object of a SLAB_ACCOUNT cache: memcg_slab_free_hook()
    (mm/slab.h, 5.9) first when the slab carries obj_cgroups (the uncharge),
    then do_slab_free().  Returns do_slab_free()'s result."""
    if page_has_obj_cgroups(pg):
        memcg_slab_free_hook(s, pg, x, cpu)
    return do_slab_free(s, pg, x, x, 1, cpu)        # (7.0: free_to_pcs() from its miss)
