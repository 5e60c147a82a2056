# cython: language_level=3
"""The Python API: a Machine of vCPUs with its page allocator and kmem_caches.

Every method checks its arguments before it touches the allocator, so a bad
argument raises (see slubcy.errors) and leaves the machine as it was.
"""

cimport cython
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdint cimport uint64_t, uintptr_t
from libc.string cimport memcpy
cimport numpy as cnp
import numpy as np

from slubcy.atomic cimport (atomic_int_read, atomic_int_set, atomic_long_read, atomic_long_read_acquire,
                            atomic_ptr_read, atomic_uint_read, ptr_read_once, slab_word_read,
                            spin_lock, spin_unlock,
                            u16_write_once)
from slubcy.types cimport slab_caches_first, slab_caches_next, memcgs_first, memcgs_next
from slubcy.types cimport (MAX_MEMCG_CACHES, MAX_ORDER, NR_SLUB_STAT_ITEMS, SHEAF_FLUSH, slab_sheaf, slub_percpu_sheaves, PAGE_SHIFT, PAGE_SIZE,
                           kmem_cache, kmem_cache_cpu, mem_cgroup, page, stat_item, zone)
from slubcy.page_alloc cimport (alloc_pages, zone_populate, __free_pages, get_order,
                                page_address, virt_to_head_page, addr_in_arena, PG_slab,
                                PG_slab_ctor, PG_large_kmalloc)
from slubcy.slub cimport *
from slubcy.slub_check cimport *
from slubcy.types cimport kmem_cache as kmem_cache_t
from slubcy.list cimport list_head, list_add, list_del, INIT_LIST_HEAD
from slubcy.sched cimport sched
from slubcy.sched cimport (sched_init, sched_release, vcpu_take, vcpu_release, synchronize_sched,
                           kick_all_cpus_sync, OWNER_CONTROLLER, rcu_process_callbacks,
                           rcu_run_batch, rcu_take_pending, monotonic, rcu_read_lock_ext,
                           rcu_read_unlock_ext)
from slubcy.sched cimport NR_PREEMPT_POINTS
from slubcy.sheaves cimport kfree_rcu_sheaves, sheaves_free_objects
from slubcy.alloc cimport (slab_alloc_node, slab_free, slab_alloc_bulk, slab_free_bulk, SLAB_ALLOC_NOWAIT,
                          SLAB_HOOK_PY_LIVE, SLAB_HOOK_MEMCG)
from slubcy.memcg cimport memcg_slab_free_hook
from slubcy.memcg cimport (mem_cgroup_create, memcg_kmem_get_cache, memcg_init, memcg_free_objcgs,
                           memcg_objcg_counts, objcg_counts, dead_cache_counts, dead_counts,
                           kmemcg_deactivate_workfn, kmemcg_deactivate_drop, memcg_kmem_caches_snapshot,
                           cgroup_rmdir, OFFLINE_CANCELLED, memcg_kmem_uncharge_page, RMDIR_NO_POLICY, RMDIR_OFFLINE,
                           RMDIR_NOMEM, RMDIR_STOPPED)
from slubcy.lifecycle cimport (slub_machine_init, slub_machine_release, MACHINE_OK,
                              MACHINE_NOMEM_VCPUS, MACHINE_NOMEM_ARENA, MACHINE_NOMEM_MEMCG,
                              MACHINE_NO_KWORKER)
from slubcy.mutex cimport mutex_lock, mutex_unlock
from slubcy.sched cimport vcpu_borrow, vcpu_unborrow, backoff_wait
from slubcy.kworker cimport workqueue_start, workqueue_stop, flush_workqueue
from posix.time cimport timespec, nanosleep
from libc.stdlib cimport free as c_free, realloc
from slubcy import errors
from slubcy.errors import (ArenaExhausted, CacheBusy, CacheDestroyed, CPUBusy, CtorError,
                           DoubleFree, InvalidAccess, InvalidCPU, MachineBusy, MachineClosed,
                           NotAnObject, NotInArena, SlabCorruption, Timeout, WrongCache)

cnp.import_array()

# slub_machine_init()'s failures
_INIT_ERRORS = {
    MACHINE_NOMEM_VCPUS: (MemoryError, "cannot allocate the vCPUs"),
    MACHINE_NOMEM_ARENA: (MemoryError, "cannot map an arena of {memory} bytes"),
    MACHINE_NOMEM_MEMCG: (MemoryError, "cannot allocate the root memcg and the memcg stocks"),
    MACHINE_NO_KWORKER: (RuntimeError, "cannot start the machine's kworker thread"),
}

cdef extern from "sys/mman.h" nogil:
    int MAP_NORESERVE

from slubcy.types import stat_item as _stat_item
# include/linux/slub_def.h's 26 items of Linux 4.0, and the 26 of 7.0
# (mm/slub.c: the eleven it keeps, with ALLOC_/FREE_FASTPATH now meaning the
# sheaves, and 6.18's fifteen sheaf / barn / rcu items)
STAT_ITEMS = tuple(_stat_item(i).name for i in range(<int>SHEAF_FLUSH))
STAT_ITEMS_70 = ("ALLOC_FASTPATH", "ALLOC_SLOWPATH", "FREE_FASTPATH", "FREE_SLOWPATH",
                 "FREE_ADD_PARTIAL", "FREE_REMOVE_PARTIAL", "ALLOC_SLAB", "ALLOC_NODE_MISMATCH",
                 "FREE_SLAB", "ORDER_FALLBACK", "CMPXCHG_DOUBLE_FAIL") + tuple(
                     _stat_item(i).name for i in range(<int>SHEAF_FLUSH, <int>NR_SLUB_STAT_ITEMS))
SLUB_GENERATIONS = {"4.0": 40, "7.0": 70}

FLAGS = {
    "SLAB_CONSISTENCY_CHECKS": SLAB_CONSISTENCY_CHECKS,
    "SLAB_RED_ZONE": SLAB_RED_ZONE,
    "SLAB_POISON": SLAB_POISON,
    "SLAB_HWCACHE_ALIGN": SLAB_HWCACHE_ALIGN,
    "SLAB_CACHE_DMA": SLAB_CACHE_DMA,
    "SLAB_STORE_USER": SLAB_STORE_USER,
    "SLAB_RECLAIM_ACCOUNT": SLAB_RECLAIM_ACCOUNT,
    "SLAB_PANIC": SLAB_PANIC,
    "SLAB_TYPESAFE_BY_RCU": SLAB_TYPESAFE_BY_RCU,
    "SLAB_TRACE": SLAB_TRACE,
    "SLAB_ACCOUNT": SLAB_ACCOUNT,
}
# SLAB_STORE_USER needs struct track records, which slubcy does not keep.
cdef unsigned long SUPPORTED_FLAGS = (SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON |
                                      SLAB_HWCACHE_ALIGN | SLAB_CACHE_DMA | SLAB_RECLAIM_ACCOUNT |
                                      SLAB_PANIC | SLAB_TYPESAFE_BY_RCU | SLAB_TRACE | SLAB_ACCOUNT)
MAX_CPUS = 1024
DEFAULT_HZ = 250        # CONFIG_HZ_250: Debian's and Ubuntu's kernels of the 4.x era
# The packed freelist word (fc_make) stores an object's offset / 8 + 1 in 32
# bits, 0 meaning NULL: the last 8-byte object must end below 32 GiB.
MAX_ARENA = ((0xffffffff - 1) << 3) // PAGE_SIZE * PAGE_SIZE


def _fc_freelist_offset(offset):
    """The arena offset fc_freelist() decodes from fc_make() of the object at
    `offset` (None for NULL): every object offset of an accepted arena must
    come back unchanged (tests)."""
    cdef zone z
    cdef char arena[1]
    cdef void *p
    as_int(offset, "offset")
    if not 0 <= offset < 1 << 40 or offset % 8:
        raise ValueError(f"offset must be a multiple of 8 in 0..2**40, got {offset}")
    z.base = arena
    p = fc_freelist(&z, fc_make(&z, <void *>(<uintptr_t>arena + <uintptr_t>offset), 0))
    return None if p == NULL else <uintptr_t>p - <uintptr_t>arena
# The kmalloc limits for Python under their kernel names.  The names are
# slub.pxd's C enum constants in this module (cimported), so a plain
# assignment cannot bind them: they go into the module's dict directly.
globals().update(KMALLOC_MAX_SIZE=KMALLOC_MAX_SIZE, KMALLOC_MAX_CACHE_SIZE=KMALLOC_MAX_CACHE_SIZE)

_FREE_ERRORS = {
    OBJ_OUTSIDE_ARENA: (NotInArena, "is outside the arena"),
    OBJ_NOT_SLAB: (NotAnObject, "is not in a slab"),
    OBJ_WRONG_CACHE: (WrongCache, "belongs to another cache"),
    OBJ_NOT_OBJECT: (NotAnObject, "is not the start of an object"),
    OBJ_DUPLICATE: (DoubleFree, "is listed twice (double free)"),
    OBJ_ALREADY_FREE: (DoubleFree, "is already free (double free)"),
    OBJ_CONSTRUCTING: (NotAnObject, "is in a slab whose constructors are running (not allocated)"),
}


cdef enum:
    OBJ_RED_ZONE = -2           # (free_bulk) a red zone overwritten: nothing freed


cdef inline bint walkable(zone *z, kmem_cache_t *s, void *p) noexcept nogil:
    """cache_state_info()'s freelist walks run with the GIL while calls of
    other threads (a shrink, bulk frees) change the lists: follow only a
    pointer whose object and free pointer lie in the arena (bounded, a
    snapshot; exact when the machine is quiet)."""
    return (addr_in_arena(z, <uintptr_t>p) and
            addr_in_arena(z, <uintptr_t>p + <uintptr_t>s.offset + sizeof(void *) - 1))


cdef object free_error(kmem_cache_t *s, int code, str what):
    """The exception for a free check's OBJ_* code (< 0: no memory)."""
    if code < 0:
        return MemoryError("no memory for the free checks")
    exc, why = _FREE_ERRORS[code]
    return exc(f"{s.name.decode()}: {what}: the address {why}")


cdef inline bint red_zone_intact(kmem_cache_t *s, page *pg, void *p) noexcept nogil:
    """For a free whose object is charged to an obj_cgroup (a vector on its
    slab): free_debug_processing()'s red zone check done first (restoring the
    zone if overwritten), so a refused free is never uncharged."""
    if not kmem_cache_debug(s) or page_obj_cgroups(pg) == NULL:
        return True
    return check_object(s, pg, p, SLUB_RED_ACTIVE) != 0


cdef inline int as_int(object value, str what) except? -1:
    if type(value) is int:      # the common case first: no lookup of np.integer
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return 0


cdef class KmemCache:
    """A kmem_cache of a Machine.  Geometry attributes are the kernel's."""

    def __repr__(self):
        state = "" if self.s != NULL else " destroyed"
        return (f"<KmemCache {self.name!r} object_size={self.object_size} size={self.size} "
                f"order={self.order} objects={self.objects_per_slab}{state}>")

    cdef bint alive(self):
        """A memcg child cache is freed (after a grace period) once destroyed:
        trust the pointer only while it is on the machine's list."""
        cdef kmem_cache_t *x
        if self.s == NULL or self.machine is None or self.machine.closed:
            return False
        if not self.is_child:
            return True
        cdef bint found = False
        spin_lock(&self.machine.m.slab_lock)
        x = slab_caches_first(&self.machine.m)
        while x != NULL:
            if x == self.s:
                found = not x.destroyed and x.name.decode() == self.name
                break
            x = slab_caches_next(&self.machine.m, x)
        spin_unlock(&self.machine.m.slab_lock)
        return found

    cdef kmem_cache_t *get(self) except NULL:
        if self.s != NULL and self.is_child and not self.alive():
            self.s = NULL
        if self.s == NULL:
            if self.machine is not None and self.machine.closed:
                raise MachineClosed(f"the machine of cache {self.name!r} is closed")
            raise CacheDestroyed(f"cache {self.name!r} was destroyed")
        return self.s

    @property
    def min_partial(self):
        return self.get().min_partial

    @property
    def cpu_partial(self):
        return atomic_int_read(&self.get().cpu_partial)

    @property
    def destroyed(self):
        if self.s != NULL and self.is_child and not self.alive():
            self.s = NULL
        return self.s == NULL


cdef struct offline_completion:
    int done
    int rc
    double latency


cdef void offline_complete(void *arg, double latency, int rc) noexcept nogil:
    """The kworker finished (or dropped) an offline Machine.memcg_offline
    waits for; the waiter's struct is not touched after `done`."""
    cdef offline_completion *c = <offline_completion *>arg
    c.latency = latency
    c.rc = rc
    atomic_int_set(&c.done, 1)


cdef void wait_completion(offline_completion *c) noexcept nogil:
    cdef timespec ts
    cdef int spins = 0
    while not atomic_int_read(&c.done):
        spins += 1
        if spins < 200:
            continue
        ts.tv_sec = 0
        ts.tv_nsec = 20000
        nanosleep(&ts, NULL)


cdef class MemCgroup:
    """A memory cgroup of a Machine (a view of the C struct, which is freed
    after a grace period once the memcg is: then it reads as freed)."""

    cdef mem_cgroup *live(self) except? NULL:
        """The struct while it is on the machine's list, else NULL."""
        cdef mem_cgroup *x
        if self.machine.closed:
            raise MachineClosed("the machine is closed")
        if self.g == NULL:
            return NULL
        spin_lock(&self.machine.m.slab_lock)
        x = memcgs_first(&self.machine.m)
        while x != NULL:
            if x == self.g and x.id == self.id:
                break
            x = memcgs_next(&self.machine.m, x)
        spin_unlock(&self.machine.m.slab_lock)
        if x == NULL:
            self.g = NULL
        return x

    @property
    def parent(self):
        cdef mem_cgroup *g = self.live()
        return None if g == NULL or g.parent == NULL else wrap_memcg(self.machine, g.parent)

    @property
    def online(self):
        cdef mem_cgroup *g = self.live()
        return g != NULL and bool(g.online)

    @property
    def freed(self):
        cdef mem_cgroup *g = self.live()
        return g == NULL or bool(g.freed)

    @property
    def offline_pending(self):
        """rmdir queued its offline on the kworker, which has not run it yet."""
        cdef mem_cgroup *g = self.live()
        return g != NULL and bool(g.offline_pending)

    @property
    def dying(self):
        """Offline, not yet freed."""
        cdef mem_cgroup *g = self.live()
        return g != NULL and not g.online and not g.freed

    @property
    def refcnt(self):
        cdef mem_cgroup *g = self.live()
        return 0 if g == NULL else g.refcnt

    @property
    def nr_pages(self):
        """Pages charged to this memcg (its page counter, not hierarchical):
        the slab pages of its child caches (per-memcg caches; a reparented
        memcg's go to its parent), or under objcg the whole pages its
        obj_cgroups charged -- its objects' bytes (nr_bytes) plus what is
        pre-charged (precharged_bytes): nr_pages * PAGE_SIZE == nr_bytes +
        precharged_bytes."""
        cdef mem_cgroup *g = self.live()
        return 0 if g == NULL else g.nr_pages

    @property
    def kmem_pages(self):
        """Non-slab kmem pages charged to this memcg (charged kmalloc_large
        blocks, __memcg_kmem_charge_page): each block holds the memcg until
        it is freed; not reparented."""
        cdef mem_cgroup *g = self.live()
        return 0 if g == NULL else atomic_long_read(&g.nr_kmem_pages)

    @property
    def kmem_caches(self):
        """Its child caches, newest first (its children list: reparented
        children's dead caches included), destroyed ones gone."""
        cdef mem_cgroup *g = self.live()
        cdef kmem_cache_t *s
        cdef sched *sc = &self.machine.m.sc
        if g == NULL:
            return []
        cdef kmem_cache_t **ptrs = NULL
        cdef kmem_cache_t **grown
        cdef int n = 0, cap = 16, i
        # a read-side section keeps every cache listed allocated until it is
        # wrapped (destroyed ones are freed after a grace period)
        rcu_read_lock_ext(sc)
        try:
            while True:                 # memcg_kmem_caches_snapshot() with room to spare
                grown = <kmem_cache_t **>realloc(ptrs, cap * sizeof(kmem_cache_t *))
                if grown == NULL:
                    raise MemoryError()
                ptrs = grown
                self.machine._nogil_begin(None)
                with nogil:
                    n = memcg_kmem_caches_snapshot(&self.machine.m, g, ptrs, cap)
                self.machine._nogil_end(None)
                if n < cap:
                    break
                cap *= 2
            return [self.machine._wrap_child(ptrs[i]) for i in range(n)]
        finally:
            c_free(ptrs)
            rcu_read_unlock_ext(sc)

    @property
    def nr_bytes(self):
        """Under objcg (Linux 5.9), the bytes its live objects charge through
        its obj_cgroups (its own, and offline children's reparented to it):
        obj_full_size (the object's slot + one obj_cgroup pointer) per
        object, i.e. nr_pages * PAGE_SIZE - precharged_bytes.  Exact while
        no worker runs.  0 with per-memcg caches, which charge whole slab
        pages (nr_pages)."""
        cdef objcg_counts out
        cdef mem_cgroup *g = self.live()
        if g == NULL or self.machine.m.per_memcg_caches:
            return 0
        memcg_objcg_counts(&self.machine.m, g, &out)
        return out.nr_pages * PAGE_SIZE - out.precharged

    @property
    def precharged_bytes(self):
        """Under objcg, bytes charged to this memcg (in nr_pages) that no
        object uses yet: the per-vCPU stocks' bytes (memcg_stock_pcp
        nr_bytes) of the vCPUs caching one of its obj_cgroups, and those
        obj_cgroups' sub-page leftovers (nr_charged_bytes).  Exact while no
        worker runs; 0 with per-memcg caches."""
        cdef objcg_counts out
        cdef mem_cgroup *g = self.live()
        if g == NULL or self.machine.m.per_memcg_caches:
            return 0
        memcg_objcg_counts(&self.machine.m, g, &out)
        return out.precharged

    def __eq__(self, other):
        return isinstance(other, MemCgroup) and (<MemCgroup>other).id == self.id \
            and (<MemCgroup>other).machine is self.machine

    def __hash__(self):
        return hash((id(self.machine), self.id))

    def __repr__(self):
        if self.machine.closed:
            return f"<MemCgroup {self.name!r} (machine closed)>"
        state = "online" if self.online else "dying" if self.dying else "freed"
        return f"<MemCgroup {self.name!r} id={self.id} {state} pages={self.nr_pages}>"


cdef MemCgroup wrap_memcg(Machine machine, mem_cgroup *g):
    cdef MemCgroup w = MemCgroup.__new__(MemCgroup)
    w.g = g
    w.machine = machine
    w.id = g.id
    w.name = g.name.decode()
    return w


cdef KmemCache wrap_cache(Machine machine, kmem_cache_t *s, str name, object ctor, bint is_kmalloc):
    cdef KmemCache c = KmemCache.__new__(KmemCache)
    c.s = s
    c.machine = machine
    c.name = name
    c.ctor = ctor
    c.is_kmalloc = is_kmalloc
    c.size = s.size
    c.object_size = s.object_size
    c.offset = s.offset
    c.inuse = s.inuse
    c.align = s.align
    c.order = oo_order(s.oo)
    c.objects_per_slab = oo_objects(s.oo)
    c.sheaf_capacity = s.sheaf_capacity
    c.flags = s.flags & ~(<unsigned long>__OBJECT_POISON)
    c.oo = (oo_order(s.oo), oo_objects(s.oo))
    c.min = (oo_order(s.min), oo_objects(s.min))
    c.max = (oo_order(s.max), oo_objects(s.max))
    return c


cdef enum:
    SNAP_MEMCGS = 0             # m->memcgs
    SNAP_CHILD_CACHES = 1       # child caches on slab_caches (of `root`, or all)


cdef size_t list_snapshot(slub_machine *m, int what, kmem_cache_t *root, void **ptrs,
                          size_t cap) noexcept nogil:
    """Up to `cap` entries of list `what`, newest first, into `ptrs`; returns
    how many there are (more than `cap`: call again with more room).
    Called with slab_lock held."""
    cdef size_t n = 0
    cdef mem_cgroup *g
    cdef kmem_cache_t *s
    if what == SNAP_MEMCGS:
        g = memcgs_first(m)
        while g != NULL:
            if n < cap:
                ptrs[n] = g
            n += 1
            g = memcgs_next(m, g)
        return n
    s = slab_caches_first(m)
    while s != NULL:
        if s.root != NULL and not s.destroyed and (root == NULL or s.root == root):
            if n < cap:
                ptrs[n] = s
            n += 1
        s = slab_caches_next(m, s)
    return n


@cython.no_gc_clear
cdef class Machine:
    """A machine: `cpus` vCPUs, an arena of `memory` bytes managed by a buddy
    page allocator, the kmalloc caches and any caches you create.

    `nr_cpu_ids` (possible CPUs, default `cpus`) only sizes slabs, as in the
    kernel's calculate_order().  `seed` and `policy` are kept for workloads.

    Grace periods (synchronize(), the C callbacks of call_rcu) end once
    every running vCPU has passed a quiescent state (reported between
    operations, QSBR, or by being switched out at a preemptible point) and
    the next scheduling-clock tick of 1/hz s after they started has come, as
    the kernel's grace-period machinery runs from the tick: a grace period
    lasts one to two ticks, as in the kernel, and a policy that waits for one
    per dead cache (barrier:sync) pays what Linux 4.7 paid.  `hz` defaults to
    250 (DEFAULT_HZ: CONFIG_HZ_250, Debian's and Ubuntu's choice in the 4.x
    era; RHEL used 1000).

    `expedited=True` ends a grace period as soon as every vCPU has passed a
    quiescent state, without waiting for a tick: microseconds, as the
    kernel's synchronize_sched_expedited() -- which gets there by forcing a
    quiescent state on every CPU with an IPI; here the vCPUs report one
    every 64 operations anyway, so no IPI is needed.

    `slub` picks the allocator generation: "4.0" (the default: cpu slabs,
    cpu partial lists, per-memcg caches until a policy says otherwise) or
    "7.0" (Linux 7.0's percpu sheaves and per-node barns in front of the
    slabs, no cpu slab; objects charged through obj_cgroups, as every
    kernel since 5.9: only policies without per-memcg caches run on it).
    The page allocator, memcgs, grace periods and the Python API are the
    same for both.
    """

    def __cinit__(self, cpus=1, nr_cpu_ids=None, memory=64 << 20, policy=None, seed=0,
                  slub_min_objects=0, slub_min_order=0, slub_max_order=3, ipi_timeout=10.0,
                  hz=None, expedited=False, slub="4.0"):
        cdef int rc
        self.closed = True          # until the arena exists
        INIT_LIST_HEAD(&self.m.slab_caches)     # empty lists: _release() walks them
        INIT_LIST_HEAD(&self.m.slab_root_caches)
        INIT_LIST_HEAD(&self.m.memcgs)
        self._caches = []
        self._kmalloc = [None] * (<int>NR_KMALLOC)
        as_int(cpus, "cpus")
        if nr_cpu_ids is None:
            nr_cpu_ids = cpus
        as_int(nr_cpu_ids, "nr_cpu_ids")
        as_int(memory, "memory")
        as_int(seed, "seed")
        if not isinstance(ipi_timeout, (int, float)) or isinstance(ipi_timeout, bool):
            raise TypeError("ipi_timeout must be a number of seconds")
        for v, what in ((slub_min_objects, "slub_min_objects"), (slub_min_order, "slub_min_order"),
                        (slub_max_order, "slub_max_order")):
            as_int(v, what)
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be in 1..{MAX_CPUS}, got {cpus}")
        if not cpus <= nr_cpu_ids <= 8192:
            raise ValueError(f"nr_cpu_ids (possible CPUs) must be in cpus..8192, got {nr_cpu_ids}")
        if not 1 << 20 <= memory <= MAX_ARENA or memory % PAGE_SIZE:
            raise ValueError(f"memory must be a multiple of {PAGE_SIZE} in 1 MiB..{MAX_ARENA} "
                             f"(32 GiB - 4 KiB: what the packed freelist word addresses), got {memory}")
        if not 0 <= slub_min_order < MAX_ORDER or not 0 <= slub_max_order < MAX_ORDER:
            raise ValueError(f"slub_min_order and slub_max_order must be in 0..{MAX_ORDER - 1}")
        if not 0 <= slub_min_objects <= MAX_OBJS_PER_PAGE:
            raise ValueError(f"slub_min_objects must be in 0..{MAX_OBJS_PER_PAGE}")
        if slub not in SLUB_GENERATIONS:
            raise ValueError(f"slub must be one of {', '.join(map(repr, SLUB_GENERATIONS))} "
                             f"(the allocator generation), got {slub!r}")
        if hz is None:
            hz = DEFAULT_HZ
        if not isinstance(expedited, bool):
            raise TypeError("expedited must be True or False")
        as_int(hz, "hz")
        if not 1 <= hz <= 100_000:
            raise ValueError(f"hz (scheduling-clock ticks per second) must be in 1..100000, got {hz}")
        if not expedited and 0 <= ipi_timeout < 2.0 / hz:
            raise ValueError(f"ipi_timeout {ipi_timeout} s is shorter than two ticks at hz={hz}: "
                             "every grace period would time out (or use expedited=True)")
        self.m.slub_min_objects = slub_min_objects
        self.m.slub_min_order = slub_min_order
        self.m.slub_max_order = slub_max_order
        self.policy = policy
        self.seed = seed
        self.hz = hz
        self.expedited = expedited
        rc = slub_machine_init(&self.m, cpus, nr_cpu_ids, memory,
                               <uint64_t>(seed & 0xffffffffffffffff),
                               0 if expedited else 1_000_000_000 // hz, ipi_timeout)
        if rc != MACHINE_OK:
            self.closed = True
            raise _INIT_ERRORS[rc][0](_INIT_ERRORS[rc][1].format(memory=memory))
        self.closed = False
        self.slub = slub
        self.m.slub_gen = SLUB_GENERATIONS[slub]
        self.m.rcu_barrier_in_shutdown = 1
        if self.m.slub_gen >= 70:
            # every kernel with sheaves charges objects (obj_cgroup, 5.9+)
            self.m.per_memcg_caches = 0
            self.m.pages_pin_memcg = 0
        self._children = {}
        self._vcpu_user = bytearray(cpus)
        self._create_kmalloc_caches()
        if policy is not None:
            from slubcy.policies import get_policy
            from slubcy.policies.base import Policy
            if not isinstance(policy, (str, Policy)):
                raise TypeError(f"policy must be a spec such as 'barrier:sync' or a Policy, "
                                f"not {type(policy).__name__}")
            self._policy_obj = get_policy(policy) if isinstance(policy, str) else policy
            if self.m.slub_gen >= 70 and self._policy_obj.per_memcg_caches:
                name = self._policy_obj.name
                self._policy_obj = None
                self._release()
                raise ValueError(f"policy {name!r} retires per-memcg caches, which Linux 5.9 "
                                 "removed: it does not run on slub 7.0 (sheaves); use one "
                                 "without them, such as 'objcg'")
            self._policy_obj.attach(self)
            self.policy = self._policy_obj.name

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef KmemCache c
        for c in self._caches or ():
            c.s = NULL
        for c in (self._children or {}).values():
            c.s = NULL
        self._caches = []
        self._children = {}
        slub_machine_release(&self.m)
        self.closed = True

    def close(self):
        """Free the arena and every cache.  Any later call raises MachineClosed,
        and so does any call made once close() has begun.  Calls of other
        threads that run with the GIL released finish first (close() waits
        for them, bounded: MachineBusy if one does not, and the machine stays
        open)."""
        import time
        if self.closed:
            return
        cdef double deadline = monotonic() + self._wait_bound()
        while self._closing and not self.closed:
            # another thread's close() is under way: it frees everything
            if monotonic() > deadline:
                raise MachineBusy("close() of another thread has not finished")
            time.sleep(0.0005)
        if self.closed:
            return
        self.check_idle()
        self._closing = True        # new calls raise MachineClosed from here on
        deadline = monotonic() + self._wait_bound()
        try:
            while True:
                users = [i for i in range(self.m.nr_cpus) if self._vcpu_user[i]]
                if not self._in_flight and not users:
                    break
                held = [n for n in range(<int>NR_PREEMPT_POINTS) if self.m.sc.points[<int>n].held]
                if held or monotonic() > deadline:
                    why = (f"a thread is held at a preemption point, on vCPU {users[0]}" if held and users
                           else f"vCPU {users[0]} is run by another thread" if users
                           else f"{self._in_flight} calls of other threads are in flight")
                    raise MachineBusy(f"{why}; close() after it is done")
                time.sleep(0.0005)
        except BaseException:
            self._closing = False
            raise
        if self._policy_obj is not None:
            self._policy_obj.detach()
        # the kworker finishes its item (releasing cgroup_mutex and
        # slab_mutex) and drops the rest, whose waiters are told; then the
        # API calls that were waiting for a mutex or an offline finish
        with nogil:
            workqueue_stop(&self.m.wq)
        import time
        while self._api_busy:
            time.sleep(0.0005)
        if self._rcu is not None:
            self._rcu.stop()
            self._rcu = None
        self._release()

    def __enter__(self):
        self.check_open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        if self.closed:
            return "<Machine closed>"
        return (f"<Machine cpus={self.m.nr_cpus} nr_cpu_ids={self.m.nr_cpu_ids} "
                f"memory={self.m.z.nr_pages << PAGE_SHIFT} caches={len(self._caches)}>")

    # -- properties --------------------------------------------------------

    @property
    def cpus(self):
        return self.m.nr_cpus

    @property
    def nr_cpu_ids(self):
        return self.m.nr_cpu_ids

    @property
    def memory(self):
        return self.m.z.nr_pages << PAGE_SHIFT

    @property
    def arena(self):
        """(start address, size in bytes) of the arena."""
        self.check_open()
        return (<uintptr_t>self.m.z.base, self.m.z.nr_pages << PAGE_SHIFT)

    def arena_populate(self):
        """Fault in the whole arena (and the page map) now, as a kernel's
        memory is present: a timed run after this pays no first-touch page
        faults (the trace replay calls it before it starts).  The arena's
        pages then stay resident until close()."""
        self.check_open()
        with nogil:
            zone_populate(&self.m.z)

    @property
    def caches(self):
        """Live caches, kmalloc caches first, in creation order."""
        self.check_open()
        return [c for c in self._caches if (<KmemCache>c).s != NULL]

    def kmem_cache(self, name):
        """The live cache called `name`."""
        self.check_open()
        for c in self._caches:
            if (<KmemCache>c).s != NULL and (<KmemCache>c).name == name:
                return c
        raise KeyError(name)

    # -- argument checks ---------------------------------------------------

    cdef int check_open(self) except -1:
        if self.closed or self._closing:
            raise MachineClosed("the machine is closed")
        return 0

    cdef int check_idle(self) except -1:
        """Object-level calls need the machine to themselves."""
        self.check_open()
        if self.m.sc.running_workers:
            raise MachineBusy(f"{self.m.sc.running_workers} workers are running on this machine")
        return 0

    cdef int workers_begin(self, int n) except -1:
        """A Run is about to start worker threads on vCPUs 0..n-1: check
        that each is free now (the worker thread takes it: this_cpu is per
        thread) and count them running (object-level calls are refused
        meanwhile, MachineBusy).  A thread on no vCPU may have borrowed one
        for a cross-vCPU request (the kworker, the RCU thread, an
        introspection call): wait for that (OWNER_CONTROLLER, as an API
        call's brief ownership); a worker of another run (a token > 0) is a
        conflict at once (CPUBusy)."""
        import time
        cdef int i
        cdef double deadline
        self.check_idle()
        for i in range(n):
            deadline = monotonic() + 2.0
            while not vcpu_take(&self.m.sc, i, i + 1):
                if atomic_int_read(&self.m.sc.vcpus[i].owner) > 0 or monotonic() > deadline:
                    raise CPUBusy(f"vCPU {i} is run by another thread")
                time.sleep(0.0001)
            vcpu_release(&self.m.sc, i)
        self.m.sc.running_workers += n
        return 0

    cdef void workers_end(self, int n) noexcept:
        """The Run's n workers have stopped (or parked off their vCPUs)."""
        self.m.sc.running_workers -= n

    cdef void workers_resume(self, int n) noexcept:
        """workers_end()'s inverse: n parked workers take their vCPUs back."""
        self.m.sc.running_workers += n

    cdef int vcpu_enter(self, int cpu) except -1:
        """Run on vCPU `cpu` for one call (online for the grace periods)."""
        self.check_idle()
        if not vcpu_take(&self.m.sc, cpu, OWNER_CONTROLLER) and not self.vcpu_enter_wait(cpu):
            self.check_open()
            raise CPUBusy(f"vCPU {cpu} is run by another thread")
        self._vcpu_user[cpu] = 1
        return 0

    cdef bint vcpu_enter_wait(self, int cpu):
        """The vCPU is taken.  By another Python thread's call: try again
        for up to 50 ms.  Else by a thread on no vCPU (the kworker, the RCU
        thread, a policy's reaper) running a cross-vCPU request on it (it
        borrows an idle vCPU): wait for it, GIL released, as long as a
        cross-vCPU request may take (the machine's ipi_timeout, at least 1 s),
        so that a single-threaded script's call never fails for it."""
        cdef double short = monotonic() + 0.05
        cdef double deadline = monotonic() + self._wait_bound()
        cdef double until
        cdef int k
        cdef bint ok = False
        cdef timespec ts
        ts.tv_sec = 0
        ts.tv_nsec = 20000
        self._in_flight += 1            # close() waits for this call
        try:
            while not ok and not (self.closed or self._closing):
                if self._vcpu_user[cpu] or atomic_int_read(&self.m.sc.vcpus[cpu].owner) > 0:
                    until = short       # an API call or a worker: not a borrower
                else:
                    until = deadline
                if monotonic() >= until:
                    break
                with nogil:
                    for k in range(50):     # about a millisecond between GIL checks
                        nanosleep(&ts, NULL)
                        if vcpu_take(&self.m.sc, cpu, OWNER_CONTROLLER):
                            ok = True
                            break
            if ok and (self.closed or self._closing):
                vcpu_release(&self.m.sc, cpu)
                ok = False
        finally:
            self._in_flight -= 1
        return ok

    cdef void vcpu_exit(self, int cpu) noexcept:
        self._vcpu_user[cpu] = 0
        vcpu_release(&self.m.sc, cpu)

    cdef double _wait_bound(self):
        """How long a call waits for another thread's work on the machine:
        the time a cross-vCPU request may take (ipi_timeout, at least 1 s;
        10 s when requests never time out)."""
        return 10.0 if self.m.ipi_timeout < 0 else max(self.m.ipi_timeout, 1.0)

    cdef int _nogil_begin(self, KmemCache c) except -1:
        """A call is about to release the GIL while it uses the machine (and
        cache `c`): close() and kmem_cache_destroy() wait until it is done."""
        cdef double deadline
        self.check_open()
        if c is not None and c._destroying:
            # kmem_cache_destroy() of `c` waits for the calls in flight:
            # wait for its verdict, then go on if the cache is still there
            import time
            deadline = monotonic() + 2 * self._wait_bound()
            while c._destroying and monotonic() < deadline:
                time.sleep(0.0005)
            self.check_open()
            c.get()                 # CacheDestroyed if it went
        self._in_flight += 1
        if c is not None:
            c._in_flight += 1
        return 0

    cdef void _nogil_end(self, KmemCache c) noexcept:
        self._in_flight -= 1
        if c is not None:
            c._in_flight -= 1

    cdef int check_cpu(self, cpu) except -1:
        self.check_open()
        as_int(cpu, "cpu")
        if not 0 <= cpu < self.m.nr_cpus:
            raise InvalidCPU(f"cpu {cpu} out of range: this machine has vCPUs 0..{self.m.nr_cpus - 1}")
        return cpu

    cdef kmem_cache_t *_cache(self, c) except NULL:
        self.check_open()
        if not isinstance(c, KmemCache):
            raise TypeError(f"expected a KmemCache, not {type(c).__name__}")
        if (<KmemCache>c).machine is not self:
            raise WrongCache(f"cache {(<KmemCache>c).name!r} belongs to another machine")
        return (<KmemCache>c).get()

    cdef void *_addr(self, addr) except? NULL:
        as_int(addr, "address")
        if addr <= 0 or addr >= (1 << 64):
            raise NotInArena(f"address {addr:#x} is outside the arena")
        return <void *><uintptr_t>addr

    # -- caches ------------------------------------------------------------

    cdef _create_kmalloc_caches(self):
        """create_kmalloc_caches(): kmalloc-8 .. kmalloc-8192 and the 96 and
        192 byte caches, no flags (departure: no cache merging)."""
        cdef int i
        for i in list(range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)) + [1, 2]:
            size = 96 if i == 1 else 192 if i == 2 else 1 << i
            self._kmalloc[i] = self._create(f"kmalloc-{size}", size, 0, 0, None, True)
        # list them in size order, as /proc/slabinfo does (newest first there)
        self._caches.sort(key=lambda c: (<KmemCache>c).object_size)

    cdef KmemCache _create(self, str name, size_t size, size_t align, unsigned long flags,
                           object ctor, bint is_kmalloc, int freeptr_offset=-1,
                           unsigned int sheaf_capacity=0):
        cdef bytes bname = name.encode()
        cdef kmem_cache_t *s = kmem_cache_open(&self.m, bname, size, align, flags,
                                               <void *>ctor if ctor is not None else NULL,
                                               freeptr_offset, sheaf_capacity)
        if s == NULL:
            raise ValueError(f"cannot create cache {name!r}: size {size} does not fit a slab")
        cdef KmemCache c = wrap_cache(self, s, name, ctor, is_kmalloc)
        self._caches.append(c)
        return c

    def kmem_cache_create(self, name, size, align=0, flags=0, ctor=None, *, freeptr_offset=None,
                          sheaf_capacity=0):
        """kmem_cache_create(): a cache of `size`-byte objects.  `align` is 0 or
        a power of two; `flags` are SLAB_* constants; `ctor(address)` runs once
        per object when its slab is created (it moves the free pointer).

        On a slub 7.0 machine, two fields of 6.x's struct kmem_cache_args:
        `freeptr_offset`, where a SLAB_TYPESAFE_BY_RCU cache keeps the free
        pointer inside the object (a multiple of 8 below `size`) instead of
        after it, and `sheaf_capacity`, the least its sheaves hold (the 7.0
        formula may give more)."""
        self.check_open()
        if not isinstance(name, str) or not name or len(name.encode()) > 63 or "\0" in name:
            raise ValueError("name must be a non-empty str of at most 63 bytes, without NUL")
        for c in self._caches:
            if (<KmemCache>c).s != NULL and (<KmemCache>c).name == name:
                raise ValueError(f"a cache named {name!r} exists")
        as_int(size, "size")
        as_int(align, "align")
        as_int(flags, "flags")
        if not 8 <= size <= KMALLOC_MAX_SIZE:
            raise ValueError(f"size must be in 8..{KMALLOC_MAX_SIZE} bytes, got {size}")
        if align < 0 or (align & (align - 1)) or align > KMALLOC_MAX_SIZE:
            raise ValueError(f"align must be 0 or a power of two up to {KMALLOC_MAX_SIZE}, got {align}")
        if flags < 0 or flags >= 1 << 64 or flags & ~SUPPORTED_FLAGS:
            raise ValueError(f"unsupported flags {flags:#x} (SLAB_STORE_USER is not supported)")
        if ctor is not None and not callable(ctor):
            raise TypeError("ctor must be callable or None")
        cdef int fpo = -1
        if freeptr_offset is not None or sheaf_capacity != 0:
            if self.m.slub_gen < 70:
                raise ValueError("freeptr_offset and sheaf_capacity are fields of 6.x's "
                                 "kmem_cache_args: create the machine with slub='7.0'")
        if freeptr_offset is not None:
            as_int(freeptr_offset, "freeptr_offset")
            if not flags & SLAB_TYPESAFE_BY_RCU:
                raise ValueError("freeptr_offset is for SLAB_TYPESAFE_BY_RCU caches only")
            if not 0 <= freeptr_offset <= size - 8 or freeptr_offset % 8:
                raise ValueError(f"freeptr_offset must be a multiple of 8 in 0..{size - 8} "
                                 f"(a pointer inside the object), got {freeptr_offset}")
            fpo = freeptr_offset
        as_int(sheaf_capacity, "sheaf_capacity")
        if not 0 <= sheaf_capacity <= 4096:
            raise ValueError(f"sheaf_capacity must be in 0..4096, got {sheaf_capacity}")
        # kmem_cache_create() holds slab_mutex (and get_online_cpus/mems):
        # it waits while the kworker holds it (a 4.0-4.9 deactivation)
        self._api_busy += 1
        try:
            with nogil:
                mutex_lock(&self.m.sc, &self.m.slab_mutex)
            try:
                return self._create(name, size, align, flags, ctor, False, fpo, sheaf_capacity)
            finally:
                mutex_unlock(&self.m.slab_mutex)
        finally:
            self._api_busy -= 1

    def kmem_cache_destroy(self, c):
        """kmem_cache_destroy(): refuses (CacheBusy) while objects remain; the
        cache is then flushed and shrunk but stays usable.  A memcg child
        cache cannot be destroyed (ValueError): it goes with its memcg.
        Calls on the cache that run with the GIL released in other threads
        (shrink, flush_all, the bulk calls, validate) finish first: this
        waits for them, bounded (CacheBusy if one does not finish)."""
        cdef kmem_cache_t *s = self._cache(c)
        self.check_idle()
        if (<KmemCache>c).is_kmalloc:
            raise ValueError("kmalloc caches cannot be destroyed")
        if s.root != NULL or (<KmemCache>c).is_child:
            raise ValueError(f"kmem_cache_destroy {(<KmemCache>c).name}: a memcg child cache is "
                             "destroyed by its memcg's offline (or with its root cache), not directly")
        # a queued creation of a child of `s` holds a pointer to it: let the
        # kworker run it first
        self.flush_work(timeout=None if self.m.ipi_timeout < 0 else max(self.m.ipi_timeout, 1.0))
        import time
        cdef double deadline = monotonic() + self._wait_bound()
        s = self._cache(c)          # (another thread may have destroyed it meanwhile)
        if (<KmemCache>c)._destroying:
            raise CacheBusy(f"kmem_cache_destroy {(<KmemCache>c).name}: another thread is "
                            "destroying it")
        (<KmemCache>c)._destroying = True       # new calls on it wait until this is done
        try:
            while ((<KmemCache>c)._in_flight or self._walking or
                   any(self._vcpu_user[i] for i in range(self.m.nr_cpus))):
                if monotonic() > deadline:
                    raise CacheBusy(f"kmem_cache_destroy {(<KmemCache>c).name}: calls of other "
                                    "threads on it are in flight")
                time.sleep(0.0005)
        finally:
            (<KmemCache>c)._destroying = False
        s = self._cache(c)
        self.check_idle()
        cdef kmem_cache_t *child = slab_caches_first(&self.m)
        while child != NULL:
            if child.root == s and not child.destroyed:
                raise CacheBusy(f"kmem_cache_destroy {(<KmemCache>c).name}: memcg child cache "
                                f"{child.name.decode()} is alive")
            child = slab_caches_next(&self.m, child)
        if __kmem_cache_shutdown(s):
            raise CacheBusy(f"kmem_cache_destroy {(<KmemCache>c).name}: Slab cache still has objects")
        Py_XDECREF(<PyObject *>s.ctor_exc)
        s.ctor_exc = NULL
        kmem_cache_unlink(s)
        kmem_cache_release(s)
        (<KmemCache>c).s = NULL
        self._caches.remove(c)

    def kmem_cache_shrink(self, c):
        """kmem_cache_shrink() (Linux 4.0): flush every vCPU and free every
        empty slab.  Returns 1 if slabs remain, else 0.  Running vCPUs flush
        themselves between two operations; Timeout if one does not."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int before = self.m.ipi_timeouts, rc
        self._nogil_begin(c)
        try:
            with nogil:
                # slab_mutex: validate() holds it to see no shrink half done
                # (departure: the kernel's kmem_cache_shrink takes none)
                mutex_lock(&self.m.sc, &self.m.slab_mutex)
                rc = __kmem_cache_shrink(s, False)
                mutex_unlock(&self.m.slab_mutex)
        finally:
            self._nogil_end(c)
        if self.m.ipi_timeouts != before:
            raise Timeout(f"kmem_cache_shrink({(<KmemCache>c).name}): a vCPU did not flush in time")
        return rc

    def kmem_cache_mark_dead(self, c):
        """Mark a cache dead, no barrier: cpu_partial = min_partial = 0 (the
        first step of memcg_deactivate_kmem_caches in Linux 4.0, and all the
        2014 mail's proposal did before its shrink)."""
        cdef kmem_cache_t *s = self._cache(c)
        atomic_int_set(&s.cpu_partial, 0)
        s.min_partial = 0

    def flush_all(self, c):
        """flush_all(): every vCPU deactivates its cpu slab and cpu partial
        slabs (running vCPUs between two operations)."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int rc
        self._nogil_begin(c)
        try:
            with nogil:
                mutex_lock(&self.m.sc, &self.m.slab_mutex)      # (as kmem_cache_shrink)
                rc = flush_all(s)
                mutex_unlock(&self.m.slab_mutex)
        finally:
            self._nogil_end(c)
        if rc != 0:
            raise Timeout(f"flush_all({(<KmemCache>c).name}): a vCPU did not answer in time")

    # -- memory cgroups -----------------------------------------------------

    @property
    def root_mem_cgroup(self):
        self.check_open()
        return wrap_memcg(self, self.m.root_mem_cgroup)

    def memcg_create(self, name, parent=None):
        """A memcg under `parent` (the root memcg by default): cgroup_mkdir,
        under cgroup_mutex -- so it waits (GIL released) while the kworker
        runs an offline, as mkdir waited behind rmdir on Linux 4.0-4.10."""
        self.check_open()
        if not isinstance(name, str) or not name or len(name.encode()) > 47 or "\0" in name:
            raise ValueError("memcg name must be a non-empty str of at most 47 bytes, without NUL")
        cdef mem_cgroup *p = NULL
        if parent is not None:
            if not isinstance(parent, MemCgroup) or (<MemCgroup>parent).machine is not self:
                raise TypeError("parent must be a MemCgroup of this machine")
            p = (<MemCgroup>parent).live()
            if p == NULL or not p.online or p.offline_pending:
                raise ValueError(f"parent {parent.name!r} is offline")
        cdef bytes b = name.encode()
        cdef const char *cname = b
        cdef mem_cgroup *g
        self._api_busy += 1
        try:
            with nogil:
                g = mem_cgroup_create(&self.m, cname, p)
        finally:
            self._api_busy -= 1
        if g == NULL:
            raise errors.SlubError(f"no kmemcg id left ({MAX_MEMCG_CACHES} online memcgs)")
        return wrap_memcg(self, g)

    cdef mem_cgroup *_rmdir_target(self, memcg) except NULL:
        self.check_open()
        if not isinstance(memcg, MemCgroup) or (<MemCgroup>memcg).machine is not self:
            raise TypeError("memcg must be a MemCgroup of this machine")
        cdef mem_cgroup *g = (<MemCgroup>memcg).live()
        if g == self.m.root_mem_cgroup:
            raise ValueError("the root memcg cannot go offline")
        if g == NULL or not g.online or g.offline_pending:
            raise ValueError(f"memcg {memcg.name!r} is already offline")
        if self.m.policy_offline == NULL:
            raise errors.SlubError("the machine has no dead-cache policy (Machine(policy=...))")
        return g

    cdef _rmdir_error(self, int r, memcg):
        if r == RMDIR_OFFLINE:
            return ValueError(f"memcg {memcg.name!r} is already offline")
        if r == RMDIR_NOMEM:
            return MemoryError("no memory for the offline work item")
        if r == RMDIR_STOPPED:
            return MachineClosed("the machine is closed")
        return errors.SlubError("the machine has no dead-cache policy (Machine(policy=...))")

    def memcg_rmdir(self, memcg):
        """cgroup_rmdir(): take cgroup_mutex (waiting, GIL released, while the
        kworker runs an offline), mark `memcg` as going offline, queue its
        offline (css_killed_work_fn: the policy, under cgroup_mutex) on the
        machine's kworker, and return without waiting for it: the seconds
        spent waiting for cgroup_mutex.  flush_work() waits for the offline;
        kworker_stat_info()["offline_errors"] counts offlines whose waits timed
        out."""
        cdef mem_cgroup *g = self._rmdir_target(memcg)
        cdef int r
        cdef double waited = 0.0
        self._api_busy += 1
        css_get_many(g, 1)      # another thread's offline may free it while this waits
        try:
            with nogil:
                r = cgroup_rmdir(&self.m, g, NULL, NULL, &waited)
        finally:
            css_put_many(&self.m, g, 1)
            self._api_busy -= 1
        if r != 0:
            raise self._rmdir_error(r, memcg)
        return waited

    def memcg_offline(self, memcg):
        """Take `memcg` offline through the machine's policy and wait for it:
        memcg_rmdir(), then wait (GIL released) until the kworker has run
        this offline -- after any work queued before it.  Returns the
        offline's latency in seconds, from queueing to the end of the work
        item (memcg_rmdir alone does not wait); Timeout if a wait inside it
        timed out, MachineClosed if the machine closed first."""
        cdef mem_cgroup *g = self._rmdir_target(memcg)
        cdef int r
        cdef offline_completion comp
        comp.done = 0
        comp.rc = 0
        comp.latency = 0.0
        self._api_busy += 1
        css_get_many(g, 1)      # another thread's offline may free it while this waits
        try:
            with nogil:
                r = cgroup_rmdir(&self.m, g, offline_complete, &comp, NULL)
                if r == 0:
                    wait_completion(&comp)
        finally:
            css_put_many(&self.m, g, 1)
            self._api_busy -= 1
        if r != 0:
            raise self._rmdir_error(r, memcg)
        if comp.rc == OFFLINE_CANCELLED:
            raise MachineClosed(f"offline of {memcg.name!r}: the machine closed before it ran")
        if comp.rc != 0:
            raise Timeout(f"offline of {memcg.name!r}: a vCPU did not answer in time")
        return comp.latency

    def flush_work(self, timeout=None):
        """flush_workqueue() of the kworker: wait (GIL released) until every
        work item queued so far -- offlines, child cache creations -- has
        run.  Timeout after `timeout` seconds."""
        self.check_open()
        if timeout is not None and (not isinstance(timeout, (int, float)) or
                                    isinstance(timeout, bool)):
            raise TypeError("timeout must be a number of seconds or None")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        cdef double t = -1.0 if timeout is None else float(timeout)
        cdef int rc
        self._api_busy += 1
        try:
            with nogil:
                rc = flush_workqueue(&self.m.wq, t)
        finally:
            self._api_busy -= 1
        if rc != 0:
            raise Timeout(f"kworker: work still pending after {timeout} s")

    def kworker_stat_info(self):
        """The kworker: work items queued, run, dropped, pending now and at
        most; its thread id (gettid, as threading.get_native_id()); child
        caches it created, creations run on a vCPU thread (always 0) and the
        thread of the last one; offlines whose waits timed out; how often
        cgroup_mutex and slab_mutex made a locker wait, and for how long."""
        self.check_open()
        # the counters are atomic (wait_kworker reads them unlocked too)
        cdef long queued = atomic_long_read_acquire(&self.m.wq.queued)
        cdef long done = atomic_long_read_acquire(&self.m.wq.done)
        cdef long dropped = atomic_long_read_acquire(&self.m.wq.cancelled)
        return {"queued": queued, "done": done, "cancelled": dropped,
                "pending": queued - done - dropped, "pending_max": self.m.wq.pending_max,
                "tid": self.m.wq.tid, "cache_creations": self.m.nr_cache_creations,
                "creations_on_vcpu": self.m.creations_on_vcpu,
                "creation_tid": self.m.creation_tid, "offline_errors": self.m.offline_errors,
                "cgroup_mutex_waits": self.m.cgroup_mutex.contended,
                "cgroup_mutex_wait_s": self.m.cgroup_mutex.wait_seconds,
                "slab_mutex_waits": self.m.slab_mutex.contended,
                "slab_mutex_wait_s": self.m.slab_mutex.wait_seconds}

    def memcgs(self):
        """Every memcg of the machine (the root first), freed ones included."""
        # entries unlinked from the list are freed after a grace period,
        # which this read-side section holds off until each is wrapped
        rcu_read_lock_ext(&self.m.sc)
        try:
            return [wrap_memcg(self, <mem_cgroup *><uintptr_t>p)
                    for p in self._snapshot(SNAP_MEMCGS, NULL)]
        finally:
            rcu_read_unlock_ext(&self.m.sc)

    cdef list _snapshot(self, int what, kmem_cache_t *root):
        """The addresses on one of the machine's lists, oldest first, read
        under slab_lock (the lists' lock) into a buffer grown until it
        holds them all.  Call it in an RCU read-side section: what it
        returns is freed after a grace period once unlinked."""
        self.check_open()
        cdef void **ptrs = NULL
        cdef void **grown
        cdef Py_ssize_t n, cap = 64, i
        try:
            while True:
                grown = <void **>realloc(ptrs, cap * sizeof(void *))
                if grown == NULL:
                    raise MemoryError()
                ptrs = grown
                with nogil:
                    spin_lock(&self.m.slab_lock)
                    n = <Py_ssize_t>list_snapshot(&self.m, what, root, ptrs, <size_t>cap)
                    spin_unlock(&self.m.slab_lock)
                if n <= cap:
                    return [<uintptr_t>ptrs[i] for i in range(n - 1, -1, -1)]
                cap = n + 64
        finally:
            c_free(ptrs)

    def memcg_stat_info(self):
        """Dead caches (of offline memcgs) not yet destroyed, those holding
        slabs and their pages, dying memcgs, offlines, caches destroyed."""
        self.check_open()
        cdef dead_counts out
        dead_cache_counts(&self.m, &out)
        return out                  # (a dict of its fields)

    def child_caches(self, c=None):
        """The memcg child caches (of root cache `c`, or all), destroyed
        ones excluded."""
        self.check_open()
        cdef kmem_cache_t *root = self._cache(c) if c is not None else NULL
        # a destroyed cache is freed after a grace period, held off by this
        # read-side section until each is wrapped
        rcu_read_lock_ext(&self.m.sc)
        try:
            return [self._wrap_child(<kmem_cache_t *><uintptr_t>p)
                    for p in self._snapshot(SNAP_CHILD_CACHES, root)]
        finally:
            rcu_read_unlock_ext(&self.m.sc)

    cdef KmemCache _wrap_child(self, kmem_cache_t *s):
        key = <uintptr_t>s
        c = self._children.get(key)
        if c is not None and (<KmemCache>c).name != s.name.decode():
            c = None            # the address was reused by a newer cache
        if c is None:
            # a child cache runs its root's constructor (memcg_create_kmem_cache)
            c = wrap_cache(self, s, s.name.decode(), <object>s.ctor if s.ctor != NULL else None, False)
            (<KmemCache>c).is_child = True
            self._children[key] = c
        return c

    def vcpu_info(self):
        """Per vCPU: owner (0 none, -1 a Python call, n worker n-1), online
        (not quiescent), quiescent states reported, IPI state and count,
        and the ns its tasks spent in named points' injected delays."""
        self.check_open()
        return [{"cpu": i, "owner": self.m.sc.vcpus[i].owner, "online": self.m.sc.vcpus[i].online,
                 "qs": self.m.sc.vcpus[i].qs_ctr, "ipi_state": self.m.sc.vcpus[i].ipi_state,
                 "ipis": self.m.sc.vcpus[i].ipis_handled, "ipi_lock": self.m.sc.vcpus[i].ipi_lock,
                 "injected_ns": atomic_long_read(&self.m.sc.vcpus[i].injected_ns)}
                for i in range(self.m.nr_cpus)]

    def rcu_state_info(self):
        """The C-side RCU: callbacks queued/run, grace periods, whether a
        batch waits for its grace period and on which vCPUs, open read-side
        sections of threads on no vCPU."""
        self.check_open()
        cdef sched *sc = &self.m.sc
        # unlocked snapshot of state the RCU thread and workers change:
        # atomic loads (acquire), each value consistent on its own
        return {"queued": atomic_long_read_acquire(&sc.rcu_queued),
                "done": atomic_long_read_acquire(&sc.rcu_done),
                "grace_periods": atomic_long_read_acquire(&sc.rcu_gps),
                "batch_waiting": atomic_ptr_read(<void **>&sc.rcu_cur) != NULL,
                "pending": atomic_ptr_read(<void **>&sc.rcu_pending) != NULL,
                "waiting_on": [i for i in range(self.m.nr_cpus) if atomic_int_read(&sc.rcu_wait[i])],
                "ext_readers": atomic_int_read(&sc.ext_readers), "busy": atomic_int_read(&sc.rcu_busy)}

    def policy_quiesce(self):
        """Let the kworker's queued work (offlines, cache creations) and then
        the policy's deferred work run (RCU callbacks, a reap period)."""
        self.check_open()
        self.flush_work(timeout=30)
        if self._policy_obj is not None:
            self._policy_obj.quiesce()
        else:
            self.rcu_barrier(timeout=30)

    def rcu_process_c(self):
        """RCU thread: advance the C callbacks (see rcu_process_callbacks),
        then run the workqueue (memcg_kmem_cache_wq: deferred shrinks)."""
        cdef long n
        self._nogil_begin(None)
        try:
            with nogil:
                n = rcu_process_callbacks(&self.m.sc)
                n += kmemcg_deactivate_workfn(&self.m)
        finally:
            self._nogil_end(None)
        return n

    def rcu_c_counts(self):
        """C callbacks queued and run, grace periods, deferred shrinks queued
        and done by the workqueue."""
        # polled by rcu_barrier() unlocked: acquire loads, paired with the
        # release adds of rcu_run_batch and the workqueue
        return {"queued": atomic_long_read_acquire(&self.m.sc.rcu_queued),
                "done": atomic_long_read_acquire(&self.m.sc.rcu_done),
                "grace_periods": atomic_long_read_acquire(&self.m.sc.rcu_gps),
                "deact_queued": atomic_long_read_acquire(&self.m.deact_queued),
                "deact_done": atomic_long_read_acquire(&self.m.deact_done)}

    def start_rcu(self):
        """Start the RCU thread (policies that call_rcu from C need it)."""
        self.check_open()
        if self._rcu is None:
            from slubcy.rcu import RCU
            self._rcu = RCU(self)

    # -- grace periods -----------------------------------------------------

    def synchronize(self, timeout=None):
        """synchronize_sched(): return once every vCPU has passed a quiescent
        state (or been idle) since the call.  Timeout after `timeout` s."""
        self.check_open()
        cdef double t = -1.0 if timeout is None else float(timeout)
        cdef int rc
        self._nogil_begin(None)
        try:
            with nogil:
                rc = synchronize_sched(&self.m.sc, t)
        finally:
            self._nogil_end(None)
        if rc != 0:
            raise Timeout(f"grace period not over after {timeout} s")

    def kick_all_cpus_sync(self, timeout=None):
        """kick_all_cpus_sync(): every vCPU runs an (empty) cross-vCPU call."""
        self.check_open()
        cdef double t = self.m.ipi_timeout if timeout is None else float(timeout)
        cdef int rc
        self._nogil_begin(None)
        try:
            with nogil:
                rc = kick_all_cpus_sync(&self.m.sc, t)
        finally:
            self._nogil_end(None)
        if rc != 0:
            raise Timeout(f"a vCPU did not answer within {t} s")

    def call_rcu(self, func, *args):
        """call_rcu(): run func(*args) after a grace period, on the machine's
        RCU thread; callbacks queued together share one grace period."""
        self.check_open()
        if not callable(func):
            raise TypeError("func must be callable")
        self.start_rcu()
        self._rcu.call(func, args)

    def rcu_barrier(self, timeout=None):
        """rcu_barrier(): wait until every callback queued so far has run."""
        self.check_open()
        if self._rcu is not None:
            self._rcu.barrier(timeout)

    def rcu_stat_info(self):
        """Counts of the machine's RCU thread (slubcy.rcu), five keys:
        "grace_periods" and "callbacks" (Python call_rcu), "c_grace_periods"
        and "c_callbacks" (the C call_rcu of the policies), "deferred_shrinks"
        (work items run for dead caches: barrier async, reparent).  All zero
        before the thread starts."""
        if self._rcu is not None:
            return self._rcu.stats()
        return dict.fromkeys(("grace_periods", "callbacks", "c_grace_periods", "c_callbacks",
                              "deferred_shrinks"), 0)

    def _set_cpu_partial_dead_check(self, on):
        """Test-only: switch put_cpu_partial()'s cpu_partial == 0 check (Linux
        4.0, d6e0b7fa; set by the policy) on or off, to show what it does."""
        self.check_open()
        self.m.cpu_partial_dead_check = 1 if on else 0

    def preempt_point(self, name):
        """The named preemption point (see slubcy.preempt.POINTS)."""
        self.check_open()
        from slubcy.preempt import PreemptPoint
        return PreemptPoint(self, name)

    # -- allocation --------------------------------------------------------

    cdef object _ctor_failed(self, kmem_cache_t *s, void *p, int cpu):
        """The constructor raised: free `p` (the caller still runs vCPU
        `cpu`) and return the error to raise."""
        exc = <object>s.ctor_exc
        Py_XDECREF(<PyObject *>s.ctor_exc)
        s.ctor_exc = NULL
        if p != NULL:
            slab_free(s, virt_to_head_page(&self.m.z, p), p, cpu, SLAB_HOOK_PY_LIVE | SLAB_HOOK_MEMCG)
        return CtorError(f"constructor of {s.name.decode()!r} raised {exc!r}")

    cdef mem_cgroup *_memcg(self, memcg) except? NULL:
        if memcg is None:
            return NULL
        if not isinstance(memcg, MemCgroup) or (<MemCgroup>memcg).machine is not self:
            raise TypeError("memcg must be a MemCgroup of this machine (or None)")
        cdef mem_cgroup *g = (<MemCgroup>memcg).live()
        if g == NULL or not g.online or g.offline_pending:
            raise ValueError(f"memcg {memcg.name!r} is offline")
        return g

    def kmem_cache_alloc(self, c, cpu=0, memcg=None, nowait=False):
        """slab_alloc_node() on vCPU `cpu`: the address of a new object (an int).
        With `memcg`, an accounted cache (SLAB_ACCOUNT) allocates from the
        memcg's child cache (memcg_kmem_get_cache), or charges the object
        to the memcg's obj_cgroup under objcg policies.  `nowait=True` is
        GFP_NOWAIT: on slub 7.0 such an allocation never refills a sheaf
        (an empty main that no spare or barn sheaf replaces sends it to a
        slab for one object)."""
        cdef kmem_cache_t *root = self._cache(c)
        cdef int ncpu = self.check_cpu(cpu)
        cdef mem_cgroup *g = self._memcg(memcg)
        cdef kmem_cache_t *s
        if not isinstance(nowait, bool):
            raise TypeError("nowait must be True or False")
        cdef int hooks = SLAB_HOOK_PY_LIVE | (SLAB_ALLOC_NOWAIT if nowait else 0)
        self.vcpu_enter(ncpu)
        # handed out to Python: its free needs no walk (SLAB_HOOK_PY_LIVE)
        cdef void *p = slab_alloc_node(root, g, ncpu, hooks, &s)
        if s.ctor_exc != NULL:
            try:
                err = self._ctor_failed(s, p, ncpu)
            finally:
                self.vcpu_exit(ncpu)
            raise err
        self.vcpu_exit(ncpu)
        if p == NULL:
            raise ArenaExhausted(f"{(<KmemCache>c).name}: out of memory (arena exhausted)")
        return <uintptr_t>p

    cdef int _free(self, kmem_cache_t *s, void *p, int cpu) except -1:
        cdef size_t bad
        cdef void *objs[1]
        cdef int code, ok
        cdef page *pg
        objs[0] = p
        self.vcpu_enter(cpu)
        code = check_objects(s, objs, 1, &bad)
        if code == OBJ_OK:
            pg = virt_to_head_page(&self.m.z, p)
            if not red_zone_intact(<kmem_cache_t *>pg.slab_cache, pg, p):
                ok = 0                  # refused before memcg_slab_free_hook uncharges it
            else:
                ok = slab_free(<kmem_cache_t *>pg.slab_cache, pg, p, cpu, SLAB_HOOK_PY_LIVE | SLAB_HOOK_MEMCG)
        self.vcpu_exit(cpu)
        if code != OBJ_OK:
            raise free_error(s, code, f"free of {<uintptr_t>p:#x}")
        if not ok:
            raise SlabCorruption(f"{s.name.decode()}: red zone of object {<uintptr_t>p:#x} "
                                 "overwritten (restored); object not freed")
        return 0

    def _noop(self, c, addr=0, cpu=0):
        """Does nothing: the cost of calling a method of this extension, the
        baseline of the single-object API's figure (slubcy.analysis.perf)."""

    def _vcpu_call(self, c, addr=0, cpu=0):
        """Takes vCPU `cpu` and lets it go, nothing else: what every
        object-level call pays to run on a vCPU safely from any thread (a
        locked compare-and-swap for the owner and a full barrier to go
        online, as a kernel entry under context tracking pays an atomic
        operation), the floor of the single-object API's figure."""
        cdef int ncpu = self.check_cpu(cpu)
        self.vcpu_enter(ncpu)
        self.vcpu_exit(ncpu)

    def kmem_cache_free(self, c, addr, cpu=0):
        """slab_free() on vCPU `cpu` of the object at `addr`."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int ncpu = self.check_cpu(cpu)
        self._free(s, self._addr(addr), ncpu)

    def kmalloc(self, size, cpu=0):
        """kmalloc(): from the kmalloc-N cache for `size`, or from the page
        allocator above 8 KiB (kmalloc_large)."""
        cdef int ncpu = self.check_cpu(cpu)
        cdef page *pg
        as_int(size, "size")
        if not 0 < size <= KMALLOC_MAX_SIZE:
            raise ValueError(f"kmalloc size must be in 1..{KMALLOC_MAX_SIZE}, got {size}")
        if size > KMALLOC_MAX_CACHE_SIZE:
            self.check_idle()
            pg = alloc_pages(&self.m.z, get_order(size))
            if pg == NULL:
                raise ArenaExhausted(f"kmalloc_large({size}): out of memory (arena exhausted)")
            u16_write_once(&pg.flags, pg.flags | PG_large_kmalloc)
            return <uintptr_t>page_address(&self.m.z, pg)
        return self.kmem_cache_alloc(self._kmalloc[kmalloc_index(size)], ncpu)

    def kfree(self, addr, cpu=0):
        """kfree(): to the object's own cache, or back to the page allocator."""
        cdef int ncpu = self.check_cpu(cpu)
        cdef void *p = self._addr(addr)
        cdef page *pg
        if not addr_in_arena(&self.m.z, <uintptr_t>p):
            raise NotInArena(f"kfree of {addr:#x}: the address is outside the arena")
        pg = virt_to_head_page(&self.m.z, p)
        if pg.flags & PG_slab:
            self._free(<kmem_cache_t *>pg.slab_cache, p, ncpu)
        elif pg.flags & PG_large_kmalloc and <char *>p == page_address(&self.m.z, pg):
            self.check_idle()
            memcg_kmem_uncharge_page(&self.m, pg, pg.order)
            __free_pages(&self.m.z, pg, pg.order)
        else:
            raise NotAnObject(f"kfree of {addr:#x}: not a kmalloc'ed object")

    def kfree_rcu(self, addr, cpu=0):
        """kfree_rcu(): free the object at `addr` after a grace period.  The
        address is checked as kfree() checks it, now.  On slub 7.0 the
        object goes onto vCPU `cpu`'s rcu_free sheaf (__kfree_rcu_sheaf); a
        full one is handed to call_rcu and, after the grace period, to the
        barn.  Where that fails (a cache without sheaves), and on 4.0, the
        classic path: one call_rcu whose callback kfree()s it.  Departure:
        the object's memcg charge is dropped now, not after the grace period
        (__rcu_free_sheaf_prepare)."""
        cdef int ncpu = self.check_cpu(cpu)
        cdef void *p = self._addr(addr)
        cdef size_t bad
        cdef void *objs[1]
        cdef int code, ok = 0
        cdef page *pg
        cdef kmem_cache_t *s
        if not addr_in_arena(&self.m.z, <uintptr_t>p):
            raise NotInArena(f"kfree_rcu of {addr:#x}: the address is outside the arena")
        self.start_rcu()                    # runs the rcu sheaves' callbacks
        pg = virt_to_head_page(&self.m.z, p)
        if not pg.flags & PG_slab:
            raise NotAnObject(f"kfree_rcu of {addr:#x}: not a slab object")
        s = <kmem_cache_t *>pg.slab_cache
        objs[0] = p
        self.vcpu_enter(ncpu)
        code = check_objects(s, objs, 1, &bad)
        if code == OBJ_OK and s.cpu_sheaves != NULL:
            if s.sheaf_capacity:
                py_live_clear(s, pg, p)
                if page_has_obj_cgroups(pg):
                    memcg_slab_free_hook(s, pg, p, ncpu)
            # (without sheaves: FREE_RCU_SHEAF_FAIL, the object untouched)
            ok = kfree_rcu_sheaves(s, pg, p, ncpu)
        self.vcpu_exit(ncpu)
        if code != OBJ_OK:
            raise free_error(s, code, f"kfree_rcu of {addr:#x}")
        if not ok:                          # 4.0, no sheaves, FREE_RCU_SHEAF_FAIL: classic kfree_rcu
            self.call_rcu(self._kfree_rcu_classic, addr, ncpu)

    def _kfree_rcu_classic(self, addr, cpu):
        """The callback of classic kfree_rcu: kfree() after the grace period
        (on 7.0 the object was uncharged already)."""
        self.kfree(addr, cpu)

    def kmem_cache_alloc_bulk(self, c, n, cpu=0, memcg=None):
        """kmem_cache_alloc_bulk(): `n` objects as a numpy uint64 array, taken
        in one nogil call as the kernel's bulk allocator does (which counts no
        ALLOC_FASTPATH/ALLOC_SLOWPATH).  All or nothing: on exhaustion the
        objects already taken are freed and ArenaExhausted is raised."""
        cdef kmem_cache_t *root = self._cache(c)
        cdef int ncpu = self.check_cpu(cpu)
        cdef mem_cgroup *g = self._memcg(memcg)
        cdef kmem_cache_t *s
        cdef size_t count, got, i
        as_int(n, "n")
        # (before memcg_kmem_get_cache: a refused request creates no child cache)
        if not 0 <= n <= self.m.z.nr_pages * PAGE_SIZE // 8:
            raise ValueError(f"n must be in 0..{self.m.z.nr_pages * PAGE_SIZE // 8} "
                             f"(the 8-byte objects the arena holds), got {n}")
        count = n
        out = np.empty(count, dtype=np.uint64)
        if count == 0:
            return out
        cdef uint64_t[::1] v = out
        cdef void **objs = <void **>&v[0]
        self._nogil_begin(c)
        try:
            self.vcpu_enter(ncpu)
            with nogil:
                got = slab_alloc_bulk(root, g, count, objs, ncpu, &s)
            self.vcpu_exit(ncpu)
        finally:
            self._nogil_end(c)
        if got < count or s.ctor_exc != NULL:
            if s.ctor_exc != NULL:
                raise self._ctor_failed(s, NULL, ncpu)
            raise ArenaExhausted(f"{(<KmemCache>c).name}: out of memory after {got} of {count} objects")
        return out

    def kmem_cache_free_bulk(self, c, addrs, cpu=0):
        """kmem_cache_free_bulk(): free every address of `addrs` (array-like of
        integer addresses; not modified).  Every address is checked first; if
        any is bad, nothing is freed.  Objects of one slab go back as one
        detached freelist, as in the kernel."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int ncpu = self.check_cpu(cpu)
        cdef size_t bad = 0, n, refused = 0
        cdef int code
        if isinstance(addrs, np.ma.MaskedArray):
            raise TypeError("addrs must not be a masked array: give addrs.compressed() "
                            "(the addresses to free)")
        arr = np.asarray(addrs)
        if arr.ndim != 1 or not (arr.dtype.kind in "ui" or arr.size == 0):
            raise TypeError("addrs must be a 1-d array of integer addresses")
        if arr.dtype.kind == "i" and arr.size and arr.min() <= 0:
            raise NotInArena("address <= 0 in addrs")
        arr = np.array(arr, dtype=np.uint64, order="C", copy=True)   # consumed below
        cdef uint64_t[::1] v = arr
        n = arr.shape[0]
        if n == 0:
            return
        cdef void **objs = <void **>&v[0]
        cdef size_t i
        cdef page *pg
        self._nogil_begin(c)
        try:
            self.vcpu_enter(ncpu)
        except BaseException:
            self._nogil_end(c)
            raise
        with nogil:
            code = check_objects(s, objs, n, &bad)
            if code == OBJ_OK and not self.m.per_memcg_caches:
                # an objcg-charged object is uncharged only if its free is
                # accepted: a list with an overwritten red zone frees nothing
                for i in range(n):
                    pg = virt_to_head_page(&self.m.z, objs[i])
                    if not red_zone_intact(<kmem_cache_t *>pg.slab_cache, pg, objs[i]):
                        refused += 1
                if refused:
                    code = OBJ_RED_ZONE
            if code == OBJ_OK:
                refused = slab_free_bulk(s, n, objs, ncpu, SLAB_HOOK_PY_LIVE | SLAB_HOOK_MEMCG)
        self._nogil_end(c)
        self.vcpu_exit(ncpu)
        if code == OBJ_RED_ZONE:
            raise SlabCorruption(f"{s.name.decode()}: free_bulk: {refused} objects with an "
                                 "overwritten red zone (restored); nothing freed")
        if code != OBJ_OK:
            if code < 0:
                raise MemoryError("no memory for the free checks")
            exc, why = _FREE_ERRORS[code]
            raise exc(f"{s.name.decode()}: free_bulk: addrs[{bad}] = {v[bad]:#x} {why}; nothing freed")
        if refused:
            raise SlabCorruption(f"{s.name.decode()}: {refused} objects (lists with an overwritten "
                                 "red zone, restored) were not freed")

    # -- memory access -----------------------------------------------------

    def virt_to_slab(self, addr):
        """(slab page address, object index) of an address inside a slab."""
        self.check_open()
        cdef void *p = self._addr(addr)
        cdef page *pg
        cdef kmem_cache_t *s
        if not addr_in_arena(&self.m.z, <uintptr_t>p):
            raise NotInArena(f"{addr:#x} is outside the arena")
        pg = virt_to_head_page(&self.m.z, p)
        if not (pg.flags & PG_slab):
            raise NotAnObject(f"{addr:#x} is not in a slab")
        s = <kmem_cache_t *>pg.slab_cache
        base = <uintptr_t>page_address(&self.m.z, pg)
        return (base, (addr - base) // s.size)

    cdef tuple _writable(self, size_t addr, size_t length):
        """The live-object range [start, end) that contains [addr, addr+length)."""
        cdef void *p = <void *>addr
        cdef page *pg
        cdef kmem_cache_t *s
        cdef uintptr_t base, obj, end
        if not addr_in_arena(&self.m.z, addr):
            raise InvalidAccess(f"{addr:#x} is outside the arena")
        pg = virt_to_head_page(&self.m.z, p)
        base = <uintptr_t>page_address(&self.m.z, pg)
        if pg.flags & PG_large_kmalloc:
            return (base, base + (<uintptr_t>PAGE_SIZE << pg.order))
        if not (pg.flags & PG_slab):
            raise InvalidAccess(f"{addr:#x} is not in an allocated object")
        s = <kmem_cache_t *>pg.slab_cache
        obj = base + (addr - base) // s.size * s.size
        if pg.flags & PG_slab_ctor:
            pass                        # a constructor initialising its object
        elif object_is_live(s, <void *>obj) != 1:
            raise InvalidAccess(f"{addr:#x} is in a free object (use after free)")
        # the red zone may be written (slub_debug will catch it), the free
        # pointer and the metadata after it may not
        end = obj + (s.inuse if s.flags & SLAB_RED_ZONE else s.object_size)
        return (obj, end)

    def read(self, addr, length):
        """`length` bytes of the arena at `addr` (any arena memory)."""
        self.check_open()
        as_int(addr, "address")
        as_int(length, "length")
        start, size = self.arena
        if length < 0 or addr < start or addr + length > start + size:
            raise InvalidAccess(f"[{addr:#x}, +{length}) is not inside the arena")
        return (<char *><uintptr_t>addr)[:length]

    def write(self, addr, data):
        """Write `data` at `addr`, which must lie within one live object (for
        red-zoned caches, the object and its red zone)."""
        self.check_open()
        as_int(addr, "address")
        cdef const unsigned char[:] buf = memoryview(bytes(data))
        if addr <= 0 or addr >= (1 << 64):
            raise InvalidAccess(f"{addr:#x} is outside the arena")
        self.check_idle()
        start, end = self._writable(addr, len(buf))
        if addr + len(buf) > end:
            raise InvalidAccess(f"write of {len(buf)} bytes at {addr:#x} runs past the object "
                                f"[{start:#x}, {end:#x})")
        if len(buf):
            memcpy(<void *><uintptr_t>addr, &buf[0], len(buf))

    # -- inspection --------------------------------------------------------

    cdef int _check_lock(self) except -1:
        """Exclude every mutator for validate(): cgroup_mutex (offlines, as
        the kworker runs them), slab_mutex (cache creation and destruction,
        the workqueue's deferred shrinks, the reaper -- they take it too),
        then every vCPU (calls of other Python threads finish first; no
        worker, vCPU-borrowing thread or cross-vCPU request runs meanwhile).
        The vCPUs stay quiescent for RCU.  MachineBusy if a vCPU is still
        taken after a few seconds (released again)."""
        cdef int cpu, got = 0, spins = 0
        cdef double deadline = monotonic() + 5.0
        cdef sched *sc = &self.m.sc
        with nogil:
            mutex_lock(sc, &self.m.cgroup_mutex)
            mutex_lock(sc, &self.m.slab_mutex)
            while got < self.m.nr_cpus:
                if vcpu_borrow(sc, got, OWNER_CONTROLLER):
                    atomic_int_set(&sc.vcpus[got].online, 0)
                    got += 1
                    spins = 0
                elif monotonic() > deadline:
                    break
                else:
                    backoff_wait(&spins, 100000)
        if got < self.m.nr_cpus:
            self._check_unlock(got)
            raise MachineBusy(f"validate(): vCPU {got} stayed taken by another thread")
        return 0

    cdef void _check_unlock(self, int nr_cpus) noexcept:
        cdef int cpu
        for cpu in range(nr_cpus):
            vcpu_unborrow(&self.m.sc, cpu)
        mutex_unlock(&self.m.slab_mutex)
        mutex_unlock(&self.m.cgroup_mutex)

    def validate(self, c=None):
        """validate_slab_cache() for one cache or all, plus the page allocator.
        Raises SlabCorruption on any inconsistency; returns {cache name:
        objects in use}.  Runs with every mutator excluded (_check_lock):
        it never sees another thread's work half done."""
        self.check_idle()
        if c is not None:
            self._cache(c)
        self._api_busy += 1            # close() waits for it
        try:
            self._check_lock()
            try:
                return self._validate(c)
            finally:
                self._check_unlock(self.m.nr_cpus)
        finally:
            self._api_busy -= 1

    cdef _validate(self, c):
        cdef char err[256]
        cdef long in_use = 0
        cdef kmem_cache_t *s
        cdef int rc
        result = {}
        if c is not None:
            s = self._cache(c)
            self._nogil_begin(c)
            try:
                with nogil:
                    rc = validate_cache(s, err, sizeof(err), &in_use)
            finally:
                self._nogil_end(c)
            if rc != 0:
                raise SlabCorruption(err.decode(errors="replace"))
            return {(<KmemCache>c).name: in_use}
        self._nogil_begin(None)
        self._walking += 1
        try:
            with nogil:
                rc = validate_all(&self.m, err, sizeof(err))
        finally:
            self._walking -= 1
            self._nogil_end(None)
        if rc != 0:
            raise SlabCorruption(err.decode(errors="replace"))
        s = slab_caches_first(&self.m)
        while s != NULL:
            result[s.name.decode()] = s.v_used
            s = slab_caches_next(&self.m, s)
        return dict(reversed(list(result.items())))

    def page_alloc_info(self):
        """Buddy allocator counts: pages in use in total and per order."""
        self.check_open()
        cdef zone *z = &self.m.z
        cdef long nr_alloc[MAX_ORDER]
        cdef long nr_free[MAX_ORDER]
        cdef long used, fail
        # one consistent snapshot, under zone->lock (the counts' lock)
        with nogil:
            spin_lock(&z.lock)
            memcpy(nr_alloc, z.nr_alloc, sizeof(nr_alloc))
            memcpy(nr_free, z.nr_free, sizeof(nr_free))
            used = z.pages_used
            fail = z.alloc_fail
            spin_unlock(&z.lock)
        return {
            "nr_pages": z.nr_pages,
            "pages_used": used,
            "pages_free": z.nr_pages - used,
            "alloc_blocks": [nr_alloc[i] for i in range(MAX_ORDER)],
            "free_blocks": [nr_free[i] for i in range(MAX_ORDER)],
            "alloc_failures": fail,
        }

    def cache_stat_cpu_info(self, c):
        """{stat item: [count on each vCPU]} — the sysfs files' C<cpu>= values:
        the 26 items of the machine's generation (STAT_ITEMS or STAT_ITEMS_70)."""
        cdef kmem_cache_t *s = self._cache(c)
        names = STAT_ITEMS_70 if self.m.slub_gen >= 70 else STAT_ITEMS
        return {k: [s.cpu_slab[cpu].stat[<int>_stat_item[k]] for cpu in range(self.m.nr_cpus)]
                for k in names}

    def cache_stat_info(self, c):
        """{stat item: total} for the generation's 26 SLUB statistics: the sum
        over vCPUs and what work on no vCPU counted (RCU callbacks, a
        shrink's flush of the barn)."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int off = self.m.nr_cpus
        return {k: sum(v) + atomic_long_read(<long *>&s.cpu_slab[off].stat[<int>_stat_item[k]])
                for k, v in self.cache_stat_cpu_info(c).items()}

    def cache_info(self, c=None):
        """One dict per cache (or for `c`) with the numbers behind slabinfo."""
        self.check_open()
        rows = []
        # a read-side section: a child cache found alive stays allocated
        # while it is read (destroyed ones are freed after a grace period)
        self._nogil_begin(None)
        rcu_read_lock_ext(&self.m.sc)
        try:
            self._cache_rows(c, rows)
        finally:
            rcu_read_unlock_ext(&self.m.sc)
            self._nogil_end(None)
        return rows if c is None else rows[0]

    cdef _cache_rows(self, c, list rows):
        cdef cache_counts_t out
        cdef kmem_cache_t *s
        cdef int rc
        for cache in ([c] if c is not None else self.caches + self.child_caches()):
            try:
                s = self._cache(cache)
            except CacheDestroyed:
                if c is not None:
                    raise
                continue            # a child cache destroyed since it was listed
            # GIL released: the per-cpu counts are cross-vCPU requests (the
            # read-side section keeps `s` allocated; the caller counts the call)
            with nogil:
                rc = cache_counts(s, &out)
            if rc != 0:
                raise Timeout(f"cache_info({(<KmemCache>cache).name}): a vCPU did not answer in time")
            kc = <KmemCache>cache
            rows.append({
                "name": kc.name, "object_size": kc.object_size, "size": kc.size,
                "align": kc.align, "offset": kc.offset, "order": kc.order,
                "objects_per_slab": kc.objects_per_slab, "pages_per_slab": 1 << kc.order,
                "flags": kc.flags, "min_partial": s.min_partial, "cpu_partial": atomic_int_read(&s.cpu_partial),
                "sheaf_capacity": s.sheaf_capacity,
                "sheaf_objects": sheaves_free_objects(s),
                "barn_full": 0 if s.node.barn == NULL else s.node.barn.nr_full,
                "barn_empty": 0 if s.node.barn == NULL else s.node.barn.nr_empty,
                **out,              # nr_slabs, nr_partial, ... (cache_counts_t)
                "root": None if s.root == NULL else s.root.name.decode(),
                "memcg": None if s.memcg == NULL else s.memcg.name.decode(),
            })

    def cache_usage_info(self, c):
        """(objects in use, object slots, pages) of a cache, from the slab
        counters (works while workers are parked; exact when quiet)."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef long used, slots, pages
        cdef int rc
        self._nogil_begin(c)        # kmem_cache_destroy() waits for this call
        try:
            with nogil:             # the cpu freelists are counted by their vCPUs
                rc = slab_usage(&self.m, s, &used, &slots, &pages)
        finally:
            self._nogil_end(c)
        if rc != 0:
            raise Timeout(f"cache_usage_info({(<KmemCache>c).name}): a vCPU did not answer in time")
        return used, slots, pages

    def slab_usage_info(self):
        """(objects in use, object slots, slab pages) over every cache."""
        self.check_open()
        cdef long used, slots, pages
        cdef int rc
        self._nogil_begin(None)
        try:
            with nogil:             # the cpu freelists are counted by their vCPUs
                rc = slab_usage(&self.m, NULL, &used, &slots, &pages)
        finally:
            self._nogil_end(None)
        if rc != 0:
            raise Timeout("slab_usage_info(): a vCPU did not answer in time")
        return used, slots, pages

    def _pcs_lock_for_test(self, c, cpu, held):
        """Test-only, slub 7.0: hold (or let go) vCPU `cpu`'s cpu_sheaves lock
        of cache `c`, as an interrupted section would hold it, so that the
        next allocation or free there finds its local_trylock() failing.
        Let it go before anything flushes the cache."""
        cdef kmem_cache_t *s = self._cache(c)
        cdef int ncpu = self.check_cpu(cpu)
        self.check_idle()
        if s.cpu_sheaves == NULL:
            raise ValueError("a slub 7.0 cache has cpu_sheaves; this one does not")
        s.cpu_sheaves[ncpu].lock = 1 if held else 0

    def _set_rcu_barrier_in_shutdown(self, on):
        """Test-only, slub 7.0: switch __kmem_cache_shutdown()'s rcu_barrier()
        (b55b423e8518) on or off, to show the race it closes."""
        self.check_open()
        self.m.rcu_barrier_in_shutdown = 1 if on else 0

    def _corrupt_for_test(self, kind, c, slab=None):
        """test-only: break one SLUB invariant of cache `c` on purpose, for a
        test to check that validate() reports it.  Nothing is restored:
        close the machine afterwards.  `slab` is a slab's address (the first
        element of virt_to_slab()).  Kinds:
          "frozen_on_node"       freeze `slab`, which is on the node partial list
          "full_on_partial"      put `slab` (full, on no list) on the node partial list
          "frozen_no_cpu"        freeze `slab`, which is on no list
          "off_list"             take `slab` off the node partial list (nr_partial too)
          "two_cpus"             make vCPU 0's cpu slab vCPU 1's cpu slab too
          "cpu_slab_on_partial"  push vCPU 0's cpu slab on its own cpu partial list
          "unfrozen_cpu_slab"    unfreeze vCPU 0's cpu slab
          "unfrozen_cpu_partial" unfreeze the first slab of vCPU 0's cpu partial list
          "nr_partial+1", "nr_partial-1"   miscount the node partial list
          "pages_used+1", "pages_used-1"   miscount the page allocator's pages in use
          "child_list_prev", "child_list_fix"  point child cache `c`'s back link
                                 on its memcg's kmem_caches list at itself, and mend it"""
        cdef kmem_cache_t *s = self._cache(c)
        cdef page *pg = NULL
        cdef kmem_cache_cpu *c0 = &s.cpu_slab[0]
        cdef list_head *pos
        self.check_idle()
        if slab is not None:
            as_int(slab, "slab")
            if not addr_in_arena(&self.m.z, <uintptr_t>slab):
                raise ValueError(f"{slab:#x} is not in the arena")
            pg = virt_to_head_page(&self.m.z, <void *><uintptr_t>slab)
            if not (pg.flags & PG_slab) or pg.slab_cache != <void *>s:
                raise ValueError(f"{slab:#x} is not a slab of {(<KmemCache>c).name}")
        if kind in ("frozen_on_node", "full_on_partial", "frozen_no_cpu", "off_list") and pg == NULL:
            raise ValueError(f"{kind} needs a slab")
        if kind in ("frozen_on_node", "frozen_no_cpu"):
            pg.fc |= <uint64_t>1 << 31
        elif kind == "full_on_partial":
            list_add(&pg.u.lru, &s.node.partial)
            s.node.nr_partial += 1
        elif kind == "off_list":
            list_del(&pg.u.lru)
            s.node.nr_partial -= 1
        elif kind == "two_cpus":
            if self.m.nr_cpus < 2 or c0.page == NULL or s.cpu_slab[1].page != NULL:
                raise ValueError("two_cpus needs a cpu slab on vCPU 0 and none on vCPU 1")
            s.cpu_slab[1].page = c0.page
        elif kind == "cpu_slab_on_partial":
            if c0.page == NULL:
                raise ValueError("cpu_slab_on_partial needs a cpu slab on vCPU 0")
            c0.page.u.pc.next = c0.partial
            c0.partial = c0.page
        elif kind == "unfrozen_cpu_slab":
            if c0.page == NULL:
                raise ValueError("unfrozen_cpu_slab needs a cpu slab on vCPU 0")
            c0.page.fc &= ~(<uint64_t>1 << 31)
        elif kind == "unfrozen_cpu_partial":
            if c0.partial == NULL:
                raise ValueError("unfrozen_cpu_partial needs a cpu partial slab on vCPU 0")
            c0.partial.fc &= ~(<uint64_t>1 << 31)
        elif kind in ("nr_partial+1", "nr_partial-1"):
            s.node.nr_partial += 1 if kind == "nr_partial+1" else -1
        elif kind in ("pages_used+1", "pages_used-1"):
            spin_lock(&self.m.z.lock)
            self.m.z.pages_used += 1 if kind == "pages_used+1" else -1
            spin_unlock(&self.m.z.lock)
        elif kind in ("child_list_prev", "child_list_fix"):
            if s.memcg == NULL:
                raise ValueError(f"{kind} needs a child cache")
            spin_lock(&self.m.slab_lock)
            if kind == "child_list_prev":
                s.kmem_caches_node.prev = &s.kmem_caches_node
            else:
                pos = &s.memcg.kmem_caches
                while pos.next != &s.kmem_caches_node:
                    pos = pos.next
                s.kmem_caches_node.prev = pos
            spin_unlock(&self.m.slab_lock)
        else:
            raise ValueError(f"unknown corruption {kind!r}")

    def cache_state_info(self, c):
        """The whole SLUB state of a cache as plain Python data (for tests and
        the reference model): slabs are page addresses, objects are
        (page address, index)."""
        self.check_idle()
        cdef kmem_cache_t *s = self._cache(c)
        cdef zone *z = &self.m.z
        cdef kmem_cache_cpu *kc
        cdef page *pg
        cdef size_t pfn
        cdef void *p
        cdef uint64_t w
        cdef long n_

        def obj(uintptr_t a):
            pg_ = virt_to_head_page(z, <void *>a)
            b = <uintptr_t>page_address(z, pg_)
            return (b, (a - b) // s.size)

        cpus = []
        names = STAT_ITEMS_70 if self.m.slub_gen >= 70 else STAT_ITEMS
        for cpu in range(self.m.nr_cpus):
            kc = &s.cpu_slab[cpu]
            fl = []
            p = kc.freelist
            n_ = 0
            while p != NULL and n_ < oo_objects(s.max) and walkable(z, s, p):
                fl.append(obj(<uintptr_t>p))
                p = get_freepointer(s, p)
                n_ += 1
            partial = []
            pg = kc.partial
            while pg != NULL:
                partial.append(<uintptr_t>page_address(z, pg))
                pg = pg.u.pc.next
            cpus.append({
                "page": <uintptr_t>page_address(z, kc.page) if kc.page != NULL else None,
                "freelist": fl, "partial": partial,
                "stat": {k: kc.stat[<int>_stat_item[k]] for k in names},
            })
        cdef slab_sheaf *sh
        cdef list_head *bpos

        def sheaf(uintptr_t a):
            # read as a snapshot: another thread's shrink or flush_all (GIL
            # released) may be emptying it, entries becoming NULL
            cdef slab_sheaf *x = <slab_sheaf *>a
            cdef unsigned int n
            cdef uintptr_t o
            if x == NULL:
                return None
            n = atomic_uint_read(&x.size)
            if n > x.capacity:
                n = x.capacity
            out = []
            for i in range(n):
                o = <uintptr_t>ptr_read_once(&x.objects[i])
                if addr_in_arena(z, o) and virt_to_head_page(z, <void *>o).flags & PG_slab:
                    out.append(obj(o))
            return out

        sheaves = None
        if s.cpu_sheaves != NULL:
            sheaves = {"capacity": s.sheaf_capacity, "cpus": [], "barn_full": [], "barn_empty": 0,
                       "in_rcu": s.nr_sheaves_in_rcu}
            for cpu in range(self.m.nr_cpus):
                sheaves["cpus"].append({
                    "main": sheaf(<uintptr_t>s.cpu_sheaves[cpu].main),
                    "spare": sheaf(<uintptr_t>s.cpu_sheaves[cpu].spare),
                    "rcu_free": sheaf(<uintptr_t>s.cpu_sheaves[cpu].rcu_free)})
            if s.node.barn != NULL:
                # under barn->lock: the RCU thread may barn an rcu sheaf meanwhile
                spin_lock(&s.node.barn.lock)
                try:
                    bpos = s.node.barn.sheaves_full.next
                    while bpos != &s.node.barn.sheaves_full:
                        sh = <slab_sheaf *>(<char *>bpos - <size_t>&(<slab_sheaf *>0).barn_list)
                        sheaves["barn_full"].append(sheaf(<uintptr_t>sh))
                        bpos = bpos.next
                    sheaves["barn_empty"] = s.node.barn.nr_empty
                finally:
                    spin_unlock(&s.node.barn.lock)
        node_partial = []
        cdef list_head *pos = s.node.partial.next
        while pos != &s.node.partial:
            node_partial.append(<uintptr_t>page_address(z, <page *>pos))
            pos = pos.next
        slabs = {}
        pfn = 0
        while pfn < z.nr_pages:
            pg = &z.mem_map[pfn]
            if pg.flags & PG_slab and pg.slab_cache == <void *>s:
                w = slab_word_read(&pg.fc)
                fl = []
                p = fc_freelist(z, w)
                n_ = 0
                while p != NULL and n_ < fc_objects(w) and walkable(z, s, p):
                    fl.append(obj(<uintptr_t>p))
                    p = get_freepointer(s, p)
                    n_ += 1
                slabs[<uintptr_t>page_address(z, pg)] = {
                    "inuse": fc_inuse(w), "objects": fc_objects(w),
                    "frozen": bool(fc_frozen(w)), "freelist": fl}
                pfn += <size_t>1 << pg.order
            else:
                pfn += 1
        return {
            "cpus": cpus,
            "node": {"partial": node_partial, "nr_partial": s.node.nr_partial,
                     "nr_slabs": s.node.nr_slabs, "total_objects": s.node.total_objects},
            "slabs": slabs,
            "min_partial": s.min_partial, "cpu_partial": atomic_int_read(&s.cpu_partial),
            "sheaves": sheaves,
        }
