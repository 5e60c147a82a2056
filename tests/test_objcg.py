"""objcg (Linux 5.9): the slab's obj_cgroup vector (tagged, freed with its
slab), objects charged obj_full_size through the per-vCPU stocks, and a
memcg's charge exact after offline and reparenting."""
import os
import resource

import pytest

import slubcy
from slubcy import workloads

ACCT = slubcy.SLAB_ACCOUNT
PAGE = 4096
PTR = 8                         # sizeof(struct obj_cgroup *)


def full(c):
    """obj_full_size(): the object's slot and its pointer in the vector."""
    return c.size + PTR


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def check_charge(g, live_bytes):
    """The memcg's page counter holds its objects' bytes and the
    pre-charged rest (stocks, leftovers) -- less than a page for each
    vCPU's stock and each leftover."""
    assert g.nr_bytes == live_bytes
    assert g.nr_pages * PAGE == g.nr_bytes + g.precharged_bytes
    assert 0 <= g.precharged_bytes < 4 * PAGE


def test_large_objects_churn_runs_clean():
    """Slabs of 6 objects (5000 B, order 3): their vector (48 bytes) was once
    written to as a struct mem_cgroup when the slab went (heap overflow)."""
    with slubcy.Machine(cpus=2, memory=512 << 20, policy="objcg") as m:
        # churn runs on caches of these names, made here with large objects
        for name, _, _ in workloads.CHURN_CACHES:
            c = m.kmem_cache_create(name, 5000, flags=ACCT)
            assert c.objects_per_slab <= 7
        r = workloads.run("churn", cpus=2, ops=400_000, seed=1, machine=m, outlive=0.5,
                          job_objects=64, slots=256)
        assert r.metrics["offlines"] > 500
        assert all(w["canary_errors"] == 0 and w["lost"] == 0 for w in r.per_cpu)
        m.validate()
        # every object is freed and every job memcg offline: nothing is
        # charged but what the stocks and leftovers hold
        root = m.root_mem_cgroup
        check_charge(root, 0)
        assert m.memcg_stat_info()["dying_memcgs"] == 0


def test_python_api_churn_of_large_objects():
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("big", 5000, flags=ACCT)
        assert (c.objects_per_slab, c.order) == (6, 3)
        g = m.memcg_create("g")
        for i in range(300):
            a = m.kmem_cache_alloc_bulk(c, 60, cpu=i % 2, memcg=g)
            check_charge(g, 60 * full(c))
            m.kmem_cache_free_bulk(c, a, cpu=1 - i % 2)
            m.kmem_cache_shrink(c)
            assert m.cache_info(c)["nr_slabs"] == 0
        check_charge(g, 0)
        m.validate()


def test_vectors_are_freed_with_their_slabs():
    """RSS stays flat over 100k discards of slabs that held accounted
    objects (64 objects a slab: a 512-byte vector each, 51 MB if leaked)."""
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("small", 64, flags=ACCT)
        per = c.objects_per_slab
        g = m.memcg_create("g")
        discards = 0

        def rounds(n):
            nonlocal discards
            for i in range(n):
                a = m.kmem_cache_alloc_bulk(c, 100 * per, cpu=i % 2, memcg=g)
                discards += m.cache_info(c)["nr_slabs"]     # all go: by the frees or the shrink
                m.kmem_cache_free_bulk(c, a, cpu=i % 2)
                m.kmem_cache_shrink(c)
                assert m.cache_info(c)["nr_slabs"] == 0

        rounds(50)
        before = rss_bytes()
        discards = 0
        rounds(1000)
        after = rss_bytes()
        assert discards >= 100_000
        assert after - before < 8 << 20, f"RSS grew by {(after - before) >> 20} MiB"
        check_charge(g, 0)
        m.validate()


def test_objcg_slab_is_never_uncharged_as_a_memcg():
    """The vector is tagged: discarding a slab whose objects were charged
    leaves every memcg's references and page counter as they were."""
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("big", 5000, flags=ACCT)
        g = m.memcg_create("g")
        root = m.root_mem_cgroup
        for rnd in range(50):
            a = m.kmem_cache_alloc_bulk(c, 6 * 8, cpu=rnd % 2, memcg=g)
            m.kmem_cache_free_bulk(c, a, cpu=rnd % 2)
            state = (g.refcnt, g.nr_pages, g.precharged_bytes, root.refcnt, root.nr_pages)
            assert m.cache_info(c)["nr_slabs"] >= 8
            m.kmem_cache_shrink(c)                  # the discards
            assert m.cache_info(c)["nr_slabs"] == 0
            assert (g.refcnt, g.nr_pages, g.precharged_bytes, root.refcnt,
                    root.nr_pages) == state
        assert g.refcnt == 2                        # online + its obj_cgroup's
        m.validate()


def test_stock_charges_whole_pages_and_stays_per_vcpu():
    with slubcy.Machine(cpus=2, memory=32 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("d", 192, flags=ACCT)
        g = m.memcg_create("g")
        a = m.kmem_cache_alloc(c, cpu=0, memcg=g)
        # one page charged, the rest of it kept in vCPU 0's stock
        assert (g.nr_pages, g.nr_bytes, g.precharged_bytes) == (1, full(c), PAGE - full(c))
        b = m.kmem_cache_alloc(c, cpu=0, memcg=g)
        assert (g.nr_pages, g.nr_bytes) == (1, 2 * full(c))    # from the stock
        x = m.kmem_cache_alloc(c, cpu=1, memcg=g)              # vCPU 1's own stock
        assert (g.nr_pages, g.nr_bytes) == (2, 3 * full(c))
        for p, cpu in ((a, 1), (b, 0), (x, 1)):
            m.kmem_cache_free(c, p, cpu=cpu)
        check_charge(g, 0)
        m.validate()


def test_bad_inputs_leave_the_charge_alone():
    with slubcy.Machine(cpus=2, memory=32 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("d", 192, flags=ACCT)
        g = m.memcg_create("g")
        a = m.kmem_cache_alloc(c, cpu=0, memcg=g)
        m.kmem_cache_free(c, a, cpu=0)
        state = (g.nr_pages, g.nr_bytes, g.precharged_bytes)
        with pytest.raises(slubcy.errors.DoubleFree):
            m.kmem_cache_free(c, a, cpu=1)
        with pytest.raises(slubcy.errors.InvalidCPU):
            m.kmem_cache_alloc(c, cpu=2, memcg=g)
        assert (g.nr_pages, g.nr_bytes, g.precharged_bytes) == state
        m.validate()
