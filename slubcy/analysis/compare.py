"""A/B comparison of dead-cache policies on one workload.

Each policy runs `repeat` times, interleaved (P1 P2 ... P1 P2 ...) so drift
on a shared machine hits all alike.  The first policy is the baseline.

Statistics (scipy.stats):

- leaks are counts of rare events: a policy's leak rate is its leaked caches
  over all its runs per 1000 memcg offlines (the exposure), with the exact
  Poisson (Garwood) 95% interval; two rates are compared with the exact
  conditional binomial test (given k1 + k2 leaks, k1 ~ Binomial(k1 + k2,
  n1 / (n1 + n2)) when the rates are equal, n = offlines).  `leaked_caches`
  itself is treated the same way with runs as the exposure;
- every other metric is a mean over runs with a Student t 95% interval, and
  differences from the baseline are tested with Welch's t test.

The CLI prints a table (policies as rows, the headline metrics as columns,
at most 100 characters wide) and a verdict line per policy.  With `out`, the
directory is checked before any run, and after every run the tidy CSV (one
row per run x metric), the summary, each run's time series
(compare_W_series.csv), the quantiles of each run's offline latency
(compare_W_offline_us.csv) and compare_W_meta.json (`"partial": true` until
the last run is in) are rewritten, so an interrupted compare keeps what
finished; the PNG is drawn at the end.  slubcy.analysis.results.load_compare reads
them back.
"""
import json
import math
import os
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from slubcy import workloads

CONFIDENCE = 0.95
ALPHA = 0.05
PAGE_BYTES = 4096
WIDTH = 100                  # the table and the verdicts fit this many columns
BASELINE = "objcg"           # Linux 5.9: the kernel's current answer
LEAKS, OFFLINES = "leaked_caches", "offlines"
# count metrics: (count metric, exposure metric or None for runs, scale)
POISSON = {"leak_rate": (LEAKS, OFFLINES, 1000.0), LEAKS: (LEAKS, None, 1.0)}


# -- statistics ---------------------------------------------------------------

def _clean(values):
    return np.array([float(v) for v in values if v is not None and not math.isnan(float(v))])


def mean_ci(values, confidence=CONFIDENCE):
    """(mean, half-width of the Student t confidence interval); the
    half-width is NaN with fewer than two values."""
    vals = _clean(values)
    if not len(vals):
        return math.nan, math.nan
    m = float(vals.mean())
    if len(vals) < 2:
        return m, math.nan
    t = stats.t.ppf(0.5 + confidence / 2, len(vals) - 1)
    return m, float(t * vals.std(ddof=1) / math.sqrt(len(vals)))


def welch_p(a, b):
    """Two-sided p value of Welch's t test (None with fewer than two values
    on a side).  Two constant samples: 0 if their means differ, else 1."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return None
    if a.var() == 0 and b.var() == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    with warnings.catch_warnings():
        # one constant sample (e.g. 0 dying memcgs in every run) is fine for
        # Welch, but scipy warns about its moments
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def welch_significant(a, b, alpha=ALPHA):
    """True if the means of a and b differ at level alpha (Welch), None
    when either has fewer than two values."""
    p = welch_p(a, b)
    return None if p is None else p < alpha


def poisson_ci(k, exposure=1.0, confidence=CONFIDENCE):
    """Exact (Garwood) interval for a Poisson rate: k events in `exposure`.
    For k = 0 the lower bound is 0; (0, 1) gives [0, 3.689] at 95%."""
    if k < 0 or k != int(k):
        raise ValueError(f"an event count is a non-negative integer, got {k!r}")
    if not exposure > 0:
        raise ValueError(f"exposure must be > 0, got {exposure!r}")
    a = 1 - confidence
    lo = 0.0 if k == 0 else stats.chi2.ppf(a / 2, 2 * k) / 2
    hi = stats.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return float(lo) / exposure, float(hi) / exposure


def rate_ci(k, exposure, scale=1000.0, confidence=CONFIDENCE):
    """(rate, lo, hi) per `scale` units of exposure: leaks per 1000 offlines
    by default.  NaN when there was no exposure."""
    if not exposure > 0:
        return math.nan, math.nan, math.nan
    lo, hi = poisson_ci(k, exposure, confidence)
    return scale * k / exposure, scale * lo, scale * hi


def rate_test(k1, n1, k2, n2):
    """Exact two-sided p value that k1 events in exposure n1 and k2 in n2
    come from one Poisson rate: the conditional binomial test.  1.0 when
    there are no events at all (nothing tells the rates apart)."""
    k1, k2 = int(k1), int(k2)
    if not (n1 > 0 and n2 > 0):
        raise ValueError(f"exposures must be > 0, got {n1!r} and {n2!r}")
    if k1 + k2 == 0:
        return 1.0
    return float(stats.binomtest(k1, k1 + k2, n1 / (n1 + n2)).pvalue)


# -- running ------------------------------------------------------------------

def split_generation(spec):
    from slubcy import policies as registry
    return registry.split_generation(spec)


def default_policies():
    """What `slubcy compare` runs with no policy named: every registered
    policy (each of its variants where it has some, slubcy.policies.compare_specs()),
    the kernel's current answer (objcg) first as the baseline."""
    from slubcy import policies as registry
    names = registry.compare_specs()
    return sorted(names, key=lambda n: n.partition(":")[0] != BASELINE)


def check_out(out):
    """The output directory, created if missing and proven writable; a
    ValueError naming it otherwise (before any run is spent)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


class _Writer:
    """Rewrites the output files after every run (atomically: a Ctrl-C
    between two runs leaves whole files)."""

    def __init__(self, out, workload, meta):
        self.out, self.workload, self.meta = out, workload, meta

    def path(self, suffix):
        return self.out / f"compare_{workloads.label(self.workload)}{suffix}"

    def _replace(self, path, write):
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)

    def write(self, tidy, summary, series, offline, done, partial, interrupted=False):
        import pandas as pd
        self._replace(self.path(".csv"), lambda p: tidy.to_csv(p, index=False))
        self._replace(self.path("_summary.csv"), lambda p: summary.to_csv(p, index=False))
        # only churn samples a series; keep the header so the file always loads
        frame = pd.DataFrame(series) if series else pd.DataFrame(columns=["policy", "run", "t"])
        self._replace(self.path("_series.csv"), lambda p: frame.to_csv(p, index=False))
        off = pd.DataFrame(offline, columns=["policy", "run", "q", "offline_us"])
        self._replace(self.path("_offline_us.csv"), lambda p: off.to_csv(p, index=False))
        meta = {**self.meta, "runs_done": done, "partial": partial, "interrupted": interrupted,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._replace(self.path("_meta.json"),
                      lambda p: p.write_text(json.dumps(meta, indent=1, default=str) + "\n"))


def _tidy(rows):
    import pandas as pd
    return pd.DataFrame(rows, columns=["policy", "workload", "run", "seed", "cpus", "metric",
                                       "value"])


def compare(policies, workload="churn", repeat=3, seed=0, cpus=2, ops=None, seconds=None,
            out=None, progress=True, **run_kwargs):
    """Run and summarise.  Returns (tidy DataFrame, summary DataFrame).
    A KeyboardInterrupt stops the running workers (workloads.run), keeps
    the finished runs in `out` marked partial, and propagates."""
    policies = list(policies)
    if not policies:
        raise ValueError("give at least one policy")
    for p in policies:
        split_generation(p)             # a bad policy or generation fails before any run
    dup = sorted({p for p in policies if policies.count(p) > 1})
    if dup:
        raise ValueError(f"policy {', '.join(dup)} named more than once")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    if ops is None and seconds is None:
        seconds = 1.0
    workloads.check_bounds(ops, seconds, seed, runs=repeat)
    jobs = [(r, p) for r in range(repeat) for p in policies]
    writer = None
    if out is not None:
        meta = {"workload": workload, "policies": policies, "baseline": policies[0],
                "repeat": repeat, "runs_planned": len(jobs), "cpus": cpus, "seed": seed,
                "seconds": seconds, "ops": ops, "run_kwargs": run_kwargs,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        writer = _Writer(check_out(out), workload, meta)
    rows, series, offline = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="run", leave=False)
    done = 0
    try:
        for rep, policy in jobs:
            name, slub = split_generation(policy)       # 'objcg@7.0': on slub 7.0
            res = workloads.run(workload, cpus=cpus, ops=ops, seconds=seconds, seed=seed + rep,
                                policy=name, progress=False, slub=slub, **run_kwargs)
            ident = {"policy": policy, "run": rep}
            # a run's rows go in together: an interrupt never leaves half a run
            rows += [{"policy": policy, "workload": workload, "run": rep, "seed": seed + rep,
                      "cpus": cpus, "metric": metric,
                      "value": math.nan if value is None else float(value)}
                     for metric, value in res.metrics.items()]
            series += [{**ident, **row} for row in res.series]
            offline += [{**ident, "q": q, "offline_us": v}
                        for q, v in quantiles(res.offline_us, OFFLINE_QUANTILES)]
            done += 1
            if writer is not None and done < len(jobs):
                tidy = _tidy(rows)
                writer.write(tidy, summarize(tidy, policies), series, offline, done, partial=True)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        if writer is not None:
            tidy = _tidy(rows)
            writer.write(tidy, summarize(tidy, policies), series, offline, done, partial=True,
                         interrupted=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    tidy = _tidy(rows)
    summary = summarize(tidy, policies)
    if writer is not None:
        writer.write(tidy, summary, series, offline, done, partial=False)
        plot(tidy, writer.path(".png"), policies, summary)
    return tidy, summary


def time_to_significance(policy="naive", baseline=BASELINE, alpha=0.01, slice_s=0.25,
                         max_s=30.0, cpus=2, seed=0, preempt="main"):
    """How long `make run` must run before `policy`'s leak rate differs from
    `baseline`'s at `alpha`: churn slices of `slice_s` seconds, the two
    policies in turn (seeds advancing), the leaked caches and offlines
    summed, and the exact conditional binomial test (rate_test) after each
    pair.  `preempt` "main" is the main job's (workloads.MAIN_PREEMPT).
    Returns {"seconds": run time of both policies until p < alpha (inf if
    `max_s` passed first), "p", "leaked", "offlines", "baseline_leaked",
    "baseline_offlines"}."""
    if not 0 < alpha < 1 or not slice_s > 0 or not max_s > 0:
        raise ValueError("need 0 < alpha < 1, slice_s > 0, max_s > 0")
    if policy == baseline:
        raise ValueError(f"compare {policy!r} with another policy")
    if preempt == "main":
        preempt = workloads.MAIN_PREEMPT
    k = {policy: 0, baseline: 0}
    n = {policy: 0, baseline: 0}
    spent, p, i = 0.0, 1.0, 0
    while spent < max_s:
        for spec in (policy, baseline):
            m = workloads.run("churn", cpus=cpus, seconds=slice_s, seed=seed + i, policy=spec,
                              preempt=preempt, progress=False).metrics
            k[spec] += int(m["leaked_caches"])
            n[spec] += int(m["offlines"])
            spent += m["seconds"]
        i += 1
        if n[policy] and n[baseline]:
            p = rate_test(k[policy], n[policy], k[baseline], n[baseline])
            if p < alpha:
                break
    return {"seconds": spent if p < alpha else math.inf, "p": p,
            "leaked": k[policy], "offlines": n[policy],
            "baseline_leaked": k[baseline], "baseline_offlines": n[baseline]}


OFFLINE_QUANTILES = 200      # per run: enough for an ECDF, small enough for a CSV


def quantiles(sorted_values, n):
    """(q, value) at n+1 evenly spaced quantiles (0..1) of sorted values."""
    if not sorted_values:
        return []
    last = len(sorted_values) - 1
    return [(i / n, float(sorted_values[round(i * last / n)])) for i in range(n + 1)]


# -- the summary --------------------------------------------------------------

def _values(tidy, policy, metric):
    return tidy[(tidy.metric == metric) & (tidy.policy == policy)].value.to_numpy()


def _counts(tidy, policy, spec):
    """(events, exposure, runs) of a Poisson metric, pooled over runs."""
    count, exposure, _ = spec
    k = _values(tidy, policy, count)
    runs = len(k)
    n = float(np.nansum(_values(tidy, policy, exposure))) if exposure else float(runs)
    return int(np.nansum(k)), n, runs


def summarize(tidy, policies):
    """One row per metric x policy: runs, mean, ci95 (Student t half-width;
    NaN for the Poisson metrics), ci_lo, ci_hi, ratio and p against the first
    policy, significant (p < 5%), method ("t" or "poisson"), and for the
    Poisson metrics the pooled count and exposure."""
    import pandas as pd
    base = policies[0]
    rows = []
    metrics = [m for m in workloads.METRICS if m in set(tidy.metric)] or list(workloads.METRICS)
    for metric in metrics:
        spec = POISSON.get(metric)
        if spec is not None and (spec[0] not in metrics or (spec[1] and spec[1] not in metrics)):
            spec = None
        if spec is not None:
            kb, nb, _ = _counts(tidy, base, spec)
            ref_mean = spec[2] * kb / nb if nb > 0 else math.nan
        else:
            ref = _values(tidy, base, metric)
            ref_mean, _ = mean_ci(ref)
        for p in policies:
            row = {"metric": metric, "policy": p}
            if spec is not None:
                k, n, runs = _counts(tidy, p, spec)
                mean, lo, hi = rate_ci(k, n, spec[2])
                pval = (None if p == base or not (n > 0 and nb > 0)
                        else rate_test(k, n, kb, nb))
                row.update(runs=runs, mean=mean, ci95=math.nan, ci_lo=lo, ci_hi=hi,
                           method="poisson", count=k, exposure=n)
            else:
                vals = _values(tidy, p, metric)
                mean, ci = mean_ci(vals)
                pval = None if p == base else welch_p(vals, ref)
                row.update(runs=len(_clean(vals)), mean=mean, ci95=ci, ci_lo=mean - ci,
                           ci_hi=mean + ci, method="t", count=math.nan, exposure=math.nan)
            ratio = (mean / ref_mean if ref_mean and not math.isnan(ref_mean)
                     and not math.isnan(mean) else math.nan)
            row.update(ratio=ratio, p=math.nan if pval is None else pval,
                       significant=None if pval is None else pval < ALPHA)
            rows.append(row)
    return pd.DataFrame(rows, columns=["metric", "policy", "runs", "mean", "ci95", "ci_lo",
                                       "ci_hi", "ratio", "p", "significant", "method", "count",
                                       "exposure"])


# -- the table and the verdicts -------------------------------------------------

# the headline: (metric, header line 1, header line 2 (units), width, scale)
HEADLINE = (("leak_rate", "leaks/1000 offl", "[95% CI]", 22, 1.0),
            ("throughput", "throughput", "Mops/s", 13, 1e-6),
            ("retained_pages", "retained", "MiB", 12, PAGE_BYTES / 2 ** 20),
            ("offline_p99_us", "offline p99", "µs", 13, 1.0),
            ("dying_memcgs", "dying", "memcgs", 10, 1.0))
COST = (("throughput", "throughput"), ("retained_pages", "retained"),
        ("offline_p99_us", "offline p99"))


def _row(summary, policy, metric):
    r = summary[(summary.metric == metric) & (summary.policy == policy)]
    return None if r.empty else r.iloc[0]


def _sig(r):
    # True/False/None in memory; read back from the CSV, bools or NaN
    return r is not None and str(r["significant"]) == "True"


def _num(x):
    """A short number: 3 significant digits, k/M suffixes."""
    if x is None or math.isnan(x):
        return "-"
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.3g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.3g}k"
    if ax >= 1000 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.3g}"


def _cell(r, scale):
    if r is None or math.isnan(r["mean"]):
        return "-"
    mean = r["mean"] * scale
    if r["method"] == "poisson":
        text = f"{_num(mean)} [{_num(r['ci_lo'] * scale)}, {_num(r['ci_hi'] * scale)}]"
    else:
        text = _num(mean) + ("" if math.isnan(r["ci95"]) else f" ±{_num(r['ci95'] * scale)}")
    return text + ("*" if _sig(r) else " ")


def format_table(summary, policies):
    """The table the CLI prints: policies as rows (the baseline first), the
    headline metrics as columns with their units, every line at most 100
    characters; then the legend."""
    cols = [c for c in HEADLINE if c[0] in set(summary.metric)]
    room = WIDTH - sum(w + 2 for _, _, _, w, _ in cols)
    pw = max(6, min(room, max(len(p) for p in policies)))

    def name(p):
        return p if len(p) <= pw else p[:pw - 1] + "…"

    lines = [f"{'policy':{pw}s}" + "".join(f"  {t1:>{w}s}" for _, t1, _, w, _ in cols),
             f"{'':{pw}s}" + "".join(f"  {t2:>{w}s}" for _, _, t2, w, _ in cols)]
    lines.append("-" * len(lines[0]))
    for p in policies:
        lines.append(f"{name(p):{pw}s}" + "".join(
            f"  {_cell(_row(summary, p, m), s):>{w}s}" for m, _, _, w, s in cols))
    runs = summary[summary.policy == policies[0]].runs.max()
    legend = (f"baseline {policies[0]} (first row); {_num(runs)} runs per policy. ± is the 95% CI "
              "of the mean (Student t); leaks: all runs pooled, exact Poisson (Garwood) 95% "
              "interval. * = differs from the baseline at 5% (leak rates: exact conditional "
              "binomial test on the counts, offlines as exposure; the rest: Welch's t test).")
    lines += textwrap.wrap(legend, WIDTH)
    return "\n".join(lines)


def _p(p):
    if p is None or math.isnan(p):
        return "-"
    return "<1e-15" if p < 1e-15 else f"{p:.2g}"


def _eq(p):
    text = _p(p)
    return text if text.startswith("<") else "=" + text


def _ratio(r, base, scale, unit):
    """'0.95x*' against the baseline, or a difference when the baseline is 0."""
    if r is None or base is None or math.isnan(r["mean"]):
        return "-"
    star = "*" if _sig(r) else ""
    if base["mean"] == 0 and r["mean"] == 0:
        return f"0 {unit} as {base['policy']}"
    if base["mean"] == 0:
        return f"{'+' if r['mean'] >= 0 else ''}{_num(r['mean'] * scale)} {unit}{star}"
    return f"{r['ratio']:.3g}x{star}"


def verdicts(summary, policies):
    """A verdict per policy: whether it leaks (rate per 1000 offlines, exact
    interval, p against the baseline and, when it leaks, against each
    leak-free policy), and what it costs against the baseline (ratios of
    throughput, retained memory and offline p99; * when significant).
    Each is wrapped to 100 columns."""
    base = policies[0]
    leak = {p: _row(summary, p, "leak_rate") for p in policies}
    measured = {p: r is not None and r["exposure"] > 0 for p, r in leak.items()}
    free = [p for p in policies if measured[p] and leak[p]["count"] == 0]
    out = []
    for p in policies:
        r = leak[p]
        name = f"{p} (baseline)" if p == base else p
        if not measured[p]:
            text = f"{name}: leaks not measured (no memcg offlines in its runs)"
        elif r["count"] == 0:
            text = (f"{name}: no leak: 0 in {int(r['exposure']):,} offlines "
                    f"(rate ≤ {_num(r['ci_hi'])}/1000 at 95%)")
        else:
            text = (f"{name}: LEAKS {_num(r['mean'])}/1000 offlines "
                    f"[{_num(r['ci_lo'])}, {_num(r['ci_hi'])}] "
                    f"({int(r['count']):,} in {int(r['exposure']):,})")
        if p != base and measured[p] and measured[base]:
            text += f", p{_eq(r['p'])} vs {base}"
        if measured[p] and r["count"] > 0:
            others = [q for q in free if q not in (p, base)]
            if others:
                text += "; vs leak-free " + ", ".join(
                    f"{q} p{_eq(rate_test(r['count'], r['exposure'], 0, leak[q]['exposure']))}"
                    for q in others)
        if p != base:
            costs = []
            for metric, label in COST:
                _, _, unit, _, scale = next(h for h in HEADLINE if h[0] == metric)
                b = _row(summary, base, metric)
                costs.append(f"{label} {_ratio(_row(summary, p, metric), b, scale, unit)}")
            text += f"; cost vs {base}: " + ", ".join(costs)
        kind = leak_kind(p) if measured[p] and r["count"] > 0 else ""
        if kind:
            text += f" -- what leaks: {kind}"
        out.append(textwrap.fill(text, WIDTH, subsequent_indent="    "))
    return out


def leak_kind(spec):
    """What a leaked cache is under this policy (its Policy.leak_kind), or ''."""
    from slubcy import policies as registry
    try:
        return registry.get_policy(registry.split_generation(spec)[0]).leak_kind
    except (ValueError, AttributeError):
        return ""


# -- the picture ----------------------------------------------------------------

def _log_scale(means):
    """'log' where the positive means span two orders of magnitude or more,
    'symlog' when some of them are 0 as well, else None."""
    v = np.asarray([x for x in means if not math.isnan(x)])
    pos = v[v > 0]
    if len(pos) < 2 or pos.max() / pos.min() < 100:
        return None
    return "symlog" if (v <= 0).any() else "log"


def plot(tidy, path, policies, summary=None):
    """The headline in one picture: a panel per headline metric, policies as
    rows (baseline on top), each the mean with its 95% interval and the
    single runs; leak rates with their exact Poisson intervals, zeros drawn
    and annotated with the offlines they were measured on."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator
    if summary is None:
        summary = summarize(tidy, policies)
    cols = [c for c in HEADLINE if c[0] in set(summary.metric)]
    y = np.arange(len(policies))[::-1]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.8 * len(cols), 1.8 + 0.5 * len(policies)),
                             sharey=True, gridspec_kw={"width_ratios": [
                                 1.6 if c[0] in POISSON else 1 for c in cols]})
    axes = np.atleast_1d(axes)
    for ax, (metric, t1, t2, _, scale) in zip(axes, cols):
        rows = [_row(summary, p, metric) for p in policies]
        mean = np.array([r["mean"] * scale for r in rows])
        # every headline metric is >= 0: a t interval is clipped there
        lo = np.clip(np.array([r["ci_lo"] * scale for r in rows]), 0, None)
        hi = np.array([r["ci_hi"] * scale for r in rows])
        log = None if metric in POISSON else _log_scale(mean)
        if log:
            floor = np.nanmin(mean[mean > 0]) / 10
            lo = np.where(lo > 0, lo, floor if log == "log" else 0)
            ax.set_xscale(log, **({"linthresh": floor} if log == "symlog" else {}))
        err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)]).clip(0)
        leaky = [r["method"] == "poisson" and r["count"] > 0 for r in rows]
        if metric not in POISSON:
            for yi, p in zip(y, policies):
                runs = _values(tidy, p, metric) * scale
                ax.plot(runs, [yi] * len(runs), "x", color="0.55", ms=5)
        for yi, m, e0, e1, bad in zip(y, mean, err[0], err[1], leaky):
            ax.errorbar([m], [yi], xerr=[[e0], [e1]], fmt="o", color="C3" if bad else "C0",
                        capsize=4)
        if metric in POISSON:
            ax.axvline(0, color="0.8", lw=1, zorder=0)
            top = np.nanmax(hi) if np.isfinite(hi).any() else 1.0
            for yi, r in zip(y, rows):
                if r["exposure"] > 0 and r["count"] == 0:
                    ax.annotate(f"0 leaks in {int(r['exposure']):,} offlines", (0, yi),
                                xytext=(6, -13), textcoords="offset points", fontsize=8)
                elif r["count"] > 0:
                    ax.annotate(f"{int(r['count']):,} leaks in {int(r['exposure']):,} offlines",
                                (r["mean"], yi), xytext=(-6, -13), textcoords="offset points",
                                fontsize=8, color="C3", ha="right")
            pos = hi[np.isfinite(hi) & (hi > 0)]
            if len(pos) and top / pos.min() >= 100:
                # a leaking policy orders of magnitude above the fixes' bounds:
                # linear up to the smallest bound, so the zeros stay visible
                lin = 10.0 ** math.floor(math.log10(pos.min()))
                ax.set_xscale("symlog", linthresh=lin, linscale=2)
                ax.set_xlim(-0.1 * lin, top * 3)
                ax.set_xticks([0.0] + [lin * 10 ** i for i in
                                       range(0, int(math.log10(top * 3 / lin)) + 1, 2)])
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _num(v)))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set_xlabel("leaked caches per 1000 offlines (symlog scale)")
            else:
                ax.set_xlim(-0.05 * top, top * 1.6 if top > 0 else 1.0)
                ax.set_xlabel("leaked caches per 1000 offlines")
        if not math.isnan(mean[0]):
            ax.axvline(mean[0], color="0.5", ls=":", lw=1)
        ax.set_title(t1 if metric in POISSON else f"{t1} ({t2})", fontsize=10)
        if metric not in POISSON:
            ax.set_xlabel(t2 + (f" ({log} scale)" if log else ""))
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(policies) - 0.4)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([f"{p} (baseline)" if i == 0 else p for i, p in enumerate(policies)])
    nruns = tidy.groupby("policy").run.nunique().max() if len(tidy) else 0
    wl = tidy.workload.iloc[0] if len(tidy) else ""
    fig.suptitle(f"{wl}: {nruns} runs per policy; dots: mean with 95% CI (Student t; leaks: "
                 f"exact Poisson, all runs pooled), x: single runs, dotted: baseline",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
