"""The reference model alone, against the kernel's v4.0 rules (mm/slub.c).

Each test sets up a situation by hand and checks what the kernel code does in
it; the citation is the kernel function that decides.  The model must pass
these before it is worth comparing the core against it.
"""

import random

import pytest
from hypothesis import given, settings, strategies as st

from slubcy import model
from slubcy.model import RefMachine


def stats(m, s, cpu=None):
    """Non-zero statistics, summed over vCPUs or for one vCPU."""
    st_ = m.cache_state_info(s)["cpus"]
    rows = st_ if cpu is None else [st_[cpu]]
    out = {}
    for row in rows:
        for k, v in row["stat"].items():
            if v:
                out[k] = out.get(k, 0) + v
    return out


def fill_slabs(m, s, cpu, nslabs):
    """Allocate every object of ``nslabs`` fresh slabs on ``cpu``; returns the
    objects grouped by slab id (the last slab stays the cpu slab, full)."""
    objs = [m.kmem_cache_alloc(s, cpu) for _ in range(nslabs * s.objects_per_slab)]
    by_slab = {}
    for o in objs:
        by_slab.setdefault(o[0], []).append(o)
    assert len(by_slab) == nslabs
    return by_slab


# --------------------------------------------------------------------------
# allocation paths
# --------------------------------------------------------------------------

def test_first_alloc_takes_new_slab_in_address_order():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 192, flags=model.SLAB_HWCACHE_ALIGN)
    o = m.kmem_cache_alloc(s, 0)
    st_ = m.cache_state_info(s)
    assert o == (0, 0)
    assert st_["cpus"][0]["page"] == 0
    assert st_["cpus"][0]["freelist"] == [(0, i) for i in range(1, 21)]
    # new_slab: frozen, inuse = objects, page freelist handed to the cpu.
    assert st_["slabs"][0] == {"inuse": 21, "objects": 21, "frozen": True, "freelist": []}
    assert st_["node"] == {"partial": [], "nr_partial": 0, "nr_slabs": 1, "total_objects": 21}
    assert stats(m, s) == {"ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1}
    o2 = m.kmem_cache_alloc(s, 0)
    assert o2 == (0, 1)
    assert stats(m, s) == {"ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1, "ALLOC_FASTPATH": 1}


def test_fastpath_free_is_lifo():
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("a", 64)
    a = m.kmem_cache_alloc(s, 0)
    b = m.kmem_cache_alloc(s, 0)
    m.kmem_cache_free(s, a, 0)
    m.kmem_cache_free(s, b, 0)
    assert m.cache_state_info(s)["cpus"][0]["freelist"][:2] == [b, a]
    assert m.kmem_cache_alloc(s, 0) == b
    assert stats(m, s)["FREE_FASTPATH"] == 2


def test_exhausted_cpu_slab_is_bypassed():
    """___slab_alloc: get_freelist() returns NULL -> c->page = NULL,
    DEACTIVATE_BYPASS; the full slab is left unfrozen on no list."""
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("a", 5000)          # 6 objects per order-3 slab
    assert s.objects_per_slab == 6
    fill_slabs(m, s, 0, 1)
    m.kmem_cache_alloc(s, 0)
    st_ = m.cache_state_info(s)
    assert st_["slabs"][0] == {"inuse": 6, "objects": 6, "frozen": False, "freelist": []}
    assert st_["cpus"][0]["page"] == 1
    assert st_["node"]["partial"] == []
    assert stats(m, s) == {"ALLOC_SLOWPATH": 2, "ALLOC_FASTPATH": 5,
                           "ALLOC_SLAB": 2, "DEACTIVATE_BYPASS": 1}


# --------------------------------------------------------------------------
# __slab_free and put_cpu_partial
# --------------------------------------------------------------------------

def test_remote_free_into_full_slab_freezes_it_on_the_freeing_cpu():
    """__slab_free: !prior && !was_frozen && has_cpu_partial -> frozen, then
    put_cpu_partial(drain=1) and CPU_PARTIAL_FREE on the freeing vCPU."""
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    by = fill_slabs(m, s, 0, 2)
    victim = by[0][3]
    m.kmem_cache_free(s, victim, 1)
    st_ = m.cache_state_info(s)
    assert st_["cpus"][1]["partial"] == [0]
    assert st_["slabs"][0] == {"inuse": 5, "objects": 6, "frozen": True, "freelist": [victim]}
    assert stats(m, s, 1) == {"FREE_SLOWPATH": 1, "CPU_PARTIAL_FREE": 1}
    # A second free into the now frozen slab only counts FREE_FROZEN.
    m.kmem_cache_free(s, by[0][0], 0)
    assert stats(m, s, 0)["FREE_FROZEN"] == 1
    assert m.cache_state_info(s)["slabs"][0]["freelist"] == [by[0][0], victim]


def test_freeing_the_only_object_of_a_full_slab_parks_an_empty_slab():
    """The founding mail's case: a full slab whose last object is freed remotely
    is frozen *empty* onto a per-cpu partial list."""
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    by = fill_slabs(m, s, 0, 2)
    for o in by[0][:-1]:
        m.kmem_cache_free(s, o, 1)
    m.kmem_cache_free(s, by[0][-1], 1)
    st_ = m.cache_state_info(s)
    assert st_["slabs"][0]["inuse"] == 0 and st_["slabs"][0]["frozen"]
    assert 0 in st_["cpus"][1]["partial"]


def test_put_cpu_partial_drains_when_pobjects_exceeds_cpu_partial():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    assert s.cpu_partial == 2
    by = fill_slabs(m, s, 0, 5)
    # One remote free into each of the four full slabs 0..3.
    for sid in range(3):
        m.kmem_cache_free(s, by[sid][0], 1)
    st_ = m.cache_state_info(s)
    assert st_["cpus"][1]["partial"] == [2, 1, 0]     # pushed at the head
    assert stats(m, s, 1).get("CPU_PARTIAL_DRAIN", 0) == 0
    # pobjects of the head is 3 > cpu_partial = 2: drain before pushing.
    m.kmem_cache_free(s, by[3][0], 1)
    st_ = m.cache_state_info(s)
    assert st_["cpus"][1]["partial"] == [3]
    assert st_["node"]["partial"] == [2, 1, 0]        # unfreeze_partials: tail adds
    assert all(not st_["slabs"][i]["frozen"] for i in range(3))
    assert stats(m, s, 1) == {"FREE_SLOWPATH": 4, "CPU_PARTIAL_FREE": 4,
                              "CPU_PARTIAL_DRAIN": 1, "FREE_ADD_PARTIAL": 3}


def test_pobjects_is_a_snapshot_taken_at_push_time():
    """page->pobjects is computed when a page is pushed and never refreshed:
    frees into frozen slabs already on the list do not trigger a drain."""
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    by = fill_slabs(m, s, 0, 4)
    m.kmem_cache_free(s, by[0][0], 1)
    m.kmem_cache_free(s, by[1][0], 1)            # head pobjects = 2
    for o in by[1][1:4]:                         # FREE_FROZEN, pobjects stays 2
        m.kmem_cache_free(s, o, 1)
    m.kmem_cache_free(s, by[2][0], 1)            # 2 > 2 is false: no drain
    assert m.cache_state_info(s)["cpus"][1]["partial"] == [2, 1, 0]
    assert "CPU_PARTIAL_DRAIN" not in stats(m, s)


def test_cpu_partial_zero_unfreezes_at_once():
    """d6e0b7fa (v4.0): put_cpu_partial unfreezes at once when cpu_partial == 0,
    and with min_partial == 0 an empty slab is discarded right away."""
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)
    by = fill_slabs(m, s, 0, 2)
    for o in by[0][:-1]:
        m.kmem_cache_free(s, o, 1)
    # Freeze-and-park happened (cpu_partial was 2).  Now mark the cache dead as
    # __kmem_cache_shrink(s, true) does, and flush.
    s.cpu_partial = 0
    s.min_partial = 0
    m.flush_all(s)
    # slab 0 (1 in use) went to the node list; slab 1 (cpu slab, full) to no list
    st_ = m.cache_state_info(s)
    assert st_["node"]["partial"] == [0]
    # Free the last object of slab 1 (full, on no list) remotely: frozen, then
    # unfrozen at once; it is empty and nr_partial (1) >= min_partial (0).
    for o in by[1]:
        m.kmem_cache_free(s, o, 1)
    st_ = m.cache_state_info(s)
    assert 1 not in st_["slabs"]
    assert st_["cpus"][1]["partial"] == []
    # The last free of slab 0 goes through the node list and discards it.
    m.kmem_cache_free(s, by[0][-1], 1)
    st_ = m.cache_state_info(s)
    assert st_["slabs"] == {} and st_["node"]["nr_slabs"] == 0


# --------------------------------------------------------------------------
# empty slabs and min_partial
# --------------------------------------------------------------------------

def _node_partial_slabs(m, s, k):
    """Put k slabs with free objects on the node partial list (via a remote
    free into each full slab and flush_all).  Returns objects by slab id."""
    by = fill_slabs(m, s, 0, k + 1)
    for sid in range(k):
        m.kmem_cache_free(s, by[sid][0], 1)
        by[sid] = by[sid][1:]
    m.flush_all(s)
    return by


def test_empty_slab_kept_below_min_partial_and_discarded_at_it():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 192, flags=model.SLAB_HWCACHE_ALIGN)
    assert s.min_partial == 5
    by = _node_partial_slabs(m, s, 3)
    st_ = m.cache_state_info(s)
    # cpu1 partial [2,1,0] unfrozen in order -> node tail adds; flush of cpu0's
    # full cpu slab 3 is DEACTIVATE_FULL (no list).
    assert st_["node"]["partial"] == [2, 1, 0]
    # Empty slab 0 while nr_partial (3) < min_partial (5): stays listed.
    for o in by[0]:
        m.kmem_cache_free(s, o, 0)
    st_ = m.cache_state_info(s)
    assert 0 in st_["slabs"] and st_["slabs"][0]["inuse"] == 0
    assert st_["node"]["partial"] == [2, 1, 0]
    # With min_partial lowered to 3, emptying slab 1 discards it.
    s.min_partial = 3
    for o in by[1]:
        m.kmem_cache_free(s, o, 0)
    st_ = m.cache_state_info(s)
    assert 1 not in st_["slabs"]
    assert st_["node"]["partial"] == [2, 0]
    assert stats(m, s, 0)["FREE_REMOVE_PARTIAL"] == 1
    assert stats(m, s, 0)["FREE_SLAB"] == 1


def test_deactivate_empty_cpu_slab_depends_on_min_partial():
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("a", 64)
    a = m.kmem_cache_alloc(s, 0)
    m.kmem_cache_free(s, a, 0)
    m.flush_all(s)                     # nr_partial 0 < 5: M_PARTIAL at head
    st_ = m.cache_state_info(s)
    assert st_["node"]["partial"] == [0] and st_["slabs"][0]["inuse"] == 0
    assert stats(m, s) == {"ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1, "FREE_FASTPATH": 1,
                           "CPUSLAB_FLUSH": 1, "DEACTIVATE_TO_HEAD": 1}
    s.min_partial = 0
    b = m.kmem_cache_alloc(s, 0)       # ALLOC_FROM_PARTIAL takes slab 0 again
    # The flush reversed the cpu freelist [0, 1, .., 63] onto the page.
    assert b == (0, 63)
    assert m.cache_state_info(s)["cpus"][0]["page"] == 0
    assert m.cache_state_info(s)["cpus"][0]["freelist"] == [(0, i) for i in range(62, -1, -1)]
    m.kmem_cache_free(s, b, 0)
    m.flush_all(s)                     # M_FREE
    assert m.cache_state_info(s)["slabs"] == {}
    assert stats(m, s)["DEACTIVATE_EMPTY"] == 1


def test_deactivate_slab_order_and_remote_frees():
    """Stage one pushes cpu-freelist objects one at a time, leaving the last
    for stage two: the page freelist ends up reversed.  Remote frees first
    (page->freelist != NULL) send the slab to the tail."""
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 64)
    objs = [m.kmem_cache_alloc(s, 0) for _ in range(61)]   # cpu freelist: 61..63
    m.kmem_cache_free(s, objs[5], 1)                        # remote: FREE_FROZEN
    m.flush_all(s)
    st_ = m.cache_state_info(s)
    assert st_["slabs"][0]["freelist"] == [(0, 63), (0, 62), (0, 61), (0, 5)]
    assert st_["slabs"][0]["inuse"] == 60
    c0 = stats(m, s, 0)
    assert c0["DEACTIVATE_REMOTE_FREES"] == 1 and c0["DEACTIVATE_TO_TAIL"] == 1
    assert stats(m, s, 1) == {"FREE_SLOWPATH": 1, "FREE_FROZEN": 1}


def test_get_partial_node_fills_cpu_partial_up_to_half():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 5000)            # cpu_partial 2 -> stop when available > 1
    by = _node_partial_slabs(m, s, 3)
    assert m.cache_state_info(s)["node"]["partial"] == [2, 1, 0]
    before = stats(m, s, 0)
    o = m.kmem_cache_alloc(s, 0)
    st_ = m.cache_state_info(s)
    # First slab (2) taken whole: available = 1, not > 1, so slab 1 is
    # frozen onto cpu0's partial list too (available = 2 > 1: stop).
    assert o == (2, 0)
    assert st_["cpus"][0]["page"] == 2 and st_["cpus"][0]["partial"] == [1]
    assert st_["node"]["partial"] == [0]
    assert st_["slabs"][1]["frozen"] and st_["slabs"][1]["freelist"] == [(1, 0)]
    after = stats(m, s, 0)
    assert after["ALLOC_FROM_PARTIAL"] - before.get("ALLOC_FROM_PARTIAL", 0) == 1
    assert after["CPU_PARTIAL_NODE"] - before.get("CPU_PARTIAL_NODE", 0) == 1
    # Slab 2 had one free object; the next allocation bypasses it and pops
    # the cpu partial slab (CPU_PARTIAL_ALLOC, then get_freelist: ALLOC_REFILL).
    m.kmem_cache_alloc(s, 0)
    st_ = m.cache_state_info(s)
    assert st_["cpus"][0]["page"] == 1 and st_["cpus"][0]["partial"] == []
    delta = {k: v - after.get(k, 0) for k, v in stats(m, s, 0).items()}
    assert {k: v for k, v in delta.items() if v} == {
        "ALLOC_SLOWPATH": 1, "DEACTIVATE_BYPASS": 1, "CPU_PARTIAL_ALLOC": 1,
        "ALLOC_REFILL": 1}
    del by


# --------------------------------------------------------------------------
# debug caches
# --------------------------------------------------------------------------

def test_debug_cache_never_keeps_a_cpu_slab():
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("d", 256, flags=model.SLAB_POISON | model.SLAB_RED_ZONE
                            | model.SLAB_CONSISTENCY_CHECKS)
    assert (s.size, s.offset, s.cpu_partial, s.objects_per_slab) == (280, 264, 0, 14)
    a = m.kmem_cache_alloc(s, 0)
    st_ = m.cache_state_info(s)
    assert a == (0, 0)
    assert st_["cpus"][0]["page"] is None and st_["cpus"][0]["freelist"] == []
    # deactivate_slab(page, next): 1..13 pushed one by one -> reversed.
    assert st_["slabs"][0]["freelist"] == [(0, i) for i in range(13, 0, -1)]
    assert st_["node"]["partial"] == [0]
    assert stats(m, s) == {"ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1, "DEACTIVATE_TO_HEAD": 1}
    b = m.kmem_cache_alloc(s, 0)
    assert b == (0, 13)
    assert m.cache_state_info(s)["slabs"][0]["freelist"] == [(0, i) for i in range(1, 13)]
    assert stats(m, s)["ALLOC_FROM_PARTIAL"] == 1
    # Every free is a slow path; a free into a full slab re-lists it at the tail.
    objs = [a, b] + [m.kmem_cache_alloc(s, 0) for _ in range(12)]
    assert m.cache_state_info(s)["node"]["partial"] == []
    assert stats(m, s)["DEACTIVATE_FULL"] == 1
    m.kmem_cache_free(s, objs[3], 0)
    st_ = m.cache_state_info(s)
    assert st_["node"]["partial"] == [0]
    assert stats(m, s)["FREE_ADD_PARTIAL"] == 1 and stats(m, s)["FREE_SLOWPATH"] == 1


# --------------------------------------------------------------------------
# shrink and destroy
# --------------------------------------------------------------------------

def test_shrink_discards_empty_slabs_and_sorts_by_free_count():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 192, flags=model.SLAB_HWCACHE_ALIGN)
    by = fill_slabs(m, s, 0, 6)
    # Free counts: slab0 -> 21 (empty), slab1 -> 3, slab2 -> 1, slab3 -> 3, slab4 -> 0.
    plan = {0: 21, 1: 3, 2: 1, 3: 3}
    for sid, k in plan.items():
        for o in by[sid][:k]:
            m.kmem_cache_free(s, o, 1)
    m.kmem_cache_shrink(s)
    st_ = m.cache_state_info(s)
    assert 0 not in st_["slabs"]
    # flush_all: cpu1 partial [3,2,1,0] -> node tail; shrink: bucket free=1
    # [2], bucket free=3 reversed [1,3] (list_move to the bucket head).
    assert st_["node"]["partial"] == [2, 1, 3]
    assert all(st_["slabs"][p]["inuse"] < st_["slabs"][p]["objects"]
               for p in st_["node"]["partial"])
    assert not any(v["inuse"] == 0 for v in st_["slabs"].values())


def test_shrink_keeps_order_of_slabs_with_many_free_objects():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 32)               # 128 objects per slab
    by = fill_slabs(m, s, 0, 4)
    for sid, k in {0: 40, 1: 2, 2: 50}.items():
        for o in by[sid][:k]:
            m.kmem_cache_free(s, o, 1)
    m.kmem_cache_shrink(s)
    # Node list after flush: [2, 1, 0]; slab 1 promoted, 2 and 0 keep order.
    assert m.cache_state_info(s)["node"]["partial"] == [1, 2, 0]


def test_destroy_fails_while_objects_live_and_cache_stays_usable():
    m = RefMachine(cpus=2)
    s = m.kmem_cache_create("a", 100)
    a = m.kmem_cache_alloc(s, 0)
    with pytest.raises(model.CacheBusy):
        m.kmem_cache_destroy(s)
    b = m.kmem_cache_alloc(s, 1)
    m.kmem_cache_free(s, a, 1)
    m.kmem_cache_free(s, b, 0)
    m.kmem_cache_destroy(s)
    with pytest.raises(ValueError):
        m.kmem_cache_alloc(s, 0)


def test_bad_frees_raise():
    m = RefMachine(cpus=1)
    s = m.kmem_cache_create("a", 100)
    t = m.kmem_cache_create("b", 100)
    a = m.kmem_cache_alloc(s, 0)
    with pytest.raises(ValueError):
        m.kmem_cache_free(t, a, 0)
    m.kmem_cache_free(s, a, 0)
    with pytest.raises(ValueError):
        m.kmem_cache_free(s, a, 0)
    with pytest.raises(ValueError):
        m.kmem_cache_alloc(s, 1)


@pytest.mark.parametrize("size,align", [(4, 0), (model.KMALLOC_MAX_SIZE + 1, 0), (64, 24)])
def test_create_rejects(size, align):
    with pytest.raises(ValueError):
        RefMachine(cpus=1).kmem_cache_create("x", size, align=align)


# --------------------------------------------------------------------------
# random sequences: the model's own invariants
# --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 192, 700, 5000]),
       st.sampled_from([0, model.SLAB_POISON | model.SLAB_RED_ZONE]))
def test_random_sequences_keep_invariants(seed, size, flags):
    rnd = random.Random(seed)
    m = RefMachine(cpus=3)
    s = m.kmem_cache_create("r", size, flags=flags)
    live = []
    for _ in range(300):
        r = rnd.random()
        if r < 0.5 or not live:
            live.append(m.kmem_cache_alloc(s, rnd.randrange(3)))
        elif r < 0.95:
            m.kmem_cache_free(s, live.pop(rnd.randrange(len(live))), rnd.randrange(3))
        elif r < 0.975:
            m.flush_all(s)
        else:
            m.kmem_cache_shrink(s)
        m.validate(s)
    for o in live:
        m.kmem_cache_free(s, o, rnd.randrange(3))
    m.kmem_cache_shrink(s)
    st_ = m.cache_state_info(s)
    # After a shrink with nothing live, no slab is left at all.
    assert st_["slabs"] == {} and st_["node"]["nr_slabs"] == 0
    m.kmem_cache_destroy(s)
