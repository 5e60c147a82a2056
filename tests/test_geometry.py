"""Slab geometry: the core's kmem_cache_create() against the kernel's formulas.

Three layers:

* hand-computed anchors, worked from calculate_alignment / calculate_sizes /
  calculate_order / set_min_partial / the cpu_partial defaults of Linux v4.0
  (mm/slub.c, mm/slab_common.c) -- they do not use the model;
* a grid of sizes x aligns x flags x nr_cpu_ids x slub_* parameters, core
  against ``slubcy.model.geometry``;
* hypothesis-drawn sizes, core against the model.

The core parts skip while ``slubcy.Machine`` is not built.
"""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from slubcy import model
from slubcy.model import geometry

try:
    import slubcy
    Machine = slubcy.Machine
except (ImportError, AttributeError):          # core not built yet
    slubcy = None
    Machine = None

needs_core = pytest.mark.skipif(Machine is None, reason="slubcy.Machine not built")

KEYS = ("object_size", "size", "align", "inuse", "offset", "order",
        "objects_per_slab", "min", "min_partial", "cpu_partial")

F = model
DEBUG = F.SLAB_POISON | F.SLAB_RED_ZONE | F.SLAB_CONSISTENCY_CHECKS

KMALLOC_SIZES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192]
ODD_SIZES = [9, 12, 20, 24, 40, 56, 72, 100, 120, 200, 248, 300, 384, 640, 700, 1000,
             1500, 2000, 2049, 3000, 3500, 4000, 4095, 4097, 5000, 6000, 10000, 12288,
             16384, 20000, 32768, 32769, 65536, 100000, 131072, 262144, 1 << 20,
             (1 << 21) + 8, (4 << 20) - 16, (4 << 20) - 8, 4 << 20]
SIZES = KMALLOC_SIZES + ODD_SIZES
ALIGNS = [0, 8, 16, 64, 128, 4096]
# (flags, ctor)
FLAG_CASES = [
    (0, False),
    (F.SLAB_HWCACHE_ALIGN, False),
    (F.SLAB_POISON, False),
    (F.SLAB_RED_ZONE, False),
    (F.SLAB_TYPESAFE_BY_RCU, False),
    (0, True),
    (F.SLAB_HWCACHE_ALIGN, True),
    (F.SLAB_POISON, True),
    (F.SLAB_POISON | F.SLAB_TYPESAFE_BY_RCU, False),
    (F.SLAB_RED_ZONE | F.SLAB_HWCACHE_ALIGN, False),
    (F.SLAB_POISON | F.SLAB_RED_ZONE, False),
    (DEBUG, False),
    (DEBUG | F.SLAB_HWCACHE_ALIGN, True),
    (F.SLAB_CONSISTENCY_CHECKS, False),
    (F.SLAB_TRACE, False),
    (F.SLAB_ACCOUNT | F.SLAB_RECLAIM_ACCOUNT, False),
]
NR_CPU_IDS = [1, 2, 4, 8, 64, 256]
# (slub_min_objects, slub_min_order, slub_max_order)
SLUB_PARAMS = [(0, 0, 3), (0, 0, 0), (0, 0, 1), (16, 0, 3), (0, 1, 3), (0, 2, 5), (4, 0, 10)]


def _ctor(*_args):
    return None


def core_geometry(m, size, align, flags, ctor, name="g"):
    """Create a cache on the core machine, read its geometry, destroy it."""
    c = m.kmem_cache_create(name, size, align=align, flags=flags,
                            ctor=_ctor if ctor else None)
    try:
        got = {k: getattr(c, k) for k in KEYS}
        got["min"] = tuple(got["min"])
    finally:
        m.kmem_cache_destroy(c)
    return got


_machines = {}


def core_machine(nr_cpu_ids, slub=(0, 0, 3)):
    key = (nr_cpu_ids, slub)
    if key not in _machines:
        _machines[key] = Machine(cpus=1, nr_cpu_ids=nr_cpu_ids, memory=16 << 20,
                                 slub_min_objects=slub[0], slub_min_order=slub[1],
                                 slub_max_order=slub[2])
    return _machines[key]


def model_or_error(size, align, flags, ctor, nr_cpu_ids, slub):
    try:
        return geometry(size, align, flags, ctor, nr_cpu_ids=nr_cpu_ids,
                        slub_min_objects=slub[0], slub_min_order=slub[1],
                        slub_max_order=slub[2])
    except ValueError as e:
        return e


def core_or_error(size, align, flags, ctor, nr_cpu_ids, slub):
    m = core_machine(nr_cpu_ids, slub)
    try:
        return core_geometry(m, size, align, flags, ctor)
    except (ValueError, MemoryError, OverflowError) as e:
        return e


def compare(size, align, flags, ctor, nr_cpu_ids, slub=(0, 0, 3)):
    """None if core and model agree, else a one-line description."""
    want = model_or_error(size, align, flags, ctor, nr_cpu_ids, slub)
    got = core_or_error(size, align, flags, ctor, nr_cpu_ids, slub)
    case = (f"size={size} align={align} flags={flags:#x} ctor={ctor} "
            f"nr_cpu_ids={nr_cpu_ids} slub(min_objects,min_order,max_order)={slub}")
    if isinstance(want, Exception) or isinstance(got, Exception):
        if isinstance(want, Exception) and isinstance(got, Exception):
            return None
        return f"{case}: model -> {want!r}, core -> {got!r}"
    diff = {k: (got[k], want[k]) for k in KEYS if got[k] != want[k]}
    if diff:
        return f"{case}: (core, model) differ in {diff}"
    return None


# --------------------------------------------------------------------------
# Hand-computed anchors (independent of the model)
# --------------------------------------------------------------------------

# Each row: (size, align, flags, ctor, nr_cpu_ids, expected fields).  The
# derivation is in the comment above the row.
ANCHORS = [
    # sk_buff-like, Brouer's "kmem fastpath reuse" cache: HWCACHE_ALIGN ->
    # align 64 (256 > 32); size 256; min_objects = 4*(fls(8)+1) = 20;
    # start order get_order(20*256 = 5120) = 1; 8192 % 256 = 0 <= 8192/16 ->
    # order 1, 32 objects; min = (get_order(256)=0, 16); cpu_partial 13
    # (256 <= size < 1024); min_partial max(5, ilog2(256)/2 = 4) = 5.
    (256, 0, F.SLAB_HWCACHE_ALIGN, False, 8,
     dict(size=256, align=64, order=1, objects_per_slab=32, min=(0, 16),
          cpu_partial=13, min_partial=5, offset=0, inuse=256)),
    # dentry-like, 192 B HWCACHE_ALIGN on 2 CPUs: align 64 (192 > 32);
    # size = ALIGN(192, 64) = 192; min_objects = 4*(fls(2)+1) = 12;
    # start order get_order(12*192 = 2304) = 0; 4096 % 192 = 64 <= 4096/16 = 256
    # -> order 0, 21 objects; cpu_partial 30 (< 256); min_partial 5.
    (192, 0, F.SLAB_HWCACHE_ALIGN, False, 2,
     dict(size=192, align=64, order=0, objects_per_slab=21, min=(0, 21),
          cpu_partial=30, min_partial=5)),
    # HWCACHE_ALIGN halves the line for small objects: 24 B -> ralign 64 ->
    # 32 (24 <= 32) -> stops (24 > 16): align 32, size 32, 128 per page.
    (24, 0, F.SLAB_HWCACHE_ALIGN, False, 1,
     dict(size=32, align=32, order=0, objects_per_slab=128)),
    # 8 B with HWCACHE_ALIGN: 64 -> 32 -> 16 -> 8 (8 <= 8 halves to 8, then
    # 8 > 4 stops): align 8, size 8, 512 per page.
    (8, 0, F.SLAB_HWCACHE_ALIGN, False, 1,
     dict(size=8, align=8, order=0, objects_per_slab=512, min_partial=5,
          cpu_partial=30)),
    # kmalloc-96 on one CPU: min_objects 8, order 0, 4096 // 96 = 42.
    (96, 0, 0, False, 1, dict(size=96, align=8, order=0, objects_per_slab=42)),
    # kmalloc-1024, 1 CPU: min_objects 8 -> get_order(8192) = 1, rem 0 ->
    # order 1, 8 objects; cpu_partial 6 (>= 1024); min_partial 5 (ilog2 10/2).
    (1024, 0, 0, False, 1,
     dict(order=1, objects_per_slab=8, cpu_partial=6, min_partial=5)),
    # kmalloc-2048: min_partial = max(5, 11 // 2) = 5.
    (2048, 0, 0, False, 1, dict(order=2, objects_per_slab=8, min_partial=5)),
    # kmalloc-4096: max_objects at order 3 = 8 -> min_objects 8 ->
    # order 3, 8 objects; cpu_partial 2 (>= PAGE_SIZE); min_partial 12/2 = 6.
    (4096, 0, 0, False, 1,
     dict(order=3, objects_per_slab=8, cpu_partial=2, min_partial=6, min=(0, 1))),
    # kmalloc-8192: max_objects 4 -> order 3, 4 objects, min (1, 1);
    # min_partial 13/2 = 6.
    (8192, 0, 0, False, 4,
     dict(order=3, objects_per_slab=4, cpu_partial=2, min_partial=6, min=(1, 1))),
    # 1 MiB: one object needs order 8 > slub_max_order 3, so the MAX_ORDER
    # fallback gives order 8; min_partial = ilog2(2^20)/2 = 10 (MAX_PARTIAL).
    (1 << 20, 0, 0, False, 1,
     dict(order=8, objects_per_slab=1, min_partial=10, cpu_partial=2)),
    # 4 MiB (KMALLOC_MAX_SIZE) is accepted: order 10, one object.
    (4 << 20, 0, 0, False, 1, dict(order=10, objects_per_slab=1, min=(10, 1))),
    # Constructor: free pointer moved after the object: offset = 64,
    # size = 72; 56 per page.
    (64, 0, 0, True, 1, dict(offset=64, inuse=64, size=72, objects_per_slab=56)),
    # SLAB_TYPESAFE_BY_RCU likewise moves the free pointer.
    (100, 0, F.SLAB_TYPESAFE_BY_RCU, False, 1,
     dict(inuse=104, offset=104, size=112, cpu_partial=30)),
    # POISON: __OBJECT_POISON, pointer moved: 100 -> 104, offset 104, 112;
    # debug -> cpu_partial 0.
    (100, 0, F.SLAB_POISON, False, 1,
     dict(inuse=104, offset=104, size=112, cpu_partial=0)),
    # RED_ZONE on a word-aligned size adds a word before the metadata
    # (inuse 264), POISON moves the free pointer (offset 264, 272), the
    # trailing red-zone word makes 280; 4096 // 280 = 14 (rem 176 <= 256).
    (256, 0, DEBUG, False, 2,
     dict(inuse=264, offset=264, size=280, order=0, objects_per_slab=14,
          cpu_partial=0, min_partial=5)),
    # RED_ZONE alone on a non-word-aligned size: 100 -> 104 leaves room, no
    # extra word; offset stays 0; + trailing word = 112.
    (100, 0, F.SLAB_RED_ZONE, False, 1, dict(inuse=104, offset=0, size=112)),
    # Explicit align wins over the object size: 100 @ 128 -> 128.
    (100, 128, 0, False, 1, dict(size=128, align=128, objects_per_slab=32)),
    # 5000 B on 2 CPUs: max_objects at order 3 = 6 -> min_objects 6;
    # get_order(30000) = 3: rem 2768 > 32768/16 = 2048; fraction 8: 2768 <=
    # 4096 -> order 3, 6 objects; min (get_order(5000) = 1, 1); min_partial
    # ilog2(5000) = 12 -> 6; cpu_partial 2.
    (5000, 0, 0, False, 2,
     dict(order=3, objects_per_slab=6, min=(1, 1), min_partial=6, cpu_partial=2)),
]


def _check_anchor(got, expected):
    for k, v in expected.items():
        assert got[k] == v, (k, got[k], v)


@pytest.mark.parametrize("size,align,flags,ctor,nr,expected", ANCHORS)
def test_anchor_model(size, align, flags, ctor, nr, expected):
    _check_anchor(geometry(size, align, flags, ctor, nr_cpu_ids=nr), expected)


@needs_core
@pytest.mark.parametrize("size,align,flags,ctor,nr,expected", ANCHORS)
def test_anchor_core(size, align, flags, ctor, nr, expected):
    _check_anchor(core_geometry(core_machine(nr), size, align, flags, ctor), expected)


def test_min_partial_and_cpu_partial_defaults_model():
    # set_min_partial(ilog2(size)/2) clamped to [5, 10].
    for size, mp in [(8, 5), (512, 5), (2048, 5), (4096, 6), (8192, 6), (16384, 7),
                     (65536, 8), (262144, 9), (1 << 20, 10), (4 << 20, 10)]:
        assert geometry(size)["min_partial"] == mp, size
    # cpu_partial by s->size.
    for size, cp in [(8, 30), (248, 30), (256, 13), (1016, 13), (1024, 6),
                     (4088, 6), (4096, 2), (100000, 2)]:
        assert geometry(size)["cpu_partial"] == cp, size
    for dbg in (F.SLAB_RED_ZONE, F.SLAB_POISON, F.SLAB_TRACE, F.SLAB_CONSISTENCY_CHECKS):
        assert geometry(64, flags=dbg)["cpu_partial"] == 0


def test_min_objects_tracks_nr_cpu_ids_model():
    # min_objects = 4 * (fls(nr_cpu_ids) + 1): 8, 12, 16, 20, 32, 40 for
    # 1, 2, 4, 8, 64, 256.  For 512-byte objects min_objects * 512 is 4096,
    # 6144, 8192, 10240, 16384, 20480 bytes, each a whole number of objects
    # at the smallest order holding it: orders 0, 1, 1, 2, 2, 3.
    for nr, order in zip([1, 2, 4, 8, 64, 256], [0, 1, 1, 2, 2, 3]):
        assert geometry(512, nr_cpu_ids=nr)["order"] == order, nr


def test_create_rejects_model():
    for size, align in [(7, 0), (0, 0), ((4 << 20) + 1, 0), (64, 3), (64, 24)]:
        with pytest.raises(ValueError):
            geometry(size, align)
    # 4 MiB with a red zone no longer fits order 10: calculate_order -ENOSYS.
    with pytest.raises(ValueError):
        geometry(4 << 20, flags=F.SLAB_RED_ZONE)


@needs_core
def test_create_rejects_core():
    m = core_machine(1)
    for size, align in [(7, 0), ((4 << 20) + 1, 0), (64, 3), (64, 24)]:
        with pytest.raises(ValueError):
            m.kmem_cache_create("bad", size, align=align)
    with pytest.raises(ValueError):
        m.kmem_cache_create("bad", 4 << 20, flags=F.SLAB_RED_ZONE)


def test_store_user_unsupported_unless_track_size_given():
    # sizeof(struct track) on x86_64 is 152 with CONFIG_STACKTRACE
    # (addr, addrs[16], cpu, pid, when) and 24 without: a config choice, so
    # the model only computes it when told.  64 B + POISON + STORE_USER(152):
    # inuse 64, offset 64, 72 + 2*152 = 376.
    with pytest.raises(ValueError):
        geometry(64, flags=F.SLAB_STORE_USER)
    g = model.calculate_sizes(64, 8, F.SLAB_POISON | F.SLAB_STORE_USER, False, track_size=152)
    assert (g["inuse"], g["offset"], g["size"]) == (64, 64, 376)


@needs_core
def test_store_user_unsupported_core():
    with pytest.raises(ValueError):
        core_machine(1).kmem_cache_create("u", 64, flags=F.SLAB_STORE_USER)


@needs_core
@pytest.mark.parametrize("slub", [(0, 0, 3), (0, 0, 1), (16, 0, 3), (0, 1, 3)])
def test_slub_parameters_core_anchor(slub):
    # slub_max_order=1: 256 B on 8 CPUs: min_objects min(20, 8192/256 = 32)
    # = 20 -> order 1 already fits -> 32 objects.  slub_min_order=1 -> at
    # least order 1.  slub_min_objects=16 with 512 B: 8192 -> order 1.
    m = core_machine(8, slub)
    g = core_geometry(m, 512, 0, 0, False)
    want = geometry(512, nr_cpu_ids=8, slub_min_objects=slub[0],
                    slub_min_order=slub[1], slub_max_order=slub[2])
    assert g == want


# --------------------------------------------------------------------------
# Grid and random: core against model
# --------------------------------------------------------------------------

@needs_core
@pytest.mark.parametrize("nr_cpu_ids", NR_CPU_IDS)
def test_grid_core_vs_model(nr_cpu_ids):
    bad = []
    for size, align, (flags, ctor) in itertools.product(SIZES, ALIGNS, FLAG_CASES):
        d = compare(size, align, flags, ctor, nr_cpu_ids)
        if d:
            bad.append(d)
    assert not bad, f"{len(bad)} mismatches, first ones:\n" + "\n".join(bad[:25])


@needs_core
@pytest.mark.parametrize("slub", SLUB_PARAMS[1:])
def test_grid_slub_parameters_core_vs_model(slub):
    bad = []
    for size, (flags, ctor), nr in itertools.product(SIZES, FLAG_CASES[:6], [1, 4, 64]):
        d = compare(size, 0, flags, ctor, nr, slub)
        if d:
            bad.append(d)
    assert not bad, f"{len(bad)} mismatches, first ones:\n" + "\n".join(bad[:25])


@needs_core
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.one_of(st.integers(8, 4096), st.integers(4097, 65536),
                      st.integers(8, 4 << 20)),
       align=st.sampled_from(ALIGNS),
       case=st.sampled_from(FLAG_CASES),
       nr=st.sampled_from(NR_CPU_IDS + [3, 5, 16, 128, 1024]),
       slub=st.sampled_from(SLUB_PARAMS))
def test_random_core_vs_model(size, align, case, nr, slub):
    d = compare(size, align, case[0], case[1], nr, slub)
    assert d is None, d
