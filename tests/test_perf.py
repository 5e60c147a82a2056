"""`make perf`'s script and the measuring kernels behind it.  No timing is
asserted here (the machines are shared): only that every figure is produced
with finite numbers, and that the kernels do what they claim."""
import math
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import slubcy
from slubcy import bench
from slubcy.analysis import perf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_run_prints_every_figure_with_finite_numbers():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "perf.py"), "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr          # 1: a target missed, not a crash
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stdout.splitlines()
    for fig in perf.FIGURES:
        line = next((ln for ln in lines if ln.startswith(fig.title)), None)
        assert line is not None, f"no line for {fig.title!r} in:\n{p.stdout}"
        rest = line[len(fig.title):]
        measured = rest.split()[0]          # the figure itself (12.34, or 12,002 when large)
        assert re.fullmatch(r"-?\d[\d,]*(\.\d+)?", measured), line
        assert math.isfinite(float(measured.replace(",", ""))), line
        assert "nan" not in rest.split("(")[0], line
        assert re.search(r"\b(ok|MISSED|info)\b", line), line
        if fig.ratio_target is not None:
            assert re.search(r"[\d.]+x\s", rest), line
    assert ("all targets met" in p.stdout) == (p.returncode == 0)


def test_measurement_functions_return_figure_baseline_ratio():
    m = perf.metadata_per_page(perf.QUICK)
    assert m.figure == bench.struct_page_size() and m.baseline is None
    m = perf.fastpath_vs_floor(perf.QUICK)
    assert m.figure > 0 and m.baseline > 0 and m.ratio == pytest.approx(m.figure / m.baseline)


def test_floor_list_keeps_its_objects():
    t, count = bench.freelist_pairs(10_000, 64, 16)
    assert t >= 0 and count == 16
    with pytest.raises(ValueError):
        bench.freelist_pairs(10, 4)


def test_bare_cas_floor_frees_every_object_onto_the_word():
    t, count = bench.cas_free_rounds(1000, 3)
    assert t >= 0 and count == 1000             # a list of them all, inuse 0
    for bad in ((0, 1), (1, 0), (40_000, 1)):
        with pytest.raises(ValueError):
            bench.cas_free_rounds(*bad)
    with pytest.raises(ValueError):
        bench.cas_free_rounds(10, 1, 4)         # an object too small for a pointer


def test_replay_accesses_touch_what_the_core_touched():
    """bench.replay records each op's object; replay_accesses makes the same
    accesses in a copy of the arena: the frees link their objects per vCPU
    exactly as far as the copy shows, and out-of-range offsets are refused."""
    ops, nslots = perf.record_ops(2000, seed=3)
    m, caches = perf._core_machine()
    with m:
        base, size = m.arena
        addrs = np.zeros(len(ops), dtype=np.uint64)
        bench.replay(m, caches, ops, np.zeros(nslots, dtype=np.uint64), addrs)
        allocs = ops[:, 0] == bench.OP_ALLOC
        frees = ops[:, 0] == bench.OP_FREE
        assert (addrs[allocs | frees] >= base).all() and (addrs[allocs | frees] < base + size).all()
        offs = np.where(addrs != 0, addrs - np.uint64(base), 0).astype(np.uint64)
        offsets = np.array([c.offset for c in caches], dtype=np.uint32)
        m.validate()
    arena = np.zeros(size, dtype=np.uint8)
    assert bench.replay_accesses(ops, offs, offsets, 2, arena) >= 0
    last = np.flatnonzero(frees)[-1]            # the last free wrote a link into its object
    word = arena[offs[last] + offsets[ops[last, 1]]:][:8].view(np.uint64)[0]
    prev = [i for i in np.flatnonzero(frees)[:-1] if ops[i, 2] == ops[last, 2]]
    assert word != 0 if prev else word == 0
    with pytest.raises(ValueError):
        bench.replay_accesses(ops, offs, offsets, 2, arena[:4096])


def test_free_rounds_take_the_paths_they_claim():
    n = perf.REMOTE_OBJECTS
    with slubcy.Machine(cpus=2, memory=64 << 20, slub_min_objects=n, slub_max_order=6) as m:
        c = m.kmem_cache_create("r", 64)
        assert c.objects_per_slab == n
        bench.free_rounds(c, n, 1, 0, 0)
        before = m.cache_stat_info(c)
        bench.free_rounds(c, n, 2, 0, 0)
        mid = m.cache_stat_info(c)
        assert mid["FREE_FASTPATH"] - before["FREE_FASTPATH"] == 2 * n
        assert mid["FREE_SLOWPATH"] == before["FREE_SLOWPATH"]
        bench.free_rounds(c, n, 2, 0, 1)
        after = m.cache_stat_info(c)
        assert after["FREE_SLOWPATH"] - mid["FREE_SLOWPATH"] == 2 * n
        assert after["FREE_FROZEN"] - mid["FREE_FROZEN"] == 2 * n
        assert m.validate()["r"] == 0
        assert [v["owner"] for v in m.vcpu_info()] == [0, 0]     # both vCPUs let go


def test_replay_through_core_ends_like_the_model():
    for lifo, remote in ((0.8, 0.1), (0.0, 0.5)):
        ops, nslots = perf.record_ops(3000, seed=1, lifo=lifo, remote=remote)
        assert set(np.unique(ops[:, 0])) <= {bench.OP_ALLOC, bench.OP_FREE, bench.OP_SHRINK}
        _, live_model, ref, rcaches = perf.replay_model(ops, nslots)
        m, caches = perf._core_machine()
        with m:
            m.arena_populate()
            _, live_core, _, _ = perf.replay_core(ops, nslots, (m, caches))
            assert live_core == live_model > 0
            used = m.validate()
            for c, r in zip(caches, rcaches):
                assert used[c.name] == len(r.live)
                # the same slow and fast paths, counted by all 26 statistics
                assert m.cache_stat_info(c) == ref.cache_stat_info(r), c.name
            assert [v["owner"] for v in m.vcpu_info()] == [0, 0]


def test_replay_rejects_out_of_range_ops():
    m, caches = perf._core_machine()
    with m:
        bad = np.array([[bench.OP_ALLOC, 0, 5, 0]], dtype=np.int32)
        with pytest.raises(ValueError):
            bench.replay(m, caches, bad, np.zeros(1, dtype=np.uint64))
        m.validate()


def test_resident_bytes_of_the_arena_follow_use():
    with slubcy.Machine(cpus=1, memory=64 << 20) as m:
        start, size = bench.metadata_regions(m)["arena"]
        assert (start, size) == m.arena
        before = bench.resident_bytes(start, size)
        c = m.kmem_cache_create("rss", 64)
        objs = m.kmem_cache_alloc_bulk(c, 64 * 256)             # 256 pages of slabs
        grown = bench.resident_bytes(start, size) - before
        assert 256 * 4096 <= grown <= 260 * 4096
        m.kmem_cache_free_bulk(c, objs)


def test_budget_and_cost_read_lower_is_better():
    """asv's gate reads larger as worse: a figure's budget grows as it moves
    away from its target in either direction of target, and its cost is a
    time per operation or bytes whatever unit the figure is printed in."""
    from slubcy.analysis.perf import FIGURES, Measurement
    by = {f.key: f for f in FIGURES}
    floor = by["fastpath_floor"]            # ratio <= 4
    assert floor.budget(Measurement(10.0, 5.0, 2.0)) == pytest.approx(0.5)
    assert floor.budget(Measurement(40.0, 5.0, 8.0)) == pytest.approx(2.0)
    libc = by["fastpath_libc"]              # ratio >= 3
    assert libc.budget(Measurement(10.0, 60.0, 6.0)) == pytest.approx(0.5)
    assert libc.budget(Measurement(10.0, 15.0, 1.5)) == pytest.approx(2.0)
    assert libc.budget(Measurement(10.0, None, None)) == float("inf")
    both = perf.Figure("both", "t", "ns", "b", None, "x", ("<=", 2.5), ("<=", 3))
    assert both.budget(Measurement(6.0, 10.0, 0.6)) == pytest.approx(2.0)   # the worse one
    assert both.budget(Measurement(1.5, 0.4, 3.75)) == pytest.approx(1.5)
    assert both.check(Measurement(2.0, 1.0, 2.0)) and not both.check(Measurement(4.0, 2.0, 2.0))
    assert by["grace_period"].budget(Measurement(1.0, 2.0, 0.5)) is None
    scaling = by["fastpath_scaling"]        # Mops/s: cost is ns per op
    assert scaling.cost(Measurement(200.0, 100.0, 2.0)) == ("ns", pytest.approx(5.0))
    assert by["grace_period"].cost(Measurement(3.0, 9.0, 0.3)) == ("ns", pytest.approx(3000.0))
    assert by["arena_rss"].cost(Measurement(2.0, 1.0, 2.0)) == ("bytes", 2 << 20)
    units = {f.unit for f in FIGURES}
    for f in FIGURES:                       # every figure has a cost form
        assert f.cost(Measurement(1.0, 1.0, 1.0)) is not None, (f.key, f.unit, units)


def test_qsbr_floor_and_synchronize_rounds():
    """The grace-period floor: a writer's grace period ends only after the
    reader's next report (so it lasts about half the interval or more), and
    the model's synchronize_sched() loop returns one latency per call."""
    import threading
    q = bench.QsbrFloor()
    t = threading.Thread(target=q.reader, args=(20_000.0,))     # a report every 20 us
    t.start()
    try:
        lat = q.synchronize(50)
    finally:
        q.stop()
        t.join(timeout=10)
    assert not t.is_alive() and len(lat) == 50
    assert np.median(lat) > 2e-6                    # waited for a report, not a no-op
    with pytest.raises(ValueError):
        bench.QsbrFloor().reader(0.0)
    with slubcy.Machine(cpus=2, expedited=True) as m:
        lat = bench.synchronize_rounds(m, 20)
        assert len(lat) == 20 and (lat >= 0).all()
    with pytest.raises(slubcy.MachineClosed):
        bench.synchronize_rounds(m, 1)


def test_bench_kernels_refuse_what_would_crash_or_hang():
    """Bad input to the measuring kernels is a clear exception: an object
    size the slab word cannot encode (not a multiple of 8), ops rows too
    narrow to read, and a grace period with no reader to end it."""
    for size in (12, 20, 65):                   # the freelist is stored as offset / 8
        with pytest.raises(ValueError, match="multiple of 8"):
            bench.cas_free_rounds(100, 1, size)
    narrow = np.zeros((4, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="4 columns"):
        bench.replay_accesses(narrow, np.zeros(4, dtype=np.uint64),
                              np.zeros(1, dtype=np.uint32), 1, np.zeros(4096, dtype=np.uint8))
    q = bench.QsbrFloor()                       # no reader thread: nobody reports
    with pytest.raises(TimeoutError):
        q.synchronize(3, timeout=0.05)
    with slubcy.Machine(cpus=1) as m:
        c = m.kmem_cache_create("bulk-bad", 64)
        for size, rounds in ((0, 1), (1, 0), (-5, 3)):
            with pytest.raises(ValueError):
                bench.bulk_rounds(c, size, rounds)
        with pytest.raises(slubcy.InvalidCPU):
            bench.bulk_rounds(c, 8, 1, cpu=3)
    for args in ((0, [64]), (2, []), (2, [8]), (2, [64], 0), (2, [64], 16, 1.5), (2, [64], 16, 0.25, 100)):
        with pytest.raises(ValueError):
            bench.LarsonFloor(*args)
    with pytest.raises(ValueError):
        bench.LarsonFloor(2, [64]).run(2, 0.01)
    with pytest.raises(TimeoutError):               # no thread at the gate
        bench.LarsonFloor(2, [64]).start(timeout=0.05)
    f = bench.LarsonFloor(1, [64], nslots=16)       # one index run twice: refused
    first = threading.Thread(target=f.run, args=(0, 0.2))
    first.start()
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="runs once per index"):
        f.run(0, 0.01)
    f.start()
    first.join()
    assert f.failures() == 0
    with pytest.raises(RuntimeError, match="runs once per index"):   # nor a second round
        f.run(0, 0.01)
    with pytest.raises(TimeoutError, match="gate"):  # no start(): the thread gives up
        bench.LarsonFloor(1, [64]).run(0, 0.01, gate_timeout=0.05)
    for kw in ({"nslots": 2 ** 40}, {"ring_size": 2 ** 30}, {"nslots": 2 ** 24, "ring_size": 2 ** 24}):
        with pytest.raises(ValueError):             # sizes that would overflow: refused
            bench.LarsonFloor(2, [65536], **kw)
    with pytest.raises(ValueError):
        bench.LarsonFloor(2000, [64])
    with slubcy.Machine(cpus=1) as m:
        c = m.kmem_cache_create("bulk-huge", 64)
        with pytest.raises(ValueError):
            bench.bulk_rounds(c, 2 ** 61, 1)
        with pytest.raises(ValueError, match="constructor"):
            bench.bulk_rounds(m.kmem_cache_create("bulk-ctor", 64, ctor=lambda addr: None), 8, 1)
        m.validate()
    with slubcy.Machine(cpus=1) as m:
        with pytest.raises(slubcy.InvalidCPU):
            m._vcpu_call(None, 0, 3)


def test_bare_bulk_floor_keeps_its_objects():
    for bulk in (1, 16, 64):
        secs, count = bench.freelist_bulk_rounds(1000, bulk, 64, 64)
        assert secs > 0 and count == 64
    with pytest.raises(ValueError):
        bench.freelist_bulk_rounds(10, 65, 64, 64)


def test_bulk_rounds_recycle_the_cpu_slab():
    """The bulk kernel's rounds take and give back the same objects: the
    page count does not grow with the rounds, every object is free after,
    and the machine validates."""
    with slubcy.Machine(cpus=1, memory=16 << 20) as m:
        c = m.kmem_cache_create("bulk-rounds", 64)
        bench.bulk_rounds(c, 32, 10)
        pages = m.page_alloc_info()["pages_used"]
        assert bench.bulk_rounds(c, 32, 20_000) > 0
        assert m.page_alloc_info()["pages_used"] == pages
        assert m.cache_usage_info(c)[0] == 0
        bench.bulk_rounds(c, 1000, 50)             # beyond one slab: the slow path's refills
        assert m.cache_usage_info(c)[0] == 0
        m.validate()


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_larson_floor_hands_objects_over_and_loses_none(nthreads):
    """The bare larson loop: every allocation finds an object and every
    canary is intact; with 2 or more threads about a quarter of the frees
    are another thread's objects (one CAS each); a single thread hands
    nothing over."""
    f = bench.LarsonFloor(nthreads, [192, 640, 256], nslots=256)
    threads = [threading.Thread(target=f.run, args=(i, 0.05)) for i in range(nthreads)]
    for t in threads:
        t.start()
    f.start()
    for t in threads:
        t.join()
    assert f.failures() == 0
    assert f.total_ops() > nthreads * 10_000
    assert 0.05 <= f.seconds() < 1
    frees = f.total_ops() / 2
    if nthreads == 1:
        assert f.remote_frees() == 0
    else:
        assert 0.1 * frees < f.remote_frees() < 0.3 * frees


def test_arena_populate_makes_the_arena_resident():
    with slubcy.Machine(cpus=1, memory=32 << 20) as m:
        base, size = m.arena
        before = bench.resident_bytes(base, size)
        m.arena_populate()
        assert bench.resident_bytes(base, size) == size > before
        c = m.kmem_cache_create("p", 64)
        m.kmem_cache_free(c, m.kmem_cache_alloc(c))
        m.arena_populate()                      # in use: nothing is overwritten
        assert m.validate()["p"] == 0
    with pytest.raises(slubcy.MachineClosed):
        m.arena_populate()


# --- issue #17 item 3: slub 7.0 (sheaves) beside 4.0 (cpu slabs) ------------------

def _side_by_side_ok(m):
    assert m.figure > 0 and m.baseline > 0, m
    assert math.isfinite(m.figure) and math.isfinite(m.baseline), m
    assert m.ratio == pytest.approx(m.figure / m.baseline), m       # 7.0 / 4.0


def test_generation_figures_measure_both_sides():
    """The nogil figures run on both generations' caches, and the ratio is
    7.0's over 4.0's.  The remote free takes 4.0's slow path every time
    (each object's slab is vCPU 0's) and 7.0's never (same node: the
    freeing vCPU's sheaf)."""
    for fn in (perf.slub70_fastpath, perf.slub70_bulk):
        _side_by_side_ok(fn(perf.QUICK))
    m = perf.slub70_remote_free(perf.QUICK)
    _side_by_side_ok(m)
    assert m.note == "frees on the slow path: 4.0 100%, 7.0 0%", m.note


def test_generation_workload_figures_measure_both_sides():
    for fn in (perf.slub70_larson, perf.slub70_churn):
        _side_by_side_ok(fn(perf.QUICK))
    assert re.fullmatch(r"offlines/s: 4\.0 [\d,]+, 7\.0 [\d,]+", perf.slub70_churn(perf.QUICK).note)


def test_pinned_memory_after_a_burst_and_after_shrink():
    """After a burst on every vCPU, every object free: 4.0 holds its cpu
    slabs and frozen cpu partial slabs, 7.0 its sheaves' objects (at most
    main + spare per vCPU and 10 full barn sheaves); kmem_cache_shrink
    leaves neither any slab page nor any object in a sheaf or the barn,
    only each vCPU's empty main sheaf."""
    cpus = 2
    old = perf.pinned_after_burst("4.0", 1024, cpus)
    new = perf.pinned_after_burst("7.0", 1024, cpus)
    assert old["pages"] > 0 and old["cpu_partial_slabs"] > 0 and old["sheaves"] == 0
    assert old["shrunk_pages"] == 0
    cap = new["sheaf_bytes"] // 8 - perf.SHEAF_HEADER // 8
    assert cap == 60                                    # 7.0's formula for 64 B objects
    assert 0 < new["sheaf_objects"] <= cpus * 2 * cap + 10 * cap
    assert new["barn_full"] == 10                       # the barn filled to its limit
    assert new["pages"] * 64 >= new["sheaf_objects"]    # those objects' slabs are pinned
    assert new["shrunk_pages"] == 0 and new["sheaf_objects_shrunk"] == 0
    assert new["barn_shrunk"] == 0 and new["sheaves_shrunk"] == cpus

    m = perf.slub70_pinned(perf.QUICK)
    _side_by_side_ok(m)
    p = perf._pinned()
    assert m.figure == max(r["pages"] for r in p["7.0"]) * 4096 / perf.PIN_CPUS
    assert m.baseline == max(r["pages"] for r in p["4.0"]) * 4096 / perf.PIN_CPUS
    s = perf.slub70_pinned_shrunk(perf.QUICK)
    assert (s.figure, s.baseline, s.ratio) == (0, 0, None)
    assert f"keeps {perf.PIN_CPUS} empty sheaves" in s.note and s.note.endswith(": 0")


def test_batch_microbench_frees_fifo_and_explains_its_verdict():
    ops, nobj = perf.batch_ops(3, 20)
    assert nobj == 9 and ops.shape == (18, 4)
    assert list(ops[:6, 0]) == [bench.OP_ALLOC] * 3 + [bench.OP_FREE] * 3
    assert list(ops[:6, 3]) == [0, 1, 2, 0, 1, 2]           # freed in allocation order
    assert (ops[:, 1] == 0).all() and (ops[:, 2] == 0).all()
    for batch, where in ((10, "stays in"), (100, "overflows")):   # 16 objects a 256 B slab
        m = perf.sheaves_microbench(perf.QUICK, batch)
        _side_by_side_ok(m)
        assert ("faster" if m.ratio < 1 else "slower") in m.note.split("(")[0], m.note
        assert f"capacity {perf.BATCH_CAPACITY};" in m.note and where in m.note, m.note
    assert [f.key for f in perf.FIGURES if f.key.startswith("slub70_batch")] == \
        [f"slub70_batch_{b}" for b in (1, 10, 100, 1000)]


@pytest.mark.parametrize("slub", ["4.0", "7.0"])
def test_bulk_rounds_recycle_on_both_generations(slub):
    """bench.bulk_rounds goes through the generation-dispatching bulk entry:
    on 7.0 it recycles its objects through the main sheaf, the pages do
    not grow with the rounds, and every object is free after."""
    with slubcy.Machine(cpus=1, memory=16 << 20, slub=slub) as m:
        c = m.kmem_cache_create("bulk-gen", 64)
        bench.bulk_rounds(c, 16, 10)
        pages = m.page_alloc_info()["pages_used"]
        before = m.cache_stat_info(c)
        assert bench.bulk_rounds(c, 16, 20_000) > 0
        assert m.page_alloc_info()["pages_used"] == pages
        assert m.cache_usage_info(c)[0] == 0
        if slub == "7.0":
            after = m.cache_stat_info(c)
            assert after["ALLOC_SLOWPATH"] == before["ALLOC_SLOWPATH"]
            assert after["FREE_SLOWPATH"] == before["FREE_SLOWPATH"]
        bench.bulk_rounds(c, 1000, 20)              # beyond main, spare and the barn
        assert m.cache_usage_info(c)[0] == 0
        m.validate()
