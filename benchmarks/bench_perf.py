"""asv: issue #6's figures (`make perf`), each measured against its baseline
in the same process, so the dashboard plots ratios, which stay comparable
across runs on a noisy machine.  One setup_cache pass measures them all
(slubcy.analysis.perf.DEFAULT, about a minute); SLUBCY_ASV_QUICK=1 takes the short
pass instead.

Every tracked figure reads lower-is-better, as asv's regression check
assumes (a larger value is flagged as worse):

- Targets.track_budget: how much of its target the figure uses (for a
  `<=` target value/limit, for a `>=` one limit/value; <= 1 meets every
  target; NaN for a figure without one);
- Targets.track_cost_ns: time-like figures as ns per operation (ns, us,
  ns/op as they are; Mops/s and /s as their inverse); NaN for the others;
- Targets.track_bytes: the memory figures (B, MiB) in bytes; NaN for the
  others.
"""
import math
import os

from .common import need

# the figures' stable names (slubcy.analysis.perf.FIGURES' keys; a test checks
# they agree): a literal, so an older commit without that module still
# imports this file, and its benchmarks are skipped, not failed
KEYS = ["fastpath_libc", "fastpath_floor", "remote_free", "remote_free_many", "bulk_core", "bulk_api",
        "python_api", "fastpath_scaling", "larson_scaling", "grace_period", "grace_period_expedited", "core_vs_accesses",
        "core_vs_model", "core_vs_model_remote", "api_vs_model", "churn_offlines", "metadata",
        "arena_rss", "churn_64_vcpus", "arena_16g", "offline_slope", "time_to_answer",
        "slub70_fastpath", "slub70_remote_free", "slub70_bulk", "slub70_larson", "slub70_churn",
        "slub70_pinned", "slub70_pinned_shrunk", "slub70_batch_1", "slub70_batch_10",
        "slub70_batch_100", "slub70_batch_1000"]


def _perf():
    return need("slubcy.analysis.perf", "FIGURES", "Measurement", "Figure.budget", "Figure.cost")


def _figure(key):
    perf = _perf()
    by_key = {f.key: f for f in perf.FIGURES}
    if key not in by_key:
        raise NotImplementedError(f"this commit has no figure {key!r}")
    return perf, by_key[key]


def _settings(perf):
    return perf.QUICK if os.environ.get("SLUBCY_ASV_QUICK") else perf.DEFAULT


def _nan(x):
    return math.nan if x is None else float(x)


class Targets:
    params = [KEYS]
    param_names = ["figure"]
    timeout = 1200

    def setup_cache(self):
        perf = _perf()
        cfg = _settings(perf)
        return {f.key: tuple(f.func(cfg)) for f in perf.FIGURES}

    def setup(self, cache, key):
        _figure(key)

    def track_budget(self, cache, key):
        perf, fig = _figure(key)
        return _nan(fig.budget(perf.Measurement(*cache[key])))
    track_budget.unit = "fraction of target"

    def track_cost_ns(self, cache, key):
        perf, fig = _figure(key)
        cost = fig.cost(perf.Measurement(*cache[key]))
        return cost[1] if cost and cost[0] == "ns" else math.nan
    track_cost_ns.unit = "ns"

    def track_bytes(self, cache, key):
        perf, fig = _figure(key)
        cost = fig.cost(perf.Measurement(*cache[key]))
        return cost[1] if cost and cost[0] == "bytes" else math.nan
    track_bytes.unit = "bytes"
