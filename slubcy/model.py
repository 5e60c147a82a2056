"""A pure-Python reference model of SLUB (Linux v4.0 ``mm/slub.c``, and
Linux 7.0's percpu sheaves with ``RefMachine(..., slub="7.0")``).

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

The 7.0 generation (section "Linux 7.0" below, ``tests/test_model_sheaves.py``)
keeps, per cache (:class:`Cache70`), each vCPU's ``slub_percpu_sheaves``
(main / spare / rcu_free :class:`Sheaf`), the node's ``node_barn`` and the
7.0 statistics (:data:`STAT_ITEMS_70`); slabs are never frozen and there is
no cpu slab.
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
    "STAT_ITEMS_70", "MAX_FULL_SHEAVES", "MAX_EMPTY_SHEAVES", "PCS_BATCH_MAX",
    "calculate_sheaf_capacity", "kmalloc_size_roundup", "Cache70", "Sheaf",
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



# ==========================================================================
# Linux 7.0: percpu sheaves and the per-node barn
# ==========================================================================
#
# RefMachine(cpus, slub="7.0") models mm/slub.c after "slab: replace cpu
# (partial) slabs with sheaves" (Babka, 7.0): no kmem_cache_cpu, no cpu
# slab, no frozen slabs; every cache without debug flags has per-CPU
# sheaves (main, spare, rcu_free: LIFO arrays of free objects) in front of
# the node partial list, and the node has a barn of full and empty sheaves.
# Function names below are 7.0's; the model has unlimited memory, so
# alloc_empty_sheaf() and new_slab() never fail and local_trylock() never
# fails (every operation runs to completion on its vCPU).
#
# A sheaf is a Python list, objects[0] at the bottom: alloc pops the end
# (objects[size - 1]), free appends.  The barn's lists are head first
# (list_add puts a sheaf at index 0).  Statistics are counted on the vCPU
# doing the work, or -- for work done on no vCPU (an RCU callback, the barn
# flush of a shrink or destroy, the sheaves' set-up) -- on an extra slot,
# as the core's stat70() does (the kernel counts such work on whatever CPU
# ran it).

#: 7.0's ``enum stat_item`` as the core lists it (slubcy.machine.STAT_ITEMS_70):
#: the eleven items 7.0 kept, then the sheaf / barn / rcu items of 6.18.
STAT_ITEMS_70 = (
    "ALLOC_FASTPATH", "ALLOC_SLOWPATH", "FREE_FASTPATH", "FREE_SLOWPATH",
    "FREE_ADD_PARTIAL", "FREE_REMOVE_PARTIAL", "ALLOC_SLAB", "ALLOC_NODE_MISMATCH",
    "FREE_SLAB", "ORDER_FALLBACK", "CMPXCHG_DOUBLE_FAIL",
    "SHEAF_FLUSH", "SHEAF_REFILL", "SHEAF_ALLOC", "SHEAF_FREE",
    "BARN_GET", "BARN_GET_FAIL", "BARN_PUT", "BARN_PUT_FAIL",
    "FREE_RCU_SHEAF", "FREE_RCU_SHEAF_FAIL",
    "SHEAF_PREFILL_FAST", "SHEAF_PREFILL_SLOW", "SHEAF_PREFILL_OVERSIZE",
    "SHEAF_RETURN_FAST", "SHEAF_RETURN_SLOW",
)
assert len(STAT_ITEMS_70) == 26
_STAT_INDEX_70 = {name: i for i, name in enumerate(STAT_ITEMS_70)}

SLUB_GENERATIONS = ("4.0", "7.0")
MAX_FULL_SHEAVES = 10           # barn limits (mm/slub.c)
MAX_EMPTY_SHEAVES = 10
PCS_BATCH_MAX = 32              # sheaf_flush_main(): objects per batch
SHEAF_HEADER_SIZE = 32          # sizeof(struct slab_sheaf) on 64-bit
_E2BIG = 7
_ENOMEM = 12


def kmalloc_size_roundup(size: int) -> int:
    """kmalloc_size_roundup(): the kmalloc bucket (8, 16, ..., with 96 and
    192) a request of ``size`` bytes gets."""
    if size <= 8:
        return 8
    if 64 < size <= 96:
        return 96
    if 128 < size <= 192:
        return 192
    b = 8
    while b < size:
        b <<= 1
    return b


def calculate_sheaf_capacity(size: int, debug: bool, args_capacity: int = 0) -> int:
    """calculate_sheaf_capacity() (7.0): 0 for a cache with debug flags;
    else 4 / 12 / 26 / 60 by ``s->size`` (>= PAGE_SIZE, >= 1024, >= 256,
    smaller), rounded up so that header + pointers fill the kmalloc bucket,
    and at least ``kmem_cache_args.sheaf_capacity``."""
    if debug:
        return 0
    if size >= PAGE_SIZE:
        capacity = 4
    elif size >= 1024:
        capacity = 12
    elif size >= 256:
        capacity = 26
    else:
        capacity = 60
    bucket = kmalloc_size_roundup(SHEAF_HEADER_SIZE + SIZEOF_VOID_P * capacity)
    capacity = (bucket - SHEAF_HEADER_SIZE) // SIZEOF_VOID_P
    return max(capacity, args_capacity)


class Sheaf:
    """``struct slab_sheaf``: ``objects[0 .. size)``, LIFO (the end is the top)."""

    __slots__ = ("objects",)

    def __init__(self):
        self.objects = []

    @property
    def size(self) -> int:
        return len(self.objects)

    def __repr__(self):
        return f"Sheaf({self.objects})"


class PcpSheaves:
    """``struct slub_percpu_sheaves``: ``main`` (never None), ``spare``, ``rcu_free``."""

    __slots__ = ("main", "spare", "rcu_free")

    def __init__(self, main: Sheaf):
        self.main = main
        self.spare = None
        self.rcu_free = None


class Barn:
    """``struct node_barn``: full and empty sheaves, each list head first."""

    __slots__ = ("full", "empty")

    def __init__(self):
        self.full = []
        self.empty = []

    @property
    def nr_full(self) -> int:
        return len(self.full)

    @property
    def nr_empty(self) -> int:
        return len(self.empty)


class Cache70(Cache):
    """``struct kmem_cache`` of 7.0: geometry as 4.0's (calculate_order is
    unchanged) but the free pointer in the middle of the object (5.7+,
    3202fa62fb43) when nothing lives there, ``cpu_partial`` 0, and
    ``cpu_sheaves`` / ``sheaf_capacity`` / the node's barn."""

    def __init__(self, machine: "RefMachine", name: str, size: int, align: int,
                 flags: int, ctor, sheaf_capacity: int = 0):
        super().__init__(machine, name, size, align, flags, ctor)
        if not ((flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON)) or ctor is not None):
            self.offset = (self.object_size // 2) & ~(SIZEOF_VOID_P - 1)   # ALIGN_DOWN
        self.cpu_partial = 0
        self.sheaf_capacity = calculate_sheaf_capacity(self.size, self.debug, sheaf_capacity)
        # stat70: one row per vCPU, then the row of work done on no vCPU
        self.stat = [[0] * len(STAT_ITEMS_70) for _ in range(machine.cpus + 1)]
        self.in_rcu = 0         # s->nr_sheaves_in_rcu (the core's count)
        # init_percpu_sheaves(): an empty main per vCPU (counted on no vCPU),
        # or the zero-capacity bootstrap sheaf; the barn only with sheaves.
        self.barn = Barn() if self.sheaf_capacity else None
        self.pcs = []
        for _ in range(machine.cpus):
            if self.sheaf_capacity:
                self.pcs.append(PcpSheaves(machine._alloc_empty_sheaf(self, -1)))
            else:
                self.pcs.append(PcpSheaves(Sheaf()))    # the bootstrap sheaf

    @property
    def has_cpu_partial(self) -> bool:
        return False                # 7.0 removed CONFIG_SLUB_CPU_PARTIAL

    def __repr__(self):
        return (f"<model Cache70 {self.name!r} size={self.size} objs={self.objects_per_slab} "
                f"sheaf_capacity={self.sheaf_capacity}>")


class _Sheaves70:
    """RefMachine's 7.0 paths (mixed into RefMachine; ``self`` is the machine)."""

    # --- statistics, sheaves, barn ------------------------------------------

    @staticmethod
    def _stat70(s: Cache70, cpu: int, item: str, v: int = 1) -> None:
        """stat() / stat_add() of 7.0 on vCPU ``cpu`` (-1: no vCPU)."""
        s.stat[cpu if cpu >= 0 else len(s.stat) - 1][_STAT_INDEX_70[item]] += v

    def _alloc_empty_sheaf(self, s: Cache70, cpu: int) -> Sheaf:
        """alloc_empty_sheaf(): SHEAF_ALLOC."""
        self._stat70(s, cpu, "SHEAF_ALLOC")
        return Sheaf()

    def _free_empty_sheaf(self, s: Cache70, sh: Sheaf, cpu: int) -> None:
        """free_empty_sheaf(): SHEAF_FREE."""
        assert not sh.objects
        self._stat70(s, cpu, "SHEAF_FREE")

    @staticmethod
    def _barn_get_empty_sheaf(barn: Barn):
        """barn_get_empty_sheaf(): the head of the empty list, or None."""
        return barn.empty.pop(0) if barn.empty else None

    @staticmethod
    def _barn_put_empty_sheaf(barn: Barn, sh: Sheaf) -> None:
        """barn_put_empty_sheaf(): list_add (no limit check)."""
        assert not sh.objects
        barn.empty.insert(0, sh)

    @staticmethod
    def _barn_put_full_sheaf(barn: Barn, sh: Sheaf) -> None:
        """barn_put_full_sheaf(): list_add (no limit check)."""
        barn.full.insert(0, sh)

    @staticmethod
    def _barn_replace_empty_sheaf(barn: Barn, empty: Sheaf):
        """barn_replace_empty_sheaf(): trade ``empty`` for the head full
        sheaf, or None if the barn has none (the empty one is then kept)."""
        if not barn.full:
            return None
        full = barn.full.pop(0)
        barn.empty.insert(0, empty)
        return full

    @staticmethod
    def _barn_replace_full_sheaf(barn: Barn, full: Sheaf):
        """barn_replace_full_sheaf(): trade ``full`` for the head empty sheaf.
        Returns (empty, 0), or (None, E2BIG) when the barn holds
        MAX_FULL_SHEAVES full sheaves, (None, ENOMEM) when it has no empty."""
        if barn.nr_full >= MAX_FULL_SHEAVES:
            return None, _E2BIG
        if not barn.empty:
            return None, _ENOMEM
        empty = barn.empty.pop(0)
        barn.full.insert(0, full)
        return empty, 0

    # --- slabs: 7.0's __slab_free, ___slab_alloc, refill_objects -------------

    def _new_slab70(self, s: Cache70, cpu: int) -> Slab:
        """new_slab() -> allocate_slab() (ALLOC_SLAB counted by the callers);
        the whole freelist in address order."""
        page = self._allocate_slab(s)
        page.frozen = False         # 7.0 has no frozen slabs
        self._stat70(s, cpu, "ALLOC_SLAB")
        return page

    def _slab_free70(self, s: Cache70, page: Slab, chain: list, cpu: int) -> None:
        """__slab_free() of 7.0: push ``chain`` (head .. tail, the detached
        freelist) on the slab's freelist by cmpxchg; list_lock only when the
        slab was full (-> node partial tail, FREE_ADD_PARTIAL) or becomes
        empty (discarded if nr_partial >= min_partial: FREE_REMOVE_PARTIAL
        if it was listed, FREE_SLAB).  A non-full slab on no list is left
        alone (a refill isolated it and owns it).  No frozen slabs, no cpu
        partial lists."""
        n = s.node
        was_full = not page.freelist
        inuse = page.inuse - len(chain)
        locked = inuse == 0 or was_full
        on_node_partial = page.where == "partial"
        page.freelist = list(chain) + page.freelist       # set_freepointer(tail, prior)
        page.inuse = inuse
        if not locked:
            return
        if not was_full and not on_node_partial:
            return
        if inuse == 0 and n.nr_partial >= s.min_partial:
            # slab_empty:
            if on_node_partial:
                self._remove_partial(n, page)
                self._stat70(s, cpu, "FREE_REMOVE_PARTIAL")
            self._stat70(s, cpu, "FREE_SLAB")
            page.where = None
            self._discard_slab(s, page)
            return
        if was_full:
            self._add_partial(n, page, tail=True)
            self._stat70(s, cpu, "FREE_ADD_PARTIAL")

    def _slab_alloc70(self, s: Cache70, cpu: int):
        """___slab_alloc() of 7.0: ONE object, for an allocation the sheaves
        did not serve: the head of the first node partial slab (a full slab
        leaves the list), else a new slab whose rest goes to the partial
        head."""
        n = s.node
        if n.partial:
            page = n.partial[0]
            obj = page.freelist.pop(0)
            page.inuse += 1
            if page.inuse == page.objects:
                self._remove_partial(n, page)
            return obj
        page = self._new_slab70(s, cpu)
        obj = page.freelist.pop(0)
        page.inuse = 1
        if page.objects > 1:
            self._add_partial(n, page, tail=False)
        else:
            page.where = None
        return obj

    def _refill_objects(self, s: Cache70, mn: int, mx: int, cpu: int) -> list:
        """refill_objects() / __refill_objects_node() (7.0): ``mn`` .. ``mx``
        objects, in the order they go into p[].  get_partial_node_bulk()
        isolates node partial slabs from the head until their free counts
        reach ``mx``; each isolated slab's whole freelist is taken
        (get_freelist_nofreeze: inuse = objects, off every list) and the
        surplus goes back through __slab_free (the slab was full: node
        partial tail); slabs not needed go back to the partial head (or are
        discarded, empty, when the node has min_partial).  Then new slabs,
        whose rest goes to the partial head.  (One node: no remote nodes.)"""
        n = s.node
        p = []
        isolated = []
        avail = 0
        # get_partial_node_bulk(): from the list's head, each isolated slab
        # put at the head of the local list (list_add): the last isolated is
        # used first; stop before a slab that would overshoot `mx` once `mn`
        # is there, or once `mx` is
        for page in list(n.partial):
            free = page.objects - page.inuse
            if avail >= mn and avail + free > mx:
                break
            self._remove_partial(n, page)
            isolated.insert(0, page)
            avail += free
            if avail >= mx:
                break
        unused = []
        for page in isolated:
            if len(p) >= mx:
                unused.append(page)
                continue
            freelist = page.freelist                    # get_freelist_nofreeze()
            page.freelist = []
            page.inuse = page.objects
            take = mx - len(p)
            p.extend(freelist[:take])
            if freelist[take:]:
                self._slab_free70(s, page, freelist[take:], cpu)
        # __refill_objects_node's putback, in one list_lock section: back to
        # the partial head, or discarded if empty while the node has
        # min_partial slabs (no statistic)
        for page in unused:
            if page.inuse == 0 and n.nr_partial >= s.min_partial:
                self._discard_slab(s, page)
            else:
                self._add_partial(n, page, tail=False)
        while len(p) < mn:
            page = self._new_slab70(s, cpu)
            take = mx - len(p)
            got, rest = page.freelist[:take], page.freelist[take:]
            p.extend(got)
            page.freelist = rest
            page.inuse = len(got)
            if rest:
                self._add_partial(n, page, tail=False)
            else:
                page.where = None
        return p

    @staticmethod
    def _build_detached_freelist(size: int, p: list):
        """build_detached_freelist() (slub.pyx, Linux 4.6+): from the end of
        p[0 .. size), chain the objects of the last object's slab (consumed
        entries become None), looking past at most 3 objects of other slabs
        (lookahead).  The chain is head first: objects in array order.
        Returns (size left to scan, slab id or None, chain)."""
        first_skipped_index = 0
        lookahead = 3
        obj = None
        while size:
            size -= 1
            obj = p[size]
            if obj is not None:
                break
        if obj is None:
            return 0, None, None
        sid = obj[0]
        chain = [obj]               # set_freepointer(object, NULL): the tail
        p[size] = None
        while size:
            size -= 1
            o = p[size]
            if o is None:
                continue
            if o[0] == sid:
                chain.insert(0, o)  # set_freepointer(object, df->freelist)
                p[size] = None
                continue
            lookahead -= 1
            if not lookahead:
                break
            if not first_skipped_index:
                first_skipped_index = size + 1
        return first_skipped_index, sid, chain

    def _kmem_cache_free_bulk_slabs(self, s: Cache70, p: list, cpu: int) -> None:
        """__kmem_cache_free_bulk(): straight to the slabs, one __slab_free
        per detached freelist.  p[] is consumed."""
        size = len(p)
        while size:
            size, sid, chain = self._build_detached_freelist(size, p)
            if sid is not None:
                self._slab_free70(s, s.slabs[sid], chain, cpu)

    # --- refill and flush ------------------------------------------------------

    def _refill_sheaf(self, s: Cache70, sh: Sheaf, cpu: int) -> int:
        """refill_sheaf(): fill the sheaf's free room (SHEAF_REFILL += got)."""
        to_fill = s.sheaf_capacity - sh.size
        if to_fill == 0:
            return 0
        got = self._refill_objects(s, to_fill, to_fill, cpu)
        sh.objects.extend(got)
        self._stat70(s, cpu, "SHEAF_REFILL", len(got))
        return 0 if len(got) == to_fill else -_ENOMEM

    def _alloc_full_sheaf(self, s: Cache70, cpu: int) -> Sheaf:
        """alloc_full_sheaf(): alloc_empty_sheaf() + refill_sheaf()."""
        sh = self._alloc_empty_sheaf(s, cpu)
        self._refill_sheaf(s, sh, cpu)
        return sh

    def _sheaf_flush_unused(self, s: Cache70, sh: Sheaf, cpu: int) -> None:
        """sheaf_flush_unused(): every object back to its slab
        (SHEAF_FLUSH += size; __kmem_cache_free_bulk over objects[])."""
        self._stat70(s, cpu, "SHEAF_FLUSH", sh.size)
        objs = sh.objects
        sh.objects = []
        self._kmem_cache_free_bulk_slabs(s, objs, cpu)

    def _sheaf_flush_main(self, s: Cache70, cpu: int) -> bool:
        """sheaf_flush_main(): flush the vCPU's main from the top,
        PCS_BATCH_MAX objects at a time (each batch's objects in array order
        to __kmem_cache_free_bulk), the lock dropped between batches."""
        pcs = s.pcs[cpu]
        while True:
            main = pcs.main
            batch = min(main.size, PCS_BATCH_MAX)
            remaining = main.size - batch
            objs = main.objects[remaining:]
            del main.objects[remaining:]
            self._stat70(s, cpu, "SHEAF_FLUSH", batch)
            self._kmem_cache_free_bulk_slabs(s, objs, cpu)
            if remaining == 0:
                return True

    # --- __pcs_replace_empty_main / __pcs_replace_full_main -----------------

    def _pcs_replace_empty_main(self, s: Cache70, pcs: PcpSheaves, cpu: int, can_block: bool):
        """__pcs_replace_empty_main() (7.0): main is empty.  A non-empty
        spare swaps in; else the barn trades a full sheaf for the empty
        main (BARN_GET; else BARN_GET_FAIL); else, only if the allocation
        may block, an empty sheaf -- the spare (taken off the vCPU), else
        the barn's, else a new one (alloc_full_sheaf) -- is refilled with
        the lock dropped and installed: the still empty main goes to the
        barn's empty list (over its limit if need be) and the refilled one
        becomes main.  Returns main, or None (the slab path serves it)."""
        barn = s.barn
        if s.sheaf_capacity == 0:
            return None             # the bootstrap sheaf
        if pcs.spare is not None and pcs.spare.size > 0:
            pcs.main, pcs.spare = pcs.spare, pcs.main
            return pcs.main
        full = self._barn_replace_empty_sheaf(barn, pcs.main)
        if full is not None:
            self._stat70(s, cpu, "BARN_GET")
            pcs.main = full
            return full
        self._stat70(s, cpu, "BARN_GET_FAIL")
        if not can_block:
            return None
        if pcs.spare is not None:
            empty = pcs.spare
            pcs.spare = None
        else:
            empty = self._barn_get_empty_sheaf(barn)
        # local_unlock(): the refill runs with the lock dropped
        if empty is not None:
            self._refill_sheaf(s, empty, cpu)   # (unlimited memory: never -ENOMEM)
            full = empty
        else:
            full = self._alloc_full_sheaf(s, cpu)
        # local_lock() again: install the full sheaf
        if pcs.main.size == 0:
            self._barn_put_empty_sheaf(barn, pcs.main)
            pcs.main = full
            return full
        # (only if the vCPU ran something else meanwhile: not in this model)
        if pcs.spare is None:
            pcs.spare = full
            return pcs.main
        if pcs.spare.size == 0:
            self._barn_put_empty_sheaf(barn, pcs.spare)
            pcs.spare = full
            return pcs.main
        self._barn_put_full_sheaf(barn, full)
        self._stat70(s, cpu, "BARN_PUT")
        return pcs.main

    def _pcs_install_empty_sheaf(self, s: Cache70, pcs: PcpSheaves, empty: Sheaf,
                                 cpu: int) -> None:
        """__pcs_install_empty_sheaf() (7.0), in the kernel's order: no spare
        (what is expected): the empty sheaf becomes main, main the spare;
        else if main has room again (we were interrupted) the empty sheaf
        goes to the barn; else if the spare has room, main and spare swap
        and the empty one goes to the barn; else the full main goes to the
        barn over its limit (BARN_PUT) and the empty sheaf becomes main.
        (The core tests main's room before the spare and has no swap case;
        the two agree whenever nothing ran while the lock was dropped,
        which is always so in this model.)"""
        barn = s.barn
        if pcs.spare is None:
            pcs.spare = pcs.main
            pcs.main = empty
            return
        if pcs.main.size < s.sheaf_capacity:
            self._barn_put_empty_sheaf(barn, empty)
            return
        if pcs.spare.size < s.sheaf_capacity:
            pcs.main, pcs.spare = pcs.spare, pcs.main
            self._barn_put_empty_sheaf(barn, empty)
            return
        self._barn_put_full_sheaf(barn, pcs.main)
        self._stat70(s, cpu, "BARN_PUT")
        pcs.main = empty

    def _pcs_replace_full_main(self, s: Cache70, pcs: PcpSheaves, cpu: int) -> bool:
        """__pcs_replace_full_main() (7.0): main is full.  Without a spare,
        an empty barn sheaf becomes main and the full main the spare; a
        spare with room swaps in; else barn_replace_full_sheaf() trades the
        full main for an empty barn sheaf (BARN_PUT) -- or refuses with
        E2BIG (MAX_FULL_SHEAVES full there: BARN_PUT_FAIL, the full spare is
        flushed to its slabs with the lock dropped and installed as the
        empty sheaf: main becomes the spare) or ENOMEM (no empty sheaf: a
        new one is allocated, alloc_empty, and installed: the full main
        goes to the barn over the limit).  Without a spare and no empty
        barn sheaf: alloc_empty too.  False: the caller frees to the slab."""
        barn = s.barn
        if s.sheaf_capacity == 0:
            return False
        if pcs.spare is None:
            empty = self._barn_get_empty_sheaf(barn)
            if empty is not None:
                pcs.spare = pcs.main
                pcs.main = empty
                return True
        elif pcs.spare.size < s.sheaf_capacity:
            pcs.main, pcs.spare = pcs.spare, pcs.main
            return True
        else:
            empty, err = self._barn_replace_full_sheaf(barn, pcs.main)
            if empty is not None:
                self._stat70(s, cpu, "BARN_PUT")
                pcs.main = empty
                return True
            if err == _E2BIG:
                self._stat70(s, cpu, "BARN_PUT_FAIL")
                to_flush = pcs.spare
                pcs.spare = None
                self._sheaf_flush_unused(s, to_flush, cpu)
                self._pcs_install_empty_sheaf(s, pcs, to_flush, cpu)
                return True
        # alloc_empty: (GFP_NOWAIT; never fails here)
        empty = self._alloc_empty_sheaf(s, cpu)
        self._pcs_install_empty_sheaf(s, pcs, empty, cpu)
        return True

    # --- fast paths and the entries -------------------------------------------

    def _alloc_from_pcs(self, s: Cache70, cpu: int, can_block: bool):
        """alloc_from_pcs(): pop main (ALLOC_FASTPATH), replacing an empty
        main first; None: the slab path serves it."""
        pcs = s.pcs[cpu]
        main = pcs.main
        if main.size == 0:
            main = self._pcs_replace_empty_main(s, pcs, cpu, can_block)
            if main is None:
                return None
        obj = main.objects.pop()
        self._stat70(s, cpu, "ALLOC_FASTPATH")
        return obj

    def _free_to_pcs(self, s: Cache70, obj, cpu: int) -> bool:
        """free_to_pcs(): push on main (FREE_FASTPATH), replacing a full
        main first; False: the caller frees to the slab."""
        pcs = s.pcs[cpu]
        if pcs.main.size == s.sheaf_capacity:
            if not self._pcs_replace_full_main(s, pcs, cpu):
                return False
        pcs.main.objects.append(obj)
        self._stat70(s, cpu, "FREE_FASTPATH")
        return True

    def _slab_alloc_node70(self, s: Cache70, cpu: int, can_block: bool):
        """slab_alloc_node() of 7.0: the sheaves, else ALLOC_SLOWPATH and
        ___slab_alloc() (one node: no ALLOC_NODE_MISMATCH)."""
        obj = self._alloc_from_pcs(s, cpu, can_block)
        if obj is None:
            self._stat70(s, cpu, "ALLOC_SLOWPATH")
            obj = self._slab_alloc70(s, cpu)
        return obj

    def _slab_free70_entry(self, s: Cache70, page: Slab, obj, cpu: int) -> None:
        """slab_free() of 7.0 after the hooks: free_to_pcs(), else
        FREE_SLOWPATH and __slab_free() of the one object."""
        if not self._free_to_pcs(s, obj, cpu):
            self._stat70(s, cpu, "FREE_SLOWPATH")
            self._slab_free70(s, page, [obj], cpu)

    def _kmem_cache_alloc_bulk70(self, s: Cache70, n: int, cpu: int) -> list:
        """kmem_cache_alloc_bulk() of 7.0: alloc_from_pcs_bulk() -- a block
        copied, in order, off the top of main (ALLOC_FASTPATH per object);
        an empty main replaced by a non-empty spare or a full barn sheaf
        (BARN_GET), never refilled: with none, BARN_GET_FAIL and the rest
        from slabs (refill_objects(rest, rest); a debug cache one by one
        through ___slab_alloc, ALLOC_SLOWPATH each)."""
        out = []
        if s.sheaf_capacity:
            pcs = s.pcs[cpu]
            while len(out) < n:
                main = pcs.main
                if main.size == 0:
                    if pcs.spare is not None and pcs.spare.size > 0:
                        pcs.main, pcs.spare = pcs.spare, main
                    else:
                        full = self._barn_replace_empty_sheaf(s.barn, main)
                        if full is None:
                            self._stat70(s, cpu, "BARN_GET_FAIL")
                            break
                        self._stat70(s, cpu, "BARN_GET")
                        pcs.main = full
                    main = pcs.main
                batch = min(n - len(out), main.size)
                out.extend(main.objects[main.size - batch:])
                del main.objects[main.size - batch:]
                self._stat70(s, cpu, "ALLOC_FASTPATH", batch)
        if len(out) < n and s.debug:
            # a debug cache (no sheaves): one object at a time through
            # ___slab_alloc, each checked by alloc_debug_processing
            while len(out) < n:
                self._stat70(s, cpu, "ALLOC_SLOWPATH")
                out.append(self._slab_alloc70(s, cpu))
        elif len(out) < n:
            out.extend(self._refill_objects(s, n - len(out), n - len(out), cpu))
        return out

    def _kmem_cache_free_bulk70(self, s: Cache70, objs: list, cpu: int) -> None:
        """kmem_cache_free_bulk() of 7.0: free_to_pcs_bulk() -- as many
        objects as main has room for copied onto it in array order
        (FREE_FASTPATH per object); a full main replaced without dropping
        the lock (an empty barn sheaf, the full one the spare; a spare with
        room; the barn's trade); when the barn refuses (BARN_PUT_FAIL) or
        has no empty sheaf for a vCPU without a spare, the rest (consumed
        entries None) straight to the slabs (__kmem_cache_free_bulk)."""
        p = list(objs)
        i = 0
        if s.sheaf_capacity:
            pcs = s.pcs[cpu]
            while i < len(p):
                main = pcs.main
                if main.size == s.sheaf_capacity:
                    if pcs.spare is None:
                        empty = self._barn_get_empty_sheaf(s.barn)
                        if empty is None:
                            break
                        pcs.spare, pcs.main = main, empty
                    elif pcs.spare.size < s.sheaf_capacity:
                        pcs.main, pcs.spare = pcs.spare, main
                    else:
                        empty, _err = self._barn_replace_full_sheaf(s.barn, main)
                        if empty is None:
                            self._stat70(s, cpu, "BARN_PUT_FAIL")
                            break
                        pcs.main = empty
                    main = pcs.main
                batch = min(s.sheaf_capacity - main.size, len(p) - i)
                main.objects.extend(p[i:i + batch])
                self._stat70(s, cpu, "FREE_FASTPATH", batch)
                for k in range(i, i + batch):
                    p[k] = None
                i += batch
        self._kmem_cache_free_bulk_slabs(s, p, cpu)

    # --- kfree_rcu ------------------------------------------------------------

    def _kfree_rcu_sheaf(self, s: Cache70, obj, cpu: int) -> bool:
        """__kfree_rcu_sheaf() (7.0): push on the vCPU's rcu_free sheaf (the
        current one, else an empty spare, else an empty barn sheaf, else a
        new one); a full rcu sheaf goes to call_rcu(rcu_free_sheaf).
        FREE_RCU_SHEAF; False (FREE_RCU_SHEAF_FAIL) for a cache without
        sheaves: classic kfree_rcu."""
        if s.sheaf_capacity == 0:
            self._stat70(s, cpu, "FREE_RCU_SHEAF_FAIL")
            return False
        pcs = s.pcs[cpu]
        rcu_sheaf = pcs.rcu_free
        if rcu_sheaf is None:
            if pcs.spare is not None and pcs.spare.size == 0:
                rcu_sheaf = pcs.spare
                pcs.spare = None
            else:
                rcu_sheaf = self._barn_get_empty_sheaf(s.barn)
            if rcu_sheaf is None:
                rcu_sheaf = self._alloc_empty_sheaf(s, cpu)
            pcs.rcu_free = rcu_sheaf
        rcu_sheaf.objects.append(obj)
        if rcu_sheaf.size == s.sheaf_capacity:
            pcs.rcu_free = None
            s.in_rcu += 1
            self._rcu_queue.append((self._rcu_free_sheaf, s, rcu_sheaf))
        self._stat70(s, cpu, "FREE_RCU_SHEAF")
        return True

    def _rcu_free_sheaf(self, s: Cache70, sh: Sheaf) -> None:
        """rcu_free_sheaf() (after the grace period, on no vCPU): barn the
        sheaf as full if nr_full < MAX_FULL_SHEAVES (BARN_PUT); else
        BARN_PUT_FAIL, flush it, keep it as an empty barn sheaf if
        nr_empty < MAX_EMPTY_SHEAVES or free it."""
        barn = s.barn
        if barn.nr_full < MAX_FULL_SHEAVES:
            self._barn_put_full_sheaf(barn, sh)
            self._stat70(s, -1, "BARN_PUT")
        else:
            self._stat70(s, -1, "BARN_PUT_FAIL")
            self._sheaf_flush_unused(s, sh, -1)
            if barn.nr_empty < MAX_EMPTY_SHEAVES:
                self._barn_put_empty_sheaf(barn, sh)
            else:
                self._free_empty_sheaf(s, sh, -1)
        s.in_rcu -= 1

    def _rcu_free_sheaf_nobarn(self, s: Cache70, sh: Sheaf) -> None:
        """rcu_free_sheaf_nobarn(): flush the (maybe partial) rcu sheaf to
        its slabs and free it."""
        self._sheaf_flush_unused(s, sh, -1)
        self._free_empty_sheaf(s, sh, -1)
        s.in_rcu -= 1

    def _kfree_classic(self, s: Cache70, obj, cpu: int) -> None:
        """Classic kfree_rcu's callback: kfree() on vCPU ``cpu`` (what the
        core's Python fallback does)."""
        self._slab_free70_entry(s, s.slabs[obj[0]], obj, cpu)

    # --- flush_all, shrink, shutdown ---------------------------------------------

    def _pcs_flush_all(self, s: Cache70, cpu: int) -> None:
        """pcs_flush_all(), run by vCPU ``cpu``: the spare flushed to its
        slabs and freed, rcu_free handed to call_rcu(rcu_free_sheaf_nobarn),
        main flushed in batches (it stays, empty)."""
        pcs = s.pcs[cpu]
        spare, pcs.spare = pcs.spare, None
        rcu_free, pcs.rcu_free = pcs.rcu_free, None
        if spare is not None:
            self._sheaf_flush_unused(s, spare, cpu)
            self._free_empty_sheaf(s, spare, cpu)
        if rcu_free is not None:
            s.in_rcu += 1
            self._rcu_queue.append((self._rcu_free_sheaf_nobarn, s, rcu_free))
        self._sheaf_flush_main(s, cpu)

    def _flush_all70(self, s: Cache70) -> None:
        """flush_all() of 7.0: on_each_cpu_cond(has_pcs_used, pcs_flush_all),
        vCPUs in order; has_pcs_used: main non-empty, or a spare or an
        rcu_free sheaf."""
        if s.sheaf_capacity == 0:
            return
        for cpu, pcs in enumerate(s.pcs):
            if pcs.main.size or pcs.spare is not None or pcs.rcu_free is not None:
                self._pcs_flush_all(s, cpu)

    def _barn_shrink(self, s: Cache70) -> None:
        """barn_shrink(), on no vCPU: every barn sheaf is taken (moved with
        list_add: each list reversed, the oldest first); the full ones are
        flushed to their slabs and freed, then the empty ones freed."""
        barn = s.barn
        if barn is None:
            return
        full = list(reversed(barn.full))
        empty = list(reversed(barn.empty))
        barn.full = []
        barn.empty = []
        for sh in full:
            self._sheaf_flush_unused(s, sh, -1)
            self._free_empty_sheaf(s, sh, -1)
        for sh in empty:
            self._free_empty_sheaf(s, sh, -1)

    def _discard_empty_partial(self, s: Cache70) -> None:
        """Free every empty slab of the node partial list (the discard of
        __kmem_cache_shrink / free_partial); the rest keep their order."""
        n = s.node
        for page in list(n.partial):
            if page.inuse == 0:
                self._remove_partial(n, page)
                self._discard_slab(s, page)

    def _kmem_cache_shrink70(self, s: Cache70) -> int:
        """__kmem_cache_shrink() of 7.0: flush_all, barn_shrink, discard the
        empty partial slabs; no RCU wait.  1 if slabs remain."""
        self._flush_all70(s)
        self._barn_shrink(s)
        self._discard_empty_partial(s)
        return 1 if s.node.nr_slabs else 0

    def _rcu_barrier70(self) -> None:
        """rcu_barrier(): every callback queued so far runs, oldest first
        (new ones queued meanwhile too)."""
        while self._rcu_queue:
            func, s, arg = self._rcu_queue.pop(0)
            if isinstance(arg, tuple):
                func(s, *arg)
            else:
                func(s, arg)

    def _kmem_cache_shutdown70(self, s: Cache70) -> bool:
        """__kmem_cache_shutdown() of 7.0: flush_all (rcu_free sheaves to
        call_rcu), rcu_barrier() (b55b423e8518), barn_shrink, free_partial.
        True if slabs remain (the destroy fails; the cache stays usable)."""
        self._flush_all70(s)
        self._rcu_barrier70()
        self._barn_shrink(s)
        self._discard_empty_partial(s)
        return bool(s.node.nr_partial or s.node.nr_slabs)

    # --- introspection -----------------------------------------------------

    def _cache_state_info70(self, s: Cache70) -> dict:
        def sheaf(sh):
            return None if sh is None else list(sh.objects)
        names = STAT_ITEMS_70
        return {
            "cpus": [{"page": None, "freelist": [], "partial": [],
                      "stat": dict(zip(names, s.stat[cpu]))} for cpu in range(self.cpus)],
            "node": {
                "partial": [p.id for p in s.node.partial],
                "nr_partial": s.node.nr_partial,
                "nr_slabs": s.node.nr_slabs,
                "total_objects": s.node.total_objects,
            },
            "slabs": {sid: {"inuse": p.inuse, "objects": p.objects, "frozen": bool(p.frozen),
                            "freelist": list(p.freelist)} for sid, p in s.slabs.items()},
            "min_partial": s.min_partial,
            "cpu_partial": 0,
            "sheaves": {
                "capacity": s.sheaf_capacity,
                "cpus": [{"main": sheaf(pcs.main), "spare": sheaf(pcs.spare),
                          "rcu_free": sheaf(pcs.rcu_free)} for pcs in s.pcs],
                "barn_full": [list(sh.objects) for sh in s.barn.full] if s.barn else [],
                "barn_empty": s.barn.nr_empty if s.barn else 0,
                "in_rcu": s.in_rcu,
            },
        }

    def _validate70(self, s: Cache70) -> None:
        n = s.node
        cap = s.sheaf_capacity
        assert n.nr_slabs == len(s.slabs)
        assert n.total_objects == sum(p.objects for p in s.slabs.values())
        assert len(set(map(id, n.partial))) == len(n.partial)
        held = []
        for pcs in s.pcs:
            assert pcs.main is not None and pcs.main.size <= cap
            held += pcs.main.objects
            if pcs.spare is not None:
                assert pcs.spare.size <= cap
                held += pcs.spare.objects
            if pcs.rcu_free is not None:
                assert 0 < pcs.rcu_free.size < cap
                held += pcs.rcu_free.objects
        if s.barn is not None:
            for sh in s.barn.full:
                assert sh.size == cap, sh
                held += sh.objects
            for sh in s.barn.empty:
                assert sh.size == 0
        else:
            assert cap == 0
        for _func, cache, arg in self._rcu_queue:
            if cache is s:
                held += arg.objects if isinstance(arg, Sheaf) else [arg[0]]
        assert len(held) == len(set(held)), "an object twice in the sheaves"
        held = set(held)
        all_objs = set()
        free = set()
        for sid, p in s.slabs.items():
            assert not p.frozen, p
            assert len(p.freelist) == len(set(p.freelist))
            assert p.inuse == p.objects - len(p.freelist), p
            for o in p.freelist:
                assert o[0] == sid and 0 <= o[1] < p.objects
            # single-threaded: a slab with free objects is on the node list
            assert (p.where == "partial") == bool(p.freelist), p
            all_objs.update((sid, i) for i in range(p.objects))
            free.update(p.freelist)
        for p in n.partial:
            assert p.id in s.slabs and p.where == "partial", p
        assert not (free & s.live) and not (free & held) and not (held & s.live)
        assert free | held | s.live == all_objs


class RefMachine(_Sheaves70):
    """N vCPUs, one node, any number of caches, unlimited memory.

    ``slub`` picks the generation: "4.0" (cpu slabs and cpu partial lists,
    the default) or "7.0" (percpu sheaves and the barn, :class:`Cache70`;
    the section "Linux 7.0" above)."""

    def __init__(self, cpus: int, nr_cpu_ids: int | None = None,
                 slub_min_objects: int = 0, slub_min_order: int = 0,
                 slub_max_order: int = PAGE_ALLOC_COSTLY_ORDER, slub: str = "4.0"):
        if cpus < 1:
            raise ValueError("need at least one vCPU")
        if slub not in SLUB_GENERATIONS:
            raise ValueError(f"slub must be one of {SLUB_GENERATIONS}, got {slub!r}")
        self.slub = slub
        self._rcu_queue = []    # call_rcu() callbacks of 7.0, oldest first
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
                          ctor=None, *, sheaf_capacity: int = 0) -> Cache:
        """kmem_cache_create(); ``sheaf_capacity`` (7.0 only) is
        kmem_cache_args.sheaf_capacity, the least the sheaves hold."""
        if self.slub == "7.0":
            c = Cache70(self, name, size, align, flags, ctor, sheaf_capacity)
            self.caches.append(c)
            return c
        if sheaf_capacity:
            raise ValueError("sheaf_capacity needs slub='7.0'")
        c = Cache(self, name, size, align, flags, ctor)
        self.caches.append(c)
        return c

    def kmem_cache_alloc(self, s: Cache, cpu: int, nowait: bool = False):
        """slab_alloc_node() (l.2427) on vCPU ``cpu``; returns (slab_id, index).
        ``nowait`` (GFP_NOWAIT) matters only on 7.0: no sheaf refill."""
        self._check(s, cpu)
        if isinstance(s, Cache70):
            obj = self._slab_alloc_node70(s, cpu, not nowait)
            s.live.add(obj)
            return obj
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
        if isinstance(s, Cache70):
            self._slab_free70_entry(s, page, obj, cpu)
            return
        c = s.cpus[cpu]
        if page is c.page:
            c.freelist.insert(0, obj)
            self._stat(c, "FREE_FASTPATH")
        else:
            self._slab_free_slowpath(s, c, page, obj)

    def _check_objects(self, s: Cache, objs) -> list:
        out = []
        for obj in objs:
            obj = (int(obj[0]), int(obj[1]))
            page = s.slabs.get(obj[0])
            if page is None or not (0 <= obj[1] < page.objects):
                raise ValueError(f"{obj} is not an object of cache {s.name!r}")
            if obj not in s.live or obj in out:
                raise ValueError(f"double free of {obj} in cache {s.name!r}")
            out.append(obj)
        return out

    def kmem_cache_alloc_bulk(self, s: Cache, n: int, cpu: int) -> list:
        """kmem_cache_alloc_bulk() (7.0 only): ``n`` objects, in p[] order."""
        self._check(s, cpu)
        if not isinstance(s, Cache70):
            raise NotImplementedError("the 4.0 model has no bulk allocation")
        objs = self._kmem_cache_alloc_bulk70(s, n, cpu)
        s.live.update(objs)
        return objs

    def kmem_cache_free_bulk(self, s: Cache, objs, cpu: int) -> None:
        """kmem_cache_free_bulk() (7.0 only) of the objects in ``objs``' order."""
        self._check(s, cpu)
        if not isinstance(s, Cache70):
            raise NotImplementedError("the 4.0 model has no bulk free")
        objs = self._check_objects(s, objs)
        s.live.difference_update(objs)
        self._kmem_cache_free_bulk70(s, objs, cpu)

    def kfree_rcu(self, s: Cache, obj, cpu: int) -> None:
        """kfree_rcu() (7.0 only): __kfree_rcu_sheaf(), else classic
        kfree_rcu (kfree on vCPU ``cpu`` after the grace period)."""
        self._check(s, cpu)
        if not isinstance(s, Cache70):
            raise NotImplementedError("the 4.0 model has no kfree_rcu")
        obj, = self._check_objects(s, [obj])
        s.live.discard(obj)
        if not self._kfree_rcu_sheaf(s, obj, cpu):
            self._rcu_queue.append((self._kfree_classic, s, (obj, cpu)))

    def rcu_barrier(self) -> None:
        """rcu_barrier(): every call_rcu() callback queued so far runs
        (7.0's rcu sheaves; the 4.0 model queues none)."""
        self._rcu_barrier70()

    def flush_all(self, s: Cache) -> None:
        self._check(s)
        if isinstance(s, Cache70):
            self._flush_all70(s)
            return
        self._flush_all(s)

    def kmem_cache_shrink(self, s: Cache) -> int:
        """__kmem_cache_shrink(s, deactivate=false) (l.3435); 1 if slabs remain."""
        self._check(s)
        if isinstance(s, Cache70):
            return self._kmem_cache_shrink70(s)
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
        (discard empty node-partial slabs), fail if any slab is left.
        7.0: __kmem_cache_shutdown (flush_all, rcu_barrier, barn_shrink,
        free_partial)."""
        self._check(s)
        if isinstance(s, Cache70):
            if self._kmem_cache_shutdown70(s):
                raise CacheBusy(f"kmem_cache_destroy {s.name}: Slab cache still has objects")
            s.closed = True
            self.caches.remove(s)
            return
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
        if isinstance(s, Cache70):
            return self._cache_state_info70(s)
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
        """{item: total}; on 7.0 with what was counted on no vCPU."""
        if isinstance(s, Cache70):
            return {name: sum(row[i] for row in s.stat) for i, name in enumerate(STAT_ITEMS_70)}
        return {name: sum(c.stat[i] for c in s.cpus) for i, name in enumerate(STAT_ITEMS)}

    def cache_stat_cpu_info(self, s: Cache) -> dict:
        """{item: [count on each vCPU]} (the core's cache_stat_cpu_info)."""
        if isinstance(s, Cache70):
            return {name: [s.stat[cpu][i] for cpu in range(self.cpus)]
                    for i, name in enumerate(STAT_ITEMS_70)}
        return {name: [c.stat[i] for c in s.cpus] for i, name in enumerate(STAT_ITEMS)}

    def validate(self, s: Cache | None = None) -> None:
        """Check the model's own invariants (a bug here is a model bug)."""
        for cache in ([s] if s is not None else self.caches):
            if isinstance(cache, Cache70):
                self._validate70(cache)
            else:
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
