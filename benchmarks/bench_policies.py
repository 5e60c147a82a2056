"""asv: the dead-cache policies, judged by the 2014 mail's metrics.

- Metrics.track_*: one timed run of each (policy, vCPUs, workload) made once
  in setup_cache; each track reads its metric (DESIGN.md names and units).
  On larson no memcg goes offline, so the offline metrics are NaN there
  (asv shows n/a): what larson measures is the policy's cost on a workload
  without memcg churn.  Every tracked figure reads lower-is-better, as asv's
  regression check assumes: throughput as ns/op (track_ns_per_op), slot use
  as the unused share (track_unused_slots).
- Offline.time_memcg_offline: one memcg_offline() of a memcg holding objects
  in every churn cache (half freed, half still charged), per policy.
- peakmem_churn: the process's peak RSS over a churn run, per policy.
- ChurnShape.track_*: churn's leak rate, retained pages and ns/op by
  policy x one shape parameter changed from workloads.CHURN_DEFAULTS (the
  knobs `slubcy run/compare --param NAME=VALUE` sets).
- CgroupLoop.track_us_per_run: kernel bugzilla 190841's create -> allocate
  -> rmdir loop (workloads.cgroup_loop, HZ=250 grace periods), us per run
  by policy x child caches per memcg: grows ~caches-fold under
  barrier:sync (each rmdir holds cgroup_mutex and slab_mutex through a grace
  period per cache), stays low under async barrier and objcg.
"""
import math

import slubcy
from slubcy import workloads

from .common import POLICIES, VCPUS, need, need_policy, seconds


def _value(x):
    return math.nan if x is None else float(x)


def _ns_per(rate):
    """A rate (per second) as the time per item in ns: every tracked figure
    reads lower-is-better, as asv's regression check assumes."""
    rate = _value(rate)
    return 1e9 / rate if math.isfinite(rate) and rate > 0 else math.nan


class Metrics:
    params = (POLICIES, VCPUS, ["churn", "larson"])
    param_names = ["policy", "vcpus", "workload"]
    timeout = 900

    def setup_cache(self):
        need("slubcy.workloads", "run", "MAIN_PREEMPT")
        out = {}
        for policy in POLICIES:
            for vcpus in VCPUS:
                for workload in ("churn", "larson"):
                    # churn under the main job's preemption at the race window
                    try:
                        need_policy(policy)
                    except NotImplementedError:
                        continue            # (its tracks skip: no entry in the cache)
                    r = workloads.run(workload, cpus=vcpus, seconds=seconds(), policy=policy,
                                      preempt=workloads.MAIN_PREEMPT if workload == "churn"
                                      else None)
                    out[policy, vcpus, workload] = r.metrics
        return out

    def setup(self, cache, policy, vcpus, workload):
        if (policy, vcpus, workload) not in cache:
            raise NotImplementedError(f"this commit has no policy {policy!r}")

    def track_ns_per_op(self, cache, policy, vcpus, workload):
        return _ns_per(cache[policy, vcpus, workload]["throughput"])
    track_ns_per_op.unit = "ns/op"

    def track_retained_pages(self, cache, policy, vcpus, workload):
        return _value(cache[policy, vcpus, workload]["retained_pages"])
    track_retained_pages.unit = "pages"

    def track_leak_rate(self, cache, policy, vcpus, workload):
        m = cache[policy, vcpus, workload]
        return _value(m["leak_rate"]) if m["offlines"] else math.nan
    track_leak_rate.unit = "leaked caches per 1000 offlines"

    def track_dying_memcgs(self, cache, policy, vcpus, workload):
        m = cache[policy, vcpus, workload]
        return _value(m["dying_memcgs"]) if m["offlines"] else math.nan
    track_dying_memcgs.unit = "memcgs"

    def track_offline_p99_us(self, cache, policy, vcpus, workload):
        return _value(cache[policy, vcpus, workload]["offline_p99_us"])
    track_offline_p99_us.unit = "us"

    def track_unused_slots(self, cache, policy, vcpus, workload):
        u = _value(cache[policy, vcpus, workload]["utilization"])
        return 1.0 - u if math.isfinite(u) else math.nan
    track_unused_slots.unit = "unused/allocated object slots"


SHAPES = ["default", "job_objects=256", "outlive=0.5", "handoff=0", "lifetime=0.002",
          "reclaim_batch=16"]


def shape_kwargs(shape):
    """'lifetime=0.002' -> {'lifetime': 0.002}; 'default' -> {}."""
    if shape == "default":
        return {}
    name, _, value = shape.partition("=")
    return {name: type(workloads.CHURN_DEFAULTS[name])(float(value))}


class ChurnShape:
    params = (["naive", "barrier", "objcg"], SHAPES)
    param_names = ["policy", "shape"]
    timeout = 900

    def setup_cache(self):
        need("slubcy.workloads", "run", "MAIN_PREEMPT", "CHURN_DEFAULTS")
        out = {}
        for policy in self.params[0]:
            for shape in SHAPES:
                try:
                    need_policy(policy)
                except NotImplementedError:
                    break
                r = workloads.run("churn", cpus=2, seconds=seconds(), policy=policy,
                                  preempt=workloads.MAIN_PREEMPT, **shape_kwargs(shape))
                out[policy, shape] = r.metrics
        return out

    def setup(self, cache, policy, shape):
        if (policy, shape) not in cache:
            raise NotImplementedError(f"this commit has no policy {policy!r}")

    def track_leak_rate(self, cache, policy, shape):
        m = cache[policy, shape]
        return _value(m["leak_rate"]) if m["offlines"] else math.nan
    track_leak_rate.unit = "leaked caches per 1000 offlines"

    def track_retained_pages(self, cache, policy, shape):
        return _value(cache[policy, shape]["retained_pages"])
    track_retained_pages.unit = "pages"

    def track_ns_per_op(self, cache, policy, shape):
        return _ns_per(cache[policy, shape]["throughput"])
    track_ns_per_op.unit = "ns/op"


class Offline:
    params = [POLICIES]
    param_names = ["policy"]
    per_cache = 256

    def setup(self, policy):
        need("slubcy.workloads", "workload_caches")
        need("slubcy", "Machine.memcg_create", "Machine.memcg_offline",
             "Machine.kmem_cache_alloc_bulk", "Machine.kmem_cache_free_bulk")
        need_policy(policy)
        self.m = slubcy.Machine(cpus=2, memory=128 << 20, policy=policy)
        self.caches = workloads.workload_caches(self.m, "churn")
        self.memcg = self.m.memcg_create("job")
        for c in self.caches:
            objs = self.m.kmem_cache_alloc_bulk(c, self.per_cache, memcg=self.memcg)
            self.m.kmem_cache_free_bulk(c, objs[::2])

    def teardown(self, policy):
        if hasattr(self, "m"):          # not set when setup skipped
            self.m.close()

    def time_memcg_offline(self, policy):
        self.m.memcg_offline(self.memcg)


class CgroupLoop:
    params = (POLICIES, [0, 1, 8, 32])
    param_names = ["policy", "caches_per_memcg"]
    timeout = 900

    def setup(self, policy, caches_per_memcg):
        need("slubcy.workloads", "cgroup_loop")
        need_policy(policy)

    def track_us_per_run(self, policy, caches_per_memcg):
        runs_per_s = workloads.cgroup_loop(policy, caches_per_memcg=caches_per_memcg,
                                           seconds=seconds())
        return 1e6 / runs_per_s if runs_per_s > 0 else math.nan
    track_us_per_run.unit = "us"


class TimeToAnswer:
    """`make run`'s headline answer: seconds of churn (naive and objcg in
    turn, the main job's preemption) until naive's leak rate differs from
    objcg's at 1% (slubcy.analysis.compare.time_to_significance)."""
    timeout = 300

    def setup(self):
        need("slubcy.analysis.compare", "time_to_significance")
        need_policy("naive")
        need_policy("objcg")

    def track_seconds_to_significance(self):
        from slubcy.analysis.compare import time_to_significance
        return time_to_significance(seed=0, max_s=60.0)["seconds"]
    track_seconds_to_significance.unit = "seconds"


def peakmem_churn(policy):
    workloads.run("churn", cpus=2, seconds=seconds(), policy=policy)


def _peakmem_setup(policy):
    need("slubcy.workloads", "run")
    need_policy(policy)


peakmem_churn.setup = _peakmem_setup


peakmem_churn.params = [POLICIES]
peakmem_churn.param_names = ["policy"]
