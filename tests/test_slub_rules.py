"""SLUB behaviour written from the kernel's rules (mm/slub.c, Linux 4.0)."""
import pytest

import slubcy

DEBUG = slubcy.SLAB_CONSISTENCY_CHECKS


@pytest.fixture
def m():
    with slubcy.Machine(cpus=3, memory=64 << 20) as machine:
        yield machine


def nonzero(stats):
    return {k: v for k, v in stats.items() if v}


def fill_slab(m, c, cpu=0):
    """Allocate exactly the objects of one fresh cpu slab; return them."""
    objs = [m.kmem_cache_alloc(c, cpu=cpu) for _ in range(c.objects_per_slab)]
    assert len({m.virt_to_slab(a)[0] for a in objs}) == 1
    return objs


def test_fast_path_counts(m):
    c = m.kmem_cache_create("x", 64)
    a = m.kmem_cache_alloc(c, cpu=0)        # first: slow path, new slab
    m.kmem_cache_free(c, a, cpu=0)          # its own cpu slab: fast path
    b = m.kmem_cache_alloc(c, cpu=0)
    assert b == a                           # LIFO freelist
    st = nonzero(m.cache_stat_info(c))
    assert st == {"ALLOC_SLOWPATH": 1, "ALLOC_SLAB": 1, "ALLOC_FASTPATH": 1, "FREE_FASTPATH": 1}
    m.kmem_cache_free(c, b)


def test_remote_free_into_full_slab_freezes_it_onto_the_freeing_cpu(m):
    c = m.kmem_cache_create("x", 256)
    objs = fill_slab(m, c, cpu=0)
    m.kmem_cache_alloc(c, cpu=0)            # cpu 0 moves on: the first slab is full, on no list
    page = m.virt_to_slab(objs[0])[0]
    st = m.cache_state_info(c)
    assert st["slabs"][page]["inuse"] == c.objects_per_slab and not st["slabs"][page]["frozen"]
    assert page not in st["node"]["partial"]
    m.kmem_cache_free(c, objs[0], cpu=1)    # __slab_free: !prior -> freeze
    st = m.cache_state_info(c)
    assert st["slabs"][page]["frozen"]
    assert st["cpus"][1]["partial"] == [page]
    assert st["cpus"][1]["stat"]["CPU_PARTIAL_FREE"] == 1
    assert st["cpus"][1]["stat"]["FREE_SLOWPATH"] == 1
    # a second remote free into the now-frozen slab only counts FREE_FROZEN
    m.kmem_cache_free(c, objs[1], cpu=2)
    assert m.cache_state_info(c)["cpus"][2]["stat"]["FREE_FROZEN"] == 1
    assert m.cache_state_info(c)["cpus"][2]["partial"] == []
    m.validate()


def test_the_seed_case_an_empty_slab_frozen_on_a_cpu_partial_list():
    """A full slab whose only object is freed remotely is frozen *empty* onto
    the freeing cpu's partial list: the case of the founding mail."""
    with slubcy.Machine(cpus=2, memory=4 << 20, slub_max_order=0) as m:
        c = m.kmem_cache_create("one", 4096)
        assert c.objects_per_slab == 1 and c.order == 0
        a = m.kmem_cache_alloc(c, cpu=0)
        b = m.kmem_cache_alloc(c, cpu=0)    # get_freelist() finds nothing: DEACTIVATE_BYPASS
        page = m.virt_to_slab(a)[0]
        st = m.cache_state_info(c)
        assert not st["slabs"][page]["frozen"] and st["slabs"][page]["inuse"] == 1
        m.kmem_cache_free(c, a, cpu=1)
        st = m.cache_state_info(c)
        assert st["slabs"][page]["inuse"] == 0 and st["slabs"][page]["frozen"]
        assert st["cpus"][1]["partial"] == [page]
        # only a flush (or a later drain) gets rid of it
        m.flush_all(c)
        assert page not in m.cache_state_info(c)["cpus"][1]["partial"]
        m.kmem_cache_free(c, b, cpu=0)
        m.validate()


def test_empty_slab_is_discarded_once_nr_partial_reaches_min_partial(m):
    # no cpu partials (a debug cache): slabs go straight to the node list
    c = m.kmem_cache_create("dbg", 512, flags=DEBUG)
    assert c.cpu_partial == 0 and c.min_partial == 5
    slabs = []
    for _ in range(8):
        slabs.append([m.kmem_cache_alloc(c) for _ in range(c.objects_per_slab)])
    assert m.cache_info(c)["nr_slabs"] == 8
    # make every slab partial (one free each), then empty them one by one
    for objs in slabs:
        m.kmem_cache_free(c, objs.pop())
    assert m.cache_info(c)["nr_partial"] == 8
    discarded = []
    for objs in slabs:
        before = m.cache_info(c)
        for a in objs:
            m.kmem_cache_free(c, a)
        after = m.cache_info(c)
        discarded.append(after["nr_slabs"] < before["nr_slabs"])
        # kept exactly while nr_partial < min_partial
        assert discarded[-1] == (before["nr_partial"] >= c.min_partial)
    # nr_partial 8, 7, 6, 5 >= min_partial: discarded; then 4 < 5: kept
    assert discarded == [True] * 4 + [False] * 4
    assert m.cache_info(c)["nr_partial"] == 4
    st = nonzero(m.cache_stat_info(c))
    assert st["FREE_REMOVE_PARTIAL"] == 4 and st["FREE_SLAB"] == 4
    m.validate()


def test_shrink_leaves_no_empty_slab_and_sorts_the_partial_list(m):
    c = m.kmem_cache_create("x", 128)
    arr = m.kmem_cache_alloc_bulk(c, 40 * c.objects_per_slab, cpu=0)
    by_page = {}
    for a in arr.tolist():
        by_page.setdefault(m.virt_to_slab(a)[0], []).append(a)
    live = []
    # free a different number of objects from each slab (some all), from cpu 1
    for i, (page, objs) in enumerate(sorted(by_page.items())):
        k = (i * 7) % (len(objs) + 1)
        m.kmem_cache_free_bulk(c, objs[:k], cpu=1)
        live += objs[k:]
    m.kmem_cache_shrink(c)
    st = m.cache_state_info(c)
    assert all(s["inuse"] > 0 for s in st["slabs"].values())
    assert all(cpu["page"] is None and cpu["partial"] == [] for cpu in st["cpus"])
    free = [st["slabs"][p]["objects"] - st["slabs"][p]["inuse"] for p in st["node"]["partial"]]
    promoted = [f for f in free if f <= 32]
    assert len(promoted) > 3
    assert free[: len(promoted)] == sorted(promoted)       # fewest free first, at the head
    assert m.validate()["x"] == len(live)
    m.kmem_cache_free_bulk(c, live)
    m.kmem_cache_shrink(c)
    assert m.cache_info(c)["nr_slabs"] == 0


def test_cpu_partial_drain(m):
    c = m.kmem_cache_create("x", 1024)        # cpu_partial 6
    assert c.cpu_partial == 6
    arr = m.kmem_cache_alloc_bulk(c, 20 * c.objects_per_slab, cpu=0)
    m.kmem_cache_alloc(c, cpu=0)
    by_page = {}
    for a in arr.tolist():
        by_page.setdefault(m.virt_to_slab(a)[0], []).append(a)
    # one remote free per full slab: each is frozen onto cpu 1's partial list
    for objs in by_page.values():
        m.kmem_cache_free(c, objs[0], cpu=1)
    st = m.cache_state_info(c)["cpus"][1]
    assert st["stat"]["CPU_PARTIAL_DRAIN"] > 0
    # the drain keeps the list at most cpu_partial objects + one slab
    assert len(st["partial"]) <= c.cpu_partial + 1
    assert st["stat"]["FREE_ADD_PARTIAL"] > 0     # drained slabs went to the node list
    m.validate()


def test_get_partial_node_takes_cpu_partial_slabs_too(m):
    c = m.kmem_cache_create("x", 256)             # cpu_partial 13: stop above 6 objects
    arr = m.kmem_cache_alloc_bulk(c, 6 * c.objects_per_slab, cpu=0)
    by_page = {}
    for a in arr.tolist():
        by_page.setdefault(m.virt_to_slab(a)[0], []).append(a)
    for objs in by_page.values():
        m.kmem_cache_free_bulk(c, objs[:2], cpu=1)    # 2 free objects per slab
    m.flush_all(c)                                  # everything to the node list
    assert m.cache_info(c)["nr_partial"] >= 5
    m.kmem_cache_alloc(c, cpu=2)
    st = m.cache_state_info(c)["cpus"][2]
    assert st["stat"]["ALLOC_FROM_PARTIAL"] == 1
    # available objects 2 (+2 +2 +2) must exceed cpu_partial/2 = 6: three more slabs
    assert st["stat"]["CPU_PARTIAL_NODE"] == 3
    assert len(st["partial"]) == 3
    m.validate()


def test_flush_deactivates_cpu_slabs(m):
    c = m.kmem_cache_create("x", 64)
    a = m.kmem_cache_alloc(c, cpu=0)
    b = m.kmem_cache_alloc(c, cpu=1)
    m.kmem_cache_free(c, b, cpu=0)      # a remote free into cpu 1's slab
    m.flush_all(c)
    st = m.cache_state_info(c)
    assert st["cpus"][0]["stat"]["CPUSLAB_FLUSH"] == 1
    assert st["cpus"][1]["stat"]["CPUSLAB_FLUSH"] == 1
    # cpu 1's slab had a remote free: DEACTIVATE_REMOTE_FREES, added at the tail
    assert st["cpus"][1]["stat"]["DEACTIVATE_REMOTE_FREES"] == 1
    # cpu 1's slab is empty and the node has < min_partial slabs: kept at the tail
    assert st["cpus"][1]["stat"]["DEACTIVATE_TO_TAIL"] == 1
    assert st["cpus"][0]["stat"]["DEACTIVATE_TO_HEAD"] == 1
    assert st["node"]["nr_partial"] == 2
    m.kmem_cache_free(c, a, cpu=2)
    m.kmem_cache_shrink(c)
    assert m.cache_info(c)["nr_slabs"] == 0


def test_order_fallback():
    with slubcy.Machine(cpus=1, nr_cpu_ids=64, memory=1 << 20) as m:
        big = m.kmem_cache_create("big", 1024)
        assert big.order == 3 and big.min == (0, 4)
        # fill the arena with order-0 kmalloc-8 slabs, then free every other one
        k8 = m.kmem_cache("kmalloc-8")
        by_page = {}
        with pytest.raises(slubcy.ArenaExhausted):
            while True:
                a = m.kmem_cache_alloc(k8)
                by_page.setdefault(m.virt_to_slab(a)[0], []).append(a)
        assert m.page_alloc_info()["pages_free"] == 0
        pages = sorted(by_page)
        for p in pages[::2]:
            m.kmem_cache_free_bulk(k8, by_page[p])
        m.kmem_cache_shrink(k8)
        info = m.page_alloc_info()
        assert sum(info["free_blocks"][1:]) == 0 and info["free_blocks"][0] > 0
        a = m.kmem_cache_alloc(big)
        assert m.cache_stat_info(big)["ORDER_FALLBACK"] == 1
        assert m.cache_stat_info(big)["ALLOC_SLAB"] == 1
        assert m.cache_state_info(big)["slabs"][m.virt_to_slab(a)[0]]["objects"] == 4
        m.validate()
        m.kmem_cache_free(big, a)
        for p in pages[1::2]:
            m.kmem_cache_free_bulk(k8, by_page[p])


def test_kmalloc_size_classes(m):
    expect = {1: 8, 8: 8, 9: 16, 16: 16, 17: 32, 33: 64, 65: 96, 96: 96, 97: 128, 128: 128,
              129: 192, 192: 192, 193: 256, 257: 512, 1000: 1024, 4096: 4096, 4097: 8192,
              8192: 8192}
    for size, cls in expect.items():
        a = m.kmalloc(size)
        page, _ = m.virt_to_slab(a)
        assert m.cache_info(m.kmem_cache(f"kmalloc-{cls}"))["nr_slabs"] >= 1
        name = next(k.name for k in m.caches if _owns(m, k, a))
        assert name == f"kmalloc-{cls}", size
        m.kfree(a)
    order2 = m.page_alloc_info()["alloc_blocks"][2]
    big = m.kmalloc(8193)           # kmalloc_large: page aligned, order 2
    assert big % 4096 == 0
    assert m.page_alloc_info()["alloc_blocks"][2] == order2 + 1
    m.kfree(big)
    assert m.page_alloc_info()["alloc_blocks"][2] == order2
    m.validate()


def _owns(m, cache, a):
    return any(m.virt_to_slab(a)[0] == p for p in m.cache_state_info(cache)["slabs"])


def test_ctor_runs_once_per_object_at_slab_creation(m):
    seen = []
    c = m.kmem_cache_create("ctor", 64, ctor=seen.append)
    assert c.offset == 64 and c.size == 72          # the free pointer moves after the object
    a = m.kmem_cache_alloc(c)
    assert len(seen) == c.objects_per_slab and a in seen
    m.write(a, b"abc")
    m.kmem_cache_free(c, a)
    assert m.read(a, 3) == b"abc"                   # the object is left intact while free
    m.kmem_cache_alloc(c)
    assert len(seen) == c.objects_per_slab


def test_page_allocator_buddies_merge_back():
    with slubcy.Machine(memory=64 << 20) as m:
        initial = m.page_alloc_info()
        caches = [m.kmem_cache_create(f"c{i}", s) for i, s in enumerate((8, 700, 3000, 20000))]
        live = [(c, m.kmem_cache_alloc_bulk(c, 300)) for c in caches]
        used = m.page_alloc_info()["pages_used"]
        expect = sum(m.cache_info(c)["nr_slabs"] << c.order for c in caches)
        assert used == expect
        for c, arr in live:
            m.kmem_cache_free_bulk(c, arr)
            m.kmem_cache_shrink(c)
        assert m.page_alloc_info() == initial
        m.validate()
