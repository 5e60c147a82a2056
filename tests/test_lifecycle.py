"""Teardown against calls in flight, and the machine's own threads: close()
and kmem_cache_destroy() while other threads' calls run with the GIL
released, memcg child caches, concurrent offlines of one memcg, vCPUs
borrowed by the machine's threads, a hold reached by its own armer, and a
Machine dropped without close().  Anything that could crash (a
use-after-free) or hang runs in a subprocess with a timeout: a crash or a
hang is a test failure, not a dead pytest."""
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import slubcy
from slubcy import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCT = slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN


def run_script(body, timeout=120):
    """Run `body` in a fresh interpreter; it prints OK at its end."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = textwrap.dedent(body)
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung (> {timeout} s); its output: {e.stdout!r} {e.stderr!r}")
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr[-3000:]}"
    assert p.stdout.strip().endswith("OK"), p.stdout + p.stderr


def start(fn):
    """fn() in a thread; its exception is kept for the caller (join_ok)."""
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:     # re-raised by join_ok
            out["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def join_ok(t, out, timeout=60):
    t.join(timeout)
    assert not t.is_alive(), "the thread hung"
    if "error" in out:
        raise out["error"]
    return out.get("value")


# -- 1: kmem_cache_destroy of a memcg child cache ---------------------------

def test_destroy_refuses_a_memcg_child_cache_before_freeing_anything():
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="barrier:sync") as m:
        c = m.kmem_cache_create("dentry", 192, flags=ACCT)
        g = m.memcg_create("job")
        a = m.kmem_cache_alloc(c, cpu=0, memcg=g)      # from the root; queues the child's creation
        m.flush_work(timeout=30)
        b = m.kmem_cache_alloc(c, cpu=0, memcg=g)      # from the child
        m.kmem_cache_free(c, b, cpu=0)                 # the child is empty now
        m.kmem_cache_shrink(m.child_caches(c)[0])
        (child,) = m.child_caches(c)
        with pytest.raises(ValueError, match="memcg child cache"):
            m.kmem_cache_destroy(child)
        assert not child.destroyed and m.child_caches(c) == [child]
        assert [x.name for x in g.kmem_caches] == [child.name]
        objs = [m.kmem_cache_alloc(c, cpu=1, memcg=g) for _ in range(100)]
        assert m.validate()[child.name] == 100
        for p in objs + [a]:
            m.kmem_cache_free(c, p, cpu=0)
        m.memcg_offline(g)
        m.validate()


# -- 2 and 14: close() and kmem_cache_destroy() against calls in flight -----

HAMMER = """
    import threading, time, numpy as np, slubcy
    m = slubcy.Machine(cpus=2, memory=128 << 20, ipi_timeout=10)
    c = m.kmem_cache_create("big", 64)
    keep = m.kmem_cache_alloc_bulk(c, 100_000, cpu=1)     # validate() walks them all
    errors, calls, stop = [], [0], threading.Event()

    def loop(op):
        try:
            while not stop.is_set():
                op()
                calls[0] += 1
        except slubcy.MachineClosed:
            pass
        except BaseException as e:
            errors.append(repr(e))

    def bulk():
        a = m.kmem_cache_alloc_bulk(c, 5000, cpu=0)
        m.kmem_cache_free_bulk(c, a, cpu=0)

    def single():
        m.kmem_cache_free(c, m.kmem_cache_alloc(c, cpu=0), cpu=0)

    OPS = {"validate": lambda: m.validate(), "validate_c": lambda: m.validate(c),
           "shrink": lambda: m.kmem_cache_shrink(c), "flush_all": lambda: m.flush_all(c),
           "synchronize": lambda: m.synchronize(timeout=10),
           "kick": lambda: m.kick_all_cpus_sync(timeout=10), "bulk": bulk, "single": single}
    """


# (validate() is not run beside calls that change the slabs: it is not
# meant to see them half done)
@pytest.mark.parametrize("ops", [["validate", "validate_c", "synchronize"], ["shrink", "kick"],
                                 ["bulk", "flush_all"], ["single", "bulk", "shrink"]])
def test_close_waits_for_calls_in_flight_and_refuses_new_ones(ops):
    """Other threads keep calling (with the GIL released for most calls)
    while close() runs: close() returns -- it neither frees the arena under a
    call in flight nor waits forever behind new calls -- and every later
    call of those threads raises MachineClosed."""
    run_script(HAMMER + f"""
    threads = [threading.Thread(target=loop, args=(OPS[o],), daemon=True) for o in {ops!r}]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while calls[0] < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert calls[0] >= 20, calls
    t0 = time.monotonic()
    m.close()                       # no retry: it must succeed while they call
    assert m.closed and time.monotonic() - t0 < 30
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert errors == [], errors
    print("OK")
    """)


def test_close_refuses_calls_made_once_it_has_begun():
    """A call that starts while close() waits for a call in flight raises
    MachineClosed; a second close() returns once the first is done."""
    with slubcy.Machine(cpus=2, memory=32 << 20) as m:
        c = m.kmem_cache_create("x", 128)
        objs = m.kmem_cache_alloc_bulk(c, 20_000, cpu=0)
        stop = threading.Event()

        def validating():
            while not stop.is_set():
                m.validate()
        t, out = start(validating)
        time.sleep(0.05)
        closer, cout = start(m.close)
        for _ in range(2000):
            try:
                m.kmem_cache_alloc(c, cpu=1)
            except slubcy.MachineClosed:
                break
        else:
            pytest.fail("calls were still accepted after close() began")
        join_ok(closer, cout)
        stop.set()
        with pytest.raises(slubcy.MachineClosed):
            join_ok(t, out)
        m.close()
        assert m.closed and len(objs) == 20_000


DESTROY = HAMMER + """
    d = m.kmem_cache_create("victim", 256)
    OPS.update({"validate_c": lambda: m.validate(d), "shrink": lambda: m.kmem_cache_shrink(d),
                "flush_all": lambda: m.flush_all(d)})

    def bulk_d():
        a = m.kmem_cache_alloc_bulk(d, 20_000, cpu=0)
        m.kmem_cache_free_bulk(d, a, cpu=0)
    OPS["bulk"] = bulk_d

    def loop_d(op):
        try:
            while not stop.is_set():
                op()
                calls[0] += 1
        except slubcy.CacheDestroyed:
            pass
        except BaseException as e:
            errors.append(repr(e))
    """


@pytest.mark.parametrize("op", ["shrink", "flush_all", "bulk", "validate_c"])
def test_destroy_waits_for_calls_in_flight_on_the_cache(op):
    """kmem_cache_destroy() while another thread is inside a call on the
    same cache that released the GIL: destroy waits for it (or refuses with
    CacheBusy), never frees the cache under it; the other thread's next
    call raises CacheDestroyed."""
    run_script(DESTROY + f"""
    t = threading.Thread(target=loop_d, args=(OPS[{op!r}],), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while calls[0] < 10 and time.monotonic() < deadline:
        time.sleep(0.001)
    destroyed = False
    while not destroyed and time.monotonic() < deadline:
        try:
            m.kmem_cache_destroy(d)
            destroyed = True
        except slubcy.CacheBusy:     # objects of a bulk call in flight, or calls in flight
            time.sleep(0.0005)
    assert destroyed
    t.join(30)
    assert not t.is_alive() and errors == [], errors
    m.validate()
    m.close()
    print("OK")
    """)


# -- 6: one memcg taken offline by two threads ------------------------------

@pytest.mark.parametrize("how", ["memcg_offline", "memcg_rmdir"])
def test_two_threads_taking_one_memcg_offline_exactly_one_succeeds(how):
    with slubcy.Machine(cpus=2, memory=64 << 20, policy="barrier:sync") as m:
        c = m.kmem_cache_create("dentry", 192, flags=ACCT)
        n = 20
        outcomes = []
        for i in range(n):
            g = m.memcg_create(f"job-{i}")
            m.kmem_cache_alloc(c, cpu=0, memcg=g)
            m.flush_work(timeout=30)
            p = m.kmem_cache_alloc(c, cpu=0, memcg=g)
            m.kmem_cache_free(c, p, cpu=1)
            go = threading.Barrier(2)
            res = []

            def offline():
                go.wait(10)
                try:
                    getattr(m, how)(g)
                    res.append("ok")
                except ValueError as e:
                    assert "already offline" in str(e)
                    res.append("refused")
            ts = [start(offline) for _ in range(2)]
            for t, out in ts:
                join_ok(t, out)
            outcomes.append(sorted(res))
        m.flush_work(timeout=30)
        assert outcomes == [["ok", "refused"]] * n
        assert m.memcg_stat_info()["offlines"] == n
        m.validate()


# -- 7: a vCPU borrowed by a thread on no vCPU ------------------------------

def test_a_call_waits_for_a_vcpu_borrowed_longer_than_a_moment():
    """A thread that is no API call holds vCPU 0 (bench.replay takes it as the
    kworker's and the RCU thread's cross-vCPU requests do, here for ~0.3 s):
    a single-threaded script's plain alloc/free and bulk calls on vCPU 0
    wait for it instead of failing with CPUBusy; another API call's vCPU
    still gives CPUBusy at once."""
    with slubcy.Machine(cpus=2, memory=64 << 20, ipi_timeout=20) as m:
        c = m.kmem_cache_create("x", 64)
        k = 200_000
        ops = np.zeros((2 * k, 4), dtype=np.int32)
        ops[0::2, 0] = bench.OP_ALLOC
        ops[1::2, 0] = bench.OP_FREE
        ops[:, 3] = np.repeat(np.arange(k, dtype=np.int32) % 64, 2)
        t0 = time.monotonic()
        bench.replay(m, [c], ops, np.zeros(64, dtype=np.uint64))
        took = time.monotonic() - t0
        reps = max(1, int(0.3 / max(took, 1e-3)) + 1)
        ops = np.tile(ops, (reps, 1))           # one replay of ~0.3 s
        for call in (lambda: m.kmem_cache_free(c, m.kmem_cache_alloc(c, cpu=0), cpu=0),
                     lambda: m.kmem_cache_free_bulk(c, m.kmem_cache_alloc_bulk(c, 10, cpu=0), cpu=0)):
            started = threading.Event()

            def borrower():
                started.set()
                bench.replay(m, [c], ops, np.zeros(64, dtype=np.uint64))
            t, out = start(borrower)
            started.wait(10)
            deadline = time.monotonic() + 10
            while m.vcpu_info()[0]["owner"] == 0 and time.monotonic() < deadline:
                time.sleep(0.0001)
            if t.is_alive():
                call()                  # waits for the borrower, no CPUBusy
            join_ok(t, out)
        m.validate()


def test_plain_calls_never_fail_while_the_machine_borrows_vcpus():
    """barrier (async) and reparent: the RCU thread and the kworker borrow
    idle vCPUs for their cross-vCPU requests; a single-threaded loop of
    plain alloc/free, bulk calls and offlines never sees CPUBusy."""
    for policy in ("barrier", "reparent"):
        with slubcy.Machine(cpus=2, memory=64 << 20, policy=policy) as m:
            c = m.kmem_cache_create("dentry", 192, flags=ACCT)
            for i in range(60):
                g = m.memcg_create(f"j{i}")
                objs = [m.kmem_cache_alloc(c, cpu=i % 2, memcg=g) for _ in range(30)]
                arr = m.kmem_cache_alloc_bulk(c, 30, cpu=(i + 1) % 2, memcg=g)
                for p in objs:
                    m.kmem_cache_free(c, p, cpu=(i + 1) % 2)
                m.kmem_cache_free_bulk(c, arr, cpu=i % 2)
                m.memcg_rmdir(g)
            m.flush_work(timeout=30)
            m.policy_quiesce()
            m.validate()


# -- 12: an armed hold reached by its own armer -----------------------------

def test_a_hold_reached_by_the_thread_that_armed_it_is_refused():
    """Single-threaded: arm a hold, then reach the point in a call: the call
    completes (it would otherwise park forever: nobody is left to release
    it) and wait_held() says why."""
    run_script("""
    import slubcy
    m = slubcy.Machine(cpus=2, memory=16 << 20)
    c = m.kmem_cache_create("x", 256)
    objs = [m.kmem_cache_alloc(c, cpu=0) for _ in range(c.objects_per_slab)]
    m.kmem_cache_alloc(c, cpu=0)           # the slab of objs is full, on no list
    pp = m.preempt_point("slab_free:before_cmpxchg")
    pp.arm_hold()
    m.kmem_cache_free(c, objs[0], cpu=1)   # __slab_free of a full slab reaches the point
    assert pp.held is None
    try:
        pp.wait_held(timeout=1)
    except slubcy.HoldRefused as e:
        assert "armed it" in str(e)
    else:
        raise AssertionError("wait_held() did not report the refused hold")
    c2 = m.kmem_cache_create("y", 256)
    objs2 = [m.kmem_cache_alloc(c2, cpu=0) for _ in range(c2.objects_per_slab)]
    m.kmem_cache_alloc(c2, cpu=0)
    pp.arm_hold()                           # and from a bulk call (GIL released)
    m.kmem_cache_free_bulk(c2, objs2[:1], cpu=1)
    assert pp.hits == 2
    try:
        pp.release()
    except slubcy.HoldRefused:
        pass
    else:
        raise AssertionError("release() did not report the refused hold")
    pp.disable()
    m.validate()
    m.close()
    print("OK")
    """, timeout=60)


def test_a_hold_only_its_blocked_armer_could_release_times_out():
    """The kworker reaches a hold armed by the thread that now waits for it
    in memcg_offline(): nobody can release it.  It parks at most the hold's
    timeout, then goes on; the offline completes and release() says what
    happened (without the bound the script never ends)."""
    run_script("""
    import time
    import slubcy
    m = slubcy.Machine(cpus=2, memory=16 << 20, policy="naive")
    c = m.kmem_cache_create("x", 256, flags=slubcy.SLAB_ACCOUNT)
    g = m.memcg_create("job")
    m.kmem_cache_free(c, m.kmem_cache_alloc(c, memcg=g))
    m.flush_work()
    pp = m.preempt_point("offline:after_mark_dead")
    pp.arm_hold(timeout=0.5)
    t = time.monotonic()
    m.memcg_offline(g)                      # the kworker is held, then goes on
    assert 0.4 < time.monotonic() - t < 30, time.monotonic() - t
    assert pp.hits == 1 and pp.held is None
    try:
        pp.release()
    except slubcy.Timeout as e:
        assert "not released within 0.5 s" in str(e)
    else:
        raise AssertionError("release() did not report the expired hold")
    for bad in (0, -1, float("nan"), 1e9):
        try:
            pp.arm_hold(timeout=bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)
    m.validate()
    m.close()
    print("OK")
    """, timeout=60)


# -- 18: a machine dropped without close() ----------------------------------

def test_a_machine_dropped_without_close_takes_its_threads_with_it():
    """RCU thread (barrier async), reaper (reap:ipi), kworker: none outlives
    the last reference to its Machine, which is finalised (arena freed)."""
    run_script("""
    import gc, os, threading, time, slubcy

    def nthreads():
        return len(os.listdir("/proc/self/task"))

    def use(policy):
        m = slubcy.Machine(cpus=2, memory=32 << 20, policy=policy)
        c = m.kmem_cache_create("d", 192, flags=slubcy.SLAB_ACCOUNT)
        g = m.memcg_create("j")
        p = m.kmem_cache_alloc(c, cpu=0, memcg=g)
        m.flush_work(timeout=30)
        q = m.kmem_cache_alloc(c, cpu=0, memcg=g)
        m.memcg_offline(g)
        m.kmem_cache_free(c, p, cpu=1)
        m.kmem_cache_free(c, q, cpu=1)
        m.preempt_point("put_cpu_partial")
        return [c, g, m.child_caches()]     # wrappers that point back at the machine

    base = nthreads()
    for policy in ("barrier", "reap:ipi:1ms", "reap:percpu:1ms", "objcg", "barrier:sync"):
        keep = use(policy)
        assert nthreads() > base
        del keep
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gc.collect()
            left = [t.name for t in threading.enumerate() if t.name.startswith("slubcy")]
            if not left and nthreads() == base:
                break
            time.sleep(0.01)
        assert not left and nthreads() == base, (policy, left, nthreads(), base)
    print("OK")
    """, timeout=120)
