# SLUB's checks behind the Python API and validate() (slub_check.pyx);
# the OBJ_* codes and cache_counts_t are in slub.pxd.
from slubcy.types cimport kmem_cache, page, slub_machine
from slubcy.slub cimport cache_counts_t

cdef int check_objects(kmem_cache *s, void **objs, size_t n, size_t *bad) noexcept nogil
cdef int object_is_live(kmem_cache *s, void *object) noexcept nogil
cdef void py_live_mark(kmem_cache *s, void *p) noexcept nogil
cdef void py_live_clear(kmem_cache *s, page *pg, void *p) noexcept nogil
cdef void py_live_release_all(slub_machine *m) noexcept nogil
cdef int validate_cache(kmem_cache *s, char *err, size_t errlen, long *in_use) noexcept nogil
cdef int validate_all(slub_machine *m, char *err, size_t errlen) noexcept nogil
cdef int cache_counts(kmem_cache *s, cache_counts_t *out) noexcept nogil
cdef int slab_usage(slub_machine *m, kmem_cache *only, long *in_use, long *slots,
                    long *pages) noexcept nogil
