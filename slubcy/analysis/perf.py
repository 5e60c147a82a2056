"""The performance figures of issue #6, each measured against its baseline in
the same process run (the machines here are shared and noisy: only ratios
taken side by side mean anything).

One function per figure, each returning a `Measurement(figure, baseline,
ratio)`; `FIGURES` lists them with their units and targets, in the order of
the issue.  `benchmarks/perf.py` (`make perf`) prints them all and fails if a
target is missed; an asv suite can call the same functions.

Timing: nogil loops (slubcy.bench) time themselves inside C and keep the best
of `repeat` runs; Python-level loops use the best of `repeat` timeit runs;
workload throughputs are medians.  Every repeat measures the figure and then
its baseline, so drift on the machine hits both alike.
"""
import math
import random
import statistics
import threading
import time
import timeit
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np

import slubcy
from slubcy import bench, model, workloads
from slubcy.workers import Run


class Measurement(NamedTuple):
    figure: float
    baseline: Optional[float]       # None: a figure measured on its own
    ratio: Optional[float]          # as the target reads (see Figure.ratio_is)
    note: str = ""


@dataclass(frozen=True)
class Settings:
    """How long to measure.  QUICK is a smoke pass (tests); DEFAULT is `make perf`."""
    pairs: int = 5_000_000          # nogil alloc+free pairs per timed loop
    repeat: int = 7                 # repeats of each nogil / Python-level measurement
    py_pairs: int = 100_000         # Python-API alloc+free pairs per timeit run
    free_rounds: int = 50           # rounds of the remote-free measurement
    bulk: int = 10_000              # objects per bulk call
    seconds: float = 1.0            # per workload run
    runs: int = 5                   # workload runs per worker count / policy
    replay_ops: int = 20_000        # recorded ops replayed through model and core
    replay_repeat: int = 3
    sync_samples: int = 300         # synchronize() calls for the grace-period line


DEFAULT = Settings()
QUICK = Settings(pairs=200_000, repeat=2, py_pairs=5_000, free_rounds=4, bulk=10_000,
                 seconds=0.1, runs=1, replay_ops=2_000, replay_repeat=1, sync_samples=20)


def _best(fn, repeat):
    return min(fn() for _ in range(repeat))


def _alternate(figure_fn, baseline_fn, repeat, pick=min):
    """Measure figure then baseline, `repeat` times; `pick` of each."""
    f, b = [], []
    for _ in range(repeat):
        f.append(figure_fn())
        b.append(baseline_fn())
    return pick(f), pick(b)


# --- 1, 2: the fast path against libc and against the floor -----------------

def _fastpath_cache(m):
    c = m.kmem_cache_create("perf-64", 64)
    bench.fastpath_pairs(c, 1000)           # warm the cpu slab
    return c


def fastpath_vs_libc(cfg=DEFAULT):
    """Fast-path kmem_cache_alloc + kmem_cache_free pair of a 64 B cache in a
    nogil loop (ns) vs libc malloc(64) + free in the same loop.  Ratio: how
    many times faster the fast path is."""
    n = cfg.pairs
    with slubcy.Machine(cpus=1, memory=64 << 20) as m:
        c = _fastpath_cache(m)
        slub, libc = _alternate(lambda: bench.fastpath_pairs(c, n) / n * 1e9,
                                lambda: bench.libc_pairs(n, 64) / n * 1e9, cfg.repeat)
    return Measurement(slub, libc, libc / slub)


def fastpath_vs_floor(cfg=DEFAULT):
    """The same fast-path pair (ns) vs a bare intrusive free list's pop + push
    (bench.freelist_pairs: the loads and stores the pair cannot avoid).
    Ratio: times the floor."""
    n = cfg.pairs
    with slubcy.Machine(cpus=1, memory=64 << 20) as m:
        c = _fastpath_cache(m)
        slub, floor = _alternate(lambda: bench.fastpath_pairs(c, n) / n * 1e9,
                                 lambda: bench.freelist_pairs(n, 64)[0] / n * 1e9, cfg.repeat)
    return Measurement(slub, floor, slub / floor)


# --- 3: remote free ----------------------------------------------------------

# A fast-path free needs the object's slab to be the freeing vCPU's cpu slab,
# so both loops free the objects of one slab: the kernel's own boot
# parameters slub_min_objects= and slub_max_order= make a 64 B cache's slab
# hold 4096 objects (order 6).
REMOTE_OBJECTS = 4096


def remote_free(cfg=DEFAULT):
    """Per object (ns): free on vCPU 1 of objects allocated on vCPU 0 (every
    free is __slab_free: a compare-and-swap on the slab's (freelist,
    counters), the slab being vCPU 0's frozen cpu slab) vs the hardware's
    floor for it: the same compare-and-swap pushing the same number of
    objects onto a word of the same layout in a bare loop
    (bench.cas_free_rounds).  Ratio: times the bare loop.  The note gives
    the ratio to a fast-path free (a plain store) for comparison."""
    n = REMOTE_OBJECTS
    with slubcy.Machine(cpus=2, memory=64 << 20, slub_min_objects=n, slub_max_order=6) as m:
        c = m.kmem_cache_create("perf-remote-64", 64)
        assert c.objects_per_slab == n, c
        return _remote_vs_cas(c, c, cfg)


def _remote_vs_cas(remote_cache, fast_cache, cfg):
    """Per-object ns of freeing on vCPU 1 what vCPU 0 allocated from
    `remote_cache`, vs the bare CAS loop, alternated; the fast-path free on
    vCPU 0 of `fast_cache` for the note."""
    n, rounds = REMOTE_OBJECTS, cfg.free_rounds

    def per_object(c, cpu):
        return bench.free_rounds(c, n, rounds, 0, cpu) / (n * rounds) * 1e9

    def bare_cas():
        seconds, count = bench.cas_free_rounds(n, rounds, remote_cache.size)
        assert count == n, count
        return seconds / (n * rounds) * 1e9

    bench.free_rounds(fast_cache, n, 1, 0, 0)
    remote, cas = _alternate(lambda: per_object(remote_cache, 1), bare_cas, cfg.repeat)
    fast = _best(lambda: per_object(fast_cache, 0), cfg.repeat)
    remote_cache.machine.validate()
    return Measurement(remote, cas, remote / cas,
                       note=f"{remote / fast:.1f}x a fast-path free of {fast:.1f} ns")


def remote_free_many_slabs(cfg=DEFAULT):
    """Extra line: the same remote free with the default geometry (64 objects
    a slab), so it also freezes full slabs onto vCPU 1's partial list and
    unfreezes them to the node list (put_cpu_partial, unfreeze_partials,
    discard_slab) -- vs the same bare CAS loop."""
    n = REMOTE_OBJECTS
    with slubcy.Machine(cpus=2, memory=64 << 20) as m, \
            slubcy.Machine(cpus=1, memory=64 << 20, slub_min_objects=n, slub_max_order=6) as big:
        return _remote_vs_cas(m.kmem_cache_create("perf-remote-64", 64),
                              big.kmem_cache_create("perf-remote-64", 64), cfg)


# --- 4, 5: the Python API ------------------------------------------------------

BULK_CALL = 16        # objects a call of the core's bulk figure (within one 64-object slab)
BULK_NS = 3.0         # issue #15's absolute goal per object (reported in the note)


def bulk_core(cfg=DEFAULT):
    """kmem_cache_alloc_bulk + kmem_cache_free_bulk of BULK_CALL objects in a
    nogil loop, per object (ns): the kernel's own bulk microbenchmark's shape
    (slab_bulk_test01, bulk sizes up to 250, objects recycled through the
    cpu slab), vs its floor: the same pops into an array and push back as
    one chain on a bare free list (bench.freelist_bulk_rounds).  Ratio:
    times the floor; the note compares with the nogil fast-path pair."""
    n = max(cfg.pairs // BULK_CALL, 1)
    with slubcy.Machine(cpus=1, memory=64 << 20) as m:
        c = _fastpath_cache(m)
        fig, base, pair = [], [], []
        for _ in range(cfg.repeat):
            fig.append(bench.bulk_rounds(c, BULK_CALL, n) / (n * BULK_CALL) * 1e9)
            base.append(bench.freelist_bulk_rounds(n, BULK_CALL)[0] / (n * BULK_CALL) * 1e9)
            pair.append(bench.fastpath_pairs(c, cfg.pairs) / cfg.pairs * 1e9)
        m.validate()
    fig, base, pair = min(fig), min(base), min(pair)
    # the absolute 3 ns/object: met on a quiet host (2.5-2.9 ns), but
    # these shared hosts move every figure up to 2x within an hour (figure
    # 1's pair: 2.1-3.9 ns), so the target is the ratio to the floor beside it
    verdict = "met" if fig <= BULK_NS else f"missed while the floor itself took {base:.2f} ns"
    return Measurement(fig, base, fig / base,
                       f"{BULK_NS:g} ns/object {verdict}; {fig / pair:.2f}x a fast-path pair of "
                       f"{pair:.2f} ns; the floor is the pops' pointer chase (each loads the "
                       "next free pointer from the object just taken)")


def bulk_api(cfg=DEFAULT):
    """m.kmem_cache_alloc_bulk + m.kmem_cache_free_bulk of `bulk` objects
    from Python, per object (ns, both calls), vs the core's own bulk calls
    on the same number of objects in a nogil loop (bench.bulk_rounds).
    Ratio: what the Python API adds (the array, and the free's check of
    every address: arena, slab, object start, duplicates, freelists).  Both
    take ~bulk/64 new slabs a round and give them back (empty slabs beyond
    min_partial go to the page allocator, as in the kernel)."""
    k = cfg.bulk
    with slubcy.Machine(cpus=1, memory=256 << 20) as m:
        c = _fastpath_cache(m)
        split = [0.0, 0.0]

        def bulk():
            t0 = time.perf_counter()
            arr = m.kmem_cache_alloc_bulk(c, k)
            t1 = time.perf_counter()
            m.kmem_cache_free_bulk(c, arr)
            t2 = time.perf_counter()
            split[:] = [(t1 - t0) / k * 1e9, (t2 - t1) / k * 1e9]
            return (t2 - t0) / k * 1e9

        bulk()
        rounds = max(cfg.pairs // k // 10, 1)
        fig, base = _alternate(lambda: _best(bulk, 3),
                               lambda: bench.bulk_rounds(c, k, rounds) / (rounds * k) * 1e9,
                               cfg.repeat)
        m.validate()
    return Measurement(fig, base, fig / base,
                       f"last round: alloc {split[0]:.1f} + free {split[1]:.1f} ns/object")


def python_api(cfg=DEFAULT):
    """m.kmem_cache_alloc(c, 0) + m.kmem_cache_free(c, a, 0) from Python (ns)
    vs the same two calls, same arguments, to a method of the same extension
    type that only takes the vCPU and lets it go (Machine._vcpu_call): the
    price of running on a vCPU safely from any thread, a locked
    compare-and-swap for the owner and a full barrier to go online (a
    kernel entry under context tracking pays an atomic operation too).
    Ratio: times that floor; the note gives the ratio to two empty calls
    (Machine._noop) and the vCPU's share."""
    n = cfg.py_pairs
    with slubcy.Machine(cpus=1, memory=64 << 20) as m:
        c = _fastpath_cache(m)
        alloc, free, noop, vcall = m.kmem_cache_alloc, m.kmem_cache_free, m._noop, m._vcpu_call

        def api():
            free(c, alloc(c, 0), 0)

        def floor():
            vcall(c, vcall(c, 0), 0)

        def empty():
            noop(c, noop(c, 0), 0)

        def timed(fn):
            return timeit.timeit(fn, number=chunk) / chunk * 1e9

        # short chunks, each call measured right after the floor: these hosts
        # switch speed for seconds at a time, so the ratio is the median of
        # ratios taken side by side (the figures are each one's best)
        chunk = max(n // 5, 100)
        fig, base, bare = [], [], []
        for _ in range(cfg.repeat * 3):
            fig.append(timed(api))
            base.append(timed(floor))
            bare.append(timed(empty))
        m.validate()
    ratio = statistics.median(f / b for f, b in zip(fig, base))
    fig, base, bare = min(fig), min(base), min(bare)
    return Measurement(fig, base, ratio,
                       f"{fig / bare:.2f}x 2 empty calls of {bare:.0f} ns; taking the vCPU "
                       f"{(base - bare) / 2:.0f} ns a call")


# --- 6, 7: thread scaling -------------------------------------------------------

def cacheline_transfer_ns(n=200_000, repeat=3):
    """Median one-way cache-line transfer between two threads (ns): the
    price of every cross-vCPU free (the slab's struct page, the object), so
    larson's scaling depends on where the machine places the two threads
    (measured here: 30-60 ns close, about 175 ns far apart, switching by
    itself); a thread that cannot run at once shows up as microseconds."""
    out = []
    for _ in range(repeat):
        pp = bench.CachelinePingPong()
        t = threading.Thread(target=pp.pong, args=(n,))
        t.start()
        out.append(pp.ping(n))
        t.join()
    return statistics.median(out)


def _scaling(workload, cfg):
    # both with nr_cpu_ids=2, so the slab geometry (calculate_order) is the same
    def run(cpus):
        return workloads.run(workload, cpus=cpus, seconds=cfg.seconds, seed=0,
                             nr_cpu_ids=2).metrics["throughput"]

    before = cacheline_transfer_ns()
    one, two = _alternate(lambda: run(1), lambda: run(2), cfg.runs, pick=statistics.median)
    after = cacheline_transfer_ns()
    return Measurement(two / 1e6, one / 1e6, two / one,
                       f"cache-line transfer {before:.0f} ns before, {after:.0f} ns after")


def fastpath_scaling(cfg=DEFAULT):
    """`fastpath` workload throughput (Mops/s, median), 2 workers vs 1."""
    return _scaling("fastpath", cfg)


def larson_floor_mops(nthreads, seconds):
    """Throughput (Mops/s) of bench.LarsonFloor: larson's loop and hand-overs
    on `nthreads` threads over a bare allocator, for `seconds`."""
    f = bench.LarsonFloor(nthreads, [size for _, size, _ in workloads.LARSON_CACHES])
    threads = [threading.Thread(target=f.run, args=(i, seconds)) for i in range(nthreads)]
    for t in threads:
        t.start()
    f.start()
    for t in threads:
        t.join()
    if f.failures():
        raise RuntimeError(f"LarsonFloor: {f.failures()} failed allocations or canaries")
    return f.total_ops() / f.seconds() / 1e6


def larson_scaling(cfg=DEFAULT):
    """`larson` workload throughput (Mops/s, median) on 2 workers vs what 1
    worker's would become if SLUB scaled as the hardware lets a bare
    allocator scale on the same traffic: 1 worker x (bench.LarsonFloor on 2
    threads / on 1).  A quarter of larson's frees hand the object to the
    other vCPU, and each hand-over moves the object's and the free list's
    cache lines between the cores; where a transfer costs ~100 ns the bare
    loop itself runs slower on 2 threads than on 1, and no allocator can
    scale past that.  Ratio: times that bound (>= 0.9: SLUB adds no
    contention of its own)."""
    def run(cpus):
        return workloads.run("larson", cpus=cpus, seconds=cfg.seconds, seed=0,
                             nr_cpu_ids=2).metrics["throughput"] / 1e6

    before = cacheline_transfer_ns()
    one, two, f1, f2 = [], [], [], []
    for _ in range(cfg.runs):
        one.append(run(1))
        two.append(run(2))
        f1.append(larson_floor_mops(1, cfg.seconds / 4))
        f2.append(larson_floor_mops(2, cfg.seconds / 4))
    after = cacheline_transfer_ns()
    # each round's four runs are taken together (these hosts change speed
    # for seconds at a time): the ratio is the median of the rounds' ratios
    ratio = statistics.median(t * b1 / (o * b2) for o, t, b1, b2 in zip(one, two, f1, f2))
    one, two, f1, f2 = (statistics.median(x) for x in (one, two, f1, f2))
    bound = one * f2 / f1
    return Measurement(two, bound, ratio,
                       f"1 worker {one:.1f}, {two / one:.2f}x on 2; bare loop {f1:.1f} -> {f2:.1f} "
                       f"Mops/s, {f2 / f1:.2f}x; cache-line transfer {before:.0f} ns before, "
                       f"{after:.0f} ns after")


def grace_period_latency(cfg=DEFAULT):
    """Extra line: synchronize() p50 (us) while 2 vCPUs run `fastpath` on a
    3-vCPU machine (vCPU 2 idle); its p99 as the 'baseline' column."""
    with slubcy.Machine(cpus=3) as m:
        c = m.kmem_cache_create("gp", 64)
        run = Run(m, "fastpath", [c], 2, -1)
        run.start()
        lat = []
        try:
            time.sleep(0.05)
            for _ in range(cfg.sync_samples):
                t0 = time.perf_counter()
                m.synchronize(timeout=5)
                lat.append(time.perf_counter() - t0)
        finally:
            run.request_stop()
            run.finish()
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Measurement(p50 * 1e6, p99 * 1e6, None)


# --- 12-14: how cost grows with the work -----------------------------------------

def churn_oversubscribed(cfg=DEFAULT, vcpus=64):
    """`churn` (objcg) throughput (Mops/s, median) with 64 vCPUs on this
    host's cores, vs 2 vCPUs: oversubscribed, a worker that is descheduled
    holds up no one (grace periods count a switched-out task as quiescent),
    so the rate may drop but must not collapse."""
    def run(cpus):
        return workloads.run("churn", cpus=cpus, seconds=cfg.seconds, seed=0,
                             policy="objcg").metrics["throughput"]

    many, two = _alternate(lambda: run(vcpus), lambda: run(2), cfg.runs, pick=statistics.median)
    return Measurement(many / 1e6, two / 1e6, many / two)


def arena_size_cost(cfg=DEFAULT):
    """ns per `larson` operation on 2 vCPUs with a 16 GiB arena (sparse:
    mapped, not resident) vs a 64 MiB one: the page map and the buddy lists
    grow with the arena, an operation's cost must not."""
    ops = max(200_000, cfg.pairs // 5)

    def run(memory):
        with slubcy.Machine(cpus=2, memory=memory) as m:
            r = workloads.run("larson", cpus=2, ops=ops, machine=m)
        return 1e9 / r.metrics["throughput"]

    big, small = _alternate(lambda: run(16 << 30), lambda: run(64 << 20), cfg.runs,
                            pick=statistics.median)
    return Measurement(big, small, big / small)


def offline_slope(cfg=DEFAULT):
    """The cost of an offline as its work grows, fitted (scipy.stats
    linregress over benchmarks' bench_scaling measurements): barrier:sync's
    latency per child cache of the memcg (a grace period each, so about two
    HZ=250 ticks) vs per other memcg online (should be ~0).  Figure: us per
    cache; baseline: us per 100 live memcgs."""
    from scipy.stats import linregress
    caches = [1, 4, 16] if cfg.runs > 1 else [1, 4]
    memcgs = [10, 300, 1000] if cfg.runs > 1 else [10, 300]
    per_cache = linregress(caches, [_offline_us("barrier:sync", n, 10) for n in caches])
    per_memcg = linregress(memcgs, [_offline_us("barrier:sync", 1, n) for n in memcgs])
    return Measurement(per_cache.slope, per_memcg.slope * 100, None,
                       f"per cache r = {per_cache.rvalue:.3f}; "
                       f"intercept {per_cache.intercept / 1e3:.1f} ms")


def _offline_us(policy, ncaches, nmemcgs, repeat=3):
    """Median memcg_offline() latency (us, queueing to the end of its work
    item) of a memcg with `ncaches` child caches holding objects, with
    `nmemcgs` other memcgs online."""
    out = []
    with slubcy.Machine(cpus=2, memory=256 << 20, policy=policy) as m:
        caches = [m.kmem_cache_create(f"acct-{i}", 64, flags=slubcy.SLAB_ACCOUNT)
                  for i in range(ncaches)]
        online = [m.memcg_create(f"other-{i}") for i in range(nmemcgs)]
        for r in range(repeat):
            g = m.memcg_create(f"victim-{r}")
            first = [(c, m.kmem_cache_alloc(c, memcg=g)) for c in caches]
            m.flush_work(timeout=60)            # its child caches exist
            live = [(c, m.kmem_cache_alloc(c, memcg=g)) for c in caches]
            for c, a in first:
                m.kmem_cache_free(c, a)
            out.append(m.memcg_offline(g) * 1e6)
            for c, a in live:
                m.kmem_cache_free(c, a)
            m.policy_quiesce()
        del online
    return statistics.median(out)


def grace_period_expedited(cfg=DEFAULT):
    """An expedited (microsecond-mode) synchronize_sched() from the caller's
    thread (on no vCPU, a nogil loop: bench.synchronize_rounds) while one
    vCPU runs `fastpath` (it reports a quiescent state
    every QS_INTERVAL operations), p50 (us), vs the floor: a bare QSBR
    grace period between two threads with the same reporting interval in
    time
    (bench.QsbrFloor, what liburcu-qsbr's synchronize_rcu does; 2.9 us
    with one busy reader on a machine of this kind).  Ratio: times the
    floor."""
    n = max(200, cfg.sync_samples * 10)
    # the floor's reader reports as often, in time, as the model's worker:
    # every QS_INTERVAL (64) fastpath operations
    worker_ns = 1e9 / workloads.run("fastpath", cpus=1, seconds=min(cfg.seconds, 0.3),
                                    seed=0).metrics["throughput"]
    interval_ns = 64 * worker_ns

    def model():
        with slubcy.Machine(cpus=2, expedited=True) as m:
            c = m.kmem_cache_create("gp", 64)
            run = Run(m, "fastpath", [c], 1, -1)
            run.start()
            try:
                time.sleep(0.02)
                lat = bench.synchronize_rounds(m, n)
            finally:
                run.request_stop()
                run.finish()
        return float(np.median(lat)) * 1e6

    def floor():
        q = bench.QsbrFloor()
        t = threading.Thread(target=q.reader, args=(interval_ns,))
        t.start()
        try:
            lat = q.synchronize(n)
        finally:
            q.stop()
            t.join()
        return float(np.median(lat)) * 1e6

    fig, base = _alternate(model, floor, max(2, cfg.repeat // 2), pick=statistics.median)
    return Measurement(fig, base, fig / base,
                       f"both report a quiescent state every {interval_ns:.0f} ns: "
                       f"64 fastpath ops of {worker_ns:.1f} ns")


def time_to_answer(cfg=DEFAULT):
    """`make run`'s time to its headline answer: seconds of churn (naive and
    objcg in turn, the main job's preemption) until naive's leak rate
    differs from objcg's at 1% (compare.time_to_significance), median over
    runs (the p values reached are in the note)."""
    from slubcy.analysis.compare import time_to_significance
    out = [time_to_significance(seed=i, max_s=30.0 if cfg.runs > 1 else 10.0)
           for i in range(max(1, min(cfg.runs, 3)))]
    secs = sorted(r["seconds"] for r in out)
    return Measurement(secs[len(secs) // 2], None, None,
                       f"p <= {max(r['p'] for r in out):.2g}; "
                       f"leaked / offlines: {sum(r['leaked'] for r in out)} / "
                       f"{sum(r['offlines'] for r in out)} naive, "
                       f"{sum(r['baseline_leaked'] for r in out)} / "
                       f"{sum(r['baseline_offlines'] for r in out)} objcg")


# --- 8: the core against the reference model ----------------------------------

# name, size, flags: a kmalloc-64-like cache (64 objects a slab), a dentry-like
# one (21 a slab, cpu_partial 30) and a big-object one (6 a slab, order 3).
REPLAY_CACHES = (("replay-64", 64, 0),
                 ("replay-dentry", 192, model.SLAB_HWCACHE_ALIGN),
                 ("replay-big", 5000, 0))
REPLAY_CPUS = 2


def record_ops(nops, seed=0, lifo=0.8, remote=0.1, ncaches=len(REPLAY_CACHES),
               cpus=REPLAY_CPUS, max_live=512):
    """A deterministic op sequence: rows (op, cache, cpu, slot) of
    bench.OP_ALLOC / OP_FREE / OP_SHRINK, on `cpus` vCPUs and `ncaches`
    caches.  Phases of 2000 ops of mostly allocations, then mostly frees (so
    slabs fill, empty, freeze, move to the node list and are discarded).
    A free takes, with probability `lifo`, the cache's newest live object
    (a short-lived object, likely still in its cpu slab: the fast path),
    else a random one; it runs on the vCPU that allocated the object, or
    with probability `remote` on another one.  A shrink every ~1000 ops.
    Returns (ops, number of slots)."""
    rng = random.Random(seed)
    live = [[] for _ in range(ncaches)]
    owner = []                  # slot -> the vCPU that allocated it
    free_slots = []
    ops = []
    for i in range(nops):
        ci = rng.randrange(ncaches)
        grow = (i // 2000) % 2 == 0
        if rng.random() < 0.001:
            ops.append((bench.OP_SHRINK, ci, 0, 0))
            continue
        if not live[ci] or (len(live[ci]) < max_live and rng.random() < (0.7 if grow else 0.3)):
            cpu = rng.randrange(cpus)
            if free_slots:
                slot = free_slots.pop()
                owner[slot] = cpu
            else:
                slot = len(owner)
                owner.append(cpu)
            live[ci].append(slot)
            ops.append((bench.OP_ALLOC, ci, cpu, slot))
        else:
            j = -1 if rng.random() < lifo else rng.randrange(len(live[ci]))
            slot = live[ci].pop(j)
            free_slots.append(slot)
            cpu = owner[slot]
            if cpus > 1 and rng.random() < remote:
                cpu = (cpu + rng.randrange(1, cpus)) % cpus
            ops.append((bench.OP_FREE, ci, cpu, slot))
    return np.array(ops, dtype=np.int32).reshape(-1, 4), max(len(owner), 1)


def _replay_calls(target, caches, ops, nslots):
    """Seconds to replay `ops` through `target`'s kmem_cache_alloc / _free /
    _shrink, one Python call per op (the reference model, or the Python API)."""
    slots = [None] * nslots
    rows = ops.tolist()
    alloc, free, shrink = target.kmem_cache_alloc, target.kmem_cache_free, target.kmem_cache_shrink
    ALLOC, FREE = bench.OP_ALLOC, bench.OP_FREE
    t0 = time.perf_counter()
    for op, ci, cpu, slot in rows:
        if op == ALLOC:
            slots[slot] = alloc(caches[ci], cpu)
        elif op == FREE:
            free(caches[ci], slots[slot], cpu)
        else:
            shrink(caches[ci])
    return time.perf_counter() - t0


def replay_model(ops, nslots):
    """Replay through the pure-Python reference model: (seconds, live
    objects, RefMachine, its caches)."""
    ref = model.RefMachine(cpus=REPLAY_CPUS, nr_cpu_ids=REPLAY_CPUS)
    caches = [ref.kmem_cache_create(name, size, flags=flags) for name, size, flags in REPLAY_CACHES]
    t = _replay_calls(ref, caches, ops, nslots)
    return t, sum(len(c.live) for c in caches), ref, caches


def _core_machine():
    m = slubcy.Machine(cpus=REPLAY_CPUS, nr_cpu_ids=REPLAY_CPUS, memory=64 << 20)
    return m, [m.kmem_cache_create(name, size, flags=flags) for name, size, flags in REPLAY_CACHES]


def replay_core(ops, nslots, machine=None):
    """Replay through the Cython core in one nogil loop (bench.replay):
    (seconds, live objects, Machine, its caches).  Closes the machine it
    makes unless `machine` = (Machine, caches) is given."""
    m, caches = machine if machine is not None else _core_machine()
    t, live = bench.replay(m, caches, ops, np.zeros(nslots, dtype=np.uint64))
    return t, live, m, caches


def replay_python_api(ops, nslots):
    """Replay through the Python API (one checked call per op): seconds."""
    m, caches = _core_machine()
    with m:
        return _replay_calls(m, caches, ops, nslots)


def core_vs_model(cfg=DEFAULT, lifo=0.8, remote=0.1):
    """A recorded op sequence (record_ops: 80% of frees of the newest
    object, 10% remote) replayed
    through the Cython core (one nogil loop, arena pages faulted in first)
    vs through the reference model (slubcy/model.py), ns per op.  Ratio: how
    many times faster the core is.  Information: nobody runs the model for
    speed."""
    ops, nslots = record_ops(cfg.replay_ops, lifo=lifo, remote=remote)

    def core():
        m, caches = _core_machine()
        with m:
            m.arena_populate()
            return replay_core(ops, nslots, (m, caches))[0]

    c, r = _alternate(core, lambda: replay_model(ops, nslots)[0], cfg.replay_repeat)
    n = len(ops)
    return Measurement(c / n * 1e9, r / n * 1e9, r / c)


def core_vs_accesses(cfg=DEFAULT):
    """Figure 8's sequence through the Cython core vs a bare C loop making
    the same object accesses in the same order (bench.replay_accesses: an
    allocation reads the object's free pointer, a free writes it), in a
    copy of the arena's layout: what SLUB's bookkeeping costs over the
    cache misses the sequence cannot avoid.  ns per op; ratio: times the
    bare accesses."""
    import mmap
    ops, nslots = record_ops(cfg.replay_ops)
    n = len(ops)
    m, caches = _core_machine()
    with m:
        m.arena_populate()
        base, size = m.arena
        addrs = np.zeros(n, dtype=np.uint64)
        bench.replay(m, caches, ops, np.zeros(nslots, dtype=np.uint64), addrs)
        offs = np.where(addrs != 0, addrs - np.uint64(base), 0).astype(np.uint64)
        offsets = np.array([c.offset for c in caches], dtype=np.uint32)
        ncpus = m.cpus
    buf = mmap.mmap(-1, size)
    arena = np.frombuffer(buf, dtype=np.uint8)
    arena[::4096] = 0                       # faulted in, as the core's arena was

    def core():
        m2, caches2 = _core_machine()
        with m2:
            m2.arena_populate()
            return replay_core(ops, nslots, (m2, caches2))[0]

    def bare():
        return bench.replay_accesses(ops, offs, offsets, ncpus, arena)

    try:
        c, a = _alternate(core, bare, cfg.replay_repeat)
    finally:
        arena = None                        # the mmap's buffer export goes with the array
        buf.close()
    return Measurement(c / n * 1e9, a / n * 1e9, c / a)


def core_vs_model_remote(cfg=DEFAULT):
    """Extra line: random lifetimes, half of the frees remote: most frees
    and many allocations take the slow paths (compare-and-swap, list_lock)."""
    return core_vs_model(cfg, lifo=0.0, remote=0.5)


def python_api_vs_model(cfg=DEFAULT):
    """Extra line: figure 8's sequence through the Python API vs the model."""
    ops, nslots = record_ops(cfg.replay_ops)
    c, r = _alternate(lambda: replay_python_api(ops, nslots),
                      lambda: replay_model(ops, nslots)[0], cfg.replay_repeat)
    n = len(ops)
    return Measurement(c / n * 1e9, r / n * 1e9, r / c)


# --- 9: offline throughput of the batched barrier ------------------------------

CHURN_HZ = 1000        # figure 9's tick: the shortest kernel-like grace periods


def churn_offlines(cfg=DEFAULT):
    """`churn` on 2 vCPUs: memcg offlines per second with policy
    `barrier:async` (Linux 4.11: call_rcu per cache, one grace period per
    batch) vs `barrier:sync` (4.7: synchronize_sched per cache), medians,
    with grace periods bound to a HZ=1000 tick (Machine(hz=...)) as the
    kernel's are -- what 4.11 set out to fix.  Ratio: async / sync.  The
    note gives the same ratio with expedited grace periods (they last
    microseconds, so waiting for five per offline costs little), each
    policy's dead caches and retained pages (a backlog of deferred shrinks
    shows there), and the rate of the offline path alone (offlines per
    second spent in memcg_offline: 1 / mean latency)."""
    def rate(policy, out, hz):
        r = workloads.run("churn", cpus=2, seconds=cfg.seconds, seed=0, policy=policy,
                          hz=hz or CHURN_HZ, expedited=hz is None)
        lat = r.offline_us
        out.append((r.metrics["dead_caches"], r.metrics["retained_pages"],
                    len(lat) / (sum(lat) * 1e-6) if lat else math.nan))
        return r.metrics["offlines"] / r.metrics["seconds"]

    st_async, st_sync, qsbr = [], [], []
    fig, base = _alternate(lambda: rate("barrier:async", st_async, CHURN_HZ),
                           lambda: rate("barrier:sync", st_sync, CHURN_HZ), cfg.runs,
                           pick=statistics.median)
    q_async, q_sync = _alternate(lambda: rate("barrier:async", qsbr, None),
                                 lambda: rate("barrier:sync", qsbr, None), cfg.runs,
                                 pick=statistics.median)

    def med(rows, i):
        return statistics.median(r[i] for r in rows)

    note = (f"HZ={CHURN_HZ}; expedited grace periods: async {q_async:,.0f}/s vs sync "
            f"{q_sync:,.0f}/s, {q_async / q_sync:.2f}x; dead caches / retained pages: async "
            f"{med(st_async, 0):.0f} / {med(st_async, 1):.0f}, sync {med(st_sync, 0):.0f} / "
            f"{med(st_sync, 1):.0f}; offline path alone: async {med(st_async, 2):,.0f}/s, "
            f"sync {med(st_sync, 2):,.0f}/s")
    return Measurement(fig, base, fig / base, note)


# --- 10, 11: memory --------------------------------------------------------------

def metadata_per_page(cfg=DEFAULT):
    """Metadata bytes per 4 KiB page frame: every per-page mapping beside the
    arena (mem_map, a struct page per frame) divided by the frames."""
    with slubcy.Machine(cpus=1, memory=16 << 20) as m:
        regions = bench.metadata_regions(m)
        pages = m.memory // 4096
        per_page = sum(n for k, (_, n) in regions.items() if k != "arena") / pages
    return Measurement(per_page, None, None, f"struct page {bench.struct_page_size()} B")


def arena_resident(cfg=DEFAULT, arena=1 << 30, slab_bytes=10 << 20):
    """A `arena`-byte machine with `slab_bytes` of slabs (64 B objects from
    kmem_cache_alloc_bulk): bytes resident (mincore) in the arena and
    mem_map vs the used slab pages plus their metadata
    (figure 10's bytes per page).  Ratio: resident / needed."""
    with slubcy.Machine(cpus=1, memory=arena) as m:
        c = m.kmem_cache_create("perf-rss-64", 64)
        per_slab = c.objects_per_slab * c.size
        objs = m.kmem_cache_alloc_bulk(c, -(-slab_bytes // per_slab) * c.objects_per_slab)
        pages = m.page_alloc_info()["pages_used"]
        regions = bench.metadata_regions(m)
        resident = {k: bench.resident_bytes(a, n) for k, (a, n) in regions.items()}
        meta = bench.struct_page_size()
        needed = pages * (4096 + meta)
        m.kmem_cache_free_bulk(c, objs)
    total = sum(resident.values())
    note = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in resident.items()) + \
        f"; {pages} pages used"
    return Measurement(total / 2**20, needed / 2**20, total / needed, note)


# --- S1-S7: the two allocator generations side by side (issue #17 item 3) -----------
#
# Each figure is measured on a Machine(slub="7.0") (Linux 7.0: percpu sheaves
# and a per-node barn) and on a Machine(slub="4.0") (cpu slab + cpu partial
# slabs) in the same run, alternating, with the same caches and loops; the
# figure is 7.0's, the baseline 4.0's, the ratio 7.0 / 4.0 (for a time per
# object < 1 means 7.0 is faster, for a throughput > 1 does).  Information
# only: nothing here holds 7.0 to a number of 4.0's.

GENERATIONS = ("4.0", "7.0")


@contextmanager
def _per_generation(make):
    """{slub: make(new)} for both generations, where new(**kw) opens a
    Machine(slub=slub, **kw); every machine opened is closed on the way out."""
    with ExitStack() as stack:
        def opener(slub):
            return lambda **kw: stack.enter_context(slubcy.Machine(slub=slub, **kw))
        yield {v: make(opener(v)) for v in GENERATIONS}


def _side_by_side(measure, repeat, pick=min):
    """measure(slub) for 7.0 then 4.0, `repeat` times, `pick` of each:
    Measurement(7.0, 4.0, 7.0 / 4.0)."""
    new, old = _alternate(lambda: measure("7.0"), lambda: measure("4.0"), repeat, pick=pick)
    return Measurement(new, old, new / old)


def slub70_fastpath(cfg=DEFAULT):
    """Figure 1's nogil kmem_cache_alloc + kmem_cache_free pair of a 64 B
    cache (bench.fastpath_pairs, through alloc.pxd's generation-dispatching
    entry): 7.0's alloc_from_pcs / free_to_pcs (the local trylock, a pop
    and a push on the main sheaf) vs 4.0's cpu freelist, ns a pair."""
    n = cfg.pairs
    with _per_generation(lambda new: _fastpath_cache(new(cpus=1, memory=64 << 20))) as cs:
        r = _side_by_side(lambda v: bench.fastpath_pairs(cs[v], n) / n * 1e9, cfg.repeat)
    return r._replace(note="4.0's fast path here is a plain per-cpu freelist pop/push with no "
                           "TID cmpxchg (one thread owns a vCPU: DESIGN.md §8), the cost the "
                           "kernel's sheaves were made to avoid; 7.0 pays the local trylock (a test "
                           "and two stores) and the main sheaf's pointer, size and array")


def slub70_remote_free(cfg=DEFAULT):
    """Figure 3's remote free with the default geometry (64 B, 64 objects a
    slab): REMOTE_OBJECTS allocated on vCPU 0, freed in order on vCPU 1
    (bench.free_rounds), ns per free.  4.0: every free is __slab_free (the
    slab's compare-and-swap, put_cpu_partial, unfreezes); 7.0: the object
    is on the same node, so free_to_pcs pushes it onto vCPU 1's sheaf and
    full sheaves reach vCPU 0 through the barn.  The note gives the share of
    frees that took the slow path."""
    n, rounds = REMOTE_OBJECTS, cfg.free_rounds

    def make(new):
        c = new(cpus=2, memory=64 << 20).kmem_cache_create("perf-remote-64", 64)
        bench.free_rounds(c, n, 1, 0, 1)
        return c

    with _per_generation(make) as cs:
        r = _side_by_side(lambda v: bench.free_rounds(cs[v], n, rounds, 0, 1) / (n * rounds) * 1e9,
                          cfg.repeat)
        slow = {}
        for v, c in cs.items():
            st = c.machine.cache_stat_info(c)
            slow[v] = st["FREE_SLOWPATH"] / max(st["FREE_SLOWPATH"] + st["FREE_FASTPATH"], 1)
            c.machine.validate()
    return r._replace(note=f"frees on the slow path: 4.0 {slow['4.0']:.0%}, 7.0 {slow['7.0']:.0%}")


def slub70_bulk(cfg=DEFAULT):
    """Figure 4's bulk: kmem_cache_alloc_bulk + kmem_cache_free_bulk of
    BULK_CALL (16) objects a call, recycled, in a nogil loop
    (bench.bulk_rounds), ns per object.  7.0: alloc_from_pcs_bulk copies
    from the main sheaf, free_to_pcs_bulk copies back under one lock; 4.0:
    the cpu freelist's pops and one detached freelist pushed back."""
    n = max(cfg.pairs // BULK_CALL, 1)
    with _per_generation(lambda new: _fastpath_cache(new(cpus=1, memory=64 << 20))) as cs:
        r = _side_by_side(lambda v: bench.bulk_rounds(cs[v], BULK_CALL, n) / (n * BULK_CALL) * 1e9,
                          cfg.repeat)
        for c in cs.values():
            c.machine.validate()
    return r._replace(note="7.0 copies the 16 out of and back into the main sheaf, one lock "
                           "each way (alloc_from_pcs_bulk, free_to_pcs_bulk); 4.0 pops its cpu "
                           "freelist and pushes the 16 back as one detached freelist")


def _workload_side_by_side(workload, cfg, **kw):
    """`workload` on 2 workers (vCPUs), 7.0 then 4.0, cfg.runs - 2 times
    (at least once): (median Mops/s of 7.0, of 4.0, the runs' RunResults)."""
    out = {v: [] for v in GENERATIONS}

    def run(v):
        r = workloads.run(workload, cpus=2, seconds=cfg.seconds, seed=0, slub=v, **kw)
        out[v].append(r)
        return r.metrics["throughput"] / 1e6

    new, old = _alternate(lambda: run("7.0"), lambda: run("4.0"), max(cfg.runs - 2, 1),
                          pick=statistics.median)
    return Measurement(new, old, new / old), out


def slub70_larson(cfg=DEFAULT):
    """`larson` on 2 workers (Mops/s, median): 7.0 vs 4.0.  A quarter of its
    frees are of the other vCPU's objects: 4.0 sends each through
    __slab_free's compare-and-swap on the slab (and its cache line between
    the cores), 7.0 pushes it onto the freeing vCPU's sheaf (same node)."""
    return _workload_side_by_side("larson", cfg)[0]


def slub70_churn(cfg=DEFAULT):
    """`churn` with policy objcg (the only kind that runs on 7.0) on 2
    workers (Mops/s, median): 7.0 vs 4.0; the note gives each one's memcg
    offlines per second."""
    r, runs = _workload_side_by_side("churn", cfg, policy="objcg")

    def offlines(v):
        return statistics.median(x.metrics["offlines"] / x.metrics["seconds"] for x in runs[v])

    return r._replace(note=f"offlines/s: 4.0 {offlines('4.0'):,.0f}, 7.0 {offlines('7.0'):,.0f}")


# "memory pinned by idle sheaves": on PIN_CPUS vCPUs, each in turn allocates
# a burst of 64 B objects and frees them (FIFO) on the same vCPU; then every
# object is free, and what the cache still holds is what the per-cpu layers
# (and the node's min_partial empty slabs, 5 in both) keep.  The burst sizes
# span both generations' worst cases: 4.0 counts a slab put on the cpu
# partial list by its free objects when put (1 for a slab that was full), so
# up to cpu_partial (30) slabs stay frozen on each vCPU; 7.0 keeps main +
# spare (2 x 60 objects) per vCPU plus up to 10 full barn sheaves per node.
PIN_CPUS = 4
PIN_BURSTS = (64, 256, 1024, 4096)
SHEAF_HEADER = 32           # sizeof(struct slab_sheaf) on 64-bit (7.0)


def pinned_after_burst(slub, burst, cpus=PIN_CPUS, size=64):
    """A fresh Machine(slub, cpus); a `size`-byte cache; a burst of `burst`
    allocations then their frees (in allocation order) on each vCPU in
    turn.  Returns a dict: `pages` of slabs the cache holds with no object
    in use, `shrunk_pages` after kmem_cache_shrink(), the objects in sheaves
    and the full barn sheaves before, and (7.0) `sheaves` / `sheaves_shrunk`:
    sheaves allocated and not freed, and `sheaf_bytes`, the size of one
    (kmalloc'ed in the kernel: header + capacity pointers)."""
    with slubcy.Machine(cpus=cpus, memory=256 << 20, slub=slub) as m:
        c = m.kmem_cache_create(f"perf-pin-{size}", size)
        alloc, free = m.kmem_cache_alloc, m.kmem_cache_free
        for cpu in range(cpus):
            objs = [alloc(c, cpu) for _ in range(burst)]
            for a in objs:
                free(c, a, cpu)
        used, _, pages = m.cache_usage_info(c)
        info, st = m.cache_info(c), m.cache_stat_info(c)
        m.kmem_cache_shrink(c)
        used_after, _, shrunk = m.cache_usage_info(c)
        info_after, st_after = m.cache_info(c), m.cache_stat_info(c)
        m.validate()
    assert used == used_after == 0, (used, used_after)
    return {"pages": pages, "shrunk_pages": shrunk,
            "sheaf_objects": info["sheaf_objects"], "barn_full": info["barn_full"],
            "cpu_partial_slabs": info["cpu_partial_slabs"],
            "sheaf_objects_shrunk": info_after["sheaf_objects"],
            "barn_shrunk": info_after["barn_full"] + info_after["barn_empty"],
            "sheaves": st.get("SHEAF_ALLOC", 0) - st.get("SHEAF_FREE", 0),
            "sheaves_shrunk": st_after.get("SHEAF_ALLOC", 0) - st_after.get("SHEAF_FREE", 0),
            "sheaf_bytes": SHEAF_HEADER + 8 * info["sheaf_capacity"] if info["sheaf_capacity"] else 0}


def _pinned(cpus=PIN_CPUS, bursts=PIN_BURSTS):
    """{slub: [pinned_after_burst(...) for each burst]}."""
    return {v: [pinned_after_burst(v, b, cpus) for b in bursts] for v in GENERATIONS}


def _per_vcpu(pages, cpus=PIN_CPUS):
    return pages * 4096 / cpus


def slub70_pinned(cfg=DEFAULT):
    """Bytes of slab pages pinned per vCPU once every object is free after
    a burst on every vCPU (pinned_after_burst, PIN_CPUS vCPUs), the most
    over the bursts PIN_BURSTS: 7.0 vs 4.0.  Deterministic (no timing).  The
    note gives each burst's KiB per vCPU, 4.0 / 7.0, and what 7.0's sheaves
    themselves take (kmalloc'ed in the kernel; malloc'ed here, not in the
    arena)."""
    p = _pinned()
    new = max(_per_vcpu(r["pages"]) for r in p["7.0"])
    old = max(_per_vcpu(r["pages"]) for r in p["4.0"])
    worst = max(p["7.0"], key=lambda r: r["pages"])
    kib = {v: " / ".join(f"{_per_vcpu(r['pages']) / 1024:.0f}" for r in p[v]) for v in p}
    return Measurement(new, old, new / old,
                       f"{PIN_CPUS} vCPUs; KiB per vCPU after bursts of "
                       f"{' / '.join(map(str, PIN_BURSTS))} objects: 4.0 {kib['4.0']}, 7.0 "
                       f"{kib['7.0']} (both with the node's min_partial empty slabs); 7.0 at its "
                       f"most: {worst['sheaf_objects']} objects in sheaves ({worst['barn_full']} "
                       f"full in the barn), and its {worst['sheaves']} sheaves of "
                       f"{worst['sheaf_bytes']} B take {worst['sheaves'] * worst['sheaf_bytes'] / PIN_CPUS:.0f}"
                       " B per vCPU more (kmalloc'ed in the kernel, outside the arena here)")


def slub70_pinned_shrunk(cfg=DEFAULT):
    """The same after kmem_cache_shrink() (flush_all, barn_shrink, every
    empty slab freed; 4.0: every cpu slab and cpu partial slab flushed):
    bytes of slab pages per vCPU, the most over the bursts, 7.0 vs 4.0;
    both should be 0.  The note gives the sheaves 7.0 keeps (each vCPU's
    empty main)."""
    p = _pinned()
    new = max(_per_vcpu(r["shrunk_pages"]) for r in p["7.0"])
    old = max(_per_vcpu(r["shrunk_pages"]) for r in p["4.0"])
    kept = max(r["sheaves_shrunk"] for r in p["7.0"])
    held = max(r["sheaf_objects_shrunk"] + r["barn_shrunk"] for r in p["7.0"])
    return Measurement(new, old, new / old if old else None,
                       f"7.0 keeps {kept} empty sheaves ({kept / PIN_CPUS:g} per vCPU: main) of "
                       f"{p['7.0'][0]['sheaf_bytes']} B; objects in sheaves + barn sheaves: {held}")


# The v5 cover letter's microbenchmark (reference/linux-sheaves.md §5): on one
# CPU, a batch of allocations, then their frees in the same order (FIFO),
# time per object, with sheaves of capacity 32 vs without; sheaves were
# 17.2 / 15.3 / 31.0 / 30.2% faster at batches of 1 / 10 / 100 / 1000.  Here a
# 256 B cache (16 objects a slab) created with sheaf_capacity=32 (7.0's
# formula gives 28 for 256 B, so the cover letter's 32), run as a recorded
# op sequence through bench.replay (one nogil loop; each op also reads its row
# and a slot, the same for both).
BATCH_SIZE = 256
BATCH_CAPACITY = 32
COVER_LETTER_FASTER = {1: 17.2, 10: 15.3, 100: 31.0, 1000: 30.2}      # % faster with sheaves


def batch_ops(batch, nops):
    """ops for bench.replay: rounds of `batch` allocations into slots
    0..batch-1 then `batch` frees of slots 0..batch-1, on vCPU 0 and cache
    0, about `nops` ops in all.  Returns (ops, objects allocated)."""
    rounds = max(1, nops // (2 * batch))
    one = np.zeros((2 * batch, 4), dtype=np.int32)
    one[:batch, 0] = bench.OP_ALLOC
    one[batch:, 0] = bench.OP_FREE
    one[:batch, 3] = one[batch:, 3] = np.arange(batch)
    return np.ascontiguousarray(np.tile(one, (rounds, 1))), rounds * batch


def sheaves_microbench(cfg, batch):
    """ns per object (its allocation and its free) at `batch`, 7.0 vs 4.0:
    the best of 2 x cfg.repeat replays of the same sequence, alternated."""
    ops, nobj = batch_ops(batch, max(2 * batch, min(100_000, cfg.pairs // 25)))
    slots = np.zeros(batch, dtype=np.uint64)

    def make(new):
        m = new(cpus=1, memory=64 << 20)
        c = m.kmem_cache_create("perf-batch", BATCH_SIZE,
                                **({"sheaf_capacity": BATCH_CAPACITY} if m.slub == "7.0" else {}))
        bench.replay(m, [c], ops, slots)                 # warm: slabs, sheaves, barn
        return m, c

    def per_object(v):
        m, c = ms[v]
        t, live = bench.replay(m, [c], ops, slots)
        assert live == 0, live
        return t / nobj * 1e9

    with _per_generation(make) as ms:
        r = _side_by_side(per_object, 2 * cfg.repeat)
        cap = ms["7.0"][0].cache_info(ms["7.0"][1])["sheaf_capacity"]
        per_slab = ms["4.0"][1].objects_per_slab
        for m, _ in ms.values():
            m.validate()
    faster = (1 - r.ratio) * 100
    verdict = (f"sheaves {abs(faster):.0f}% {'faster' if faster > 0 else 'slower'} (the v5 cover "
               f"letter: {COVER_LETTER_FASTER[batch]:g}% faster)")
    if batch <= per_slab:
        why = (f"the batch stays in 4.0's cpu slab ({per_slab} objects), whose fast path here is "
               "a per-cpu freelist pop/push with no TID cmpxchg (DESIGN.md §8): the cost the "
               "kernel's sheaves avoid is not modelled")
    else:
        why = (f"the batch overflows 4.0's cpu slab ({per_slab} objects): frees to its other "
               "slabs take __slab_free's CAS and the cpu partial list, 7.0's stay in main, "
               "spare and the barn")
    return r._replace(note=f"{verdict}; capacity {cap}; {why}")


def _microbench_figure(batch):
    def fn(cfg=DEFAULT):
        return sheaves_microbench(cfg, batch)
    fn.__name__ = f"slub70_batch_{batch}"
    fn.__doc__ = f"sheaves_microbench at a batch of {batch}."
    return fn


# --- the table ---------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    baseline_title: str
    func: Callable
    ratio_is: str = ""                  # what the ratio means
    ratio_target: Optional[tuple] = None    # (">=" or "<=", value)
    value_target: Optional[tuple] = None
    extra: bool = False                 # reported, no target

    def check(self, m):
        """True if every target is met (None if the figure has none)."""
        ok = None
        for target, value in ((self.ratio_target, m.ratio), (self.value_target, m.figure)):
            if target is None:
                continue
            op, limit = target
            good = value is not None and math.isfinite(value) and \
                (value >= limit if op == ">=" else value <= limit)
            ok = good if ok is None else ok and good
        return ok

    def budget(self, m):
        """How much of its targets the figure uses, lower is better: for a
        `<=` target value/limit, for a `>=` one limit/value; the largest
        over its targets.  <= 1 meets them all; None without a target."""
        worst = None
        for target, value in ((self.ratio_target, m.ratio), (self.value_target, m.figure)):
            if target is None:
                continue
            op, limit = target
            if value is None or not math.isfinite(value) or value <= 0:
                use = math.inf
            else:
                use = value / limit if op == "<=" else limit / value
            worst = use if worst is None else max(worst, use)
        return worst

    def cost(self, m):
        """The figure as a cost, lower is better, in one of two units: ("ns",
        time per operation (or to an answer): ns, us, ns/op, s; a rate Mops/s or /s as its
        inverse) or ("bytes", B, MiB); None for another unit."""
        x = m.figure
        if x is None or not math.isfinite(x):
            return None
        per_ns = {"ns": 1.0, "ns/op": 1.0, "us": 1e3, "s": 1e9}
        if self.unit in per_ns:
            return "ns", x * per_ns[self.unit]
        if self.unit in ("Mops/s", "/s"):
            rate = x * (1e6 if self.unit == "Mops/s" else 1.0)
            return ("ns", 1e9 / rate) if rate > 0 else None
        if self.unit in ("B", "MiB"):
            return "bytes", x * (1 if self.unit == "B" else 1 << 20)
        return None

    def target_text(self):
        parts = []
        if self.ratio_target:
            parts.append(f"{self.ratio_target[0]} {self.ratio_target[1]:g}x")
        if self.value_target:
            parts.append(f"{self.value_target[0]} {self.value_target[1]:g} {self.unit}")
        return ", ".join(parts) or "-"


FIGURES = (
    Figure("fastpath_libc", "1 fast-path alloc+free pair, 64 B, nogil", "ns",
           "libc malloc+free pair", fastpath_vs_libc, "x faster", (">=", 3)),
    Figure("fastpath_floor", "2 fast-path alloc+free pair", "ns",
           "bare free-list pop+push", fastpath_vs_floor, "x the floor", ("<=", 4)),
    Figure("remote_free", "3 remote free (__slab_free CAS), per object", "ns",
           "bare CAS push, same word layout", remote_free, "x the floor", ("<=", 1.5)),
    Figure("remote_free_many", "3+ remote free, 64 objects a slab", "ns",
           "bare CAS push, same word layout", remote_free_many_slabs, "x the floor", extra=True),
    Figure("bulk_core", "4 bulk alloc+free, 16 a call, per object", "ns",
           "bare bulk pop+push, same objects", bulk_core, "x the floor", ("<=", 3)),
    Figure("bulk_api", "4+ bulk API from Python, 10,000 objects", "ns",
           "same in the core, nogil", bulk_api, "x the core", ("<=", 2.5)),
    Figure("python_api", "5 Python alloc+free pair", "ns",
           "2 calls taking a vCPU", python_api, "x the floor", ("<=", 2)),
    Figure("fastpath_scaling", "6 fastpath, 2 workers", "Mops/s",
           "1 worker", fastpath_scaling, "x", (">=", 1.8)),
    Figure("larson_scaling", "7 larson, 2 workers", "Mops/s",
           "1 worker x bare loop's scaling", larson_scaling, "x the bound", (">=", 0.9)),
    Figure("grace_period", "6+ synchronize() p50, 2 busy vCPUs", "us",
           "p99", grace_period_latency, "", extra=True),
    Figure("grace_period_expedited", "6 expedited synchronize() p50, 1 busy vCPU", "us",
           "bare QSBR grace period", grace_period_expedited, "x the floor", ("<=", 2)),
    Figure("core_vs_accesses", "8 recorded ops, Cython core (nogil replay)", "ns/op",
           "same object accesses, bare C loop", core_vs_accesses, "x the accesses", ("<=", 5)),
    Figure("core_vs_model", "8+ recorded ops, Cython core (nogil replay)", "ns/op",
           "pure-Python model", core_vs_model, "x faster", extra=True),
    Figure("core_vs_model_remote", "8+ random lifetimes, half remote", "ns/op",
           "pure-Python model", core_vs_model_remote, "x faster", extra=True),
    Figure("api_vs_model", "8+ recorded ops, Python API replay", "ns/op",
           "pure-Python model", python_api_vs_model, "x faster", extra=True),
    Figure("churn_offlines", "9 churn offlines, barrier:async, HZ=1000", "/s",
           "barrier:sync", churn_offlines, "x", (">=", 5)),
    Figure("metadata", "10 metadata per 4 KiB page", "B",
           "", metadata_per_page, "", None, ("<=", 64)),
    Figure("arena_rss", "11 resident, 1 GiB arena, 10 MiB slabs", "MiB",
           "slab pages + metadata", arena_resident, "x", ("<=", 1.5)),
    Figure("churn_64_vcpus", "12 churn, 64 vCPUs on the host's cores", "Mops/s",
           "2 vCPUs", churn_oversubscribed, "x", (">=", 0.5)),
    Figure("arena_16g", "13 larson op, 16 GiB arena (sparse)", "ns",
           "64 MiB arena", arena_size_cost, "x", ("<=", 1.2)),
    Figure("offline_slope", "14 barrier:sync offline, per child cache", "us",
           "per 100 live memcgs", offline_slope, "", extra=True),
    Figure("time_to_answer", "15 make run: naive's leak significant at 1%", "s",
           "", time_to_answer, "", extra=True),
    # issue #17 item 3: slub 7.0 (sheaves) against 4.0 (cpu slabs), same run;
    # ratio 7.0 / 4.0, information only
    Figure("slub70_fastpath", "S1 7.0 fast-path pair, 64 B, nogil", "ns",
           "slub 4.0", slub70_fastpath, "x 4.0", extra=True),
    Figure("slub70_remote_free", "S2 7.0 remote free, per object", "ns",
           "slub 4.0", slub70_remote_free, "x 4.0", extra=True),
    Figure("slub70_bulk", "S3 7.0 bulk alloc+free, 16 a call, per object", "ns",
           "slub 4.0", slub70_bulk, "x 4.0", extra=True),
    Figure("slub70_larson", "S4 7.0 larson, 2 workers", "Mops/s",
           "slub 4.0", slub70_larson, "x 4.0", extra=True),
    Figure("slub70_churn", "S5 7.0 churn (objcg), 2 workers", "Mops/s",
           "slub 4.0", slub70_churn, "x 4.0", extra=True),
    Figure("slub70_pinned", "S6 7.0 pinned after bursts, per vCPU", "B",
           "slub 4.0", slub70_pinned, "x 4.0", extra=True),
    Figure("slub70_pinned_shrunk", "S6+ 7.0 pinned after kmem_cache_shrink", "B",
           "slub 4.0", slub70_pinned_shrunk, "x 4.0", extra=True),
) + tuple(
    Figure(f"slub70_batch_{b}", f"S7 7.0 v5 microbench, batch {b}, per object", "ns",
           "slub 4.0", _microbench_figure(b), "x 4.0", extra=True)
    for b in COVER_LETTER_FASTER)
