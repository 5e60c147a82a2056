"""Memory cgroups, the dead-cache policies, the 2014 race replayed, and the
churn workload's published shapes (loose bounds)."""
import statistics

import pytest

from slubcy import policies
import slubcy
from slubcy import race, workloads

ACCT = slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN
PREEMPT = "slab_free:before_cmpxchg=0.5:50us:spin"


# -- the replay -----------------------------------------------------------

@pytest.mark.parametrize("policy,leaks,blocks", [
    ("naive", True, False),          # the 2014 race: the slab stays on vCPU 1's partial list
    ("keep", True, False),           # 3.16: nothing stops it either
    ("barrier", False, False),       # 4.11 async: put_cpu_partial sees cpu_partial == 0
    ("barrier:sync", False, False),  # 4.7: the preempted task holds no grace period
    ("barrier:kick", False, False),  # 4.0: the IPI is taken while vCPU 1 is preempted
    ("reparent", False, False),
    ("reap", False, False),          # the reaper drains it on its next pass (reap:ipi)
    ("reap:percpu", False, False),   # vCPU 1's own reap pass flushes its partial list
    ("objcg", False, False),         # no dead caches at all
])
def test_replay(policy, leaks, blocks):
    r = race.replay(policy)
    assert r["leaked"] is leaks
    assert r["offline_blocked"] is blocks
    assert r["final"]["leaked_caches"] == (1 if leaks else 0)
    assert any("preempted before its cmpxchg_double" in s["what"] for s in r["steps"])
    assert not any(s.get("deferred_waits") for s in r["steps"])
    if policy == "naive":
        assert "vCPU 1's partial list" in r["final"]["slab"] and "0/" in r["final"]["slab"]
        assert r["final"]["memcg"] == "dying"
    if policy in ("reparent", "objcg", "barrier"):
        assert r["final"]["memcg"] == "freed"


@pytest.mark.parametrize("policy", ["barrier:kick", "barrier:sync", "barrier", "reparent"])
def test_the_put_cpu_partial_check_is_what_closes_the_race(policy):
    """With the held free preempted (quiescent, taking IPIs), every barrier
    completes while it is held: no policy closes the race by waiting it out.
    Switch off put_cpu_partial()'s cpu_partial == 0 check and each leaks."""
    with_check = race.replay(policy)
    without = race.replay(policy, dead_check=False)
    assert not with_check["leaked"] and not with_check["offline_blocked"]
    assert without["leaked"] and not without["offline_blocked"]
    assert "vCPU 1's partial list" in without["final"]["slab"]


@pytest.mark.parametrize("policy,leaks,blocks", [
    ("barrier:none", True, False),   # no wait: the shrink's flush misses the buffered push
    ("naive", True, False),
    ("barrier:kick", False, False),  # the IPI drains vCPU 1's store buffer: the flush sees it
    ("barrier:sync", False, True),   # synchronize_sched waits for the preempt-disabled section
    ("barrier", False, False),       # the grace period, hence the shrink, waits for it
    ("reparent", False, False),
])
def test_replay_put_cpu_partial_window(policy, leaks, blocks):
    """vCPU 1 held inside put_cpu_partial with preemption off, its load of
    cpu_partial done (alive) and its push to c->partial not yet visible: the
    window the barrier exists for.  Without a wait it leaks."""
    r = race.replay(policy, window="put_cpu_partial")
    assert r["leaked"] is leaks
    assert r["offline_blocked"] is blocks
    if policy in ("barrier", "reparent"):
        assert any(s.get("deferred_waits") for s in r["steps"])


def test_offline_latency_excludes_preemption_of_the_freeing_tasks():
    """Offline latency under heavy preemption at the race window: a
    preempted task holds no grace period, so barrier:sync's offlines do not
    wait out the 2 ms preemptions (they did when preempted vCPUs held grace
    periods).  Median offline latency stays below one preemption plus the
    five tick-bound grace periods (hz=1000: at most 2 ms each)."""
    r = workloads.run("churn", cpus=2, seconds=0.6, seed=2, policy="barrier:sync", hz=1000,
                      outlive=1.0, preempt="slab_free:before_cmpxchg=0.3:2ms:sleep")
    assert r.metrics["offlines"] > 5
    assert r.metrics["offline_p50_us"] < 5 * 2000 + 2000


def test_cli_race_json(capsys):
    from slubcy.cli import main
    assert main(["race", "--policy", "naive", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "naive" and out["leaked"] is True and len(out["steps"]) >= 5
    assert out["offline_blocked"] is False
    assert main(["race", "--policy", "barrier:sync", "--window", "put_cpu_partial", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["leaked"] is False and out["offline_blocked"] is True


# -- churn ----------------------------------------------------------------

def churn(policy, seed=3, seconds=0.6, cpus=2, **kw):
    kw.setdefault("preempt", workloads.MAIN_PREEMPT)
    return workloads.run("churn", cpus=cpus, seconds=seconds, seed=seed, policy=policy, **kw)


@pytest.mark.parametrize("cpus", [2, 4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_churn_naive_leaks_under_preemption(cpus, seed):
    """The 2014 race, found by the workload itself: with the main job's
    preemption at the race window, naive leaks on every seed and vCPU
    count (measured: 20-55 per 1000 offlines)."""
    r = churn("naive", seed=seed, cpus=cpus)
    assert r.metrics["offlines"] > 100
    assert r.metrics["leaked_caches"] > 0
    assert r.metrics["leak_rate"] == pytest.approx(
        1000 * r.metrics["leaked_caches"] / r.metrics["offlines"])
    assert 0 < r.metrics["leaked_memcgs"] <= r.metrics["leaked_caches"]
    assert all(w["canary_errors"] == 0 and w["lost"] == 0 for w in r.per_cpu)


@pytest.mark.parametrize("policy", ["barrier", "barrier:sync", "barrier:kick", "reparent",
                                    "reap", "reap:percpu:5ms", "objcg"])
@pytest.mark.parametrize("seed", [3, 4])
def test_churn_safe_policies_never_leak(policy, seed):
    # barrier:sync at HZ=1000: five tick-bound grace periods per offline
    r = churn(policy, seed=seed, hz=1000 if policy == "barrier:sync" else None)
    assert r.metrics["offlines"] > 30, r.metrics
    assert r.metrics["leaked_caches"] == 0 and r.metrics["leaked_memcgs"] == 0, r.metrics
    assert all(w["canary_errors"] == 0 and w["lost"] == 0 and w["offline_errors"] == 0
               for w in r.per_cpu)


def test_churn_without_preemption_leaks_far_less():
    """Without preemption at the window the race needs the offline's mark and
    flush to land inside the few instructions of a freeze on another vCPU
    (or a vCPU thread descheduled there by the host: a vCPU stall, not
    quiescent).  Injected preemption at the window (here half the freezes,
    200 us each) makes it many times likelier.  Measured: 0-10 per 1000
    offlines without, 50-85 with; the quiet rate rises with the offline rate
    and falls under host load, so the two are compared with the exact test,
    not a fixed factor.  (The main job's 1 ms slices slow the churn so much
    that its rate, 20-25, is too close to the quiet one to test in a second.)
    (It was frequent once, an artifact: a request pending before the
    window was taken inside it.)"""
    from slubcy.analysis.compare import rate_test
    quiet = churn("naive", seed=2, seconds=1.0, preempt=None)
    loud = churn("naive", seed=2, seconds=1.0, preempt="slab_free:before_cmpxchg=0.5:200us:sleep")
    assert quiet.metrics["offlines"] > 500 and loud.metrics["offlines"] > 100
    q, n = (quiet.metrics[k] for k in ("leaked_caches", "offlines"))
    lq, ln = (loud.metrics[k] for k in ("leaked_caches", "offlines"))
    assert q / n < lq / ln and rate_test(lq, ln, q, n) < 0.001


def test_churn_keep_retains_dead_caches():
    """3.16: a cache with objects at offline is never unregistered: leaked
    by design, race or not."""
    r = churn("keep", preempt=None)
    assert r.metrics["leaked_caches"] > 0 and r.metrics["dying_memcgs"] > 0
    assert r.metrics["leaked_memcgs"] > 0


def test_dying_memcgs_grow_with_per_memcg_caches_but_not_when_reparented():
    """Gushchin 2019 (v5.3 cover letter): dying cgroups grow steadily with
    per-memcg caches pinning them (1,560 after a week) and stay bounded once
    slab memory is reparented (69).  Loose: the long-lived pool pins them."""
    runs = {p: workloads.run("churn", cpus=2, seconds=1.0, seed=5, policy=p, outlive=0.5,
                             slots=4096, sample_every=0.01)
            for p in ("barrier", "reparent", "objcg")}
    # (barrier: 4.11's async barrier, the "original" kernels of the cover
    # letter; barrier:sync's tick-bound offlines run too few jobs in a second)
    grow = [row["dying_memcgs"] for row in runs["barrier"].series]
    assert max(grow) >= 50
    assert grow[0] <= max(grow) / 2                   # it grew from the start of the run
    for p in ("reparent", "objcg"):
        assert max(row["dying_memcgs"] for row in runs[p].series) <= 2
    assert runs["barrier"].series_frame().shape[0] == len(grow)


@pytest.mark.parametrize("policy", ["barrier", "barrier:batch"])
def test_barrier_async_shrinks_keep_up_with_churn(policy):
    """4.11's deferred shrinks run on the workqueue (the RCU thread here),
    off the vCPUs: one work item per dead cache, each with its own
    flush_all (the kernel's form, `barrier`), or one flush request per vCPU
    for a whole batch (`barrier:batch`).  The dead caches they retire must
    not fill the arena, and with batched flushes they must not pile up
    beyond a quarter of it.  (They once did: shrinking inside the RCU
    callback on a worker, the backlog filled the 1 GiB arena in a second:
    262k retained pages.)  Per-cache work items fall behind this churn rate
    (~8,000 offlines/s, 50x bugzilla 190841's loop) when the vCPU threads
    that must take each flush are not running: the retained pages then
    depend on the host's load, so only the batch gets a bound."""
    r = workloads.run("churn", cpus=2, seconds=0.5, seed=1, policy=policy)
    arena_pages = (1 << 30) // 4096
    assert r.metrics["offlines"] > 200 and r.metrics["leaked_caches"] == 0
    assert sum(w["alloc_failures"] for w in r.per_cpu) == 0
    if policy == "barrier:batch":
        assert max(row["retained_pages"] for row in r.series) <= arena_pages // 4


def test_deferred_shrink_runs_on_the_workqueue(create_child_caches):
    with slubcy.Machine(cpus=2, memory=32 << 20, policy="barrier") as m:
        caches = [m.kmem_cache_create(n, 192, flags=ACCT) for n in ("a", "b", "c")]
        g = m.memcg_create("job")
        create_child_caches(m, g, *caches)
        objs = [(c, m.kmem_cache_alloc_bulk(c, 40, cpu=1, memcg=g)) for c in caches]
        for c, o in objs:
            m.kmem_cache_free_bulk(c, o, cpu=1)       # empty, but cached on vCPU 1
        before = m.rcu_stat_info()["deferred_shrinks"]
        m.memcg_offline(g)
        m.policy_quiesce()
        assert m.rcu_stat_info()["deferred_shrinks"] - before == 3
        assert m.child_caches() == [] and g.freed and g.nr_pages == 0
        m.validate()


def test_reparented_dead_caches_go_in_any_order(create_child_caches):
    """5.3 splices every dead child cache onto the parent's list; each then
    leaves it when its last slab goes, in whatever order (list_del of
    children_node: O(1), and the list stays linked both ways)."""
    import random
    with slubcy.Machine(cpus=1, memory=64 << 20, policy="reparent") as m:
        c = m.kmem_cache_create("dentry", 192, flags=ACCT)
        parent = m.memcg_create("parent")
        kids = [m.memcg_create(f"k{i}", parent=parent) for i in range(40)]
        for g in kids:
            create_child_caches(m, g, c)
        objs = {g.name: m.kmem_cache_alloc_bulk(c, 30, memcg=g) for g in kids}
        for g in kids:
            m.memcg_offline(g)
        m.policy_quiesce()
        assert all(g.freed for g in kids)
        assert len(parent.kmem_caches) == 40
        order = [g.name for g in kids]
        random.Random(0).shuffle(order)
        for i, name in enumerate(order):
            m.kmem_cache_free_bulk(c, objs[name])
            m.policy_quiesce()
            m.validate()
            left = parent.kmem_caches
            assert len(left) == 40 - i - 1
            assert not any(x.name.endswith(f":{name})") for x in left)


def test_objcg_needs_markedly_fewer_slab_pages():
    """Gushchin 2020 (v5.9): with many small cgroups, one set of caches for
    all saves 30-45% of slab memory.  Loose bound: at least a third less slab memory per live object."""
    # steady state: slab pages sampled every 10 ms after the first quarter
    # (the count at the end of a run swings with where the jobs stand); half
    # of each job's dentries and inodes stay cached 50 ms, so many dead
    # memcgs' objects are live at once, each memcg's in slabs of its own
    runs = {p: workloads.run("churn", cpus=2, seconds=0.4, seed=3, policy=p, outlive=0.5,
                             lifetime=0.05, slots=65536, sample_every=0.01)
            for p in ("barrier", "objcg")}
    # what saves the memory: objects of many memcgs share slabs, so the slots
    # in use per allocated slot (at the end of the run, the cached objects
    # live) are far higher -- measured 0.78-0.98 against 0.11-0.43.  (Pages
    # alone compare badly: objcg runs 2-4x more jobs in the same time, so
    # more cached objects are live; slab memory per live object is
    # 1 / utilization.)
    use = {p: r.metrics["utilization"] for p, r in runs.items()}
    assert use["objcg"] >= 1.5 * use["barrier"]


def test_barrier_async_offlines_with_far_less_latency_than_sync():
    """4.11 vs 4.7: one asynchronous grace period for a batch instead of one
    synchronous period per cache (bugzilla 190841).  The latency runs from
    rmdir's queueing to the end of the kworker's work item, so it includes
    the wait behind the items queued before and for the kworker thread to be
    scheduled (3+ threads on 2 shared cores): the async tail is that noise,
    milliseconds when the shared machine is loaded; sync's median is five
    tick-bound grace periods, 20-40 ms at HZ=250."""
    # grace periods end at a tick (HZ=250 by default): sync waits for five
    # per offline, one per cache; async for none
    sync = churn("barrier:sync", preempt=None)
    asyn = churn("barrier", preempt=None)
    assert sync.metrics["offline_p50_us"] >= 10 * asyn.metrics["offline_p50_us"]
    assert sum(sync.offline_us) / len(sync.offline_us) >= 3 * sum(asyn.offline_us) / len(asyn.offline_us)


def test_churn_offline_from_inside_the_workload_and_metrics_names():
    r = churn("reap", preempt=None, seconds=0.3)
    assert set(workloads.METRICS) == set(r.metrics)
    df = r.to_frame()
    assert list(df.columns[-len(workloads.METRICS):]) == list(workloads.METRICS)
    # the workload's shape is recorded with the run
    assert {"job_objects", "outlive", "handoff", "lifetime", "reclaim_batch", "hz"} <= set(df.columns)
    assert df.job_objects.iloc[0] == workloads.CHURN_DEFAULTS["job_objects"]
    assert sum(w["jobs"] for w in r.per_cpu) == r.metrics["offlines"]


# -- memcg API and policies -----------------------------------------------

@pytest.mark.parametrize("policy", ["keep", "naive", "barrier", "reparent", "reap", "objcg"])
def test_memcg_lifecycle(policy, create_child_caches):
    with slubcy.Machine(cpus=2, memory=32 << 20, policy=policy) as m:
        c = m.kmem_cache_create("dentry", 192, flags=ACCT)
        plain = m.kmem_cache_create("plain", 64)
        g = m.memcg_create("job")
        create_child_caches(m, g, c)
        objs = [m.kmem_cache_alloc(c, cpu=i % 2, memcg=g) for i in range(100)]
        other = m.kmem_cache_alloc(plain, memcg=g)          # unaccounted: the root cache
        if policy == "objcg":
            # obj_full_size(): the object's slot and its obj_cgroup pointer
            assert m.child_caches() == [] and g.nr_bytes == 100 * (c.size + 8)
        else:
            child = m.child_caches(c)
            assert [x.name for x in child] == ["dentry(0:job)"] and g.nr_pages > 0
            assert m.virt_to_slab(objs[0])[0] in m.cache_state_info(child[0])["slabs"]
        m.kmem_cache_free(plain, other)
        for a in objs[:50]:
            m.kmem_cache_free(c, a, cpu=1)                  # root cache frees a child's object
        m.memcg_offline(g)
        assert not g.online
        with pytest.raises(ValueError):
            m.kmem_cache_alloc(c, memcg=g)
        with pytest.raises(ValueError):
            m.memcg_offline(g)
        for a in objs[50:]:
            m.kfree(a, cpu=0)
        m.policy_quiesce()
        st = m.memcg_stat_info()
        if policy == "keep":
            # 3.16: the cache held objects at offline, so it was never
            # unregistered: it stays, dead, with the empty slabs SLUB keeps
            # (min_partial, cpu partials), and its memcg stays dying
            assert st["leaked_caches"] == 1 and g.dying and st["dying_memcgs"] == 1
            assert [x.name for x in m.child_caches(c)] == ["dentry(0:job)"]
            m.kmem_cache_shrink(m.child_caches(c)[0])
            st = m.memcg_stat_info()
            assert st["leaked_caches"] == 0 and st["dead_caches"] == 1 and g.dying
        else:
            assert st["leaked_caches"] == 0 and g.freed and st["dying_memcgs"] == 0
        m.validate()


def test_keep_unregisters_only_the_caches_empty_at_offline(create_child_caches):
    """Linux 3.16 memcg_unregister_all_caches(): at offline each cache is
    shrunk and unregistered only if it holds no page then.  One that held
    objects stays for good -- dead, with its memcg dying -- even once every
    object is freed, the machine quiesced and the cache shrunk to nothing
    (no last-page trigger since 3.16)."""
    with slubcy.Machine(cpus=2, memory=32 << 20, policy="keep") as m:
        empty_root = m.kmem_cache_create("empty", 192, flags=ACCT)
        busy_root = m.kmem_cache_create("busy", 192, flags=ACCT)
        g = m.memcg_create("job")
        create_child_caches(m, g, empty_root, busy_root)
        gone = m.kmem_cache_alloc_bulk(empty_root, 50, cpu=0, memcg=g)
        kept = m.kmem_cache_alloc_bulk(busy_root, 50, cpu=1, memcg=g)
        m.kmem_cache_free_bulk(empty_root, gone, cpu=1)     # slabs cached, no object
        [empty] = m.child_caches(empty_root)
        [busy] = m.child_caches(busy_root)
        destroyed = m.memcg_stat_info()["caches_destroyed"]
        m.memcg_offline(g)
        # unregistered at offline, though busy's pages still pin the memcg
        assert empty.destroyed and m.child_caches(empty_root) == []
        assert m.memcg_stat_info()["caches_destroyed"] == destroyed + 1
        assert [x.name for x in g.kmem_caches] == [busy.name]
        m.kmem_cache_free_bulk(busy_root, kept, cpu=0)
        m.policy_quiesce()
        m.kmem_cache_shrink(busy)
        st = m.memcg_stat_info()
        assert not busy.destroyed and m.child_caches(busy_root) == [busy]
        assert m.cache_info(busy)["nr_slabs"] == 0 and g.nr_pages == 0
        assert st["dead_caches"] == 1 and st["leaked_caches"] == 0
        assert g.dying and not g.freed and st["dying_memcgs"] == 1
        assert st["caches_destroyed"] == destroyed + 1
        m.validate()


@pytest.mark.parametrize("spec,attr", [("reap:percpu:1ms", "passes"), ("reap:ipi:1ms", "reaps")])
def test_reapers_run_periodically_during_a_run(spec, attr):
    """With a short PERIOD the reaper works during the run: reap:percpu on
    every vCPU, by the worker running it (run_local_timers; quiesce adds
    one pass per idle vCPU at the end), reap:ipi from its thread."""
    p = policies.get_policy(spec)
    with slubcy.Machine(cpus=2, memory=256 << 20, policy=p) as m:
        r = workloads.run("churn", machine=m, seconds=0.3, seed=2, outlive=0.5)
        assert r.metrics["leaked_caches"] == 0 and r.metrics["offlines"] > 0
        if attr == "passes":
            assert len(p.passes) == 2 and min(p.passes) >= 2      # >= 1 by the worker
            assert len(p.skipped) == 2
        else:
            assert p.reaps >= 3                                   # >= 2 by the thread
        m.validate()


def test_memcg_bad_input():
    with slubcy.Machine(memory=8 << 20, policy="barrier") as m, \
            slubcy.Machine(memory=8 << 20, policy="barrier") as m2:
        c = m.kmem_cache_create("d", 64, flags=ACCT)
        g = m.memcg_create("a")
        for bad in ("", "x" * 48, 3):
            with pytest.raises(ValueError):
                m.memcg_create(bad)
        with pytest.raises(TypeError):
            m.memcg_create("b", parent="a")
        with pytest.raises(TypeError):
            m.kmem_cache_alloc(c, memcg="a")
        with pytest.raises(TypeError):
            m.kmem_cache_alloc(c, memcg=m2.memcg_create("x"))
        with pytest.raises(ValueError):
            m.memcg_offline(m.root_mem_cgroup)
        with pytest.raises(TypeError):
            m.memcg_offline(None)
        child = m.memcg_create("child", parent=g)
        m.memcg_offline(child)
        with pytest.raises(ValueError):
            m.memcg_create("grandchild", parent=child)
        m.validate()
    with slubcy.Machine(memory=8 << 20) as m:          # no policy
        g = m.memcg_create("a")
        with pytest.raises(slubcy.SlubError):
            m.memcg_offline(g)


def test_policy_registry():
    names = policies.available()
    assert {"keep", "naive", "barrier", "reparent", "reap", "objcg"} <= set(names)
    for row in policies.describe_all():
        assert row["kernel"] and row["doc"]
    assert policies.get_policy("barrier:sync").options == "sync"
    assert policies.get_policy("reap:20ms").period == pytest.approx(0.02)
    # reap alone is reap:ipi; the defaults are the kernel's figures
    for spec, variant, period in [("reap", "ipi", 30.0), ("reap:20ms", "ipi", 0.02),
                                  ("reap:ipi", "ipi", 30.0), ("reap:percpu", "percpu", 2.0),
                                  ("reap:percpu:5ms", "percpu", 0.005)]:
        p = policies.get_policy(spec)
        assert (p.variant, p.name) == (variant, f"reap:{variant}")
        assert p.period == pytest.approx(period)
    specs = policies.compare_specs()
    assert {"reap:ipi", "reap:percpu"} <= set(specs) and "reap" not in specs
    assert set(policies.available()) - {"reap"} <= set(specs)
    for bad in ("nope", "barrier:later", "reap:0ms", "", None, "reap:bogus", "reap:bogus:5ms",
                "reap:percpu:", "reap:percpu:0", "reap:percpu:soon", "reap:ipi:-1ms",
                "reap:percpu:5ms:x", "reap:2h", "reap:7200s"):
        with pytest.raises(ValueError):
            policies.get_policy(bad)
    with pytest.raises(ValueError):
        slubcy.Machine(policy="nope")


@pytest.mark.parametrize("policy", ["keep", "naive", "objcg", "reap"])
def test_rcu_callbacks_run_without_workers(policy):
    """Memcg lifecycles driven from Python alone (no worker runs): the C
    call_rcu callbacks that free memcgs, objcgs and caches still run, so
    the backlog stays bounded instead of growing until close()."""
    import time
    with slubcy.Machine(cpus=2, memory=64 << 20, policy=policy) as m:
        c = m.kmem_cache_create("acct", 64, flags=slubcy.SLAB_ACCOUNT)
        for i in range(300):
            g = m.memcg_create(f"job{i}")
            m.kmem_cache_free(c, m.kmem_cache_alloc(c, memcg=g))
            m.memcg_offline(g)
        deadline = time.monotonic() + 20
        while True:
            st = m.rcu_state_info()
            if st["done"] == st["queued"] or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert st["queued"] >= 300, st
        assert st["done"] == st["queued"], st
