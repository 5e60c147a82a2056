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
from slubcy.workload import WORKLOADS, Run

METRICS = ("ops", "seconds", "throughput", "slab_pages", "retained_pages", "dead_caches",
           "dying_memcgs", "offlines", "leaked_caches", "leak_rate", "offline_p50_us",
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
               "seed": self.seed}
        row.update({k: (math.nan if v is None else v) for k, v in self.metrics.items()})
        return pd.DataFrame([row])

    def per_cpu_frame(self):
        import pandas as pd
        return pd.DataFrame(self.per_cpu)

    def to_dict(self):
        return {"workload": self.workload, "policy": self.policy, "cpus": self.cpus,
                "seed": self.seed, **self.metrics, "per_cpu": self.per_cpu}

    def to_json(self):
        return json.dumps(self.to_dict())


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


def run(workload="fastpath", cpus=2, ops=None, seconds=None, seed=0, memory=None,
        machine=None, preempt=None, progress=None, size=64, batch=256, slots=1024,
        handoff=0.25, nr_cpu_ids=None, policy=None, job_objects=256, outlive=0.5,
        sample_every=0.05, hz=None, expedited=False):
    """Run `workload` with one worker thread per vCPU (`cpus` of them), for
    `ops` operations in all (allocations and frees, split evenly) or for
    `seconds`.  Uses `machine` if given, else a fresh one with `policy`
    (closed after).  churn needs a policy (default "barrier").  `hz` and
    `expedited` set the fresh machine's grace periods (see Machine: by
    default they end at a tick of a 250 Hz clock, as a kernel's)."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: one of {', '.join(WORKLOADS)}")
    if (ops is None) == (seconds is None):
        raise ValueError("give exactly one of ops and seconds")
    if ops is not None and (not isinstance(ops, int) or ops < 1):
        raise ValueError(f"ops must be a positive int, got {ops!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if workload == "churn" and policy is None and machine is None:
        policy = "barrier"
    own = machine is None
    if memory is None:
        memory = (1 << 30) if workload == "churn" else (256 << 20)
    m = machine if machine is not None else slubcy.Machine(
        cpus=cpus, nr_cpu_ids=nr_cpu_ids, memory=memory, seed=seed, policy=policy, hz=hz,
        expedited=expedited)
    try:
        if preempt:
            apply_preempt(m, preempt)
        caches = workload_caches(m, workload, size)
        per_worker = -1 if ops is None else max(1, ops // cpus)
        r = Run(m, workload, caches, cpus, per_worker, batch=batch, slots=slots,
                handoff=handoff, seed=seed, job_objects=job_objects, outlive=outlive)
        show = progress if progress is not None else (seconds is not None and seconds > 3)
        series = []
        t0 = time.monotonic()

        def sample_series():
            row = {"t": time.monotonic() - t0, **m.memcg_stats(),
                   "slab_pages": m.page_alloc_info()["pages_used"]}
            del row["leaked_caches"]
            series.append(row)

        def sample():
            return m.slab_usage(), m.memcg_stats()

        with _sigint_deferred() as early:
            r.start()           # all the workers or none: a Ctrl-C waits for it
        try:
            if early:
                raise KeyboardInterrupt
            _wait(r, ops, seconds, show, sample_series if workload == "churn" else None,
                  sample_every)
        except KeyboardInterrupt:
            # Ctrl-C: stop the workers, let them drain and join, then re-raise
            r.request_stop()
            with _sigint_deferred():
                r.finish()
            raise
        with _sigint_deferred() as interrupted:
            per, ((used, nslots, pages), mst) = r.finish(sample)
        if interrupted:
            raise KeyboardInterrupt
        if workload == "churn":
            sample_series()
        quiesced = True
        try:
            m._policy_quiesce()
        except slubcy.Timeout:
            quiesced = False        # deferred work still queued: leaks may be overcounted
        after = m.memcg_stats()
        elapsed = max(w["seconds"] for w in per)
        total_ops = sum(w["ops"] for w in per)
        lat = sorted(x for w in per for x in w.pop("offline_us", []))
        offlines = after["offlines"]
        metrics = {
            "ops": total_ops, "seconds": elapsed,
            "throughput": total_ops / elapsed if elapsed > 0 else 0.0,
            "slab_pages": pages, "retained_pages": mst["retained_pages"],
            "dead_caches": mst["dead_caches"], "dying_memcgs": mst["dying_memcgs"],
            "offlines": offlines, "leaked_caches": after["leaked_caches"],
            "leak_rate": 1000.0 * after["leaked_caches"] / offlines if offlines else 0.0,
            "offline_p50_us": _pct(lat, 0.50), "offline_p99_us": _pct(lat, 0.99),
            "utilization": used / nslots if nslots else 0.0,
        }
        stats = {c.name: m.stats(c) for c in caches}
        if not quiesced:
            import warnings
            warnings.warn(f"{workload}/{m.policy}: deferred work did not finish in time "
                          f"({m.rcu_state()}, {m.vcpu_info()}); leaked_caches may count "
                          "caches still being shrunk")
        return Result(workload, str(m.policy or "none"), cpus, seed, metrics, per, stats,
                      series, lat)
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
