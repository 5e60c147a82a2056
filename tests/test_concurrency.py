"""Worker threads without the GIL, remote frees under contention, grace
periods, cross-vCPU requests and preemption points."""
import threading
import time

import numpy as np
import pytest

import slubcy
from slubcy import workloads
from slubcy.workers import Run


def alloc_stats_add_up(m, caches, in_use):
    total = 0
    for c in caches:
        st = m.cache_stat_info(c)
        total += st["ALLOC_FASTPATH"] + st["ALLOC_SLOWPATH"] - st["FREE_FASTPATH"] - st["FREE_SLOWPATH"]
    assert total == sum(in_use[c.name] for c in caches)


@pytest.mark.parametrize("workers", [2, 4, 8])
@pytest.mark.parametrize("workload", ["remote", "larson"])
def test_stress(workers, workload):
    """More threads than cores: the OS preempts them anywhere."""
    with slubcy.Machine(cpus=workers, memory=256 << 20, seed=workers) as m:
        r = workloads.run(workload, cpus=workers, ops=3_000_000, machine=m, seed=workers)
        assert r.metrics["ops"] >= 3_000_000 - workers
        for w in r.per_cpu:
            assert w["canary_errors"] == 0 and w["lost"] == 0 and w["alloc_failures"] == 0
        assert sum(w["allocs"] for w in r.per_cpu) == sum(w["frees"] for w in r.per_cpu)
        assert sum(w["remote_frees"] for w in r.per_cpu) > 0
        caches = [m.kmem_cache(n) for n in r.stats]
        in_use = m.validate()
        alloc_stats_add_up(m, caches, in_use)
        assert all(in_use[c.name] == 0 for c in caches)
        # contention happened on the slab words for remote frees
        st = {n: s for n, s in r.stats.items()}
        assert sum(s["FREE_SLOWPATH"] for s in st.values()) > 0
        for c in caches:
            m.kmem_cache_shrink(c)
        m.validate()


@pytest.mark.parametrize("ring_size", [2, 4, 8, 4096])
def test_larson_handover_batches_reach_the_next_vcpu(ring_size):
    """larson publishes its hand-overs in batches: with any ring size every
    handed object is freed by the next vCPU, none is lost or freed twice."""
    with slubcy.Machine(cpus=2, memory=128 << 20) as m:
        caches = [m.kmem_cache_create("h64", 64), m.kmem_cache_create("h512", 512)]
        run = Run(m, "larson", caches, 2, 200_000, slots=128, ring_size=ring_size, seed=3)
        run.start()
        per, _ = run.finish()
        for w in per:
            assert w["canary_errors"] == 0 and w["lost"] == 0 and w["alloc_failures"] == 0
            assert w["remote_frees"] > 0
        assert sum(w["allocs"] for w in per) == sum(w["frees"] for w in per)
        assert all(n == 0 for n in m.validate().values())


def test_grace_periods_end_at_a_tick_with_hz():
    """Machine(hz=...): a grace period ends only at a scheduling-clock tick
    after it began (a lower bound, so load cannot make it fail), while the
    vCPUs keep running; without hz it needs no tick."""
    tick = 1 / 50
    with slubcy.Machine(cpus=3, hz=50) as m:            # vCPU 2 stays idle
        assert m.hz == 50
        c = m.kmem_cache_create("gp", 64)
        run = Run(m, "fastpath", [c], 2, -1)
        run.start()
        try:
            for _ in range(5):
                t0 = time.monotonic()
                m.synchronize(timeout=5)
                t1 = time.monotonic()
                assert int(t1 // tick) > int(t0 // tick)
        finally:
            run.request_stop()
            run.finish()
    with slubcy.Machine(cpus=1) as m:
        assert m.hz == slubcy.DEFAULT_HZ == 250 and not m.expedited   # kernel-like by default
    with slubcy.Machine(cpus=1, expedited=True) as m:
        t0 = time.monotonic()
        for _ in range(100):
            m.synchronize(timeout=5)                   # every vCPU idle: at once
        assert time.monotonic() - t0 < 100 * tick


@pytest.mark.parametrize("policy", ["barrier", "barrier:sync", "reparent"])
def test_policies_work_with_tick_bound_grace_periods(policy):
    r = workloads.run("churn", cpus=2, seconds=0.3, policy=policy, hz=1000)
    assert r.metrics["offlines"] > 20 and r.metrics["leaked_caches"] == 0
    if policy == "barrier:sync":            # five grace periods per offline, each ends at a tick
        assert r.metrics["offline_p50_us"] >= 1000


def test_two_workers_run_in_parallel_without_the_gil():
    """Both workers make progress at the same time (the ratio itself is a
    benchmark: `make perf`, figure 6)."""
    with slubcy.Machine(cpus=2) as m:
        r = workloads.run("fastpath", cpus=2, seconds=0.3, machine=m)
        a, b = (w["seconds"] for w in r.per_cpu)
        assert min(w["ops"] for w in r.per_cpu) > 0.2 * max(w["ops"] for w in r.per_cpu)
        assert abs(a - b) < 0.1


def test_control_calls_while_workers_run():
    """flush_all / shrink / synchronize reach running vCPUs as requests they
    serve between operations."""
    with slubcy.Machine(cpus=2, memory=128 << 20) as m:
        c = m.kmem_cache_create("w", 128)
        run = Run(m, "larson", [c], 2, -1, slots=256)
        run.start()
        try:
            with pytest.raises(slubcy.MachineBusy):
                m.kmem_cache_alloc(c, cpu=0)
            with pytest.raises(slubcy.MachineBusy):
                m.validate()
            for _ in range(20):
                m.flush_all(c)
                m.kmem_cache_shrink(c)
                m.synchronize(timeout=5)
                m.kick_all_cpus_sync(timeout=5)
        finally:
            run.request_stop()
            per, _ = run.finish()
        assert all(w["canary_errors"] == 0 and w["lost"] == 0 for w in per)
        assert m.cache_stat_info(c)["CPUSLAB_FLUSH"] > 0
        assert m.validate()["w"] == 0


def in_thread(fn):
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:     # surfaced by the caller
            out["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def full_slab(m, c, cpu=0):
    """Objects of a slab that is full and on no list (cpu moved on)."""
    objs = [m.kmem_cache_alloc(c, cpu=cpu) for _ in range(c.objects_per_slab)]
    m.kmem_cache_alloc(c, cpu=cpu)
    page = m.virt_to_slab(objs[0])[0]
    st = m.cache_state_info(c)["slabs"][page]
    assert st["inuse"] == c.objects_per_slab and not st["frozen"]
    return page, objs


def test_hold_at_slab_free_before_cmpxchg():
    """vCPU 1 decided to freeze a full slab and is held before its cmpxchg;
    vCPU 0 frees into the same slab first (freezing it); on release vCPU 1's
    cmpxchg fails, it retries and finds the slab frozen: FREE_FROZEN."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        pp = m.preempt_point("slab_free:before_cmpxchg")
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        assert pp.wait_held() == 1
        # the held free changed nothing yet
        assert m.cache_state_info(c)["slabs"][page]["inuse"] == c.objects_per_slab
        m.kmem_cache_free(c, objs[1], cpu=0)
        st = m.cache_state_info(c)
        assert st["slabs"][page]["frozen"] and st["cpus"][0]["partial"] == [page]
        pp.release()
        t.join(5)
        assert "error" not in out
        st = m.cache_state_info(c)
        cpu1 = st["cpus"][1]["stat"]
        assert cpu1["CMPXCHG_DOUBLE_FAIL"] == 1
        assert cpu1["FREE_FROZEN"] == 1 and cpu1["CPU_PARTIAL_FREE"] == 0
        assert st["cpus"][1]["partial"] == []
        assert st["slabs"][page]["inuse"] == c.objects_per_slab - 2
        assert pp.hits == 1
        m.validate()


@pytest.mark.parametrize("dead", [False, True])
def test_hold_at_put_cpu_partial(dead):
    """vCPU 1 froze a full slab and is held before putting it on its partial
    list: the slab is frozen and on no list.  Released, it lands on vCPU 1's
    partial list; if the cache was marked dead meanwhile (cpu_partial = 0),
    Linux 4.0's put_cpu_partial unfreezes it at once (d6e0b7fa)."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        pp = m.preempt_point("put_cpu_partial")
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        assert pp.wait_held() == 1
        st = m.cache_state_info(c)
        assert st["slabs"][page]["frozen"]
        assert all(page not in cpu["partial"] and cpu["page"] != page for cpu in st["cpus"])
        assert page not in st["node"]["partial"]
        if dead:
            m.kmem_cache_mark_dead(c)
        pp.release()
        t.join(5)
        assert "error" not in out
        st = m.cache_state_info(c)
        if dead:
            assert st["cpus"][1]["partial"] == []
            assert not st["slabs"][page]["frozen"] and page in st["node"]["partial"]
            assert st["cpus"][1]["stat"]["FREE_ADD_PARTIAL"] == 1
        else:
            assert st["cpus"][1]["partial"] == [page] and st["slabs"][page]["frozen"]
        assert st["cpus"][1]["stat"]["CPU_PARTIAL_FREE"] == 1
        m.validate()


# Where a thread is stopped decides what it means to RCU-sched (CONFIG_PREEMPT):
# switched out at a preemptible point it is quiescent; delayed with
# preemption disabled (inside put_cpu_partial) it is not.

def test_synchronize_does_not_wait_for_a_preempted_task():
    """rcu_note_context_switch: a task preempted inside __slab_free has
    context-switched, so its vCPU holds no grace period."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        pp = m.preempt_point("slab_free:before_cmpxchg")
        assert pp.preemptible
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        pp.wait_held()
        assert m.vcpu_info()[1]["online"] == 0            # switched out: quiescent
        m.synchronize(timeout=5)                          # ends while vCPU 1 is held
        pp.release()
        t.join(5)
        assert "error" not in out and m.vcpu_info()[1]["online"] == 0   # (idle again)
        m.validate()


def test_synchronize_waits_for_a_preempt_disabled_section():
    """synchronize_sched waits for preempt-disabled code: vCPU 1 delayed
    inside put_cpu_partial (after freezing a full slab) holds it."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        m.synchronize(timeout=5)                 # nothing running: a tick at most
        pp = m.preempt_point("put_cpu_partial:after_read")
        assert not pp.preemptible
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        pp.wait_held()
        with pytest.raises(slubcy.Timeout):
            m.synchronize(timeout=0.2)           # vCPU 1 is inside put_cpu_partial
        gp, gp_out = in_thread(lambda: m.synchronize())
        time.sleep(0.3)
        assert gp.is_alive()                     # still waiting
        pp.release()
        gp.join(5)
        t.join(5)
        assert not gp.is_alive() and "error" not in gp_out and "error" not in out
        m.validate()


def test_an_ipi_drains_the_store_buffer_of_a_preempt_disabled_vcpu():
    """Held in put_cpu_partial with its push to c->partial not yet visible,
    vCPU 1 takes kick_all_cpus_sync's IPI: the store is visible before the
    kick returns (an interrupt is taken at an instruction boundary), so the
    slab is then on its partial list for a flush to find."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        pp = m.preempt_point("put_cpu_partial:after_read")
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        pp.wait_held()
        assert page not in m.cache_state_info(c)["cpus"][1]["partial"]   # still in the store buffer
        m.kick_all_cpus_sync(timeout=5)
        assert page in m.cache_state_info(c)["cpus"][1]["partial"]
        pp.release()
        t.join(5)
        assert "error" not in out
        m.validate()


def test_a_preempted_vcpu_still_serves_flush_requests():
    """vCPU 1's thread is preempted inside __slab_free; like a CPU whose task
    was preempted, the vCPU still takes the flush request (an IPI) and
    deactivates its cpu slab; the preempted free then completes."""
    with slubcy.Machine(cpus=2, memory=16 << 20, ipi_timeout=5) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        mine = m.kmem_cache_alloc(c, cpu=1)      # vCPU 1 has a cpu slab: flush must ask it
        pp = m.preempt_point("slab_free:before_cmpxchg")
        pp.arm_hold()
        t, out = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        pp.wait_held()
        with pytest.raises(slubcy.MachineBusy):
            m.close()                            # a thread is inside the machine
        m.flush_all(c)
        st = m.cache_state_info(c)
        assert st["cpus"][1]["page"] is None and st["cpus"][1]["stat"]["CPUSLAB_FLUSH"] == 1
        pp.release()
        t.join(5)
        assert "error" not in out
        st = m.cache_state_info(c)
        assert st["slabs"][page]["frozen"] and st["cpus"][1]["partial"] == [page]
        m.kmem_cache_free(c, mine, cpu=1)
        m.validate()


def test_call_rcu_batches_callbacks():
    with slubcy.Machine(cpus=2) as m:
        ran = []
        for i in range(200):
            m.call_rcu(ran.append, i)
        m.rcu_barrier(timeout=10)
        assert sorted(ran) == list(range(200))
        stats = m.rcu_stat_info()
        assert set(stats) == {"grace_periods", "callbacks", "c_grace_periods", "c_callbacks",
                              "deferred_shrinks"}
        assert stats["callbacks"] == 200
        assert 1 <= stats["grace_periods"] < 200


@pytest.mark.parametrize("point,waits", [("slab_free:before_cmpxchg", False),
                                         ("put_cpu_partial:after_read", True)])
def test_call_rcu_waits_only_for_a_preempt_disabled_vcpu(point, waits):
    with slubcy.Machine(cpus=2, memory=16 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        page, objs = full_slab(m, c)
        pp = m.preempt_point(point)
        pp.arm_hold()
        t, _ = in_thread(lambda: m.kmem_cache_free(c, objs[0], cpu=1))
        pp.wait_held()
        done = threading.Event()
        m.call_rcu(done.set)
        if waits:
            assert not done.wait(0.3)
        else:
            assert done.wait(5)              # a preempted task holds no grace period
        pp.release()
        assert done.wait(5)
        t.join(5)


def test_preempt_delays_are_taken():
    with slubcy.Machine(cpus=2) as m:
        r = workloads.run("remote", cpus=2, ops=200_000, machine=m,
                          preempt="slab_free:before_cmpxchg=0.5:1us:yield")
        assert m.preempt_point("slab_free:before_cmpxchg").hits > 0
        assert all(w["canary_errors"] == 0 for w in r.per_cpu)
        m.validate()


@pytest.mark.parametrize("spec", ["nope=0.1:1us", "slab_free:before_cmpxchg=2:1us",
                                  "slab_free:before_cmpxchg=0.1", "put_cpu_partial=0.1:5parsecs",
                                  "put_cpu_partial=0.1:1us:dance", "put_cpu_partial=x:1us"])
def test_bad_preempt_specs(spec):
    from slubcy.preempt import parse_spec
    with pytest.raises(ValueError):
        parse_spec(spec)


def test_bad_workload_arguments():
    with slubcy.Machine(cpus=2) as m:
        c = m.kmem_cache_create("x", 64)
        with pytest.raises(ValueError):
            Run(m, "nope", [c], 2, 10)
        with pytest.raises(ValueError):
            Run(m, "fastpath", [c], 3, 10)           # more workers than vCPUs
        with pytest.raises(ValueError):
            Run(m, "fastpath", [m.kmem_cache("kmalloc-8")], 1, 10)
        for kw in ({"ops": 0}, {"ops": None, "seconds": None}, {"seconds": -1}):
            with pytest.raises(ValueError):
                workloads.run("fastpath", cpus=1, machine=m, **{"ops": None, **kw})
        m.validate()


# -- the CONFIG_PREEMPT model --------------------------------------------------

@pytest.mark.parametrize("spec", ["preempt=1000/s", "preempt=0/s:3ms", "preempt=-5/s:3ms",
                                  "preempt=100/s:0ms", "preempt=100/s:3ms:gauss",
                                  "preempt=fast:3ms", "preempt=100/s:20s"])
def test_bad_preempt_model_specs(spec):
    from slubcy.preempt import parse_spec
    with pytest.raises(ValueError):
        parse_spec(spec)


def test_preempt_model_spec_parses_with_points():
    from slubcy.preempt import parse_spec
    assert parse_spec("preempt=250/s:3ms:fixed,put_cpu_partial=0.1:1us") == [
        ("preempt", 250.0, 3_000_000, True), ("put_cpu_partial", 0.1, 1000, "spin")]


def test_preempt_model_switches_tasks_out_and_they_hold_no_grace_period():
    """Under the model every vCPU is switched out now and then (preemption
    requests at 2000/s, 1 ms slices): the workload still completes, the
    preemptions are counted on each vCPU, and grace periods keep ending
    (a switched-out task is quiescent) -- the churn's barrier:sync offlines
    go on and nothing leaks."""
    from slubcy import preempt
    with slubcy.Machine(cpus=2, memory=1 << 30, policy="barrier:sync", hz=1000) as m:
        r = workloads.run("churn", cpus=2, seconds=0.5, machine=m, preempt="preempt=2000/s:1ms")
        counts = preempt.model_preemptions(m)
        assert all(n > 10 for n in counts), counts
        assert r.metrics["offlines"] > 5 and r.metrics["leaked_caches"] == 0
        preempt.set_model(m, 0)                 # off again
        before = preempt.model_preemptions(m)
        workloads.run("fastpath", cpus=2, ops=200_000, machine=m)
        assert preempt.model_preemptions(m) == before
        with pytest.raises(ValueError):
            preempt.set_model(m, -1)
        m.validate()


def test_python_threads_calls_with_grace_periods_and_flushes():
    """Python threads allocating and freeing through the single-object API
    on two vCPUs, each call taking its vCPU and letting it go (the exit has
    no full barrier), while this thread runs grace periods and cross-vCPU
    flushes: every synchronize() ends in time, every flush is served (by the
    owner, or by its sender once the owner is gone), nothing is lost."""
    with slubcy.Machine(cpus=3) as m:
        c = m.kmem_cache_create("py-threads", 64)
        stop = threading.Event()
        errors = []

        def loop(cpu):
            try:
                while not stop.is_set():
                    for _ in range(200):
                        m.kmem_cache_free(c, m.kmem_cache_alloc(c, cpu), cpu)
            except BaseException as e:          # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=loop, args=(cpu,)) for cpu in (0, 1)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 1.0
            n = 0
            while time.monotonic() < deadline:
                m.synchronize(timeout=5)
                m.kmem_cache_shrink(c)
                n += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors
        assert n > 10
        assert m.cache_usage_info(c)[0] == 0
        m.validate()
