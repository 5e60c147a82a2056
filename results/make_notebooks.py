"""Write the results notebooks from the cell sources below (run once after
editing; the .ipynb files are committed, executed by tests/test_notebooks.py).

    .venv/bin/python results/make_notebooks.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

PARAMS = '''\
# Parameters (papermill-style; the tests set the environment variables instead)
import os
from pathlib import Path

RESULTS = Path(os.environ.get("SLUBCY_RESULTS", "."))                 # `make run` writes here
ASV_RESULTS = Path(os.environ.get("SLUBCY_ASV_RESULTS", "../.asv/results"))   # `make bench`
WORKLOAD = "churn"
FRESH_SECONDS = float(os.environ.get("SLUBCY_FRESH_SECONDS", "0.5"))  # when no results exist
FRESH_REPEAT = int(os.environ.get("SLUBCY_FRESH_REPEAT", "2"))
# the leak-vs-preemption sweep: preemptions/s per vCPU (0: no model), seconds and runs per rate
SWEEP_RATES = [0, 1000, 3000, 10000]
SWEEP_SECONDS = float(os.environ.get("SLUBCY_SWEEP_SECONDS", str(FRESH_SECONDS)))
SWEEP_REPEAT = int(os.environ.get("SLUBCY_SWEEP_REPEAT", "1"))
SWEEP_KWARGS = {}                    # workload parameters passed to workloads.run, e.g. {"outlive": 1.0}
# a recorded kmem trace replayed under every policy (slubcy replay; tests/traces/)
import slubcy
TRACE = os.environ.get("SLUBCY_TRACE", str(Path(slubcy.__file__).resolve().parents[1] / "tests"
                                           / "traces" / "python-imports.perf.txt.xz"))
TRACE_PREEMPT = "slab_free:before_cmpxchg=0.05:1ms:sleep"   # the main job's (workloads.MAIN_PREEMPT)'''

SETUP = '''\
import matplotlib
matplotlib.use("Agg")                # headless; figures are also saved beside the notebook
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from IPython.display import Image, display

from slubcy.analysis import compare, results, sweep

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)'''

POLICY_CELLS = [
    new_markdown_cell("""\
# Dead-cache policies on `churn`: throughput, retained memory, leaks, offline latency

The 2014 mail's question (LKML, *"__slab_free vs memcg offline"*): when a memcg goes offline
while another CPU is inside `__slab_free` on one of its slabs, which retirement policy
leaks the dead cache, how much memory does each keep, and what does each cost?

This notebook reads what `make run` (`slubcy compare --workload churn --out results`)
wrote into `results/`, and the asv results of `make bench` from `.asv/results`.
When `results/` has no comparison it makes a small fresh one first, so it always runs
headless (`jupyter execute results/policy_comparison.ipynb`)."""),
    new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
    new_code_cell(SETUP),
    new_code_cell('''\
if not results.has_compare(RESULTS, WORKLOAD):
    print(f"no comparison in {RESULTS.resolve()}: a fresh one, {FRESH_REPEAT} x {FRESH_SECONDS} s per policy")
    compare.compare(compare.default_policies(), workload=WORKLOAD, repeat=FRESH_REPEAT,
                    seconds=FRESH_SECONDS, out=RESULTS, progress=False)
runs = results.load_compare(RESULTS, WORKLOAD)
POLICIES = runs.policies
print("policies:", ", ".join(POLICIES), "| runs per policy:", runs.tidy.run.nunique())
if runs.partial:
    print(f"PARTIAL: the compare was interrupted; {runs.meta.get('runs_done')} of "
          f"{runs.meta.get('runs_planned')} runs are in")
runs.wide()'''),
    new_markdown_cell("""\
## The answer `slubcy compare` printed

Policies as rows, the baseline first (the kernel's current answer, `objcg`, when every policy
is compared). Leaks are counts of rare events: each policy's leaked caches of all its runs per
1000 memcg offlines, with the exact Poisson (Garwood) 95% interval, and rates compared with
the exact conditional binomial test (given k1 + k2 leaks, k1 ~ Binomial(k1 + k2, n1 / (n1 + n2))
under equal rates, n = offlines). The other metrics are means over runs ± the Student t 95%
interval, compared with Welch's t test. `*` marks a difference from the baseline at 5%. Then a
verdict per policy: does it leak, and what does it cost against the baseline."""),
    new_code_cell('''\
print(compare.format_table(runs.summary, POLICIES))
print()
print("\\n".join(compare.verdicts(runs.summary, POLICIES)))'''),
    new_markdown_cell("""\
## The headline in one picture

Each panel a headline metric, policies as rows: the mean with its 95% interval (the leak
rate's is the exact Poisson interval of all runs pooled, so a policy with no leak shows 0 and
how far its rate could be, given how many offlines it went through), the single runs as
crosses, the baseline dotted; log scales where the policies differ by orders of magnitude."""),
    new_code_cell('''\
compare.plot(runs.tidy, RESULTS / "policy_throughput_leaks.png", POLICIES, runs.summary)
display(Image(filename=str(RESULTS / "policy_throughput_leaks.png")))
runs.summary[runs.summary.metric == "leak_rate"].set_index("policy").loc[
    POLICIES, ["count", "exposure", "mean", "ci_lo", "ci_hi", "p"]].rename(
    columns={"count": "leaks", "exposure": "offlines", "mean": "per 1000 offlines"})'''),
    new_markdown_cell("""\
## Retained memory over time

Each run samples the memcg counts and the slab pages in use every 50 ms. `retained_pages`
is what dead caches and dying memcgs still hold: the memory the 2014 race leaks."""),
    new_code_cell('''\
series = runs.series
if series.empty or "retained_pages" not in series:
    print("this workload samples no time series")
else:
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.5))
    for i, p in enumerate(POLICIES):
        for run, g in series[series.policy == p].groupby("run"):
            kw = {"label": p} if run == series[series.policy == p].run.min() else {}
            axes[0].plot(g.t, g.retained_pages * 4 / 1024, color=f"C{i}", alpha=0.8, **kw)
            axes[1].plot(g.t, g.dying_memcgs, color=f"C{i}", alpha=0.8, **kw)
    axes[0].set(title="retained by dead caches", xlabel="s", ylabel="MiB")
    axes[1].set(title="dying memcgs", xlabel="s", ylabel="memcgs")
    axes[0].set_yscale("symlog")
    axes[1].set_yscale("symlog")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "policy_retained_over_time.png", dpi=90)
    display(series.groupby("policy")[["retained_pages", "dying_memcgs", "dead_caches"]]
            .max().loc[POLICIES].rename(columns=lambda c: "peak " + c))'''),
    new_markdown_cell("""\
## Offline latency

The latency of each offline, from the job's rmdir queueing it to the end of the kworker's work item, per policy: quantiles of every run
(an ECDF on a log axis), then p50 and p99."""),
    new_code_cell('''\
off = runs.offline
fig, ax = plt.subplots(figsize=(8, 4.5))
for i, p in enumerate(POLICIES):
    g = off[off.policy == p]
    if not g.empty:
        q = g.groupby("q").offline_us.median()
        ax.plot(q.values, q.index, color=f"C{i}", label=p)
ax.set(xscale="log", xlabel="offline latency (us)", ylabel="fraction of offlines",
       title="offline latency (median over runs of each quantile)")
ax.legend()
fig.tight_layout()
fig.savefig(RESULTS / "policy_offline_latency.png", dpi=90)
runs.wide().groupby("policy", sort=False)[["offline_p50_us", "offline_p99_us"]].mean()'''),
    new_markdown_cell("""\
## Why Linux 4.11 deferred the barrier: kernel-like grace periods

In the kernel a grace period ends at a scheduling-clock tick, a millisecond or more
(bugzilla 190841: `rmdir` blocked in `synchronize_sched()` per cache); slubcy's grace
periods do the same by default (`Machine(hz=250)`, CONFIG_HZ_250). With expedited grace
periods (`expedited=True`: they end as soon as every vCPU passed a quiescent state, which a
busy vCPU reports every 64 operations) a `synchronize_sched()` lasts microseconds and
`barrier:sync` looks cheap. Here both barriers run a short `churn` under each model:
expedited, the default HZ=250 and RHEL's HZ=1000."""),
    new_code_cell('''\
from slubcy import workloads

rows, lat = [], {}
for hz in (None, 250, 1000):
    for policy in ("barrier:sync", "barrier"):
        r = workloads.run("churn", cpus=2, seconds=FRESH_SECONDS, seed=0, policy=policy,
                          hz=hz, expedited=hz is None)
        label = f"{policy}, {'expedited' if hz is None else f'HZ={hz}'}"
        lat[label] = r.offline_us
        rows.append({"grace periods": "expedited" if hz is None else f"HZ={hz}", "policy": policy,
                     "offlines/s": r.metrics["offlines"] / r.metrics["seconds"],
                     "offline p50 us": r.metrics["offline_p50_us"],
                     "offline p99 us": r.metrics["offline_p99_us"],
                     "retained pages": r.metrics["retained_pages"]})
gp = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(8, 4.5))
for label, values in lat.items():
    if values:
        v = np.sort(values)
        ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
ax.set(xscale="log", xlabel="offline latency (us)", ylabel="fraction of offlines",
       title="memcg_offline() latency: sync vs async barrier, by grace-period model")
ax.legend()
fig.tight_layout()
fig.savefig(RESULTS / "grace_period_models.png", dpi=90)
gp'''),
    new_markdown_cell("""\
## How likely in production: leaks vs the preemption rate

The 2014 race needs a task preempted inside `__slab_free` on a CONFIG_PREEMPT kernel while
its memcg goes offline. `slubcy.analysis.sweep.leak_vs_preemption` sweeps the preemption model's rate
(requests per second per vCPU, 3 ms slices), pools the leaks at each rate with the exact
Poisson interval, fits leak rate ∝ preemption rate (a Poisson regression through the origin,
exact interval on the slope) and extrapolates to a production host: 10,000 cgroups removed a
day, 1000 preemptions/s per CPU. The assumptions are printed with the estimate; slubcy's race
window is wider than a kernel's, so the estimate errs high. The runs here are short: `slubcy
sweep --seconds 2 --repeat 5` narrows the intervals."""),
    new_code_cell('''\
sw = sweep.leak_vs_preemption("naive", rates=SWEEP_RATES, seconds=SWEEP_SECONDS,
                              repeat=SWEEP_REPEAT, slice="3ms", **SWEEP_KWARGS)
print(sw.format())
fig, ax = plt.subplots(figsize=(8, 4.5))
sw.plot(ax=ax)
fig.tight_layout()
fig.savefig(RESULTS / "leak_vs_preemption.png", dpi=90)
sw.points'''),
    new_markdown_cell("""\
## The policies on a recorded trace

A real allocation stream instead of `churn`: `TRACE` (by default `tests/traces/python-imports`,
`perf record` of a Python import storm on this machine's 6.18 kernel) replayed through the core
under every policy (`slubcy compare --workload trace:FILE`, each run `slubcy replay`): one worker
per traced CPU, a memcg per task (`comm`) charged with its accounted allocations and taken
offline through the policy after the task's last event, the 2014 race's window preempted as in the
main job. The objects the trace never frees stay live until the end of the trace, so dead
caches hold them: `retained_pages` at the end of the trace, `leaked_caches` after they are freed."""),
    new_code_cell('''\
tidy, summary = compare.compare(compare.default_policies(), workload="trace:" + TRACE,
                                repeat=FRESH_REPEAT, preempt=TRACE_PREEMPT, progress=False)
trace_table = tidy.pivot_table(index="policy", columns="metric", values="value", aggfunc="mean",
                               sort=False)[["leaked_caches", "leaked_memcgs", "retained_pages",
                                            "dead_caches", "dying_memcgs", "offlines",
                                            "offline_p99_us", "throughput"]]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
for ax, metric in zip(axes, ["retained_pages", "leaked_caches", "offline_p99_us"]):
    trace_table[metric].plot.barh(ax=ax, title=metric)
fig.suptitle(Path(TRACE).name)
fig.tight_layout()
fig.savefig(RESULTS / "trace_policies.png", dpi=90)
trace_table'''),
    new_markdown_cell("""\
## asv results

`make bench` records the asv suites (`benchmarks/bench_*.py`) for the current commit;
`results.load_asv` flattens every result file into one row per benchmark × parameters.
The dashboard itself is `make dashboard`."""),
    new_code_cell('''\
try:
    asv = results.load_asv(ASV_RESULTS)
except FileNotFoundError as e:
    asv = None
    print(e)
if asv is not None and not asv.empty:
    latest = asv[asv.date == asv.date.max()]
    print(f"{len(asv)} results, {asv.commit.nunique()} commit(s), machines: {', '.join(asv.machine.unique())}")
    display(latest.groupby(["benchmark", "unit"], dropna=False).size().rename("results").to_frame())
    tracks = latest[latest.benchmark.str.contains("Metrics.track_") & latest.value.notna()]
    if not tracks.empty:
        tracks = tracks.assign(metric=tracks.benchmark.str.rsplit(".", n=1).str[-1].str[len("track_"):])
        churn = tracks[tracks.workload == "churn"]
        display(churn.pivot_table(index="policy", columns=["metric", "vcpus"], values="value",
                                  sort=False))'''),
]


SWEEP_PARAMS = '''\
# Parameters (papermill-style; the tests set the environment variables instead)
import os
from pathlib import Path

SWEEP_DIR = Path(os.environ.get("SLUBCY_SWEEP_DIR", "sweep"))     # `slubcy sweep --out ...`
FRESH_SECONDS = float(os.environ.get("SLUBCY_FRESH_SECONDS", "0.5"))  # when SWEEP_DIR is empty
FRESH_SEEDS = os.environ.get("SLUBCY_FRESH_SEEDS", "0:2")
# the grid of a fresh sweep: preemption rates per vCPU, policies, vCPUs, job sizes
FRESH_GRID = {
    "policy": ["naive", "objcg"],
    "preempt": ["preempt=1000/s:1ms", "preempt=10000/s:1ms"],
    "cpus": [1, 2],
    "job_objects": [256, 1024],
    "seconds": FRESH_SECONDS,
    "seed": FRESH_SEEDS,
}'''

SWEEP_CELLS = [
    new_markdown_cell("""\
# A parameter sweep: leak rate, throughput and retained memory across a grid

`slubcy sweep` runs every combination of its axes (policies, preemption rates, vCPUs,
churn's job size, seeds...) as independent cells on a Dask cluster — a `LocalCluster`
by default, or `--scheduler tcp://HOST:PORT` — into a Parquet dataset, one row per
cell x metric, every parameter a typed column. This notebook reads that dataset
(`slubcy.analysis.results.load_sweep`); when `SWEEP_DIR` holds none it runs a small
grid first, so it always executes headless."""),
    new_code_cell(SWEEP_PARAMS, metadata={"tags": ["parameters"]}),
    new_code_cell('''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from slubcy.analysis import cluster, compare, grid, results

pd.set_option("display.width", 140)
if not (SWEEP_DIR / "cells").is_dir() or not any((SWEEP_DIR / "cells").glob("*.parquet")):
    g = grid.Grid.from_axes(FRESH_GRID)
    print(f"no sweep in {SWEEP_DIR}: running {g.size} cells on a LocalCluster")
    print(cluster.run_sweep(g, SWEEP_DIR, progress=False))
df = results.load_sweep(SWEEP_DIR)
ok = df[df.status == "ok"]
print(f"{df.cell.nunique()} cells, {len(df)} rows; failed cells: {df[df.status != 'ok'].cell.nunique()}")
wide = results.sweep_by_cell(df)         # one row per cell, a column per metric
display(wide.head())'''),
    new_markdown_cell("""\
## Leak rate against the preemption rate

Leaked caches per 1000 offlines at each CONFIG_PREEMPT preemption rate (preemptions/s per
vCPU), all cells of a policy pooled, with the exact Poisson (Garwood) 95% interval: the
race needs a task preempted inside `__slab_free`, so a leaking policy's rate grows with
it and a fix stays at zero."""),
    new_code_cell('''\
def preempt_rate(spec):
    """preemptions/s per vCPU of a 'preempt=RATE/s:SLICE' spec (0: none)."""
    if not isinstance(spec, str) or not spec.startswith("preempt="):
        return 0.0
    return float(spec[len("preempt="):].split("/")[0].split(":")[0])

wide["rate"] = wide.preempt.map(preempt_rate)
pooled = wide.groupby(["policy", "rate"], as_index=False)[["leaked_caches", "offlines"]].sum()
ci = [compare.rate_ci(k, n) for k, n in zip(pooled.leaked_caches, pooled.offlines)]
pooled[["per_1000", "lo", "hi"]] = pd.DataFrame(ci, index=pooled.index)
display(pooled)
fig, ax = plt.subplots(figsize=(6, 4))
for policy, g in pooled.groupby("policy"):
    ax.errorbar(g.rate, g.per_1000, yerr=[g.per_1000 - g.lo, g.hi - g.per_1000],
                marker="o", capsize=3, label=policy)
ax.set_xscale("log")
ax.set_xlabel("preemptions/s per vCPU (CONFIG_PREEMPT model)")
ax.set_ylabel("leaked caches per 1000 offlines")
ax.legend()
fig.tight_layout()
fig.savefig(SWEEP_DIR / "sweep_leak_vs_preemption.png", dpi=100)'''),
    new_markdown_cell("## Throughput against vCPUs\n\nMedian operations per second over the cells of each policy and vCPU count."),
    new_code_cell('''\
tp = wide.groupby(["policy", "cpus"], as_index=False).throughput.median()
display(tp.pivot(index="cpus", columns="policy", values="throughput"))
fig, ax = plt.subplots(figsize=(6, 4))
for policy, g in tp.groupby("policy"):
    ax.plot(g.cpus, g.throughput / 1e6, marker="o", label=policy)
ax.set_xlabel("vCPUs")
ax.set_ylabel("throughput (Mops/s)")
ax.legend()
fig.tight_layout()
fig.savefig(SWEEP_DIR / "sweep_throughput_vs_vcpus.png", dpi=100)'''),
    new_markdown_cell("""\
## Retained memory against the churn rate

Each cell's memory cgroup offlines per second (the churn rate) against the slab memory
dead caches kept at the end (`retained_pages`, 4 KiB pages), per policy."""),
    new_code_cell('''\
wide["churn_per_s"] = wide.offlines / wide.measured_seconds
wide["retained_mib"] = wide.retained_pages * 4096 / 2**20
fig, ax = plt.subplots(figsize=(6, 4))
for policy, g in wide.groupby("policy"):
    ax.scatter(g.churn_per_s, g.retained_mib, label=policy, alpha=0.7)
ax.set_xlabel("memcg offlines per second")
ax.set_ylabel("retained slab memory (MiB)")
ax.legend()
fig.tight_layout()
fig.savefig(SWEEP_DIR / "sweep_retained_vs_churn.png", dpi=100)
display(wide.groupby("policy")[["churn_per_s", "retained_mib"]].median())'''),
]


def write(name, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("policy_comparison.ipynb", POLICY_CELLS)
    write("sweep.ipynb", SWEEP_CELLS)
