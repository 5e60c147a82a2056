"""A/B comparison of dead-cache policies on one workload.

Each policy runs `repeat` times, interleaved (P1 P2 ... P1 P2 ...) so drift
on a shared machine hits all alike.  The table gives every metric as mean ±
95% confidence interval (Student t), the ratio to the first policy and
whether the difference from it is significant (Welch's t test, 5%).  Writes
a tidy CSV (one row per run × metric), the summary, each run's time series
(compare_W_series.csv: memcg counts and slab pages over time), quantiles of
each run's offline latency (compare_W_offline_us.csv) and a PNG plot;
slubcy.results.load_compare reads them back.
"""
import math
import statistics
from pathlib import Path

from slubcy import workloads

# two-sided 97.5% quantiles of Student's t for df = 1..30 (then the normal)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df):
    if df < 1:
        return math.inf
    return _T975[int(df) - 1] if df <= 30 else 1.96


def mean_ci(values):
    """(mean, half-width of the 95% confidence interval)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    m = statistics.fmean(vals)
    if len(vals) < 2:
        return m, math.nan
    return m, t975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))


def welch_significant(a, b):
    """True if the means of a and b differ at the 5% level (Welch)."""
    a = [v for v in a if v is not None and not math.isnan(v)]
    b = [v for v in b if v is not None and not math.isnan(v)]
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return diff != 0
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0))
    return abs(diff) / math.sqrt(va + vb) > t975(max(1, math.floor(df)))


def compare(policies, workload="churn", repeat=3, seed=0, cpus=2, ops=None, seconds=None,
            out=None, progress=True, **run_kwargs):
    """Run and summarise.  Returns (tidy DataFrame, summary DataFrame)."""
    import pandas as pd
    if not policies:
        raise ValueError("give at least one policy")
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    if ops is None and seconds is None:
        seconds = 1.0
    rows, series, offline = [], [], []
    jobs = [(r, p) for r in range(repeat) for p in policies]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="run", leave=False)
    for rep, policy in jobs:
        res = workloads.run(workload, cpus=cpus, ops=ops, seconds=seconds, seed=seed + rep,
                            policy=policy, progress=False, **run_kwargs)
        for metric, value in res.metrics.items():
            rows.append({"policy": policy, "workload": workload, "run": rep, "seed": seed + rep,
                         "cpus": cpus, "metric": metric,
                         "value": math.nan if value is None else float(value)})
        ident = {"policy": policy, "run": rep}
        series.extend({**ident, **row} for row in res.series)
        offline.extend({**ident, "q": q, "offline_us": v}
                       for q, v in quantiles(res.offline_us, OFFLINE_QUANTILES))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    tidy = pd.DataFrame(rows)
    summary = summarize(tidy, policies)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tidy.to_csv(out / f"compare_{workload}.csv", index=False)
        summary.to_csv(out / f"compare_{workload}_summary.csv", index=False)
        # only churn samples a series; keep the header so the file always loads
        (pd.DataFrame(series) if series else pd.DataFrame(columns=["policy", "run", "t"])).to_csv(
            out / f"compare_{workload}_series.csv", index=False)
        pd.DataFrame(offline, columns=["policy", "run", "q", "offline_us"]).to_csv(
            out / f"compare_{workload}_offline_us.csv", index=False)
        plot(tidy, out / f"compare_{workload}.png", policies)
    return tidy, summary


OFFLINE_QUANTILES = 200      # per run: enough for an ECDF, small enough for a CSV


def quantiles(sorted_values, n):
    """(q, value) at n+1 evenly spaced quantiles (0..1) of sorted values."""
    if not sorted_values:
        return []
    last = len(sorted_values) - 1
    return [(i / n, float(sorted_values[round(i * last / n)])) for i in range(n + 1)]


def summarize(tidy, policies):
    import pandas as pd
    base = policies[0]
    rows = []
    for metric in workloads.METRICS:
        ref = tidy[(tidy.metric == metric) & (tidy.policy == base)].value.tolist()
        ref_mean, _ = mean_ci(ref)
        for p in policies:
            vals = tidy[(tidy.metric == metric) & (tidy.policy == p)].value.tolist()
            mean, ci = mean_ci(vals)
            ratio = mean / ref_mean if ref_mean not in (0, 0.0) and not math.isnan(ref_mean) else math.nan
            rows.append({"metric": metric, "policy": p, "mean": mean, "ci95": ci,
                         "ratio": ratio,
                         "significant": None if p == base else welch_significant(vals, ref)})
    return pd.DataFrame(rows)


def format_table(summary, policies):
    """The table the CLI prints: a row per metric, a column per policy."""
    lines = []
    width = max(len(m) for m in workloads.METRICS)
    head = f"{'metric':{width}s} " + " ".join(f"{p:>30s}" for p in policies)
    lines.append(head)
    lines.append("-" * len(head))
    for metric in workloads.METRICS:
        cells = []
        for p in policies:
            r = summary[(summary.metric == metric) & (summary.policy == p)].iloc[0]
            if math.isnan(r["mean"]):
                cells.append(f"{'-':>30s}")
                continue
            ci = "" if math.isnan(r["ci95"]) else f"±{_num(r['ci95'])}"
            tag = ""
            if p != policies[0]:
                tag = " -" if math.isnan(r["ratio"]) else f" {r['ratio']:.2f}x"
                tag += "*" if r["significant"] else " "
            cells.append(f"{_num(r['mean']) + ci + tag:>30s}")
        lines.append(f"{metric:{width}s} " + " ".join(cells))
    lines.append(f"mean ±95% CI; ratio to {policies[0]}; * = significant (Welch, 5%)")
    return "\n".join(lines)


def _num(x):
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.2f}M"
    if ax >= 1e4:
        return f"{x / 1e3:.1f}k"
    if ax >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.3g}"


def plot(tidy, path, policies):
    """One panel per headline metric: the runs of each policy, mean marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = ["throughput", "retained_pages", "leak_rate", "dying_memcgs", "offline_p99_us",
               "slab_pages"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, metric in zip(axes.flat, metrics):
        for i, p in enumerate(policies):
            vals = tidy[(tidy.metric == metric) & (tidy.policy == p)].value
            ax.scatter([i] * len(vals), vals, alpha=0.6)
            if len(vals.dropna()):
                ax.hlines(vals.mean(), i - 0.3, i + 0.3, color="k")
        ax.set_xticks(range(len(policies)))
        ax.set_xticklabels(policies, rotation=30, ha="right")
        ax.set_title(metric)
    fig.suptitle(f"{tidy.workload.iloc[0]}: {len(tidy.run.unique())} runs per policy")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
