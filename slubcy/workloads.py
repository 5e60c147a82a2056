"""Run a workload on real threads and report the DESIGN.md metrics.

    r = slubcy.workloads.run("larson", cpus=2, seconds=2, seed=0)
    r.metrics["throughput"]; r.to_frame(); r.to_json()
"""
import json
import math
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
    """Configure the machine's preemption points from a --preempt SPEC."""
    for point, prob, ns, mode in parse_spec(spec):
        machine.preempt_point(point).set_delay(prob, ns, mode)


def _caches(machine, workload, size):
    if workload == "larson":
        out = []
        for name, sz, flags in LARSON_CACHES:
            try:
                out.append(machine.kmem_cache(name))
            except KeyError:
                out.append(machine.kmem_cache_create(name, sz, flags=flags))
        return out + [machine.kmem_cache("kmalloc-64"), machine.kmem_cache("kmalloc-512")]
    name = f"{workload}-{size}"
    try:
        return [machine.kmem_cache(name)]
    except KeyError:
        return [machine.kmem_cache_create(name, size)]


def run(workload="fastpath", cpus=2, ops=None, seconds=None, seed=0, memory=256 << 20,
        machine=None, preempt=None, progress=None, size=64, batch=256, slots=1024,
        handoff=0.25, nr_cpu_ids=None):
    """Run `workload` with one worker thread per vCPU (`cpus` of them), for
    `ops` operations in all (allocations and frees, split evenly) or for
    `seconds`.  Uses `machine` if given, else a fresh one (closed after)."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: one of {', '.join(WORKLOADS)}")
    if (ops is None) == (seconds is None):
        raise ValueError("give exactly one of ops and seconds")
    if ops is not None and (not isinstance(ops, int) or ops < 1):
        raise ValueError(f"ops must be a positive int, got {ops!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    own = machine is None
    m = machine if machine is not None else slubcy.Machine(
        cpus=cpus, nr_cpu_ids=nr_cpu_ids, memory=memory, seed=seed)
    try:
        if preempt:
            apply_preempt(m, preempt)
        caches = _caches(m, workload, size)
        per_worker = -1 if ops is None else max(1, ops // cpus)
        r = Run(m, workload, caches, cpus, per_worker, batch=batch, slots=slots,
                handoff=handoff, seed=seed)
        show = progress if progress is not None else (seconds is not None and seconds > 3)
        t0 = time.monotonic()
        r.start()
        _wait(r, ops, seconds, show)

        def sample():
            used = slots_ = pages = 0
            for c in caches:
                u, s, p = m.cache_usage(c)
                used, slots_, pages = used + u, slots_ + s, pages + p
            return used, slots_, pages

        per, (used, nslots, pages) = r.finish(sample)
        elapsed = max(w["seconds"] for w in per)
        total_ops = sum(w["ops"] for w in per)
        metrics = {
            "ops": total_ops, "seconds": elapsed,
            "throughput": total_ops / elapsed if elapsed > 0 else 0.0,
            "slab_pages": pages, "retained_pages": 0, "dead_caches": 0, "dying_memcgs": 0,
            "offlines": 0, "leaked_caches": 0, "leak_rate": 0.0,
            "offline_p50_us": None, "offline_p99_us": None,
            "utilization": used / nslots if nslots else 0.0,
        }
        stats = {c.name: m.stats(c) for c in caches}
        return Result(workload, str(m.policy or "none"), cpus, seed, metrics, per, stats)
    finally:
        if own:
            m.close()


def _wait(r, ops, seconds, show):
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=ops if ops is not None else round(seconds, 1),
                   unit="ops" if ops is not None else "s", unit_scale=True, leave=False)
    t0 = time.monotonic()
    last = 0
    while not r.producing_done:
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
