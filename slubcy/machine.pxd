# The Python API's extension types, for other Cython modules (workloads,
# benchmarks) that run nogil loops on a Machine's caches.
from slubcy.types cimport kmem_cache, mem_cgroup, slub_machine


cdef class KmemCache:
    cdef kmem_cache *s
    cdef readonly Machine machine
    cdef readonly str name
    cdef readonly object ctor
    cdef readonly bint is_kmalloc
    cdef readonly bint is_child     # a memcg child cache (freed with its memcg, after a grace period)
    cdef readonly int size, object_size, offset, inuse, align, order, objects_per_slab
    cdef readonly unsigned int sheaf_capacity   # 7.0: objects per sheaf (0: none, or a 4.0 machine)
    cdef readonly unsigned long flags
    cdef readonly tuple oo, min, max
    cdef kmem_cache *get(self) except NULL
    cdef bint alive(self)
    cdef int _in_flight         # calls on this cache with the GIL released (kmem_cache_destroy waits)
    cdef bint _destroying       # kmem_cache_destroy() waits for those: new ones wait for it


cdef class Machine:
    cdef slub_machine m
    cdef readonly bint closed
    cdef list _caches
    cdef list _kmalloc          # index -> KmemCache (kmalloc_index)
    cdef readonly object policy
    cdef readonly object seed
    cdef readonly object hz          # scheduling-clock ticks per second (grace periods end at one)
    cdef readonly bint expedited     # grace periods end without waiting for a tick
    cdef readonly str slub          # allocator generation: "4.0" (cpu slabs) or "7.0" (sheaves)
    cdef object _rcu                # slubcy.rcu.RCU, started on first call_rcu
    cdef object _policy_obj         # the attached dead-cache policy
    cdef dict _children             # memcg child caches' wrappers by address
    cdef bint _closing              # close() has begun
    cdef int _api_busy              # calls waiting (GIL released) for a mutex or the kworker
    cdef int _in_flight             # other calls with the GIL released (close() waits for them)
    cdef int _walking               # validate() of every cache in flight (kmem_cache_destroy waits)
    cdef unsigned char[::1] _vcpu_user   # per vCPU: 1 while a Python API call runs it
    cdef object __weakref__         # the finaliser of a machine dropped without close()
    cdef mem_cgroup *_memcg(self, memcg) except? NULL
    cdef mem_cgroup *_rmdir_target(self, memcg) except NULL
    cdef _rmdir_error(self, int r, memcg)
    cdef KmemCache _wrap_child(self, kmem_cache *s)
    cdef int vcpu_enter(self, int cpu) except -1
    cdef bint vcpu_enter_wait(self, int cpu)
    cdef void vcpu_exit(self, int cpu) noexcept
    cdef int _nogil_begin(self, KmemCache c) except -1
    cdef void _nogil_end(self, KmemCache c) noexcept
    cdef double _wait_bound(self)
    cdef int check_idle(self) except -1
    cdef int workers_begin(self, int n) except -1
    cdef void workers_end(self, int n) noexcept
    cdef void workers_resume(self, int n) noexcept
    cdef void _release(self) noexcept
    cdef int check_open(self) except -1
    cdef int check_cpu(self, cpu) except -1
    cdef kmem_cache *_cache(self, c) except NULL
    cdef void *_addr(self, addr) except? NULL
    cdef _create_kmalloc_caches(self)
    cdef KmemCache _create(self, str name, size_t size, size_t align, unsigned long flags,
                           object ctor, bint is_kmalloc, int freeptr_offset=*,
                           unsigned int sheaf_capacity=*)
    cdef object _ctor_failed(self, kmem_cache *s, void *p, int cpu)
    cdef int _free(self, kmem_cache *s, void *p, int cpu) except -1
    cdef tuple _writable(self, size_t addr, size_t length)
    cdef int _check_lock(self) except -1
    cdef void _check_unlock(self, int nr_cpus) noexcept
    cdef _validate(self, c)
    cdef list _snapshot(self, int what, kmem_cache *root)
    cdef _cache_rows(self, c, list rows)


cdef class MemCgroup:
    cdef mem_cgroup *g
    cdef readonly Machine machine
    cdef readonly int id
    cdef readonly str name
    cdef mem_cgroup *live(self) except? NULL
