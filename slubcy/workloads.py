"""Run a workload on real threads and report the DESIGN.md metrics.

    r = slubcy.workloads.run("larson", cpus=2, seconds=2, seed=0)
    r.metrics["throughput"]; r.to_frame(); r.to_json()
"""
import contextlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field

import slubcy
from slubcy.preempt import parse_spec
from slubcy.workers import WORKLOADS, Run

METRICS = ("ops", "seconds", "throughput", "injected_s", "slab_pages", "retained_pages",
           "dead_caches", "retained_caches", "dying_memcgs", "offlines", "leaked_caches", "leaked_memcgs",
           "leak_rate", "offline_p50_us",
           "offline_p99_us", "utilization")

# larson's size classes: dentry-, inode-, filp-like caches and two kmalloc caches
LARSON_CACHES = (("dentry", 192, slubcy.SLAB_HWCACHE_ALIGN),
                 ("inode_cache", 600, slubcy.SLAB_HWCACHE_ALIGN),
                 ("filp", 256, slubcy.SLAB_HWCACHE_ALIGN))
# churn's accounted caches: dentry-, inode-, filp-like and kmalloc-cg (Linux 5.14's names)
_ACCT = slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN
CHURN_CACHES = (("dentry", 192, _ACCT), ("inode_cache", 600, _ACCT), ("filp", 256, _ACCT),
                ("kmalloc-cg-64", 64, slubcy.SLAB_ACCOUNT),
                ("kmalloc-cg-512", 512, slubcy.SLAB_ACCOUNT))


@dataclass
class Result:
    """A workload run: `metrics` (DESIGN.md names), per-vCPU counts, stats."""
    workload: str
    policy: str
    cpus: int
    seed: int
    metrics: dict
    per_cpu: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    series: list = field(default_factory=list)      # sampled while running (churn)
    offline_us: list = field(default_factory=list)
    params: dict = field(default_factory=dict)      # the workload's shape and machine settings

    def series_frame(self):
        """Samples over time: t, dying_memcgs, dead_caches, retained_pages, slab_pages."""
        import pandas as pd
        df = pd.DataFrame(self.series)
        df.insert(0, "policy", self.policy)
        return df

    def to_frame(self):
        """One row: the run's identity and every metric (None -> NaN)."""
        import pandas as pd
        row = {"workload": self.workload, "policy": self.policy, "cpus": self.cpus,
               "seed": self.seed, **self.params}
        row.update({k: (math.nan if v is None else v) for k, v in self.metrics.items()})
        return pd.DataFrame([row])

    def per_cpu_frame(self):
        import pandas as pd
        return pd.DataFrame(self.per_cpu)

    def to_dict(self):
        return {"workload": self.workload, "policy": self.policy, "cpus": self.cpus,
                "seed": self.seed, "params": self.params, **self.metrics,
                "per_cpu": self.per_cpu}

    def to_json(self):
        return json.dumps(self.to_dict())


def label(workload):
    """A workload's name for file names: `trace:DIR/NAME.txt.xz` -> `trace-NAME`."""
    if workload.startswith("trace:"):
        import os
        base = os.path.basename(workload[len("trace:"):]) or "trace"
        for ext in (".xz", ".gz", ".bz2", ".txt"):
            base = base[:-len(ext)] if base.endswith(ext) else base
        return "trace-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    return workload


def apply_preempt(machine, spec):
    """Configure the machine's preemption points and the CONFIG_PREEMPT
    model from a --preempt SPEC."""
    from slubcy import preempt
    for point, *rest in parse_spec(spec):
        if point == preempt.MODEL:
            rate, slice_ns, fixed = rest
            preempt.set_model(machine, rate, slice_ns, fixed)
        else:
            machine.preempt_point(point).set_delay(*rest)


def workload_caches(machine, workload, size=64):
    """The caches `workload` runs on, created on `machine` if missing (churn:
    its accounted dentry-, inode-, filp-like and kmalloc-cg caches)."""
    if workload in ("larson", "churn"):
        out = []
        for name, sz, flags in (LARSON_CACHES if workload == "larson" else CHURN_CACHES):
            try:
                out.append(machine.kmem_cache(name))
            except KeyError:
                out.append(machine.kmem_cache_create(name, sz, flags=flags))
        if workload == "churn":
            return out
        return out + [machine.kmem_cache("kmalloc-64"), machine.kmem_cache("kmalloc-512")]
    name = f"{workload}-{size}"
    try:
        return [machine.kmem_cache(name)]
    except KeyError:
        return [machine.kmem_cache_create(name, size)]


# churn's shape, each a named parameter of run() (and of `slubcy run/compare
# --param NAME=VALUE`), recorded with every result:
CHURN_DEFAULTS = {
    # objects a job allocates, spread over the five accounted caches: a
    # short container job touching a few hundred files (dentries, inodes,
    # open files, small buffers); enough that its dentries and inodes fill
    # whole slabs, which is what the 2014 race needs
    "job_objects": 1024,
    # share of the job's dentry- and inode-like objects that outlive it: the
    # dcache keeps every dentry and inode after the cgroup's tasks exit,
    # until reclaim
    "outlive": 1.0,
    # share of those reclaimed on another vCPU (the next one's shrinker,
    # as kswapd or another task's direct reclaim would) rather than the
    # job's own
    "handoff": 1.0,
    # seconds a cached object stays on the LRU before the shrinker may
    # free it: compressed from production's seconds-to-hours so that the
    # first frees into a dead cache's full slabs overlap its offline, the
    # interleaving the race needs, within a short run
    "lifetime": 0.0,
    # objects one shrinker pass frees at most (SHRINK_BATCH, 128) and
    # operations between two passes
    "reclaim_batch": 128,
    "reclaim_every": 64,
    # the LRU's capacity per vCPU (a full LRU frees its oldest at once)
    "slots": 8192,
}
# Preemption for the main job (`make run`): the 2014 race's window -- a full
# slab's freeze decided in __slab_free, its cmpxchg not done -- is preempted
# with probability 0.05 for a time slice of 1 ms (the task sleeps: its vCPU
# is quiescent and takes interrupts).  A CONFIG_PREEMPT kernel preempts
# there when a need_resched lands in those few instructions: about
# rate x window = 1000/s x ~50 ns = 5e-5 per freeze on a loaded HZ=1000
# box, so this is that model accelerated ~1000x at the one window the race
# needs (importance sampling); the leak rate scales with the probability
# (`slubcy sweep`), so production's rate is the measured one / ~1000.  The
# slice is what makes the race: an offline queued by the job's rmdir runs on
# the kworker within a millisecond.
MAIN_PREEMPT = "slab_free:before_cmpxchg=0.05:1ms:sleep"
OTHER_DEFAULTS = {"job_objects": 256, "outlive": 0.5, "handoff": 0.25, "lifetime": 0.0,
                  "reclaim_batch": 128, "reclaim_every": 64, "slots": 1024}
SHAPE_PARAMS = tuple(CHURN_DEFAULTS)
MAX_OPS = (1 << 63) - 1         # a worker counts its operations in a C long
MAX_SECONDS = 7 * 86400.0       # a run's --seconds: a week at most
MAX_SEED = (1 << 64) - 1        # the workers' PRNG seed is a uint64_t


def check_bounds(ops=None, seconds=None, seed=0, runs=1):
    """ValueError/TypeError for an `ops`, `seconds` or `seed` a run cannot
    take (`runs` runs use seeds seed..seed+runs-1)."""
    if ops is not None and (isinstance(ops, bool) or not isinstance(ops, int)):
        raise TypeError(f"ops must be an int, got {ops!r}")
    if ops is not None and not 1 <= ops <= MAX_OPS:
        raise ValueError(f"ops must be in 1..{MAX_OPS}, got {ops!r}")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be > 0 and at most {MAX_SECONDS:g} (a week), "
                             f"got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0 <= seed <= MAX_SEED - (runs - 1):
        raise ValueError(f"seed must be in 0..{MAX_SEED - (runs - 1)}, got {seed}")


def run(workload="fastpath", cpus=2, ops=None, seconds=None, seed=0, memory=None,
        machine=None, preempt=None, progress=None, size=64, batch=256, slots=None,
        handoff=None, nr_cpu_ids=None, policy=None, job_objects=None, outlive=None,
        sample_every=0.05, hz=None, expedited=False, wait_caches=True, lifetime=None,
        reclaim_batch=None, reclaim_every=None, slub="4.0"):
    """Run `workload` with one worker thread per vCPU (`cpus` of them), for
    `ops` operations in all (allocations and frees, split evenly) or for
    `seconds`.  Uses `machine` if given, else a fresh one with `policy`
    (closed after).  churn needs a policy (default "barrier").  `hz` and
    `expedited` set the fresh machine's grace periods (see Machine: by
    default they end at a tick of a 250 Hz clock, as a kernel's); `slub`
    its allocator generation ("4.0" or "7.0": see Machine).
    `wait_caches` (churn): each job waits for the kworker to create its
    child caches before it allocates (see slubcy.workers.run_churn).
    churn's shape (job_objects, outlive, handoff, lifetime, reclaim_batch,
    reclaim_every, slots) defaults to CHURN_DEFAULTS; every value used is
    in the result's `params`."""
    if isinstance(workload, str) and workload.startswith("trace:"):
        # a recorded kmem trace, replayed whole (ops and seconds do not apply)
        from slubcy.trace.replay import replay_trace
        if machine is not None:
            raise ValueError("a trace workload runs on a fresh machine of its own")
        return replay_trace(workload[len("trace:"):], policy=policy or "barrier", cpus=cpus,
                            preempt=preempt, hz=hz, expedited=expedited, seed=seed,
                            memory=memory, progress=progress, slub=slub)
    given = {"job_objects": job_objects, "outlive": outlive, "handoff": handoff,
             "lifetime": lifetime, "reclaim_batch": reclaim_batch,
             "reclaim_every": reclaim_every, "slots": slots}
    shape = {k: (v if v is not None else
                 (CHURN_DEFAULTS if workload == "churn" else OTHER_DEFAULTS)[k])
             for k, v in given.items()}
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: one of {', '.join(WORKLOADS)}")
    if (ops is None) == (seconds is None):
        raise ValueError("give exactly one of ops and seconds")
    check_bounds(ops, seconds, seed)
    if workload == "churn" and policy is None and machine is None:
        policy = "objcg" if slub == "7.0" else "barrier"
    own = machine is None
    if memory is None:
        memory = (1 << 30) if workload == "churn" else (256 << 20)
    m = machine if machine is not None else slubcy.Machine(
        cpus=cpus, nr_cpu_ids=nr_cpu_ids, memory=memory, seed=seed, policy=policy, hz=hz,
        expedited=expedited, slub=slub)
    try:
        if preempt:
            apply_preempt(m, preempt)
        caches = workload_caches(m, workload, size)
        per_worker = -1 if ops is None else max(1, ops // cpus)
        r = Run(m, workload, caches, cpus, per_worker, batch=batch, slots=shape["slots"],
                handoff=shape["handoff"], seed=seed, job_objects=shape["job_objects"],
                outlive=shape["outlive"], wait_caches=wait_caches, lifetime=shape["lifetime"],
                reclaim_batch=shape["reclaim_batch"], reclaim_every=shape["reclaim_every"])
        show = progress if progress is not None else (seconds is not None and seconds > 3)
        series = []
        t0 = time.monotonic()

        def sample_series():
            row = {"t": time.monotonic() - t0, **m.memcg_stat_info(),
                   "slab_pages": m.page_alloc_info()["pages_used"]}
            del row["leaked_caches"]
            series.append(row)

        def sample():
            return m.slab_usage_info(), m.memcg_stat_info()

        per, ((used, nslots, pages), mst) = drive(
            r, lambda: _wait(r, ops, seconds, show, sample_series if workload == "churn" else None,
                             sample_every), sample)
        if workload == "churn":
            sample_series()
        quiesced = True
        try:
            m.policy_quiesce()
        except slubcy.Timeout:
            quiesced = False        # deferred work still queued: leaks may be overcounted
        after = m.memcg_stat_info()
        elapsed = max(w["seconds"] for w in per)
        total_ops = sum(w["ops"] for w in per)
        lat = sorted(x for w in per for x in w.pop("offline_us", []))
        injected = [w["injected_s"] for w in per]       # in each main loop
        metrics = run_metrics(total_ops, elapsed, pages, mst, after, lat, used, nslots,
                              per, injected)
        stats = {c.name: m.cache_stat_info(c) for c in caches}
        if not quiesced:
            import warnings
            warnings.warn(f"{workload}/{m.policy}: deferred work did not finish in time "
                          f"({m.rcu_state_info()}, {m.vcpu_info()}); leaked_caches may count "
                          "caches still being shrunk")
        params = {"slub": m.slub, "hz": m.hz, "expedited": m.expedited, "preempt": preempt or "",
                  "batch": batch, "size": size, **shape}
        return Result(workload, str(m.policy or "none"), cpus, seed, metrics, per, stats,
                      series, lat, params)
    finally:
        if own:
            m.close()


@contextlib.contextmanager
def _sigint_deferred():
    """While the workers are being joined, a Ctrl-C is noted, not raised
    (a half-joined Run cannot be finished again); yields a list that is
    non-empty if one came.  Only in the main thread, where signals land."""
    came = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):
        yield came
        return
    old = signal.signal(signal.SIGINT, lambda *a: came.append(1))
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, old)


def drive(r, wait, sample):
    """Start the workers `r` (all or none: a Ctrl-C waits for it), wait(),
    then return r.finish(sample).  A Ctrl-C at any point stops the workers,
    lets them drain and join, and is raised again."""
    with _sigint_deferred() as early:
        r.start()
    try:
        if early:
            raise KeyboardInterrupt
        wait()
    except KeyboardInterrupt:
        r.request_stop()
        with _sigint_deferred():
            r.finish()
        raise
    with _sigint_deferred() as interrupted:
        out = r.finish(sample)
    if interrupted:
        raise KeyboardInterrupt
    return out


def run_metrics(ops, seconds, pages, mst, after, lat, used, nslots, per=None, injected=None):
    """The headline metrics of one run (DESIGN.md §7): `mst` is
    memcg_stat_info() sampled while the objects were live, `after` once
    every object was freed and the policy's deferred work (RCU callbacks,
    workqueue, reaper passes) ran; `lat` the sorted offline latencies (us);
    `used`/`nslots` the slots in use at the sample.  `per` (the workers'
    ops and seconds) and `injected` (each vCPU's seconds in named points'
    injected delays) make throughput the sum of each vCPU's operations per
    second it ran: the main job's injected preemption samples a rare event
    a thousand times too often, and its time is not a cost of the policy
    or the allocator generation (a kernel is preempted as often wherever
    the window is)."""
    offlines = after["offlines"]
    inj = sum(injected) if injected else 0.0
    if per and injected and inj > 0:
        # (a worker that ran under 5% of its loop is taken over its whole loop)
        throughput = sum(w["ops"] / max(w["seconds"] - i, 0.05 * w["seconds"])
                         for w, i in zip(per, injected) if w["seconds"] > 0)
    else:
        throughput = ops / seconds if seconds > 0 else 0.0
    return {
        "ops": ops, "seconds": seconds,
        "throughput": throughput, "injected_s": inj,
        "slab_pages": pages, "retained_pages": mst["retained_pages"],
        "dead_caches": mst["dead_caches"],
        # dead at the sample, gone once their objects were freed and the
        # deferred work ran: retained, not leaked
        "retained_caches": max(0, mst["dead_caches"] - after["dead_caches"]),
        "dying_memcgs": mst["dying_memcgs"],
        # after all that: what can never go
        "offlines": offlines, "leaked_caches": after["leaked_caches"],
        "leaked_memcgs": after["dying_memcgs"],
        "leak_rate": 1000.0 * after["leaked_caches"] / offlines if offlines else 0.0,
        "offline_p50_us": _pct(lat, 0.50), "offline_p99_us": _pct(lat, 0.99),
        "utilization": used / nslots if nslots else 0.0,
    }


def _pct(sorted_values, q):
    if not sorted_values:
        return None
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def _wait(r, ops, seconds, show, sampler=None, every=0.05):
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=ops if ops is not None else round(seconds, 1),
                   unit="ops" if ops is not None else "s", unit_scale=True, leave=False)
    t0 = time.monotonic()
    last = 0
    next_sample = t0
    while not r.producing_done:
        if sampler is not None and time.monotonic() >= next_sample:
            sampler()
            next_sample += every
        elapsed = time.monotonic() - t0
        if seconds is not None and elapsed >= seconds:
            r.request_stop()
            break
        time.sleep(0.05 if bar is not None else 0.001)
        if bar is not None:
            now = sum(r.ops()) if ops is not None else round(elapsed, 1)
            bar.update(now - last)
            last = now
    if bar is not None:
        bar.close()


MAX_LOOP_CACHES = 256       # slubcy.policies.base.MAX_CHILD_CACHES: child caches per memcg


def cgroup_loop(policy, caches_per_memcg=1, seconds=None, runs=None, cpus=2, hz=250,
                objects=4, seed=0, details=False, slub="4.0"):
    """The loop of kernel bugzilla 190841: create a memcg, allocate from it,
    rmdir it, again -- on a fresh Machine(cpus, hz, policy) from Python on
    vCPU 0 (the other vCPUs idle).  Returns completed runs per second (or,
    with details, a dict with the kworker's and the mutexes' counts too).

    Each run: memcg_create (cgroup_mutex: it waits while the kworker runs the
    previous run's offline), one allocation from each of `caches_per_memcg`
    accounted caches (served from the root caches; each queues its child
    cache's creation on the kworker), flush_work() (the creations, queued
    behind the previous offline), `objects` allocations from each child
    cache, every object freed, memcg_rmdir (queues the offline and returns).
    `caches_per_memcg=0` allocates nothing: the cgroup.memory=nokmem rate.
    Under barrier:sync an offline costs a grace period per cache -- a tick
    or two at `hz` (250 by default: 4 ms ticks) -- and the rate falls as
    caches per memcg grow; under barrier:kick an IPI round per cache; under
    async barrier it stays near the nokmem rate.  Runs for `seconds` (0.5 s
    by default), or `runs` runs; the last offline is waited for and counted
    in the time."""
    if policy is None or not isinstance(policy, str) or not policy:
        raise ValueError("cgroup_loop needs a policy name, e.g. 'barrier:sync'")
    for value, what in ((caches_per_memcg, "caches_per_memcg"), (cpus, "cpus"),
                        (objects, "objects"), (seed, "seed")):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= caches_per_memcg <= MAX_LOOP_CACHES:
        raise ValueError(f"caches_per_memcg must be in 0..{MAX_LOOP_CACHES}, got {caches_per_memcg}")
    if objects < 0:
        raise ValueError(f"objects must be >= 0, got {objects}")
    if runs is not None and seconds is not None:
        raise ValueError("give at most one of seconds and runs")
    if runs is None and seconds is None:
        seconds = 0.5
    if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
        raise ValueError(f"runs must be a positive int, got {runs!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not seconds > 0):
        raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
    with slubcy.Machine(cpus=cpus, memory=256 << 20, policy=policy, hz=hz, seed=seed,
                        slub=slub) as m:
        caches = [m.kmem_cache_create(f"loop-{i}", 64, flags=slubcy.SLAB_ACCOUNT)
                  for i in range(caches_per_memcg)]
        n = 0
        t0 = time.monotonic()
        deadline = None if seconds is None else t0 + seconds
        while (n < runs) if runs is not None else (time.monotonic() < deadline):
            g = m.memcg_create(f"run{n}")
            live = [(c, m.kmem_cache_alloc(c, cpu=0, memcg=g)) for c in caches]
            if caches:
                m.flush_work()
            live += [(c, m.kmem_cache_alloc(c, cpu=0, memcg=g)) for c in caches
                     for _ in range(objects)]
            for c, a in live:
                m.kmem_cache_free(c, a, cpu=0)
            m.memcg_rmdir(g)
            n += 1
        m.flush_work()
        elapsed = time.monotonic() - t0
        rate = n / elapsed
        if not details:
            return rate
        return {"policy": str(m.policy), "caches_per_memcg": caches_per_memcg, "runs": n,
                "seconds": elapsed, "runs_per_s": rate, **m.kworker_stat_info()}
