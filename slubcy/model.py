"""A pure-Python reference model of SLUB (Linux v4.0 ``mm/slub.c``).

This module is an executable specification, written from the kernel's rules and
not from the Cython core, so the two can be checked against each other
(``tests/test_model_vs_core.py``).  It has no real memory and no concurrency:
one NUMA node, N virtual CPUs, and every operation runs to completion on the
vCPU that issued it, which is what the kernel does with interrupts off.

What it keeps, with the kernel names:

* ``kmem_cache``       -> :class:`Cache` (geometry from ``calculate_sizes`` /
  ``calculate_order``, ``min_partial``, ``cpu_partial``),
* ``kmem_cache_cpu``   -> :class:`CpuSlab` (``freelist``, ``page``, ``partial``,
  ``stat``),
* ``kmem_cache_node``  -> :class:`Node` (``partial`` list, ``nr_partial``,
  ``nr_slabs``, ``total_objects``; the ``full`` list),
* ``struct page``      -> :class:`Slab` (``objects``, ``inuse``, ``frozen``,
  ``freelist``; ``pages``/``pobjects`` while on a per-cpu partial list).

An object is ``(slab_id, index)``: ``slab_id`` counts slabs in creation order
(machine-wide), ``index`` is the object's position in its slab.  Free lists are
Python lists, head first; pushing a freed object makes it the new head, as
``set_freepointer(object, prior)`` does.

Citations ("l.NNNN") are to Linux 4.0.5 ``mm/slub.c``; function names are
the kernel's.
"""

from __future__ import annotations

__all__ = [
    "STAT_ITEMS", "PAGE_SIZE", "PAGE_SHIFT", "MAX_ORDER", "KMALLOC_MAX_SIZE",
    "SLAB_CONSISTENCY_CHECKS", "SLAB_RED_ZONE", "SLAB_POISON", "SLAB_HWCACHE_ALIGN",
    "SLAB_CACHE_DMA", "SLAB_STORE_USER", "SLAB_RECLAIM_ACCOUNT", "SLAB_PANIC",
    "SLAB_TYPESAFE_BY_RCU", "SLAB_TRACE", "SLAB_ACCOUNT", "SLAB_DEBUG_FLAGS",
    "calculate_alignment", "calculate_sizes", "calculate_order", "slab_order",
    "geometry", "fls", "ilog2", "get_order",
    "RefMachine", "Cache", "Slab", "CacheBusy",
]

# --------------------------------------------------------------------------
# Constants (x86_64, 4 KiB pages)
# --------------------------------------------------------------------------

#: ``enum stat_item`` (include/linux/slub_def.h), in the kernel's order.
STAT_ITEMS = (
    "ALLOC_FASTPATH", "ALLOC_SLOWPATH", "FREE_FASTPATH", "FREE_SLOWPATH",
    "FREE_FROZEN", "FREE_ADD_PARTIAL", "FREE_REMOVE_PARTIAL",
    "ALLOC_FROM_PARTIAL", "ALLOC_SLAB", "ALLOC_REFILL", "ALLOC_NODE_MISMATCH",
    "FREE_SLAB", "CPUSLAB_FLUSH", "DEACTIVATE_FULL", "DEACTIVATE_EMPTY",
    "DEACTIVATE_TO_HEAD", "DEACTIVATE_TO_TAIL", "DEACTIVATE_REMOTE_FREES",
    "DEACTIVATE_BYPASS", "ORDER_FALLBACK", "CMPXCHG_DOUBLE_CPU_FAIL",
    "CMPXCHG_DOUBLE_FAIL", "CPU_PARTIAL_ALLOC", "CPU_PARTIAL_FREE",
    "CPU_PARTIAL_NODE", "CPU_PARTIAL_DRAIN",
)
assert len(STAT_ITEMS) == 26

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_ORDER = 11                       # orders 0 .. MAX_ORDER-1
PAGE_ALLOC_COSTLY_ORDER = 3          # default slub_max_order
KMALLOC_MAX_SIZE = 1 << (MAX_ORDER + PAGE_SHIFT - 1)   # 4 MiB
SIZEOF_VOID_P = 8
ARCH_SLAB_MINALIGN = 8               # __alignof__(unsigned long long)
CACHE_LINE_SIZE = 64                 # cache_line_size() on x86_64
OO_SHIFT = 16
MAX_OBJS_PER_PAGE = 32767            # page->objects is 15 bits
MIN_PARTIAL = 5
MAX_PARTIAL = 10
SHRINK_PROMOTE_MAX = 32

# Flag values (include/linux/slab.h), the core's (slub.pxd).  SLAB_CONSISTENCY_CHECKS
# was called SLAB_DEBUG_FREE and SLAB_TYPESAFE_BY_RCU SLAB_DESTROY_BY_RCU in v4.0.
from slubcy import (SLAB_ACCOUNT, SLAB_CACHE_DMA, SLAB_CONSISTENCY_CHECKS,  # noqa: E402
                    SLAB_HWCACHE_ALIGN, SLAB_PANIC, SLAB_POISON, SLAB_RECLAIM_ACCOUNT, SLAB_RED_ZONE,
                    SLAB_STORE_USER, SLAB_TRACE, SLAB_TYPESAFE_BY_RCU)

#: SLAB_DEBUG_FLAGS (mm/slab.h): any of them makes kmem_cache_debug() true.
SLAB_DEBUG_FLAGS = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
                    | SLAB_CONSISTENCY_CHECKS)

#: sizeof(struct track) is not modelled: on x86_64 it is 152 bytes with
#: CONFIG_STACKTRACE (addr + addrs[16] + cpu + pid + when) and 24 without, so
#: it depends on the kernel config.  geometry() refuses SLAB_STORE_USER unless
#: a track size is passed explicitly.
TRACK_SIZE = None

# Internal mode markers of deactivate_slab (l.1819).
_M_NONE, _M_PARTIAL, _M_FULL, _M_FREE = range(4)


class CacheBusy(RuntimeError):
    """kmem_cache_destroy() found slabs still in use (``kmem_cache_close`` returned 1)."""


# --------------------------------------------------------------------------
# Integer helpers, as in the kernel
# --------------------------------------------------------------------------

def fls(x: int) -> int:
    """Find last set bit, 1-based; fls(0) == 0 (include/asm-generic/bitops/fls.h)."""
    return int(x).bit_length()


def ilog2(x: int) -> int:
    return int(x).bit_length() - 1


def get_order(size: int) -> int:
    """Smallest order with PAGE_SIZE << order >= size (include/asm-generic/getorder.h)."""
    size = (size - 1) >> PAGE_SHIFT
    return size.bit_length()


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _is_power_of_2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


# --------------------------------------------------------------------------
# Geometry: calculate_alignment / calculate_sizes / calculate_order
# --------------------------------------------------------------------------

def calculate_alignment(flags: int, align: int, size: int) -> int:
    """mm/slab_common.c calculate_alignment()."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    if align < ARCH_SLAB_MINALIGN:
        align = ARCH_SLAB_MINALIGN
    return _align(align, SIZEOF_VOID_P)


def order_objects(order: int, size: int, reserved: int = 0) -> int:
    return ((PAGE_SIZE << order) - reserved) // size


def slab_order(size: int, min_objects: int, max_order: int, fract_leftover: int,
               reserved: int = 0, slub_min_order: int = 0) -> int:
    """slab_order(): smallest order >= slub_min_order holding min_objects with
    at most slab_size/fract_leftover wasted; max_order + 1 if none."""
    min_order = slub_min_order
    if order_objects(min_order, size, reserved) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    # v4.0 starts at fls(min_objects * size - 1) - PAGE_SHIFT, later kernels at
    # get_order(min_objects * size + reserved): identical once max()ed with a
    # non-negative min_order and reserved == 0.
    order = max(min_order, get_order(min_objects * size + reserved))
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        rem = (slab_size - reserved) % size
        if rem <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, reserved: int = 0, *, nr_cpu_ids: int = 1,
                    slub_min_objects: int = 0, slub_min_order: int = 0,
                    slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER) -> int:
    """calculate_order(); raises ValueError where the kernel returns -ENOSYS."""
    min_objects = slub_min_objects
    if not min_objects:
        min_objects = 4 * (fls(nr_cpu_ids) + 1)
    max_objects = order_objects(slub_max_order, size, reserved)
    min_objects = min(min_objects, max_objects)

    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = slab_order(size, min_objects, slub_max_order, fraction,
                               reserved, slub_min_order)
            if order <= slub_max_order:
                return order
            fraction //= 2
        min_objects -= 1

    # One object per slab, first within slub_max_order, then up to MAX_ORDER.
    order = slab_order(size, 1, slub_max_order, 1, reserved, slub_min_order)
    if order <= slub_max_order:
        return order
    order = slab_order(size, 1, MAX_ORDER, 1, reserved, slub_min_order)
    if order < MAX_ORDER:
        return order
    raise ValueError(f"no slab order fits objects of {size} bytes (-ENOSYS)")


def calculate_sizes(object_size: int, align: int, flags: int, ctor: bool,
                    track_size: int | None = TRACK_SIZE) -> dict:
    """calculate_sizes() up to the order: size, inuse, offset, internal flags."""
    size = _align(object_size, SIZEOF_VOID_P)
    object_poison = bool((flags & SLAB_POISON) and not (flags & SLAB_TYPESAFE_BY_RCU)
                         and not ctor)
    # Red zone needs a word between the object and the free pointer.
    if (flags & SLAB_RED_ZONE) and size == object_size:
        size += SIZEOF_VOID_P
    inuse = size
    offset = 0
    if (flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON)) or ctor:
        # The free pointer may not overlay the object: move it after it.
        offset = size
        size += SIZEOF_VOID_P
    if flags & SLAB_STORE_USER:
        if track_size is None:
            raise ValueError(
                "SLAB_STORE_USER is not supported: sizeof(struct track) depends on "
                "CONFIG_STACKTRACE (152 or 24 bytes on x86_64); pass track_size")
        size += 2 * track_size
    if flags & SLAB_RED_ZONE:
        # Padding so that a write before the object hits a red zone first.
        size += SIZEOF_VOID_P
    size = _align(size, align)
    return {"size": size, "inuse": inuse, "offset": offset,
            "object_poison": object_poison}


def geometry(size: int, align: int = 0, flags: int = 0, ctor: bool = False,
             nr_cpu_ids: int = 1, slub_min_objects: int = 0, slub_min_order: int = 0,
             slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER,
             track_size: int | None = TRACK_SIZE) -> dict:
    """Everything kmem_cache_create() -> kmem_cache_open() computes.

    Raises ValueError for what kmem_cache_create() rejects (size < 8 or
    > KMALLOC_MAX_SIZE, align not a power of two) and for -ENOSYS orders.
    """
    if size < SIZEOF_VOID_P or size > KMALLOC_MAX_SIZE:
        raise ValueError(f"object size {size} outside [{SIZEOF_VOID_P}, {KMALLOC_MAX_SIZE}]")
    if align < 0 or (align and not _is_power_of_2(align)):
        raise ValueError(f"align {align} is not a power of two")
    if slub_max_order > MAX_ORDER - 1:
        slub_max_order = MAX_ORDER - 1     # setup_slub_max_order() clamps
    a = calculate_alignment(flags, align, size)
    sz = calculate_sizes(size, a, flags, bool(ctor), track_size)
    s = sz["size"]
    order = calculate_order(s, 0, nr_cpu_ids=nr_cpu_ids,
                            slub_min_objects=slub_min_objects,
                            slub_min_order=slub_min_order,
                            slub_max_order=slub_max_order)
    objects = order_objects(order, s)
    if objects == 0:
        raise ValueError("no object fits the slab")
    min_order = get_order(s)
    min_partial = min(max(ilog2(s) // 2, MIN_PARTIAL), MAX_PARTIAL)
    debug = bool(flags & SLAB_DEBUG_FLAGS)
    if debug:
        cpu_partial = 0                # !kmem_cache_has_cpu_partial(s)
    elif s >= PAGE_SIZE:
        cpu_partial = 2
    elif s >= 1024:
        cpu_partial = 6
    elif s >= 256:
        cpu_partial = 13
    else:
        cpu_partial = 30
    return {
        "object_size": size,
        "size": s,
        "align": a,
        "inuse": sz["inuse"],
        "offset": sz["offset"],
        "order": order,
        "objects_per_slab": objects,
        "min": (min_order, order_objects(min_order, s)),
        "min_partial": min_partial,
        "cpu_partial": cpu_partial,
    }


# --------------------------------------------------------------------------
# Allocator state
# --------------------------------------------------------------------------

class Slab:
    """The slab fields of ``struct page``."""

    __slots__ = ("id", "cache", "objects", "inuse", "frozen", "freelist",
                 "pages", "pobjects", "where")

    def __init__(self, sid: int, cache: "Cache", objects: int):
        self.id = sid
        self.cache = cache
        self.objects = objects
        self.inuse = objects
        self.frozen = True
        # Address order: index 0 is the first object of the page.
        self.freelist = [(sid, i) for i in range(objects)]
        self.pages = 0          # page->pages / page->pobjects: valid while on
        self.pobjects = 0       # a per-cpu partial list, stale after
        # Bookkeeping for validate() only: "cpu", "cpu_partial", "partial",
        # "full" or None (on no list).
        self.where = None

    def __repr__(self):
        return (f"Slab({self.id}, inuse={self.inuse}/{self.objects}, "
                f"frozen={int(self.frozen)}, free={self.freelist})")


class CpuSlab:
    """``struct kmem_cache_cpu``."""

    __slots__ = ("freelist", "page", "partial", "stat")

    def __init__(self):
        self.freelist = []      # lockless per-cpu freelist, head first
        self.page = None        # the cpu slab (Slab) or None
        self.partial = []       # per-cpu partial slabs, head first (page->next chain)
        self.stat = [0] * len(STAT_ITEMS)


class Node:
    """``struct kmem_cache_node`` (one node)."""

    __slots__ = ("partial", "full", "nr_slabs", "total_objects")

    def __init__(self):
        self.partial = []       # head first
        self.full = []          # only used with SLAB_STORE_USER (add_full)
        self.nr_slabs = 0
        self.total_objects = 0

    @property
    def nr_partial(self) -> int:
        return len(self.partial)


class Cache:
    """``struct kmem_cache`` with its per-cpu and per-node structures."""

    def __init__(self, machine: "RefMachine", name: str, size: int, align: int,
                 flags: int, ctor):
        g = geometry(size, align, flags, ctor is not None,
                     nr_cpu_ids=machine.nr_cpu_ids,
                     slub_min_objects=machine.slub_min_objects,
                     slub_min_order=machine.slub_min_order,
                     slub_max_order=machine.slub_max_order)
        self.machine = machine
        self.name = name
        self.flags = flags
        self.ctor = ctor
        self.object_size = g["object_size"]
        self.size = g["size"]
        self.align = g["align"]
        self.inuse = g["inuse"]
        self.offset = g["offset"]
        self.order = g["order"]
        self.objects_per_slab = g["objects_per_slab"]
        self.oo = (g["order"], g["objects_per_slab"])
        self.min = g["min"]
        self.min_partial = g["min_partial"]
        self.cpu_partial = g["cpu_partial"]
        self.cpus = [CpuSlab() for _ in range(machine.cpus)]
        self.node = Node()
        self.slabs = {}         # slab id -> Slab, every slab of the cache
        self.live = set()       # allocated objects
        self.closed = False

    # kmem_cache_debug() / kmem_cache_has_cpu_partial()
    @property
    def debug(self) -> bool:
        return bool(self.flags & SLAB_DEBUG_FLAGS)

    @property
    def has_cpu_partial(self) -> bool:
        return not self.debug

    def geometry(self) -> dict:
        return {k: getattr(self, k) for k in (
            "object_size", "size", "align", "inuse", "offset", "order",
            "objects_per_slab", "min", "min_partial", "cpu_partial")}

    def __repr__(self):
        return f"<model Cache {self.name!r} size={self.size} objs={self.objects_per_slab}>"


class RefMachine:
    """N vCPUs, one node, any number of caches, unlimited memory."""

    def __init__(self, cpus: int, nr_cpu_ids: int | None = None,
                 slub_min_objects: int = 0, slub_min_order: int = 0,
                 slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER):
        if cpus < 1:
            raise ValueError("need at least one vCPU")
        self.cpus = cpus
        self.nr_cpu_ids = nr_cpu_ids if nr_cpu_ids is not None else cpus
        if self.nr_cpu_ids < cpus:
            raise ValueError("nr_cpu_ids < cpus")
        self.slub_min_objects = slub_min_objects
        self.slub_min_order = slub_min_order
        self.slub_max_order = min(slub_max_order, MAX_ORDER - 1)
        self.caches = []
        self._next_slab_id = 0

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0,
                          ctor=None) -> Cache:
        c = Cache(self, name, size, align, flags, ctor)
        self.caches.append(c)
        return c

    def kmem_cache_alloc(self, s: Cache, cpu: int):
        """slab_alloc_node() (l.2427) on vCPU ``cpu``; returns (slab_id, index)."""
        self._check(s, cpu)
        c = s.cpus[cpu]
        if not c.freelist:
            obj = self._slab_alloc_slowpath(s, c)
            self._stat(c, "ALLOC_SLOWPATH")
        else:
            obj = c.freelist.pop(0)
            self._stat(c, "ALLOC_FASTPATH")
        s.live.add(obj)
        return obj

    def kmem_cache_free(self, s: Cache, obj, cpu: int) -> None:
        """slab_free() (l.2703) on vCPU ``cpu``."""
        self._check(s, cpu)
        obj = (int(obj[0]), int(obj[1]))
        page = s.slabs.get(obj[0])
        if page is None or not (0 <= obj[1] < page.objects):
            raise ValueError(f"{obj} is not an object of cache {s.name!r}")
        if obj not in s.live:
            raise ValueError(f"double free of {obj} in cache {s.name!r}")
        s.live.discard(obj)
        c = s.cpus[cpu]
        if page is c.page:
            c.freelist.insert(0, obj)
            self._stat(c, "FREE_FASTPATH")
        else:
            self._slab_free_slowpath(s, c, page, obj)

    def flush_all(self, s: Cache) -> None:
        self._check(s)
        self._flush_all(s)

    def kmem_cache_shrink(self, s: Cache) -> int:
        """__kmem_cache_shrink(s, deactivate=false) (l.3435); 1 if slabs remain."""
        self._check(s)
        self._flush_all(s)
        n = s.node
        discard = []
        promote = [[] for _ in range(SHRINK_PROMOTE_MAX)]
        rest = []
        for page in n.partial:
            free = page.objects - page.inuse
            assert free > 0, "full slab on the partial list"
            if free == page.objects:
                discard.append(page)
            elif free <= SHRINK_PROMOTE_MAX:
                # list_move() adds at the head of the bucket, so a bucket
                # holds its slabs in reverse partial-list order.
                promote[free - 1].insert(0, page)
            else:
                rest.append(page)
        # list_splice(promote + i, &n->partial) for i = 31 .. 0: bucket 0
        # (one free object) ends up first.
        new_partial = []
        for bucket in promote:
            new_partial.extend(bucket)
        new_partial.extend(rest)
        n.partial = new_partial
        for page in discard:
            self._discard_slab(s, page)
        return 1 if n.nr_slabs else 0

    def kmem_cache_destroy(self, s: Cache) -> None:
        """kmem_cache_destroy() -> kmem_cache_close(): flush_all, free_partial
        (discard empty node-partial slabs), fail if any slab is left."""
        self._check(s)
        self._flush_all(s)
        n = s.node
        for page in list(n.partial):
            if page.inuse == 0:
                self._remove_partial(n, page)
                self._discard_slab(s, page)
        if n.nr_partial or n.nr_slabs:
            raise CacheBusy(f"kmem_cache_destroy {s.name}: Slab cache still has objects")
        s.closed = True
        self.caches.remove(s)

    def cache_state_info(self, s: Cache) -> dict:
        stat_names = STAT_ITEMS
        return {
            "cpus": [{
                "page": c.page.id if c.page is not None else None,
                "freelist": list(c.freelist),
                "partial": [p.id for p in c.partial],
                "stat": dict(zip(stat_names, c.stat)),
            } for c in s.cpus],
            "node": {
                "partial": [p.id for p in s.node.partial],
                "nr_partial": s.node.nr_partial,
                "nr_slabs": s.node.nr_slabs,
                "total_objects": s.node.total_objects,
            },
            "slabs": {sid: {
                "inuse": p.inuse,
                "objects": p.objects,
                "frozen": bool(p.frozen),
                "freelist": list(p.freelist),
            } for sid, p in s.slabs.items()},
            "min_partial": s.min_partial,
            "cpu_partial": s.cpu_partial,
        }

    def cache_stat_info(self, s: Cache) -> dict:
        return {name: sum(c.stat[i] for c in s.cpus) for i, name in enumerate(STAT_ITEMS)}

    def validate(self, s: Cache | None = None) -> None:
        """Check the model's own invariants (a bug here is a model bug)."""
        for cache in ([s] if s is not None else self.caches):
            self._validate(cache)

    # ------------------------------------------------------------------
    # Internals, one per kernel function
    # ------------------------------------------------------------------

    def _check(self, s: Cache, cpu: int | None = None) -> None:
        if not isinstance(s, Cache) or s.machine is not self:
            raise ValueError("not a cache of this machine")
        if s.closed:
            raise ValueError(f"cache {s.name!r} was destroyed")
        if cpu is not None and not (0 <= cpu < self.cpus):
            raise ValueError(f"no vCPU {cpu}")

    @staticmethod
    def _stat(c: CpuSlab, item: str) -> None:
        c.stat[_STAT_INDEX[item]] += 1

    # --- slabs -----------------------------------------------------------

    def _allocate_slab(self, s: Cache) -> Slab:
        """allocate_slab()/new_slab(): a frozen slab with inuse = objects whose
        freelist holds every object in address order; inc_slabs_node()."""
        page = Slab(self._next_slab_id, s, s.objects_per_slab)
        self._next_slab_id += 1
        s.slabs[page.id] = page
        s.node.nr_slabs += 1
        s.node.total_objects += page.objects
        return page

    def _discard_slab(self, s: Cache, page: Slab) -> None:
        """discard_slab(): dec_slabs_node() + free_slab()."""
        assert page.inuse == 0, page
        s.node.nr_slabs -= 1
        s.node.total_objects -= page.objects
        page.where = "freed"
        del s.slabs[page.id]

    def _add_partial(self, n: Node, page: Slab, tail: bool) -> None:
        """__add_partial(): list_add_tail for DEACTIVATE_TO_TAIL, else list_add."""
        if tail:
            n.partial.append(page)
        else:
            n.partial.insert(0, page)
        page.where = "partial"

    def _remove_partial(self, n: Node, page: Slab) -> None:
        n.partial.remove(page)
        page.where = None

    def _add_full(self, s: Cache, n: Node, page: Slab) -> None:
        # add_full() only tracks full slabs with SLAB_STORE_USER.
        if s.flags & SLAB_STORE_USER:
            n.full.append(page)
            page.where = "full"
        else:
            page.where = None

    def _remove_full(self, s: Cache, n: Node, page: Slab) -> None:
        if s.flags & SLAB_STORE_USER:
            n.full.remove(page)
        page.where = None

    # --- allocation --------------------------------------------------------

    def _slab_alloc_slowpath(self, s: Cache, c: CpuSlab):
        """___slab_alloc() (l.2307). c->freelist is empty on entry."""
        page = c.page
        if page is None:
            return self._new_slab_label(s, c)
        # redo: one node, no pfmemalloc: no ALLOC_NODE_MISMATCH.
        return self._redo(s, c, page)

    def _redo(self, s: Cache, c: CpuSlab, page: Slab):
        if c.freelist:                  # "must check again c->freelist"
            return self._load_freelist(s, c, c.freelist)
        freelist = self._get_freelist(page)
        if not freelist:
            # The slab is full: leave it unfrozen and on no list.
            c.page = None
            page.where = None
            self._stat(c, "DEACTIVATE_BYPASS")
            return self._new_slab_label(s, c)
        self._stat(c, "ALLOC_REFILL")
        return self._load_freelist(s, c, freelist)

    @staticmethod
    def _load_freelist(s: Cache, c: CpuSlab, freelist: list):
        assert c.page is not None and c.page.frozen
        obj = freelist[0]
        c.freelist = freelist[1:]
        return obj

    @staticmethod
    def _get_freelist(page: Slab) -> list:
        """get_freelist() (l.2267): take page->freelist, inuse = objects,
        frozen = (freelist != NULL)."""
        assert page.frozen
        freelist = page.freelist
        page.freelist = []
        page.inuse = page.objects
        page.frozen = bool(freelist)
        return freelist

    def _new_slab_label(self, s: Cache, c: CpuSlab):
        """The ``new_slab:`` label of ___slab_alloc()."""
        if c.partial:
            page = c.partial.pop(0)
            c.page = page
            page.where = "cpu"
            self._stat(c, "CPU_PARTIAL_ALLOC")
            c.freelist = []
            return self._redo(s, c, page)

        freelist = self._new_slab_objects(s, c)
        page = c.page
        if not s.debug:
            return self._load_freelist(s, c, freelist)

        # Only entered in the debug case: alloc_debug_processing() passes
        # (the model has no corruption), the rest of the freelist goes back
        # to the slab and the cpu keeps no slab.
        obj = freelist[0]
        self._deactivate_slab(s, c, page, freelist[1:])
        c.page = None
        c.freelist = []
        return obj

    def _new_slab_objects(self, s: Cache, c: CpuSlab) -> list:
        """new_slab_objects(): get_partial() first, else a new slab."""
        freelist = self._get_partial_node(s, c)
        if freelist:
            return freelist
        page = self._allocate_slab(s)
        if c.page is not None:
            # Only reachable in the kernel when interrupts were enabled
            # during the page allocation; never in this single-threaded model.
            self._flush_slab(s, c)
        freelist = page.freelist
        page.freelist = []
        self._stat(c, "ALLOC_SLAB")
        c.page = page
        page.where = "cpu"
        return freelist

    def _acquire_slab(self, s: Cache, n: Node, page: Slab, mode: bool):
        """acquire_slab(): freeze, and with mode=1 take the whole freelist."""
        freelist = page.freelist
        objects = page.objects - page.inuse
        assert not page.frozen
        if mode:
            page.inuse = page.objects
            page.freelist = []
        page.frozen = True
        self._remove_partial(n, page)
        assert freelist
        return freelist, objects

    def _get_partial_node(self, s: Cache, c: CpuSlab):
        """get_partial_node() (l.1618)."""
        n = s.node
        if not n.nr_partial:
            return None
        obj_freelist = None
        available = 0
        for page in list(n.partial):
            t, objects = self._acquire_slab(s, n, page, obj_freelist is None)
            available += objects
            if obj_freelist is None:
                c.page = page
                page.where = "cpu"
                self._stat(c, "ALLOC_FROM_PARTIAL")
                obj_freelist = t
            else:
                self._put_cpu_partial(s, c, page, drain=False)
                self._stat(c, "CPU_PARTIAL_NODE")
            if not s.has_cpu_partial or available > s.cpu_partial // 2:
                break
        return obj_freelist

    # --- free --------------------------------------------------------------

    def _slab_free_slowpath(self, s: Cache, c: CpuSlab, page: Slab, obj) -> None:
        """__slab_free() (l.2579)."""
        self._stat(c, "FREE_SLOWPATH")
        n = None
        prior = bool(page.freelist)
        was_frozen = page.frozen
        new_inuse = page.inuse - 1
        new_frozen = was_frozen
        if (not new_inuse or not prior) and not was_frozen:
            if s.has_cpu_partial and not prior:
                # Full slab on no list: freeze it instead of listing it.
                new_frozen = True
            else:
                n = s.node          # spin_lock(&n->list_lock)
        # cmpxchg_double_slab(): the object becomes the freelist head.
        page.freelist.insert(0, obj)
        page.inuse = new_inuse
        page.frozen = new_frozen

        if n is None:
            if new_frozen and not was_frozen:
                self._put_cpu_partial(s, c, page, drain=True)
                self._stat(c, "CPU_PARTIAL_FREE")
            if was_frozen:
                self._stat(c, "FREE_FROZEN")
            return

        if not new_inuse and n.nr_partial >= s.min_partial:
            # slab_empty:
            if prior:
                self._remove_partial(n, page)
                self._stat(c, "FREE_REMOVE_PARTIAL")
            else:
                self._remove_full(s, n, page)
            self._stat(c, "FREE_SLAB")
            self._discard_slab(s, page)
            return

        if not s.has_cpu_partial and not prior:
            if s.debug:
                self._remove_full(s, n, page)
            self._add_partial(n, page, tail=True)
            self._stat(c, "FREE_ADD_PARTIAL")

    # --- per-cpu partial lists ---------------------------------------------

    def _put_cpu_partial(self, s: Cache, c: CpuSlab, page: Slab, drain: bool) -> None:
        """put_cpu_partial() (l.2038), v4.0 with d6e0b7fa."""
        if not s.has_cpu_partial:      # !CONFIG_SLUB_CPU_PARTIAL equivalent
            return
        pages = 0
        pobjects = 0
        if c.partial:
            oldpage = c.partial[0]
            pobjects = oldpage.pobjects
            pages = oldpage.pages
            if drain and pobjects > s.cpu_partial:
                # Partial array is full: move the existing set to the node.
                self._unfreeze_partials(s, c)
                pobjects = 0
                pages = 0
                self._stat(c, "CPU_PARTIAL_DRAIN")
        pages += 1
        pobjects += page.objects - page.inuse
        page.pages = pages
        page.pobjects = pobjects
        c.partial.insert(0, page)
        page.where = "cpu_partial"
        if not s.cpu_partial:
            # d6e0b7fa: dead caches must not keep per-cpu partial slabs.
            self._unfreeze_partials(s, c)

    def _unfreeze_partials(self, s: Cache, c: CpuSlab) -> None:
        """unfreeze_partials() (l.1968)."""
        n = s.node
        discard = []
        while c.partial:
            page = c.partial.pop(0)
            assert page.frozen
            page.frozen = False
            if not page.inuse and n.nr_partial >= s.min_partial:
                discard.insert(0, page)     # page->next = discard_page
                page.where = None
            else:
                self._add_partial(n, page, tail=True)
                self._stat(c, "FREE_ADD_PARTIAL")
        for page in discard:
            self._stat(c, "DEACTIVATE_EMPTY")
            self._discard_slab(s, page)
            self._stat(c, "FREE_SLAB")

    # --- deactivation and flushing -----------------------------------------

    def _deactivate_slab(self, s: Cache, c: CpuSlab, page: Slab, freelist: list) -> None:
        """deactivate_slab() (l.1819); ``freelist`` is the cpu freelist (head first)."""
        n = s.node
        tail = False
        if page.freelist:
            self._stat(c, "DEACTIVATE_REMOTE_FREES")
            tail = True
        assert page.frozen
        # Stage one: push every cpu-freelist object but the last onto the
        # page freelist, one at a time (each becomes the new head).
        freelist = list(freelist)
        while len(freelist) > 1:
            obj = freelist.pop(0)
            page.freelist.insert(0, obj)
            page.inuse -= 1
        # Stage two: the last object goes in with the unfreeze.
        if freelist:
            page.freelist.insert(0, freelist[0])
            page.inuse -= 1
        page.frozen = False
        if not page.inuse and n.nr_partial >= s.min_partial:
            m = _M_FREE
        elif page.freelist:
            m = _M_PARTIAL
        else:
            m = _M_FULL
        if m == _M_PARTIAL:
            self._add_partial(n, page, tail)
            self._stat(c, "DEACTIVATE_TO_TAIL" if tail else "DEACTIVATE_TO_HEAD")
        elif m == _M_FULL:
            self._stat(c, "DEACTIVATE_FULL")
            self._add_full(s, n, page)
        else:
            page.where = None
            self._stat(c, "DEACTIVATE_EMPTY")
            self._discard_slab(s, page)
            self._stat(c, "FREE_SLAB")

    def _flush_slab(self, s: Cache, c: CpuSlab) -> None:
        """flush_slab(): CPUSLAB_FLUSH + deactivate_slab(c->page, c->freelist)."""
        self._stat(c, "CPUSLAB_FLUSH")
        page = c.page
        freelist = c.freelist
        c.page = None
        c.freelist = []
        self._deactivate_slab(s, c, page, freelist)

    def _flush_all(self, s: Cache) -> None:
        """flush_all(): on_each_cpu_cond(has_cpu_slab, flush_cpu_slab), taken
        here in vCPU order; each vCPU counts its own statistics."""
        for c in s.cpus:
            if c.page is not None or c.partial:
                if c.page is not None:
                    self._flush_slab(s, c)
                self._unfreeze_partials(s, c)

    # --- validation --------------------------------------------------------

    def _validate(self, s: Cache) -> None:
        n = s.node
        seen = {}
        for cpu, c in enumerate(s.cpus):
            if c.page is not None:
                assert c.page.frozen, (cpu, c.page)
                assert c.page.id in s.slabs
                for o in c.freelist:
                    assert o[0] == c.page.id, (cpu, o)
                seen[c.page.id] = ("cpu", cpu)
            else:
                assert not c.freelist
            for p in c.partial:
                assert p.frozen, p
                assert p.id not in seen, p
                seen[p.id] = ("cpu_partial", cpu)
        for p in n.partial:
            assert not p.frozen, p
            assert p.freelist, p
            assert p.id not in seen, p
            seen[p.id] = ("partial",)
        assert n.nr_slabs == len(s.slabs)
        assert n.total_objects == sum(p.objects for p in s.slabs.values())
        cpu_free = {o for c in s.cpus for o in c.freelist}
        all_objs = set()
        for sid, p in s.slabs.items():
            assert len(p.freelist) == len(set(p.freelist))
            assert p.inuse == p.objects - len(p.freelist), p
            for o in p.freelist:
                assert o[0] == sid and 0 <= o[1] < p.objects
            if sid not in seen:
                # On no list: only a full, unfrozen slab (SLUB keeps no list
                # of full slabs without SLAB_STORE_USER).
                assert not p.frozen, p
                assert not p.freelist, p
            all_objs.update((sid, i) for i in range(p.objects))
        free = cpu_free | {o for p in s.slabs.values() for o in p.freelist}
        assert not (free & s.live), free & s.live
        assert free | s.live == all_objs


_STAT_INDEX = {name: i for i, name in enumerate(STAT_ITEMS)}
