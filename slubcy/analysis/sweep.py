"""How likely is the 2014 race's leak in production?  Sweep the CONFIG_PREEMPT
model's preemption rate, measure a policy's leak rate at each, fit it and
extrapolate to a production host.

    s = slubcy.analysis.sweep.leak_vs_preemption("naive", rates=[1000, 3000, 10000],
                                        seconds=0.5, repeat=2, outlive=1.0)
    print(s.format()); s.points; s.fit; s.extrapolation; s.plot("sweep.png")

Statistics: at each preemption rate r the leaked caches k of all runs are
pooled over their offlines n: rate per 1000 offlines with the exact Poisson
(Garwood) 95% interval.  The fit is the Poisson regression through the
origin, k_i ~ Poisson(beta * r_i * n_i) (identity link, no intercept),
whose maximum-likelihood slope is beta = sum(k) / sum(r * n) over the
points with r > 0; since sum(k) ~ Poisson(beta * sum(r * n)), its exact 95%
interval is the Garwood interval of sum(k) divided by sum(r * n).  The
Poisson deviance of the points against the fit (chi-square, one degree of
freedom less than the points; approximate for small counts) says whether
proportionality is contradicted; leaks at rate 0 (no preemption model) are
reported apart as the background the fit does not explain.

The production scenario (`Scenario`) and its assumptions:

1. a host removes `offlines_per_day` memory cgroups a day (10,000 by
   default: a container host with short-lived jobs), each offline racing
   with frees in flight on the dying cgroup's slabs as often as in the
   swept workload (churn: every job frees objects from other CPUs while its
   cgroup goes offline);
2. the kernel is CONFIG_PREEMPT and each CPU gets `preemptions_per_s`
   preemption requests a second (1000 by default: a busy host, ticks and
   wakeups with other tasks runnable) -- a PREEMPT_NONE or VOLUNTARY kernel
   is not preempted inside __slab_free and has no leak from this race;
3. the leak probability per offline is proportional to that rate (the fit)
   and carries over from slubcy: the race window is as long, relative to
   the time between preemptions, as in slubcy's model.  slubcy's operations
   are slower than the kernel's, so the window is wider than a kernel's and
   the estimate errs high;
4. offlines are independent, so the leaked caches of a day are Poisson with
   mean offlines_per_day * beta * preemptions_per_s; its 95% interval is the
   fit's, scaled.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from slubcy import workloads
from slubcy.analysis import compare
from slubcy.preempt import MODEL, parse_model, parse_spec

DEFAULT_RATES = (1000, 3000, 10000)


@dataclass
class Scenario:
    """A production host (see the module docstring for the assumptions)."""
    offlines_per_day: float = 10_000
    preemptions_per_s: float = 1000.0      # per CPU, CONFIG_PREEMPT

    def __post_init__(self):
        if not self.offlines_per_day > 0:
            raise ValueError(f"offlines_per_day must be > 0, got {self.offlines_per_day!r}")
        if not self.preemptions_per_s > 0:
            raise ValueError(f"preemptions_per_s must be > 0, got {self.preemptions_per_s!r}")

    def describe(self):
        return (f"a container host removing {self.offlines_per_day:,.0f} memory cgroups a day on "
                f"a CONFIG_PREEMPT kernel, {self.preemptions_per_s:,.0f} preemptions/s per CPU")


ASSUMPTIONS = ("assumes: each removal races with frees in flight as in the swept workload; leaks "
               "per offline grow in proportion to the preemption rate and carry over from "
               "slubcy (whose race window is wider than a kernel's: the estimate errs high); "
               "removals are independent (Poisson). PREEMPT_NONE/VOLUNTARY kernels are not "
               "preempted inside __slab_free.")


@dataclass
class Fit:
    """leaks per offline = slope * preemption rate (per CPU, per second)."""
    slope: float            # leaks per offline per (preemption/s)
    lo: float
    hi: float
    leaks: int              # at the rates > 0
    exposure: float         # sum of rate * offlines at the rates > 0
    deviance: float
    df: int
    p_fit: float            # chi-square p of the deviance: small = not proportional
    background_leaks: int = 0           # at rate 0
    background_offlines: float = 0.0

    def per_1000(self, rate):
        """(rate, lo, hi) leaks per 1000 offlines the fit predicts at `rate`."""
        return tuple(1000.0 * x * rate for x in (self.slope, self.lo, self.hi))


def model_spec(rate, slice="3ms", preempt=None):
    """The --preempt spec of one sweep point: the CONFIG_PREEMPT model at
    `rate` per second per vCPU (none at 0) plus any extra named points."""
    items = [preempt] if preempt else []
    if rate > 0:
        items.append(f"{MODEL}={rate:g}/s:{slice}")
    return ",".join(items) or None


def points(runs):
    """Pool the runs at each rate: runs, leaks, offlines, leak_rate per 1000
    offlines with its exact 95% interval (lo, hi)."""
    import pandas as pd
    rows = []
    for rate, g in runs.groupby("rate", sort=True):
        k, n = int(g.leaked_caches.sum()), float(g.offlines.sum())
        rate_, lo, hi = compare.rate_ci(k, n)
        rows.append({"rate": float(rate), "runs": len(g), "leaks": k, "offlines": n,
                     "leak_rate": rate_, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["rate", "runs", "leaks", "offlines", "leak_rate", "lo",
                                       "hi"])


def fit_proportional(rates, leaks, offlines, confidence=compare.CONFIDENCE):
    """Poisson regression through the origin of leak counts on the
    preemption rate with offlines as exposure (see the module docstring)."""
    r = np.asarray(rates, dtype=float)
    k = np.asarray(leaks, dtype=float)
    n = np.asarray(offlines, dtype=float)
    if not (len(r) == len(k) == len(n)) or not len(r):
        raise ValueError("rates, leaks and offlines must be equal-length and non-empty")
    if (r < 0).any() or (k < 0).any() or (n < 0).any():
        raise ValueError("rates, leaks and offlines must be >= 0")
    use = (r > 0) & (n > 0)
    if not use.any():
        raise ValueError("the fit needs a point with preemption rate > 0 and offlines > 0")
    K, E = int(k[use].sum()), float((r[use] * n[use]).sum())
    lo, hi = compare.poisson_ci(K, E, confidence)
    slope = K / E
    mu = slope * r[use] * n[use]
    kk = k[use]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(kk > 0, kk * np.log(kk / mu), 0.0) - (kk - mu)
    deviance = float(2 * terms.sum()) if K else 0.0
    df = int(use.sum()) - 1
    p_fit = float(stats.chi2.sf(deviance, df)) if df > 0 else math.nan
    bg = (r == 0)
    return Fit(slope, lo, hi, K, E, deviance, df, p_fit, int(k[bg].sum()), float(n[bg].sum()))


def extrapolate(fit, scenario):
    """Expected leaked caches a day in `scenario`, with the fit's 95%
    interval, the chance of at least one a day and the mean days per leak."""
    scale = scenario.offlines_per_day * scenario.preemptions_per_s
    mean, lo, hi = fit.slope * scale, fit.lo * scale, fit.hi * scale
    return {"scenario": scenario.describe(), "offlines_per_day": scenario.offlines_per_day,
            "preemptions_per_s": scenario.preemptions_per_s,
            "leaks_per_day": mean, "lo": lo, "hi": hi,
            "p_any_per_day": 1 - math.exp(-mean), "p_any_per_day_hi": 1 - math.exp(-hi),
            "days_per_leak": math.inf if mean == 0 else 1 / mean}


@dataclass
class Sweep:
    policy: str
    workload: str
    slice: str
    runs: object            # DataFrame: one row per run
    points: object          # DataFrame: one row per rate
    fit: Fit
    scenario: Scenario
    extrapolation: dict = field(default_factory=dict)

    def format(self):
        """The table and the extrapolation, lines of at most 100 characters."""
        import textwrap
        lines = [f"{self.policy} on {self.workload}: leaked caches per 1000 offlines vs the "
                 f"CONFIG_PREEMPT model's rate (slice {self.slice})",
                 f"{'preempt/s per CPU':>17s}  {'runs':>4s}  {'leaks':>6s}  {'offlines':>10s}  "
                 f"{'leaks/1000 offl [95% CI]':>26s}  {'fit':>8s}"]
        lines.append("-" * len(lines[-1]))
        for row in self.points.itertuples():
            cell = f"{compare._num(row.leak_rate)} [{compare._num(row.lo)}, {compare._num(row.hi)}]"
            fitted = compare._num(self.fit.per_1000(row.rate)[0])
            lines.append(f"{row.rate:>17,.0f}  {row.runs:>4d}  {row.leaks:>6d}  "
                         f"{row.offlines:>10,.0f}  {cell:>26s}  {fitted:>8s}")
        f = self.fit
        s1000 = f.per_1000(1000)
        text = [f"fit (Poisson regression through the origin): "
                f"{compare._num(s1000[0])} leaks/1000 offlines per 1000 preemptions/s "
                f"[{compare._num(s1000[1])}, {compare._num(s1000[2])}] from {f.leaks} leak(s)"
                + (f"; deviance {f.deviance:.3g} on {f.df} df, p={f.p_fit:.2g}"
                   + (" (proportionality rejected)" if f.p_fit < compare.ALPHA else "")
                   if f.df > 0 else "")]
        if f.background_offlines:
            bg = compare.rate_ci(f.background_leaks, f.background_offlines)
            text.append(f"without preemption: {f.background_leaks} leaks in "
                        f"{f.background_offlines:,.0f} offlines ({compare._num(bg[0])}/1000 "
                        f"[{compare._num(bg[1])}, {compare._num(bg[2])}]), not in the fit")
        e = self.extrapolation
        if f.leaks:
            text.append(f"production: {e['scenario']} -> {compare._num(e['leaks_per_day'])} "
                        f"leaked caches per day [{compare._num(e['lo'])}, "
                        f"{compare._num(e['hi'])}], P(at least one a day) = "
                        f"{e['p_any_per_day']:.2g}")
        else:
            text.append(f"production: {e['scenario']} -> no leak seen; at most "
                        f"{compare._num(e['hi'])} leaked caches per day (95%), P(at least one a "
                        f"day) ≤ {e['p_any_per_day_hi']:.2g}")
        text.append(ASSUMPTIONS)
        for t in text:
            lines += textwrap.wrap(t, compare.WIDTH, subsequent_indent="    ")
        return "\n".join(lines)

    def plot(self, path=None, ax=None):
        """Leak rate vs preemption rate: the points with their exact 95%
        intervals (zeros drawn), the fit and its band."""
        import matplotlib
        if ax is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 4.5))
        p = self.points
        err = np.vstack([p.leak_rate - p.lo, p.hi - p.leak_rate])
        ax.errorbar(p.rate, p.leak_rate, yerr=err, fmt="o", capsize=4, color="C3",
                    label="measured, exact 95% CI")
        for row in p.itertuples():
            if row.leaks == 0:
                ax.annotate(f"0 in {row.offlines:,.0f}", (row.rate, 0), xytext=(4, 6),
                            textcoords="offset points", fontsize=8)
        x = np.linspace(0, max(p.rate.max(), 1.0) * 1.05, 50)
        ax.plot(x, 1000 * self.fit.slope * x, color="C0", label="fit: rate ∝ preemptions/s")
        ax.fill_between(x, 1000 * self.fit.lo * x, 1000 * self.fit.hi * x, color="C0", alpha=0.2,
                        label="fit, exact 95% CI")
        ax.set(xlabel="preemptions/s per CPU (CONFIG_PREEMPT model)",
               ylabel="leaked caches per 1000 offlines",
               title=f"{self.policy} on {self.workload}: leaks vs preemption rate")
        ax.set_xlim(left=-0.03 * max(p.rate.max(), 1.0))
        ax.set_ylim(bottom=-0.05 * max(float(p.hi.max()), 1e-9))
        ax.legend(fontsize=8)
        if fig is not None:
            fig.tight_layout()
            if path is not None:
                fig.savefig(path, dpi=90)
            plt.close(fig)
        return ax


def parse_rates(text):
    """'0,1000,3000' -> [0.0, 1000.0, 3000.0] (per second per CPU)."""
    try:
        rates = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"bad rates {text!r}: comma-separated preemptions/s, "
                         "e.g. 0,1000,3000") from None
    return check_rates(rates)


def check_rates(rates):
    rates = [float(r) for r in rates]
    if not rates or not any(r > 0 for r in rates):
        raise ValueError("give at least one preemption rate > 0")
    bad = [r for r in rates if not 0 <= r <= 1e6]
    if bad:
        raise ValueError(f"preemption rates must be in [0, 1e6] per second, got {bad[0]:g}")
    if len(set(rates)) != len(rates):
        raise ValueError("a preemption rate is given twice")
    return rates


def leak_vs_preemption(policy="naive", rates=DEFAULT_RATES, seconds=0.5, repeat=2, cpus=2,
                       slice="3ms", workload="churn", seed=0, preempt=None, scenario=None,
                       progress=False, **run_kwargs):
    """Run `workload` under `policy` at each CONFIG_PREEMPT rate (per second
    per vCPU, slices of mean `slice`), `repeat` times interleaved, plus any
    extra named points in `preempt` (e.g. 'slab_free:before_cmpxchg=0.01:20us');
    other keyword arguments go to workloads.run (e.g. outlive=1.0, hz).
    Returns a Sweep: the runs, the pooled points, the fit and its
    extrapolation to `scenario` (Scenario() by default)."""
    import pandas as pd
    rates = check_rates(rates)
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    workloads.check_bounds(None, seconds, seed, runs=repeat)
    parse_model(f"1/s:{slice}")             # a bad slice fails before any run
    if preempt:
        if any(item[0] == MODEL for item in parse_spec(preempt)):
            raise ValueError("the sweep sets the preemption model itself: give only named "
                             "points in preempt")
    scenario = scenario or Scenario()
    jobs = [(rep, r) for rep in range(repeat) for r in rates]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="run", leave=False)
    rows = []
    from slubcy.policies import split_generation
    name, slub = split_generation(policy)           # 'objcg@7.0': on slub 7.0
    try:
        for rep, rate in jobs:
            res = workloads.run(workload, cpus=cpus, seconds=seconds, seed=seed + rep,
                                policy=name, preempt=model_spec(rate, slice, preempt),
                                progress=False, slub=slub, **run_kwargs)
            m = res.metrics
            rows.append({"rate": rate, "run": rep, "seed": seed + rep,
                         "offlines": m["offlines"], "leaked_caches": m["leaked_caches"],
                         "seconds": m["seconds"], "ops": m["ops"]})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    runs = pd.DataFrame(rows)
    pts = points(runs)
    fit = fit_proportional(pts.rate, pts.leaks, pts.offlines)
    return Sweep(policy, workload, slice, runs, pts, fit, scenario, extrapolate(fit, scenario))
