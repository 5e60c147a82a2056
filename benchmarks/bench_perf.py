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

from slubcy.analysis import perf

KEYS = [f.key for f in perf.FIGURES]
_BY_KEY = {f.key: f for f in perf.FIGURES}


def _settings():
    return perf.QUICK if os.environ.get("SLUBCY_ASV_QUICK") else perf.DEFAULT


def _nan(x):
    return math.nan if x is None else float(x)


class Targets:
    params = [KEYS]
    param_names = ["figure"]
    timeout = 1200

    def setup_cache(self):
        cfg = _settings()
        return {f.key: tuple(f.func(cfg)) for f in perf.FIGURES}

    def track_budget(self, cache, key):
        return _nan(_BY_KEY[key].budget(perf.Measurement(*cache[key])))
    track_budget.unit = "fraction of target"

    def track_cost_ns(self, cache, key):
        cost = _BY_KEY[key].cost(perf.Measurement(*cache[key]))
        return cost[1] if cost and cost[0] == "ns" else math.nan
    track_cost_ns.unit = "ns"

    def track_bytes(self, cache, key):
        cost = _BY_KEY[key].cost(perf.Measurement(*cache[key]))
        return cost[1] if cost and cost[0] == "bytes" else math.nan
    track_bytes.unit = "bytes"
