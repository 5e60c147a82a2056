"""asv: issue #6's figures (`make perf`), each measured against its baseline
in the same process, so the dashboard plots ratios, which stay comparable
across runs on a noisy machine.  One setup_cache pass measures them all
(slubcy.analysis.perf.DEFAULT, about a minute); SLUBCY_ASV_QUICK=1 takes the short
pass instead.

- Targets.track_ratio: the ratio as its target reads ("x faster", "x the
  floor", ...; NaN for a figure without a baseline);
- Targets.track_figure: the figure itself, in the unit its title gives
  (ns, Mops/s, B, ...: see slubcy.analysis.perf.FIGURES);
- Targets.track_target_met: 1 if every target of the figure is met, 0 if
  not, NaN for the figures reported without a target.
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

    def track_ratio(self, cache, key):
        return _nan(perf.Measurement(*cache[key]).ratio)
    track_ratio.unit = "ratio"

    def track_figure(self, cache, key):
        return _nan(perf.Measurement(*cache[key]).figure)
    track_figure.unit = "figure's unit"

    def track_target_met(self, cache, key):
        ok = _BY_KEY[key].check(perf.Measurement(*cache[key]))
        return math.nan if ok is None else float(ok)
    track_target_met.unit = "met"
