"""The memcg charge counters, exactly: pages per memcg under per-memcg
caches (what its child caches' slabs imply), bytes per memcg under objcg
(obj_full_size per live object), before and after allocations, frees,
offline and reparenting."""
import pytest

import slubcy

ACCT = slubcy.SLAB_ACCOUNT
PAGE = 4096
PTR = 8                         # sizeof(struct obj_cgroup *)


def slab_pages(m, memcg):
    """Pages of the slabs of the child caches charged to `memcg` (a
    reparented dead cache is charged to the parent), from cache_info()."""
    return sum(row["nr_slabs"] * row["pages_per_slab"] for row in m.cache_info()
               if row["root"] is not None and row["memcg"] == memcg.name)


def pinned(policy):
    return policy in ("keep", "naive", "barrier")      # pages pin the memcg (up to 5.2)


@pytest.mark.parametrize("policy", ["keep", "naive", "barrier", "reparent"])
def test_slab_pages_charged_per_memcg(policy, create_child_caches):
    with slubcy.Machine(cpus=2, memory=64 << 20, policy=policy) as m:
        c = m.kmem_cache_create("acct", 512, flags=ACCT)
        d = m.kmem_cache_create("acct2", 5000, flags=ACCT)
        root = m.root_mem_cgroup
        g = m.memcg_create("g")
        assert g.nr_pages == 0
        create_child_caches(m, g, c, d)
        assert g.nr_pages == 0
        objs = [(c, m.kmem_cache_alloc(c, cpu=i % 2, memcg=g)) for i in range(400)]
        objs += [(d, m.kmem_cache_alloc(d, cpu=i % 2, memcg=g)) for i in range(40)]
        n = slab_pages(m, g)
        assert n >= 400 * 512 // PAGE and g.nr_pages == n
        # online (1) + one per page (pages pin the memcg) or per child cache
        assert g.refcnt == 1 + (n if pinned(policy) else 2)
        assert root.nr_pages == 0

        # the frees empty most slabs: discarded, by the frees or the shrink
        for k, (cache, a) in enumerate(objs):
            if k % 10:
                m.kmem_cache_free(cache, a, cpu=k % 2)
        objs = objs[::10]
        for child in m.child_caches():
            m.kmem_cache_shrink(child)
        n2 = slab_pages(m, g)
        assert 0 < n2 < n and g.nr_pages == n2
        assert g.refcnt == 1 + (n2 if pinned(policy) else 2)

        m.memcg_offline(g)
        m.policy_quiesce()
        if policy == "reparent":
            # the dead caches and their charge went to the parent
            assert g.freed and g.nr_pages == 0
            assert slab_pages(m, root) == n2 and root.nr_pages == n2
        else:
            # the dead caches keep the pages they still have, charged to g
            assert g.dying and g.nr_pages == slab_pages(m, g) > 0
            # the online reference went; 3.16 (keep): each cache never
            # unregistered (it held pages at offline) pins its memcg for good
            kept = len(g.kmem_caches) if policy == "keep" else 0
            assert g.refcnt == g.nr_pages + kept
            assert root.nr_pages == 0

        for k, (cache, a) in enumerate(objs):
            m.kmem_cache_free(cache, a, cpu=k % 2)
        for child in m.child_caches():
            m.kmem_cache_shrink(child)
        m.policy_quiesce()
        assert slab_pages(m, g) == 0 and slab_pages(m, root) == 0
        assert g.nr_pages == 0 and root.nr_pages == 0
        if policy != "keep":
            assert g.freed
        m.validate()


def full(c):
    return c.size + PTR


def check_charge(g, live_bytes, ncpus=2):
    """objcg: g's page counter holds its live objects' bytes and what the
    stocks and leftovers pre-charged (less than a page each)."""
    assert g.nr_bytes == live_bytes
    assert g.nr_pages * PAGE == live_bytes + g.precharged_bytes
    assert 0 <= g.precharged_bytes < 2 * ncpus * PAGE


def test_objcg_bytes_charged_per_memcg():
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("acct", 192, flags=ACCT | slubcy.SLAB_HWCACHE_ALIGN)
        d = m.kmem_cache_create("big", 5000, flags=ACCT)
        plain = m.kmem_cache_create("plain", 64)
        g = m.memcg_create("g")
        h = m.memcg_create("h")
        check_charge(g, 0)
        objs = [(c, m.kmem_cache_alloc(c, cpu=i % 2, memcg=g)) for i in range(300)]
        objs += [(d, a) for a in m.kmem_cache_alloc_bulk(d, 30, cpu=1, memcg=g)]
        other = m.kmem_cache_alloc_bulk(c, 50, cpu=0, memcg=h)
        m.kmem_cache_alloc(plain, memcg=g)                  # unaccounted
        live = 300 * full(c) + 30 * full(d)
        check_charge(g, live)
        check_charge(h, 50 * full(c))
        # frees on either vCPU, by one and in bulk
        for k, (cache, a) in enumerate(objs[:200]):
            m.kmem_cache_free(cache, a, cpu=k % 2)
        m.kmem_cache_free_bulk(d, [a for cache, a in objs[300:320]], cpu=0)
        objs = objs[200:300] + objs[320:]
        live = 100 * full(c) + 10 * full(d)
        check_charge(g, live)
        check_charge(h, 50 * full(c))
        m.kmem_cache_free_bulk(c, other, cpu=1)
        check_charge(h, 0)
        check_charge(g, live)
        m.validate()


def test_objcg_offline_reparents_the_charge_exactly():
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("acct", 192, flags=ACCT)
        root = m.root_mem_cgroup
        g = m.memcg_create("g")
        h = m.memcg_create("h", parent=g)
        mine = [m.kmem_cache_alloc(c, cpu=i % 2, memcg=g) for i in range(70)]
        kids = [m.kmem_cache_alloc(c, cpu=i % 2, memcg=h) for i in range(130)]
        check_charge(g, 70 * full(c))
        check_charge(h, 130 * full(c))
        g_pages, h_pages = g.nr_pages, h.nr_pages

        m.memcg_offline(h)          # h's obj_cgroup now charges g, with h's pages
        assert h.freed
        assert g.nr_pages == g_pages + h_pages
        check_charge(g, 200 * full(c))
        for k, a in enumerate(kids[:100]):
            m.kmem_cache_free(c, a, cpu=k % 2)            # uncharged from g now
        check_charge(g, 100 * full(c))

        m.memcg_offline(g)          # both obj_cgroups now charge the root
        assert g.freed
        check_charge(root, 100 * full(c))
        for k, a in enumerate(kids[100:] + mine):
            m.kmem_cache_free(c, a, cpu=k % 2)
        check_charge(root, 0)
        # another memcg's charges switch both stocks away: the reparented
        # obj_cgroups lose their last references and give back their pages
        x = m.memcg_create("x")
        objs = [m.kmem_cache_alloc(c, cpu=cpu, memcg=x) for cpu in (0, 1)]
        assert root.nr_pages == 0 and root.precharged_bytes == 0
        assert root.refcnt == 2                 # its own, and x's pin
        check_charge(x, 2 * full(c))
        for cpu, a in enumerate(objs):
            m.kmem_cache_free(c, a, cpu=cpu)
        check_charge(x, 0)
        m.validate()
