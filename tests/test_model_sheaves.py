"""Linux 7.0's percpu sheaves and barn: the reference model alone, then the
Cython core against it step by step.

Part 1 sets up situations by hand on ``RefMachine(slub="7.0")`` and checks
what 7.0's mm/slub.c does in them (the function that decides is named in
each test): the sheaf capacity, alloc_from_pcs / __pcs_replace_empty_main
(spare swap, barn exchange, refill only when the allocation may block),
free_to_pcs / __pcs_replace_full_main (barn empty sheaf, spare swap, barn
trade, E2BIG and ENOMEM), refill_objects, __slab_free, the bulk calls,
flush_all, kmem_cache_shrink and the rcu sheaves.

Part 2 is a hypothesis ``RuleBasedStateMachine`` that drives a
``slubcy.Machine(slub="7.0")`` and the model with the same operations and,
after every allocator call, compares the touched cache: every slab (inuse,
objects, freelist), the node partial list, each vCPU's main / spare /
rcu_free sheaf (contents in order), the barn's full sheaves and its count
of empty ones, the sheaves in flight to RCU, and the 26 statistics per
vCPU (``cache_stat_cpu_info``) and in total (``cache_stat_info``, which adds
what was counted on no vCPU).

Slab identities: the core names a slab by its page address, the model by a
creation counter.  A 7.0 call can create several slabs (a refill), so new
slabs are paired by position: the objects the call returned, then the
sheaves, the barn and the node partial list are walked side by side and a
new page meets its new model slab at the same place.
"""

import time

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

from slubcy import model
from slubcy.model import RefMachine

import slubcy
Machine = slubcy.Machine

DEBUG = model.SLAB_POISON | model.SLAB_RED_ZONE | model.SLAB_CONSISTENCY_CHECKS


def m70(cpus=2):
    return RefMachine(cpus=cpus, slub="7.0")


def nz(d):
    """The non-zero items of a {stat: count} dict."""
    return {k: v for k, v in d.items() if v}


def cpu_stats(m, s, cpu):
    return nz({k: v[cpu] for k, v in m.cache_stat_cpu_info(s).items()})


def sheaves(m, s):
    return m.cache_state_info(s)["sheaves"]


# ==========================================================================
# Part 1: the model alone
# ==========================================================================

def test_stat_items_match_core():
    from slubcy.machine import STAT_ITEMS_70
    assert model.STAT_ITEMS_70 == STAT_ITEMS_70


@pytest.mark.parametrize("size,flags,cap", [
    (5000, 0, 4),           # >= PAGE_SIZE: 4 -> 32 + 32 = 64: 4
    (4096, 0, 4),
    (1024, 0, 12),          # 12 -> 32 + 96 = 128: 12
    (256, 0, 28),           # 26 -> 32 + 208 = 240, bucket 256: 28
    (192, model.SLAB_HWCACHE_ALIGN, 60),   # 60 -> 512: 60
    (8, 0, 60),
    (256, DEBUG, 0),        # debug caches get no sheaves
])
def test_calculate_sheaf_capacity(size, flags, cap):
    m = m70()
    s = m.kmem_cache_create("c", size, flags=flags)
    assert s.sheaf_capacity == cap
    assert sheaves(m, s)["capacity"] == cap


def test_sheaf_capacity_argument_is_a_minimum():
    m = m70()
    assert m.kmem_cache_create("a", 5000, sheaf_capacity=32).sheaf_capacity == 32
    assert m.kmem_cache_create("b", 5000, sheaf_capacity=2).sheaf_capacity == 4
    with pytest.raises(ValueError):
        RefMachine(cpus=1).kmem_cache_create("c", 64, sheaf_capacity=8)


def test_default_generation_is_40():
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("a", 64)
    assert not isinstance(s, model.Cache70)
    assert "sheaves" not in m.cache_state_info(s)
    with pytest.raises(ValueError):
        RefMachine(cpus=1, slub="6.1")


def test_cache_70_geometry():
    """7.0 keeps calculate_order; the free pointer moves into the middle of
    the object (5.7+) unless something lives there; cpu_partial reads 0."""
    m = m70()
    s = m.kmem_cache_create("a", 192, flags=model.SLAB_HWCACHE_ALIGN)
    assert (s.objects_per_slab, s.offset, s.cpu_partial, s.min_partial) == (21, 96, 0, 5)
    d = m.kmem_cache_create("d", 256, flags=DEBUG)
    assert d.offset == d.inuse      # poison: after the object


def test_init_percpu_sheaves_counts_on_no_cpu():
    """init_percpu_sheaves(): one empty main per vCPU (SHEAF_ALLOC, on no
    vCPU); no barn sheaf yet."""
    m = m70(cpus=3)
    s = m.kmem_cache_create("a", 5000)
    assert nz(m.cache_stat_info(s)) == {"SHEAF_ALLOC": 3}
    assert all(not any(v) for v in m.cache_stat_cpu_info(s).values())
    sh = sheaves(m, s)
    assert sh["cpus"] == [{"main": [], "spare": None, "rcu_free": None}] * 3
    assert (sh["barn_full"], sh["barn_empty"], sh["in_rcu"]) == ([], 0, 0)


def test_first_alloc_refills_a_new_sheaf():
    """__pcs_replace_empty_main(): no spare, no barn sheaf (BARN_GET_FAIL),
    no empty barn sheaf: alloc_full_sheaf() takes capacity objects from a
    new slab (its rest to the partial head); the empty main goes to the
    barn, the full sheaf becomes main and its top object is returned."""
    m = m70()
    s = m.kmem_cache_create("a", 5000)          # 6 objects/slab, capacity 4
    o = m.kmem_cache_alloc(s, 0)
    assert o == (0, 3)
    st_ = m.cache_state_info(s)
    assert st_["sheaves"]["cpus"][0]["main"] == [(0, 0), (0, 1), (0, 2)]
    assert st_["sheaves"]["barn_empty"] == 1
    assert st_["node"]["partial"] == [0]
    assert st_["slabs"][0] == {"inuse": 4, "objects": 6, "frozen": False,
                               "freelist": [(0, 4), (0, 5)]}
    assert cpu_stats(m, s, 0) == {"ALLOC_FASTPATH": 1, "BARN_GET_FAIL": 1, "SHEAF_ALLOC": 1,
                                  "SHEAF_REFILL": 4, "ALLOC_SLAB": 1}
    m.validate()


def test_refill_takes_partial_slabs_whole_and_returns_surplus():
    """refill_objects(): get_partial_node_bulk() isolates partial slabs from
    the head; get_freelist_nofreeze() takes each whole freelist and the
    surplus goes back through __slab_free (the slab was full: node partial
    tail, FREE_ADD_PARTIAL); then new slabs."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    # slab 0: 4 to the sheaf, 2 on the slab; take the 4, then the next
    # refill takes slab 0's two and 2 of a new slab 1 (rest: partial head)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(5)]
    assert objs == [(0, 3), (0, 2), (0, 1), (0, 0), (1, 1)]
    st_ = m.cache_state_info(s)
    assert st_["sheaves"]["cpus"][0]["main"] == [(0, 4), (0, 5), (1, 0)]
    assert st_["node"]["partial"] == [1]
    assert st_["slabs"][0]["freelist"] == [] and st_["slabs"][0]["inuse"] == 6
    assert st_["slabs"][1]["freelist"] == [(1, 2), (1, 3), (1, 4), (1, 5)]
    # free 3 objects of slab 0 to the slab (a debug-free path is not needed:
    # flush the main, then free): make slab 1 hold more than the room
    m.flush_all(s)
    # main flushed: slab 0 gets (0, 4), (0, 5) back, slab 1 (1, 0)
    st_ = m.cache_state_info(s)
    assert st_["node"]["partial"] == [1, 0]      # 0 was full: tail
    assert st_["slabs"][1]["freelist"][0] == (1, 0)
    m.kmem_cache_free(s, objs[4], 0)              # onto the empty main
    for _ in range(2):
        m.kmem_cache_alloc(s, 0)
    # the first pops (1, 1); then main is dry: the refill isolates slab 1
    # (5 free >= 4), takes its whole freelist, keeps 4 and the surplus
    # (1, 5) goes back through __slab_free: full -> partial TAIL
    st_ = m.cache_state_info(s)
    assert st_["node"]["partial"] == [0, 1]
    assert st_["slabs"][1]["freelist"] == [(1, 5)]
    assert st_["sheaves"]["cpus"][0]["main"] == [(1, 0), (1, 2), (1, 3)]
    assert cpu_stats(m, s, 0)["FREE_ADD_PARTIAL"] == 2
    m.validate()


def test_empty_main_swaps_with_nonempty_spare():
    """__pcs_replace_empty_main(): a spare with objects swaps in (no stat)."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(8)]
    for o in objs:                                # main 4, then spare: 8 frees
        m.kmem_cache_free(s, o, 0)
    sh = sheaves(m, s)["cpus"][0]
    assert len(sh["main"]) == 4 and len(sh["spare"]) == 4
    before = cpu_stats(m, s, 0)
    for _ in range(5):
        m.kmem_cache_alloc(s, 0)
    sh = sheaves(m, s)["cpus"][0]
    # main emptied after 4, the full spare swapped in, one more popped
    assert len(sh["main"]) == 3 and sh["spare"] == []
    after = cpu_stats(m, s, 0)
    assert after["ALLOC_FASTPATH"] - before.get("ALLOC_FASTPATH", 0) == 5
    assert after.get("BARN_GET", 0) == before.get("BARN_GET", 0)
    m.validate()


def _fill_barn(m, s, cpu, nfull):
    """Free enough objects on ``cpu`` that the barn gets ``nfull`` full
    sheaves (main and spare full too).  Returns the objects still live."""
    cap = s.sheaf_capacity
    objs = [m.kmem_cache_alloc(s, (cpu + 1) % m.cpus) for _ in range(cap * (nfull + 2) + 5)]
    m.flush_all(s)
    for o in objs[:cap * (nfull + 2)]:
        m.kmem_cache_free(s, o, cpu)
    return objs[cap * (nfull + 2):]


def test_full_main_spare_and_barn_exchange():
    """__pcs_replace_full_main(): no spare and an empty barn sheaf: the
    empty one becomes main, the full main the spare; then, spare full,
    barn_replace_full_sheaf() trades the full main for an empty barn sheaf
    (BARN_PUT); without an empty barn sheaf (ENOMEM) a new one is allocated
    and the full main barned over the limit (BARN_PUT)."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 1) for _ in range(20)]
    m.flush_all(s)
    st0 = cpu_stats(m, s, 0)
    assert st0 == {}
    for o in objs[:4]:
        m.kmem_cache_free(s, o, 0)            # main full
    m.kmem_cache_free(s, objs[4], 0)          # barn has an empty sheaf (cpu 1's old main)
    sh = sheaves(m, s)
    assert sh["cpus"][0]["spare"] == objs[:4] and sh["cpus"][0]["main"] == [objs[4]]
    for o in objs[5:8]:
        m.kmem_cache_free(s, o, 0)            # main full again
    assert sheaves(m, s)["barn_empty"] == 0     # the one empty barn sheaf went to main
    m.kmem_cache_free(s, objs[8], 0)            # spare full, ENOMEM: a new sheaf
    sh = sheaves(m, s)
    assert sh["barn_full"] == [objs[4:8]]
    assert sh["cpus"][0]["spare"] == objs[:4]
    assert cpu_stats(m, s, 0) == {"FREE_FASTPATH": 9, "SHEAF_ALLOC": 1, "BARN_PUT": 1}
    assert sh["cpus"][0]["main"] == [objs[8]]
    m.validate()


def test_barn_replace_full_sheaf_enomem_allocates():
    """ENOMEM (no empty barn sheaf): alloc_empty_sheaf() and
    __pcs_install_empty_sheaf(): the full main goes to the barn over the
    limit check (BARN_PUT), the new sheaf becomes main."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(12)]
    m.kmem_cache_shrink(s)                    # barn emptied, main flushed
    assert sheaves(m, s)["barn_empty"] == 0
    base = cpu_stats(m, s, 0)
    for o in objs[:9]:
        m.kmem_cache_free(s, o, 0)
    sh = sheaves(m, s)
    assert sh["cpus"][0]["main"] == [objs[8]]
    assert sh["cpus"][0]["spare"] == objs[:4]
    assert sh["barn_full"] == [objs[4:8]]
    d = {k: v - base.get(k, 0) for k, v in cpu_stats(m, s, 0).items()}
    assert nz(d) == {"FREE_FASTPATH": 9, "SHEAF_ALLOC": 2, "BARN_PUT": 1}
    m.validate()


def test_barn_e2big_flushes_the_spare():
    """E2BIG (MAX_FULL_SHEAVES full sheaves in the barn): BARN_PUT_FAIL, the
    full spare is flushed to its slabs (SHEAF_FLUSH) and installed as the
    empty main; the full main becomes the spare."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    cap = s.sheaf_capacity
    live = _fill_barn(m, s, 0, model.MAX_FULL_SHEAVES)
    sh = sheaves(m, s)
    assert len(sh["barn_full"]) == model.MAX_FULL_SHEAVES
    main, spare = sh["cpus"][0]["main"], sh["cpus"][0]["spare"]
    assert len(main) == cap and len(spare) == cap
    st_ = cpu_stats(m, s, 0)
    m.kmem_cache_free(s, live[0], 0)
    sh = sheaves(m, s)
    assert sh["cpus"][0]["main"] == [live[0]]
    assert sh["cpus"][0]["spare"] == main
    assert len(sh["barn_full"]) == model.MAX_FULL_SHEAVES
    d = {k: v - st_.get(k, 0) for k, v in cpu_stats(m, s, 0).items()}
    assert nz(d) == {"FREE_FASTPATH": 1, "BARN_PUT_FAIL": 1, "SHEAF_FLUSH": cap,
                     **({"FREE_ADD_PARTIAL": d["FREE_ADD_PARTIAL"]} if d.get("FREE_ADD_PARTIAL")
                        else {}),
                     **({"FREE_SLAB": d["FREE_SLAB"]} if d.get("FREE_SLAB") else {}),
                     **({"FREE_REMOVE_PARTIAL": d["FREE_REMOVE_PARTIAL"]}
                        if d.get("FREE_REMOVE_PARTIAL") else {})}
    for o in spare:
        assert o in m.cache_state_info(s)["slabs"].get(o[0], {"freelist": [o]})["freelist"]
    m.validate()


def test_barn_get_takes_a_full_sheaf():
    """__pcs_replace_empty_main(): main and spare empty, a full barn sheaf:
    barn_replace_empty_sheaf() trades (BARN_GET), no refill."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    _fill_barn(m, s, 0, 2)
    full = sheaves(m, s)["barn_full"]
    assert len(full) == 2
    st_ = cpu_stats(m, s, 1)
    o = m.kmem_cache_alloc(s, 1)
    assert o == full[0][-1]                   # the head sheaf's top
    d = {k: v - st_.get(k, 0) for k, v in cpu_stats(m, s, 1).items()}
    assert nz(d) == {"ALLOC_FASTPATH": 1, "BARN_GET": 1}
    assert sheaves(m, s)["barn_full"] == full[1:]
    m.validate()


def test_nowait_alloc_never_refills():
    """__pcs_replace_empty_main(): an allocation that may not block gets
    no refill: BARN_GET_FAIL, ALLOC_SLOWPATH, ___slab_alloc() takes ONE
    object (a new slab: its rest to the partial head)."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    o = m.kmem_cache_alloc(s, 0, nowait=True)
    assert o == (0, 0)
    st_ = m.cache_state_info(s)
    assert st_["sheaves"]["cpus"][0]["main"] == []
    assert st_["node"]["partial"] == [0]
    assert st_["slabs"][0]["inuse"] == 1
    assert cpu_stats(m, s, 0) == {"BARN_GET_FAIL": 1, "ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1}
    # the next takes the partial head's first free object
    assert m.kmem_cache_alloc(s, 0, nowait=True) == (0, 1)
    m.validate()


def test_debug_cache_has_no_sheaves():
    """A cache without sheaves (the bootstrap sheaf, capacity 0): every
    allocation ALLOC_SLOWPATH (no BARN_GET_FAIL), every free FREE_SLOWPATH;
    __slab_free: full -> partial tail (FREE_ADD_PARTIAL), empty with
    nr_partial >= min_partial -> discarded (FREE_REMOVE_PARTIAL, FREE_SLAB)."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("d", 256, flags=DEBUG)
    n = s.objects_per_slab
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(n * 7)]
    assert cpu_stats(m, s, 0) == {"ALLOC_SLOWPATH": 7 * n, "ALLOC_SLAB": 7}
    assert m.cache_state_info(s)["node"]["partial"] == []
    for o in objs:
        m.kmem_cache_free(s, o, 0)
    # a slab emptying while nr_partial (itself included) >= min_partial goes
    st_ = m.cache_state_info(s)
    assert st_["node"]["nr_slabs"] == s.min_partial - 1
    c = cpu_stats(m, s, 0)
    assert c["FREE_SLOWPATH"] == 7 * n and c["FREE_ADD_PARTIAL"] == 7
    assert c["FREE_SLAB"] == c["FREE_REMOVE_PARTIAL"] == 7 - s.min_partial + 1
    assert sheaves(m, s)["cpus"][0] == {"main": [], "spare": None, "rcu_free": None}
    m.validate()


def test_build_detached_freelist_chains_from_the_end_with_lookahead():
    """build_detached_freelist(): the last object's slab first, its objects
    chained in array order; at most 3 objects of other slabs looked past."""
    bdf = RefMachine._build_detached_freelist
    p = [(1, 0), (2, 0), (1, 1), (3, 0), (4, 0), (5, 0), (1, 2)]
    size, sid, chain = bdf(len(p), p)
    # from the end: (1, 2); past (5, 0), (4, 0), then (3, 0) is the third: stop
    assert (sid, chain) == (1, [(1, 2)])
    assert size == 6                          # first skipped: index 5, + 1
    size, sid, chain = bdf(size, p)
    assert (sid, chain) == (5, [(5, 0)])
    p = [(1, 0), (2, 0), (1, 1), (1, 2)]
    size, sid, chain = bdf(len(p), p)
    assert (sid, chain, size) == (1, [(1, 0), (1, 1), (1, 2)], 2)
    assert p == [None, (2, 0), None, None]


def test_flush_all_flushes_spare_and_main():
    """pcs_flush_all() on every vCPU in use: the spare flushed and freed
    (SHEAF_FLUSH, SHEAF_FREE), main flushed in PCS_BATCH_MAX batches from
    the top (it stays); the barn is untouched."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 192, flags=model.SLAB_HWCACHE_ALIGN)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(130)]
    for o in objs:
        m.kmem_cache_free(s, o, 1)
    sh = sheaves(m, s)
    nbarn = len(sh["barn_full"])
    held = len(sh["cpus"][1]["main"]) + len(sh["cpus"][1]["spare"] or [])
    held0 = len(sh["cpus"][0]["main"]) + len(sh["cpus"][0]["spare"] or [])
    before1 = cpu_stats(m, s, 1)
    m.flush_all(s)
    sh = sheaves(m, s)
    assert [c["main"] for c in sh["cpus"]] == [[], []]
    assert [c["spare"] for c in sh["cpus"]] == [None, None]
    assert len(sh["barn_full"]) == nbarn
    d = {k: v - before1.get(k, 0) for k, v in cpu_stats(m, s, 1).items()}
    assert d["SHEAF_FLUSH"] == held and d["SHEAF_FREE"] == 1
    assert cpu_stats(m, s, 0).get("SHEAF_FLUSH", 0) == held0
    m.validate()


def test_shrink_flushes_barn_and_discards_empty_slabs():
    """__kmem_cache_shrink() of 7.0: flush_all, barn_shrink (on no vCPU:
    full sheaves flushed, every sheaf freed), every empty partial slab
    discarded."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    live = _fill_barn(m, s, 0, 3)
    for o in live:
        m.kmem_cache_free(s, o, 1)
    assert m.kmem_cache_shrink(s) == 0
    st_ = m.cache_state_info(s)
    assert st_["slabs"] == {} and st_["node"]["partial"] == []
    assert st_["sheaves"]["barn_full"] == [] and st_["sheaves"]["barn_empty"] == 0
    total = m.cache_stat_info(s)
    percpu = {k: sum(v) for k, v in m.cache_stat_cpu_info(s).items()}
    # the barn's 3 full sheaves were flushed on no vCPU
    assert total["SHEAF_FLUSH"] - percpu["SHEAF_FLUSH"] == 3 * s.sheaf_capacity
    assert total["SHEAF_ALLOC"] == total["SHEAF_FREE"] + 2      # the two mains remain
    m.validate()


def test_bulk_alloc_uses_sheaves_then_slabs():
    """kmem_cache_alloc_bulk(): main's top block copied in order, the spare
    or a full barn sheaf swapped in (BARN_GET), never a refill: with none
    left, BARN_GET_FAIL and the rest by refill_objects().  ALLOC_FASTPATH
    per object from the sheaves."""
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    _fill_barn(m, s, 0, 1)
    sh = sheaves(m, s)
    main, spare, barn = sh["cpus"][0]["main"], sh["cpus"][0]["spare"], sh["barn_full"][0]
    before = cpu_stats(m, s, 0)
    got = m.kmem_cache_alloc_bulk(s, 14, 0)
    assert got[:12] == main + spare + barn
    d = {k: v - before.get(k, 0) for k, v in cpu_stats(m, s, 0).items()}
    assert d["ALLOC_FASTPATH"] == 12 and d["BARN_GET"] == 1 and d["BARN_GET_FAIL"] == 1
    assert "SHEAF_REFILL" not in nz(d)
    m.validate()


def test_bulk_free_fills_sheaves_in_array_order():
    """kmem_cache_free_bulk(): as many objects as main has room for, in
    array order; a full main with no spare and no empty barn sheaf sends
    the rest straight to the slabs (free_to_pcs_bulk's no_empty), without
    dropping the lock or allocating a sheaf."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    objs = m.kmem_cache_alloc_bulk(s, 10, 0)
    m.kmem_cache_free_bulk(s, objs, 0)
    sh = sheaves(m, s)["cpus"][0]
    assert sh["main"] == objs[:4] and sh["spare"] is None
    assert sheaves(m, s)["barn_full"] == []
    # (the rest's slabs were full: back on the node list)
    assert nz(cpu_stats(m, s, 0)) == {"FREE_FASTPATH": 4, "ALLOC_SLAB": 2, "BARN_GET_FAIL": 1,
                                      "FREE_ADD_PARTIAL": 1}
    m.validate()


def test_bulk_free_without_sheaves_detaches_freelists():
    """A cache without sheaves: the whole array to __slab_free, one call per
    detached freelist; no FREE_SLOWPATH."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("d", 256, flags=DEBUG)
    objs = m.kmem_cache_alloc_bulk(s, 20, 0)       # 14 + 6 of two slabs
    assert [o[0] for o in objs] == [0] * 14 + [1] * 6
    m.kmem_cache_free_bulk(s, objs[:3] + objs[14:16], 0)
    st_ = m.cache_state_info(s)
    assert st_["slabs"][0]["freelist"] == objs[:3]
    assert st_["slabs"][1]["freelist"][:2] == objs[14:16]
    assert "FREE_SLOWPATH" not in cpu_stats(m, s, 0)
    m.validate()


def test_rcu_sheaf_goes_to_barn_after_grace_period():
    """__kfree_rcu_sheaf(): objects onto the rcu_free sheaf (an empty barn
    sheaf here); a full one goes to call_rcu and, after the grace period,
    rcu_free_sheaf() barns it as full (BARN_PUT on no vCPU)."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(5)]
    for o in objs[:3]:
        m.kfree_rcu(s, o, 0)
    sh = sheaves(m, s)
    assert sh["cpus"][0]["rcu_free"] == objs[:3] and sh["barn_empty"] == 0
    m.kfree_rcu(s, objs[3], 0)
    sh = sheaves(m, s)
    assert sh["cpus"][0]["rcu_free"] is None and sh["in_rcu"] == 1
    assert cpu_stats(m, s, 0)["FREE_RCU_SHEAF"] == 4
    m.rcu_barrier()
    sh = sheaves(m, s)
    assert sh["in_rcu"] == 0 and sh["barn_full"] == [objs[:4]]
    assert m.cache_stat_info(s)["BARN_PUT"] == 1
    m.validate()


def test_flush_hands_rcu_free_to_nobarn_callback():
    """pcs_flush_all(): a partial rcu_free sheaf goes to
    call_rcu(rcu_free_sheaf_nobarn): flushed to its slabs and freed."""
    m = m70(cpus=1)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(3)]
    m.kfree_rcu(s, objs[0], 0)
    m.flush_all(s)
    assert sheaves(m, s)["in_rcu"] == 1
    m.rcu_barrier()
    st_ = m.cache_state_info(s)
    assert st_["sheaves"]["in_rcu"] == 0
    assert objs[0] in st_["slabs"][0]["freelist"]
    m.validate()


def test_destroy_70():
    m = m70(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(9)]
    m.kfree_rcu(s, objs.pop(), 1)
    with pytest.raises(model.CacheBusy):
        m.kmem_cache_destroy(s)
    m.kmem_cache_free_bulk(s, objs, 1)
    m.kmem_cache_destroy(s)
    assert s not in m.caches


# ==========================================================================
# Part 2: the core against the model
# ==========================================================================

# name, size, flags: a large-object cache (6 objects/slab, capacity 4, so the
# barn fills and E2BIG / ENOMEM happen within a few dozen frees), a
# dentry-like one (21/slab, capacity 60: refills span slabs) and a debug
# cache (no sheaves: every operation a slab path).
CACHE_SPECS = [
    ("big", 5000, 0),
    ("dentry", 192, model.SLAB_HWCACHE_ALIGN),
    ("dbg", 256, DEBUG),
]


class Mismatch(AssertionError):
    pass


class CachePair70:
    """One cache on both sides plus the slab pairing (page <-> slab id)."""

    def __init__(self, core, ref, spec, core_cache, ref_cache):
        self.core = core
        self.ref = ref
        self.spec = spec
        self.c = core_cache
        self.r = ref_cache
        self.page2id = {}
        self.id2page = {}
        self.live = []          # [(core address, model object)]

    # --- pairing --------------------------------------------------------------

    @staticmethod
    def _walk(state, returned):
        """Every object's slab, in a fixed order: what the call returned, then
        the sheaves, the barn, the node partial list."""
        out = [o[0] for o in returned]
        sh = state["sheaves"]
        for c in sh["cpus"]:
            for k in ("main", "spare", "rcu_free"):
                out += [o[0] for o in (c[k] or [])]
        for full in sh["barn_full"]:
            out += [o[0] for o in full]
        out += list(state["node"]["partial"])
        return out

    def sync(self, what, core_returned=(), ref_returned=()):
        cs = self.core.cache_state_info(self.c)
        rs = self.ref.cache_state_info(self.r)
        core_pages = set(cs["slabs"])
        ref_ids = set(rs["slabs"])
        for page, sid in list(self.page2id.items()):
            if sid not in ref_ids or page not in core_pages:
                del self.page2id[page]
                del self.id2page[sid]
                if sid in ref_ids:
                    raise Mismatch(f"after {what}: core discarded page {page:#x} "
                                   f"but the model keeps slab {sid}: {rs['slabs'][sid]}")
        new_pages = core_pages - set(self.page2id)
        new_ids = ref_ids - set(self.id2page)
        if new_pages or new_ids:
            for p, i in zip(self._walk(cs, core_returned), self._walk(rs, ref_returned)):
                if p in new_pages and i in new_ids:
                    self.page2id[p] = i
                    self.id2page[i] = p
                    new_pages.discard(p)
                    new_ids.discard(i)
            if len(new_pages) == len(new_ids) == 1:
                p, i = new_pages.pop(), new_ids.pop()
                self.page2id[p] = i
                self.id2page[i] = p
        if new_pages or new_ids:
            raise Mismatch(
                f"after {what}: unpaired slabs, core pages {[hex(p) for p in new_pages]} "
                f"({[cs['slabs'][p] for p in new_pages]}) vs model slabs {sorted(new_ids)} "
                f"({[rs['slabs'][i] for i in new_ids]})")
        got = self.translate(cs)
        errs = self.compare(got, rs)
        cstat = self.core.cache_stat_cpu_info(self.c)
        rstat = self.ref.cache_stat_cpu_info(self.r)
        if cstat != rstat:
            errs.append("per-vCPU stats (core, model): " + str(
                {k: (cstat[k], rstat[k]) for k in rstat if cstat.get(k) != rstat[k]}))
        ctot = self.core.cache_stat_info(self.c)
        rtot = self.ref.cache_stat_info(self.r)
        if ctot != rtot:
            errs.append("total stats (core, model): " + str(
                {k: (ctot[k], rtot[k]) for k in rtot if ctot.get(k) != rtot[k]}))
        if errs:
            raise Mismatch(f"cache {self.spec[0]!r} after {what}:\n  " + "\n  ".join(errs))
        return got

    def tp(self, page):
        try:
            return self.page2id[page]
        except KeyError:
            raise Mismatch(f"core page {page:#x} is not a known slab") from None

    def to(self, obj):
        return (self.tp(obj[0]), int(obj[1]))

    def tsheaf(self, sh):
        return None if sh is None else [self.to(o) for o in sh]

    def translate(self, cs):
        sh = cs["sheaves"]
        return {
            "node": {"partial": [self.tp(p) for p in cs["node"]["partial"]],
                     "nr_partial": cs["node"]["nr_partial"],
                     "nr_slabs": cs["node"]["nr_slabs"],
                     "total_objects": cs["node"]["total_objects"]},
            "slabs": {self.tp(p): {"inuse": v["inuse"], "objects": v["objects"],
                                   "frozen": bool(v["frozen"]),
                                   "freelist": [self.to(o) for o in v["freelist"]]}
                      for p, v in cs["slabs"].items()},
            "sheaves": {
                "capacity": sh["capacity"],
                "cpus": [{k: self.tsheaf(c[k]) for k in ("main", "spare", "rcu_free")}
                         for c in sh["cpus"]],
                "barn_full": [self.tsheaf(f) for f in sh["barn_full"]],
                "barn_empty": sh["barn_empty"],
                "in_rcu": sh["in_rcu"],
            },
            "min_partial": cs["min_partial"],
            "cpu_partial": cs["cpu_partial"],
            "cpus": [{k: c[k] for k in ("page", "freelist", "partial")} for c in cs["cpus"]],
        }

    @staticmethod
    def compare(got, want):
        errs = []
        for k in ("min_partial", "cpu_partial", "node"):
            if got[k] != want[k]:
                errs.append(f"{k}: core {got[k]} != model {want[k]}")
        for c in got["cpus"]:
            if c != {"page": None, "freelist": [], "partial": []}:
                errs.append(f"a 7.0 cache has a cpu slab: {c}")
        gs, ws = got["sheaves"], want["sheaves"]
        for k in ("capacity", "barn_full", "barn_empty", "in_rcu"):
            if gs[k] != ws[k]:
                errs.append(f"sheaves.{k}: core {gs[k]} != model {ws[k]}")
        for cpu, (g, w) in enumerate(zip(gs["cpus"], ws["cpus"])):
            for k in ("main", "spare", "rcu_free"):
                if g[k] != w[k]:
                    errs.append(f"cpu{cpu}.{k}: core {g[k]} != model {w[k]}")
        for sid in sorted(set(got["slabs"]) | set(want["slabs"])):
            g = got["slabs"].get(sid)
            w = want["slabs"].get(sid)
            if g != w:
                errs.append(f"slab {sid}: core {g} != model {w}")
        return errs


def _drain_core_rcu(core, timeout=10.0):
    """rcu_barrier() on the core: every C call_rcu callback queued so far has
    run (expedited grace periods: no tick to wait for).  The first
    kfree_rcu starts the core's RCU thread, which runs them on its own: the
    rules call this right after anything that can queue one, so that the
    callbacks run at the same point of the sequence on both sides."""
    core.rcu_barrier(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        c = core.rcu_c_counts()
        if c["done"] >= c["queued"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"RCU callbacks not run: {c}")
        core.rcu_process_c()


class CoreVsModel70(RuleBasedStateMachine):

    @initialize()
    def setup(self):
        self.ncpu = 3
        self.core = Machine(cpus=3, memory=32 << 20, slub="7.0", expedited=True)
        self.ref = RefMachine(cpus=3, slub="7.0")
        self.pairs = [self._create(spec) for spec in CACHE_SPECS]

    def _create(self, spec):
        name, size, flags = spec
        c = self.core.kmem_cache_create(name, size, align=0, flags=flags, ctor=None)
        r = self.ref.kmem_cache_create(name, size, align=0, flags=flags, ctor=None)
        for k in ("object_size", "size", "align", "inuse", "offset", "order",
                  "objects_per_slab", "min_partial", "cpu_partial"):
            assert getattr(c, k) == getattr(r, k), (name, k, getattr(c, k), getattr(r, k))
        p = CachePair70(self.core, self.ref, spec, c, r)
        p.sync("kmem_cache_create")
        return p

    def teardown(self):
        core = getattr(self, "core", None)
        if core is not None:
            core.close()

    def _pair(self, ci):
        return self.pairs[ci % len(self.pairs)]

    # --- primitive operations -------------------------------------------------

    def _alloc(self, p, cpu, nowait=False):
        a = self.core.kmem_cache_alloc(p.c, cpu=cpu, nowait=nowait)
        o = self.ref.kmem_cache_alloc(p.r, cpu, nowait=nowait)
        what = f"kmem_cache_alloc({p.spec[0]}, cpu={cpu}, nowait={nowait})"
        p.sync(what, [self.core.virt_to_slab(a)], [o])
        got = p.to(self.core.virt_to_slab(a))
        if got != o:
            raise Mismatch(f"{what}: core returned {a:#x} = {got}, model {o}")
        p.live.append((a, o))

    def _free(self, p, i, cpu):
        a, o = p.live.pop(i)
        self.core.kmem_cache_free(p.c, a, cpu=cpu)
        self.ref.kmem_cache_free(p.r, o, cpu)
        p.sync(f"kmem_cache_free({p.spec[0]}, {o}, cpu={cpu})")

    # --- rules ------------------------------------------------------------------

    @rule(ci=st.integers(0, 2), cpu=st.integers(0, 2), nowait=st.booleans())
    def alloc(self, ci, cpu, nowait):
        self._alloc(self._pair(ci), cpu, nowait)

    @rule(ci=st.integers(0, 2), n=st.integers(1, 50), cpu=st.integers(0, 2))
    def alloc_burst(self, ci, n, cpu):
        p = self._pair(ci)
        for _ in range(n):
            self._alloc(p, cpu)

    @rule(ci=st.integers(0, 2), i=st.integers(0, 10**6), cpu=st.integers(0, 2))
    def free(self, ci, i, cpu):
        p = self._pair(ci)
        if p.live:
            self._free(p, i % len(p.live), cpu)

    @rule(ci=st.integers(0, 2), n=st.integers(1, 60), cpu=st.integers(0, 2),
          pattern=st.sampled_from(["newest", "oldest", "stride"]))
    def free_burst(self, ci, n, cpu, pattern):
        p = self._pair(ci)
        for k in range(min(n, len(p.live))):
            if pattern == "newest":
                i = len(p.live) - 1
            elif pattern == "oldest":
                i = 0
            else:
                i = (k * 7) % len(p.live)
            self._free(p, i, cpu)

    @rule(ci=st.integers(0, 2), n=st.integers(1, 90), cpu=st.integers(0, 2))
    def alloc_bulk(self, ci, n, cpu):
        p = self._pair(ci)
        addrs = [int(a) for a in self.core.kmem_cache_alloc_bulk(p.c, n, cpu=cpu)]
        objs = self.ref.kmem_cache_alloc_bulk(p.r, n, cpu)
        core_objs = [self.core.virt_to_slab(a) for a in addrs]
        what = f"kmem_cache_alloc_bulk({p.spec[0]}, {n}, cpu={cpu})"
        p.sync(what, core_objs, objs)
        got = [p.to(o) for o in core_objs]
        if got != objs:
            raise Mismatch(f"{what}: core returned {got}, model {objs}")
        p.live.extend(zip(addrs, objs))

    @rule(ci=st.integers(0, 2), n=st.integers(1, 90), cpu=st.integers(0, 2),
          start=st.integers(0, 10**6), step=st.sampled_from([1, 2, 3, 5]))
    def free_bulk(self, ci, n, cpu, start, step):
        p = self._pair(ci)
        if not p.live:
            return
        idx = []
        for k in range(len(p.live)):
            j = (start + k * step) % len(p.live)
            if j not in idx:
                idx.append(j)
            if len(idx) == n:
                break
        chosen = [p.live[j] for j in idx]
        for j in sorted(idx, reverse=True):
            p.live.pop(j)
        self.core.kmem_cache_free_bulk(p.c, [a for a, _ in chosen], cpu=cpu)
        self.ref.kmem_cache_free_bulk(p.r, [o for _, o in chosen], cpu)
        p.sync(f"kmem_cache_free_bulk({p.spec[0]}, {[o for _, o in chosen]}, cpu={cpu})")

    @rule(ci=st.integers(0, 2), i=st.integers(0, 10**6), cpu=st.integers(0, 2),
          n=st.integers(1, 6))
    def kfree_rcu(self, ci, i, cpu, n):
        """kfree_rcu: onto the rcu_free sheaf; for the debug cache
        FREE_RCU_SHEAF_FAIL and classic kfree_rcu (a kfree after the grace
        period, on the core's Python RCU thread)."""
        p = self._pair(ci)
        for _ in range(min(n, len(p.live))):
            a, o = p.live.pop(i % len(p.live))
            self.core.kfree_rcu(a, cpu=cpu)
            self.ref.kfree_rcu(p.r, o, cpu)
            self._rcu_barrier()
            p.sync(f"kfree_rcu({p.spec[0]}, {o}, cpu={cpu})")

    def _rcu_barrier(self):
        _drain_core_rcu(self.core)
        self.ref.rcu_barrier()

    @rule()
    def rcu_barrier(self):
        self._rcu_barrier()
        for p in self.pairs:
            p.sync("rcu_barrier")

    @rule(ci=st.integers(0, 2))
    def flush_all(self, ci):
        p = self._pair(ci)
        self.core.flush_all(p.c)
        self.ref.flush_all(p.r)
        self._rcu_barrier()         # (a partial rcu_free sheaf went to call_rcu)
        p.sync(f"flush_all({p.spec[0]})")

    @rule(ci=st.integers(0, 2))
    def shrink(self, ci):
        p = self._pair(ci)
        rc = self.core.kmem_cache_shrink(p.c)
        rr = self.ref.kmem_cache_shrink(p.r)
        self._rcu_barrier()
        p.sync(f"kmem_cache_shrink({p.spec[0]})")
        if rc != rr:
            raise Mismatch(f"kmem_cache_shrink({p.spec[0]}): core {rc}, model {rr}")

    @rule(ci=st.integers(0, 2))
    def destroy(self, ci):
        k = ci % len(self.pairs)
        p = self.pairs[k]
        core_busy = ref_busy = False
        try:
            self.core.kmem_cache_destroy(p.c)
        except slubcy.CacheBusy:
            core_busy = True
        try:
            self.ref.kmem_cache_destroy(p.r)
        except model.CacheBusy:
            ref_busy = True
        if core_busy != ref_busy:
            raise Mismatch(f"kmem_cache_destroy({p.spec[0]}): core busy={core_busy}, "
                           f"model busy={ref_busy}, live objects={len(p.live)}")
        # the shutdown's rcu_barrier ran every cache's callbacks
        for q in self.pairs:
            if q is not p:
                q.sync(f"kmem_cache_destroy({p.spec[0]}) (its rcu_barrier)")
        if core_busy:
            p.sync(f"failed kmem_cache_destroy({p.spec[0]})")
        else:
            assert not p.live
            self.pairs[k] = self._create(p.spec)

    @precondition(lambda self: hasattr(self, "core"))
    @invariant()
    def validates(self):
        self.core.validate()
        self.ref.validate()


CoreVsModel70.TestCase.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreVsModel70 = CoreVsModel70.TestCase


def test_scripted_scenario_core_vs_model_70():
    """A fixed sequence through every path, for a readable first failure."""
    sm = CoreVsModel70()
    try:
        sm.setup()
        big, dentry, dbg = 0, 1, 2
        sm.alloc(big, 0, False)                 # refill: a new sheaf
        sm.alloc_burst(big, 40, 1)
        sm.free_burst(big, 30, 2, "oldest")     # barn fills: spare, BARN_PUT, ENOMEM
        sm.free_burst(big, 11, 2, "stride")     # E2BIG: the spare flushed
        sm.alloc_burst(big, 20, 0)              # BARN_GET
        sm.alloc(big, 1, True)                  # nowait
        sm.free_bulk(big, 9, 1, 0, 2)
        sm.alloc_bulk(big, 30, 2)
        sm.kfree_rcu(0, 0, 1, 6)
        sm.rcu_barrier()
        sm.flush_all(big)
        sm.shrink(big)
        sm.alloc_burst(dentry, 70, 0)
        sm.free_burst(dentry, 70, 1, "stride")
        sm.alloc_bulk(dentry, 90, 2)
        sm.free_bulk(dentry, 90, 0, 3, 3)
        sm.shrink(dentry)
        sm.alloc_burst(dbg, 30, 0)
        sm.free_burst(dbg, 20, 1, "stride")
        sm.alloc_bulk(dbg, 20, 1)
        sm.free_bulk(dbg, 40, 2, 0, 1)
        sm.shrink(dbg)
        sm.destroy(dbg)
        sm.kfree_rcu(0, 3, 0, 3)
        sm.free_burst(big, 200, 0, "newest")
        sm.destroy(big)
        sm.validates()
    finally:
        sm.teardown()
