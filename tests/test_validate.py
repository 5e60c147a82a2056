"""validate() catches broken list membership and frozen state (each test
breaks one invariant through Machine._corrupt_for_test and expects the
message of the check that must find it), and the min_partial boundary of
deactivate_slab, unfreeze_partials and __slab_free, built exactly."""
import pytest

from slubcy import SlabCorruption

SIZE = 256          # 16 objects a slab, cpu_partial 13, min_partial 5


@pytest.fixture
def c(m):
    c = m.kmem_cache_create("t", SIZE)
    assert c.objects_per_slab == 16 and c.cpu_partial == 13 and c.min_partial == 5
    return c


def slab_of(m, addr):
    return m.virt_to_slab(addr)[0]


def full_slabs(m, c, n, cpu=1):
    """n slabs allocated whole on `cpu`: [(slab, [objects])], oldest first.
    All but the last are full, unfrozen and on no list; the last is `cpu`'s
    cpu slab (full, frozen)."""
    objs = [m.kmem_cache_alloc(c, cpu=cpu) for _ in range(n * c.objects_per_slab)]
    out = {}
    for a in objs:
        out.setdefault(slab_of(m, a), []).append(a)
    assert len(out) == n and all(len(v) == c.objects_per_slab for v in out.values())
    return list(out.items())


def node_partial(m, c, slabs, keep=8):
    """Free all but `keep` objects of each of `slabs` from vCPU 1 (which
    freezes them onto its partial list), then flush_all: they end on the
    node partial list.  Returns their live objects."""
    live = {}
    for slab, objs in slabs:
        for a in objs[keep:]:
            m.kmem_cache_free(c, a, cpu=1)
        live[slab] = objs[:keep]
    m.flush_all(c)
    st = m.cache_state_info(c)
    assert set(st["node"]["partial"]) >= set(live)
    return live


def flush_expect_discard(m, c, slab, node_slabs, discarded):
    """flush_all(c): the empty `slab` is discarded (DEACTIVATE_EMPTY) when
    `discarded`, else it joins the `node_slabs` on the node partial list.
    Returns the state after the flush (validated)."""
    before = m.cache_stat_info(c)
    m.flush_all(c)
    st = m.cache_state_info(c)
    after = m.cache_stat_info(c)
    assert after["DEACTIVATE_EMPTY"] - before["DEACTIVATE_EMPTY"] == int(discarded)
    if discarded:
        assert slab not in st["slabs"] and st["node"]["nr_partial"] == node_slabs
    else:
        assert slab in st["node"]["partial"] and st["node"]["nr_partial"] == node_slabs + 1
    m.validate()
    return st


def corrupt(m, c, kind, slab=None):
    m.validate()
    m._corrupt_for_test(kind, c, slab)


def expect(m, c, match):
    with pytest.raises(SlabCorruption, match=match):
        m.validate()
    with pytest.raises(SlabCorruption, match=match):
        m.validate(c)


# -- list membership and frozen state -------------------------------------

def test_frozen_slab_on_the_node_partial_list(m, c):
    slabs = full_slabs(m, c, 2)
    node_partial(m, c, slabs[:1])
    corrupt(m, c, "frozen_on_node", slabs[0][0])
    expect(m, c, r"frozen slab 0x[0-9a-f]+ on the node partial list")


def test_full_slab_on_the_partial_list(m, c):
    slabs = full_slabs(m, c, 2)
    m.flush_all(c)                        # both full, unfrozen, on no list
    corrupt(m, c, "full_on_partial", slabs[0][0])
    expect(m, c, r"full slab 0x[0-9a-f]+ on the partial list")


def test_frozen_slab_on_no_list(m, c):
    slabs = full_slabs(m, c, 2)
    m.flush_all(c)
    corrupt(m, c, "frozen_no_cpu", slabs[0][0])
    expect(m, c, r"frozen slab 0x[0-9a-f]+ belongs to no cpu")


def test_partial_slab_on_no_list(m, c):
    slabs = full_slabs(m, c, 2)
    node_partial(m, c, slabs[:1])
    corrupt(m, c, "off_list", slabs[0][0])
    expect(m, c, r"slab 0x[0-9a-f]+ has free objects but is on no list")


@pytest.mark.parametrize("kind,match", [
    ("two_cpus", r"cpu 1 slab 0x[0-9a-f]+ is on another list too"),
    ("cpu_slab_on_partial", r"cpu 0 partial slab 0x[0-9a-f]+ is on another list too"),
    ("unfrozen_cpu_slab", r"cpu 0 slab is not a frozen slab of this cache"),
])
def test_broken_cpu_slab(m, c, kind, match):
    m.kmem_cache_alloc(c, cpu=0)
    corrupt(m, c, kind)
    expect(m, c, match)


def test_unfrozen_slab_on_a_cpu_partial_list(m, c):
    [(slab, objs)] = full_slabs(m, c, 1, cpu=1)
    m.flush_all(c)                          # full, unfrozen, on no list
    m.kmem_cache_free(c, objs[0], cpu=0)    # frozen onto vCPU 0's partial list
    assert m.cache_state_info(c)["cpus"][0]["partial"] == [slab]
    corrupt(m, c, "unfrozen_cpu_partial")
    expect(m, c, r"cpu 0 partial list corrupt")


@pytest.mark.parametrize("kind,counted,found", [("nr_partial+1", 3, 2), ("nr_partial-1", 1, 2)])
def test_nr_partial_off_by_one(m, c, kind, counted, found):
    slabs = full_slabs(m, c, 3)
    node_partial(m, c, slabs[:2])
    corrupt(m, c, kind)
    expect(m, c, rf"nr_partial {counted} but {found} slabs on the list")


def test_page_allocator_miscount(m, c):
    m.kmem_cache_alloc(c)
    corrupt(m, c, "pages_used+1")
    with pytest.raises(SlabCorruption, match=r"page allocator: \d+ free \+ \d+ used != \d+ pages"):
        m.validate()
    m._corrupt_for_test("pages_used-1", c)
    m.validate()


def test_destroyed_child_cache_on_its_memcgs_list(create_child_caches):
    from slubcy import Machine, SLAB_ACCOUNT
    with Machine(cpus=2, memory=16 << 20, policy="barrier") as m:
        root = m.kmem_cache_create("acct", 64, flags=SLAB_ACCOUNT)
        g = m.memcg_create("g")
        create_child_caches(m, g, root)
        [child] = m.child_caches(root)
        corrupt(m, child, "child_list_prev")
        with pytest.raises(SlabCorruption, match=r"memcg g: child cache list broken at acct"):
            m.validate()
        m._corrupt_for_test("child_list_fix", child)
        m.validate()


def test_corrupt_for_test_bad_input(m, c):
    with pytest.raises(ValueError):
        m._corrupt_for_test("nope", c)
    with pytest.raises(ValueError):
        m._corrupt_for_test("off_list", c)                   # needs a slab
    with pytest.raises(ValueError):
        m._corrupt_for_test("two_cpus", c)                   # no cpu slab on vCPU 0
    with pytest.raises(ValueError):
        m._corrupt_for_test("child_list_prev", c)            # not a child cache
    other = m.kmem_cache_create("other", 64)
    a = m.kmem_cache_alloc(other)
    with pytest.raises(ValueError):
        m._corrupt_for_test("off_list", c, slab_of(m, a))    # not a slab of c
    m.validate()


# -- the min_partial boundary: empty slabs kept or discarded ---------------

@pytest.mark.parametrize("node_slabs,discarded", [(5, True), (4, False)])
def test_deactivate_slab_min_partial_boundary(m, c, node_slabs, discarded):
    """deactivate_slab(): an empty cpu slab flushed while the node holds
    min_partial partial slabs is discarded; with one fewer it joins them."""
    assert c.min_partial == 5
    # node_slabs + 1 half-used slabs on the node; vCPU 0 then takes the head
    # one as its cpu slab (8 free objects > cpu_partial / 2: only that one)
    slabs = full_slabs(m, c, node_slabs + 2)
    live = node_partial(m, c, slabs[:node_slabs + 1])
    a = m.kmem_cache_alloc(c, cpu=0)
    cpu_slab = slab_of(m, a)
    st = m.cache_state_info(c)
    assert st["cpus"][0]["page"] == cpu_slab and st["cpus"][0]["partial"] == []
    assert st["node"]["nr_partial"] == node_slabs and cpu_slab not in st["node"]["partial"]
    for x in [a] + live[cpu_slab]:
        m.kmem_cache_free(c, x, cpu=0)      # all on vCPU 0's freelist: the cpu slab is empty
    st = flush_expect_discard(m, c, cpu_slab, node_slabs, discarded)
    if not discarded:
        assert st["slabs"][cpu_slab]["inuse"] == 0


@pytest.mark.parametrize("node_slabs,discarded", [(5, True), (4, False)])
def test_unfreeze_partials_min_partial_boundary(m, c, node_slabs, discarded):
    """unfreeze_partials(): an empty cpu partial slab is discarded once the
    node holds min_partial partial slabs; with one fewer it goes on the node
    list."""
    slabs = full_slabs(m, c, node_slabs + 2)
    node_partial(m, c, slabs[:node_slabs])
    empty, objs = slabs[node_slabs]         # full, unfrozen, on no list
    for x in objs:                          # the first free freezes it onto vCPU 0's partials
        m.kmem_cache_free(c, x, cpu=0)
    st = m.cache_state_info(c)
    assert st["cpus"][0]["partial"] == [empty] and st["cpus"][0]["page"] is None
    assert st["slabs"][empty]["inuse"] == 0 and st["slabs"][empty]["frozen"]
    assert st["node"]["nr_partial"] == node_slabs
    flush_expect_discard(m, c, empty, node_slabs, discarded)


@pytest.mark.parametrize("node_slabs,discarded", [(5, True), (4, False)])
def test_slab_free_min_partial_boundary(m, c, node_slabs, discarded):
    """__slab_free(): the free that empties a node partial slab discards it
    when the node holds min_partial partial slabs, itself included (3.16's
    off-by-one fix made this `>=`); with one fewer it stays on the list."""
    slabs = full_slabs(m, c, node_slabs + 1)
    live = node_partial(m, c, slabs[:node_slabs - 1])
    last, objs = slabs[node_slabs - 1]
    for x in objs[1:]:
        m.kmem_cache_free(c, x, cpu=1)
    m.flush_all(c)
    st = m.cache_state_info(c)
    assert st["node"]["nr_partial"] == node_slabs and last in st["node"]["partial"]
    assert st["slabs"][last]["inuse"] == 1 and not st["slabs"][last]["frozen"]
    before = m.cache_stat_info(c)
    m.kmem_cache_free(c, objs[0], cpu=0)    # inuse 0, on the node list: the locked path
    st = m.cache_state_info(c)
    after = m.cache_stat_info(c)
    assert after["FREE_REMOVE_PARTIAL"] - before["FREE_REMOVE_PARTIAL"] == int(discarded)
    assert after["FREE_SLAB"] - before["FREE_SLAB"] == int(discarded)
    if discarded:
        assert last not in st["slabs"] and st["node"]["nr_partial"] == node_slabs - 1
    else:
        assert st["slabs"][last]["inuse"] == 0 and last in st["node"]["partial"]
        assert st["node"]["nr_partial"] == node_slabs
    # in use: the half-used slabs' objects and vCPU 1's old cpu slab, full
    assert m.validate()["t"] == sum(len(v) for v in live.values()) + c.objects_per_slab
