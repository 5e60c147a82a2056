"""slubcy compare and slubcy extrapolate: interleaved runs, tidy CSV, plot, exact
statistics for the leak counts, the 100-column table and verdicts, --out
checked first, results kept on Ctrl-C."""
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from slubcy import workloads
from slubcy.analysis import compare, results, sweep
from slubcy.cli import main

from conftest import interrupt_when

ROOT = Path(__file__).resolve().parents[1]


# -- the statistics, against scipy and textbook values ---------------------------

@pytest.mark.parametrize("k, lo, hi", [(0, 0.0, 3.689), (1, 0.0253, 5.572), (5, 1.623, 11.668),
                                       (10, 4.795, 18.390)])
def test_garwood_interval_textbook_values(k, lo, hi):
    got = compare.poisson_ci(k)
    assert got[0] == pytest.approx(lo, abs=1e-3) and got[1] == pytest.approx(hi, abs=1e-3)
    # the same as the gamma form, and scaled by the exposure
    assert got[1] == pytest.approx(stats.gamma.ppf(0.975, k + 1))
    if k:
        assert got[0] == pytest.approx(stats.gamma.ppf(0.025, k))
    assert compare.poisson_ci(k, 2000) == pytest.approx((got[0] / 2000, got[1] / 2000))


def test_rate_ci_is_per_1000_offlines():
    rate, lo, hi = compare.rate_ci(5, 10_000)
    assert rate == pytest.approx(0.5)
    assert (lo, hi) == pytest.approx((0.1623, 1.1668), abs=1e-4)
    assert all(math.isnan(x) for x in compare.rate_ci(0, 0))


def test_conditional_binomial_test():
    # 10 leaks vs 0 with equal exposure: two-sided 2 * 0.5**10
    assert compare.rate_test(10, 1000, 0, 1000) == pytest.approx(2 * 0.5 ** 10)
    assert compare.rate_test(0, 1000, 10, 1000) == pytest.approx(2 * 0.5 ** 10)
    assert compare.rate_test(0, 500, 0, 800) == 1.0
    assert compare.rate_test(3, 1000, 3, 1000) == pytest.approx(1.0)
    # unequal exposure: the expected share is n1 / (n1 + n2), not 1/2
    assert compare.rate_test(6, 3000, 2, 1000) == pytest.approx(
        stats.binomtest(6, 8, 0.75).pvalue)
    assert compare.rate_test(6, 3000, 2, 1000) > 0.5 > compare.rate_test(6, 1000, 2, 3000)
    with pytest.raises(ValueError):
        compare.rate_test(1, 0, 1, 10)
    with pytest.raises(ValueError):
        compare.poisson_ci(-1)


def test_mean_ci_and_welch_are_scipys():
    vals = [1.0, 2.0, 3.0, 7.5]
    m, ci = compare.mean_ci(vals)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert m == pytest.approx(np.mean(vals)) and (m - ci, m + ci) == pytest.approx((lo, hi))
    assert compare.mean_ci([1.0, 2.0, 3.0])[1] == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert math.isnan(compare.mean_ci([4.0])[1]) and math.isnan(compare.mean_ci([])[0])
    a, b = [1, 1.1, 0.9, 1.05], [5, 5.1, 4.9, 5.05]
    assert compare.welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert compare.welch_significant(a, b) is True
    assert compare.welch_significant([1, 2, 3], [1.5, 2.5, 2]) is False
    assert compare.welch_significant([1], [2, 3]) is None
    assert compare.welch_p([2, 2], [3, 3]) == 0.0 and compare.welch_p([2, 2], [2, 2]) == 1.0


def _tidy(per_policy):
    """A tidy frame from {policy: [{metric: value}, ...]} (one dict a run)."""
    rows = []
    for p, runs in per_policy.items():
        for i, metrics in enumerate(runs):
            full = {m: 1.0 for m in workloads.METRICS}
            full.update(metrics)
            rows += [{"policy": p, "workload": "churn", "run": i, "seed": i, "cpus": 2,
                      "metric": m, "value": float(v)} for m, v in full.items()]
    return pd.DataFrame(rows)


SYNTH = {
    "objcg": [{"leaked_caches": 0, "offlines": 4000, "throughput": 9e6, "retained_pages": 0,
               "offline_p99_us": 3.0, "dying_memcgs": 0}] * 3,
    "naive": [{"leaked_caches": k, "offlines": 4000, "throughput": t, "retained_pages": 1700,
               "offline_p99_us": 900.0, "dying_memcgs": 300}
              for k, t in ((4, 1.0e7), (3, 1.1e7), (5, 1.05e7))],
    "barrier:batch": [{"leaked_caches": 0, "offlines": 3000, "throughput": 8e6,
                       "retained_pages": 1600, "offline_p99_us": 12_345.0, "dying_memcgs": 250}
                      for _ in range(3)],
}


def test_summary_uses_the_exact_tests():
    policies = list(SYNTH)
    tidy = _tidy(SYNTH)
    s = compare.summarize(tidy, policies).set_index(["metric", "policy"])
    naive = s.loc[("leak_rate", "naive")]
    assert naive["method"] == "poisson" and naive["count"] == 12 and naive["exposure"] == 12_000
    assert naive["mean"] == pytest.approx(1.0)
    lo, hi = compare.poisson_ci(12, 12_000)
    assert (naive["ci_lo"], naive["ci_hi"]) == pytest.approx((1000 * lo, 1000 * hi))
    assert naive["p"] == pytest.approx(stats.binomtest(12, 12, 0.5).pvalue)
    assert naive["significant"] is True
    batch = s.loc[("leak_rate", "barrier:batch")]
    assert batch["mean"] == 0 and batch["ci_hi"] == pytest.approx(1000 * 3.689 / 9000, rel=1e-3)
    assert batch["p"] == 1.0 and batch["significant"] is False
    assert s.loc[("leaked_caches", "naive")]["mean"] == pytest.approx(4.0)      # per run
    thr = s.loc[("throughput", "naive")]
    vals = [r["throughput"] for r in SYNTH["naive"]]
    assert thr["method"] == "t" and thr["mean"] == pytest.approx(np.mean(vals))
    assert thr["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem(vals))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # a constant sample
        welch = stats.ttest_ind(vals, [9e6] * 3, equal_var=False).pvalue
    assert thr["p"] == pytest.approx(welch)
    assert thr["ratio"] == pytest.approx(np.mean(vals) / 9e6)
    assert math.isnan(s.loc[("throughput", "objcg")]["p"])          # the baseline


def test_table_and_verdicts_fit_100_columns():
    policies = list(SYNTH)
    summary = compare.summarize(_tidy(SYNTH), policies)
    table = compare.format_table(summary, policies)
    lines = table.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    head = lines[0] + "\n" + lines[1]
    for unit in ("leaks/1000 offl", "[95% CI]", "Mops/s", "MiB", "µs", "memcgs"):
        assert unit in head
    rows = {line.split()[0]: line for line in lines[3:6]}
    assert list(rows) == policies                       # policies as rows, baseline first
    assert "1 [" in rows["naive"] and "*" in rows["naive"]
    assert "6.64" in rows["naive"]                      # 1700 pages of 4 KiB in MiB
    assert "12.3k" in rows["barrier:batch"]
    v = compare.verdicts(summary, policies)
    text = "\n".join(v)
    assert all(len(line) <= 100 for line in text.splitlines())
    assert v[0].startswith("objcg (baseline): no leak: 0 in 12,000 offlines")
    assert "cost" not in v[0]
    assert "naive: LEAKS 1/1000 offlines" in text and "(12 in 12,000)" in text
    p_batch = compare.rate_test(12, 12_000, 0, 9000)
    assert f"vs leak-free barrier:batch p={p_batch:.2g}" in " ".join(text.split())
    assert "barrier:batch: no leak" in text and "offline p99 4.12e+03x*" in " ".join(
        text.split())
    # a long policy name is cut to keep the width
    long = ["objcg", "x" * 60]
    s2 = compare.summarize(_tidy({"objcg": SYNTH["objcg"], "x" * 60: SYNTH["naive"]}), long)
    assert all(len(line) <= 100 for line in compare.format_table(s2, long).splitlines())


def test_plot_draws_the_headline(tmp_path):
    policies = list(SYNTH)
    tidy = _tidy(SYNTH)
    compare.plot(tidy, tmp_path / "h.png", policies)
    assert (tmp_path / "h.png").stat().st_size > 10_000
    assert compare._log_scale([3.0, 900.0, 12_345.0]) == "log"
    assert compare._log_scale([0.0, 1600.0, 1700.0]) is None
    assert compare._log_scale([0.0, 3.0, 900.0]) == "symlog"


def test_default_baseline_is_objcg(monkeypatch, capsys):
    names = compare.default_policies()
    assert names[0] == "objcg" and "naive" in names
    seen = {}

    def fake(policies, **kw):
        seen["policies"] = policies
        tidy = _tidy({p: SYNTH.get(p, SYNTH["objcg"]) for p in policies})
        return tidy, compare.summarize(tidy, policies)

    monkeypatch.setattr(compare, "compare", fake)
    assert main(["compare", "--no-progress"]) == 0
    assert seen["policies"] == names
    out = capsys.readouterr().out
    assert "baseline objcg" in out and all(len(line) <= 100 for line in out.splitlines())


# -- real runs -----------------------------------------------------------------------

def test_compare_writes_csv_and_plot(tmp_path, capsys):
    assert main(["compare", "naive", "objcg", "--workload", "churn", "--repeat", "2",
                 "--ops", "40000", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if not line.startswith("wrote to ")]
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    tidy = pd.read_csv(tmp_path / "compare_churn.csv")
    assert set(tidy.metric) == set(workloads.METRICS)
    assert set(tidy.policy) == {"naive", "objcg"}
    assert len(tidy) == 2 * 2 * len(workloads.METRICS)
    assert (tmp_path / "compare_churn.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "compare_churn_summary.csv")
    for (policy, metric), grp in tidy.groupby(["policy", "metric"]):
        row = summary[(summary.policy == policy) & (summary.metric == metric)].iloc[0]
        if metric == "leak_rate":
            runs = tidy[tidy.policy == policy]
            k = runs[runs.metric == "leaked_caches"].value.sum()
            n = runs[runs.metric == "offlines"].value.sum()
            assert row["count"] == k and row["exposure"] == n and n > 0
            assert math.isclose(row["mean"], 1000 * k / n)
            assert row["ci_hi"] == pytest.approx(1000 * compare.poisson_ci(int(k), n)[1])
        elif grp.value.notna().any():
            assert math.isclose(row["mean"], grp.value.mean(), rel_tol=1e-9, abs_tol=1e-12)
    assert "offline p99" in out and "baseline naive" in out
    assert "objcg: no leak" in out or "objcg: LEAKS" in out
    assert "cost vs naive: throughput" in " ".join(out.split())      # (lines wrap)
    meta = json.loads((tmp_path / "compare_churn_meta.json").read_text())
    assert meta["partial"] is False and meta["runs_done"] == meta["runs_planned"] == 4
    # the notebooks' loader reads the same files back
    runs = results.load_compare(tmp_path)
    assert runs.policies == ["naive", "objcg"] and runs.partial is False
    wide = runs.wide()
    assert len(wide) == 4 and set(workloads.METRICS) <= set(wide.columns)
    assert math.isclose(wide[wide.policy == "objcg"].throughput.mean(),
                        tidy[(tidy.policy == "objcg") & (tidy.metric == "throughput")].value.mean())
    assert {"t", "retained_pages", "dying_memcgs"} <= set(runs.series.columns)
    assert set(runs.series.policy) == {"naive", "objcg"}
    for (policy, run), g in runs.offline.groupby(["policy", "run"]):
        assert g.q.iloc[0] == 0.0 and g.q.iloc[-1] == 1.0
        assert g.offline_us.is_monotonic_increasing
        p99 = wide[(wide.policy == policy) & (wide.run == run)].offline_p99_us.iloc[0]
        assert g.offline_us.min() <= p99 <= g.offline_us.max()
    # the table printed from the files is the one printed by the run
    assert compare.format_table(runs.summary, runs.policies) in out


def test_interrupt_keeps_finished_runs(tmp_path, monkeypatch):
    """Results are rewritten after every run: an interrupt in the third run
    leaves the first two on disk, marked partial."""
    real = workloads.run
    calls = []

    def run(*a, **kw):
        calls.append(kw["policy"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(workloads, "run", run)
    with pytest.raises(KeyboardInterrupt):
        compare.compare(["naive", "objcg"], repeat=2, ops=20_000, out=tmp_path, progress=False)
    meta = json.loads((tmp_path / "compare_churn_meta.json").read_text())
    assert meta["partial"] is True and meta["interrupted"] is True
    assert meta["runs_done"] == 2 and meta["runs_planned"] == 4
    r = results.load_compare(tmp_path)
    assert r.partial and r.policies == ["naive", "objcg"]
    assert sorted(r.tidy.groupby(["policy", "run"]).groups) == [("naive", 0), ("objcg", 0)]
    assert not list(tmp_path.glob("*.tmp"))


def test_workloads_run_stops_its_workers_on_ctrl_c():
    """A KeyboardInterrupt while a run waits stops and joins the workers
    before it propagates (no worker thread left, the next run works)."""
    def interrupt():
        while not any(t.name.startswith("slubcy-vcpu") for t in threading.enumerate()):
            time.sleep(0.005)
        time.sleep(0.05)
        import _thread
        _thread.interrupt_main()

    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        workloads.run("churn", cpus=2, seconds=30, policy="naive", progress=False)
    t.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("slubcy-vcpu")]
    assert workloads.run("churn", cpus=2, ops=10_000, policy="naive").metrics["ops"] > 0


def test_sigint_mid_compare_exits_130_and_keeps_finished_runs(tmp_path, tree_env):
    meta = tmp_path / "compare_churn_meta.json"
    rc, out, err = interrupt_when(["compare", "naive", "objcg", "--repeat", "3", "--seconds", "1",
                                   "--out", str(tmp_path), "--no-progress"],
                                  meta.exists, ROOT, tree_env)
    assert rc == 130, err
    assert "Traceback" not in err and err.startswith("slubcy: interrupted")
    m = json.loads(meta.read_text())
    assert m["partial"] is True and 1 <= m["runs_done"] < 6
    assert f"{m['runs_done']} of 6 runs kept" in err
    tidy = pd.read_csv(tmp_path / "compare_churn.csv")
    assert len(tidy) == m["runs_done"] * len(workloads.METRICS)
    assert results.load_compare(tmp_path).partial


def test_out_is_checked_before_any_run(tmp_path, monkeypatch, capsys):
    def no_run(*a, **kw):
        raise AssertionError("a run started before --out was checked")

    monkeypatch.setattr(workloads, "run", no_run)
    afile = tmp_path / "file"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["compare", "naive", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"slubcy: error: --out {out}") and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="not a directory"):
        compare.compare(["naive"], out=afile, progress=False)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes to read-only directories")
def test_out_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["compare", "naive", "--out", str(ro), "--no-progress"]) == 2
        assert "cannot write" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_quantiles():
    assert compare.quantiles([], 4) == []
    assert compare.quantiles([1.0, 2.0, 3.0, 4.0, 5.0], 4) == [
        (0.0, 1.0), (0.25, 2.0), (0.5, 3.0), (0.75, 4.0), (1.0, 5.0)]


def test_load_compare_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="slubcy compare --workload churn"):
        results.load_compare(tmp_path)


# -- the sweep -------------------------------------------------------------------------

def test_proportional_fit_on_synthetic_counts():
    rates, leaks, offl = [0, 1000, 2000, 4000], [0, 2, 4, 9], [5000, 1000, 1000, 1000]
    f = sweep.fit_proportional(rates, leaks, offl)
    assert f.slope == pytest.approx(15 / 7e6) and f.leaks == 15 and f.exposure == 7e6
    lo, hi = compare.poisson_ci(15, 7e6)
    assert (f.lo, f.hi) == pytest.approx((lo, hi))
    # the slope is the Poisson GLM's (identity link, no intercept) maximum
    ll = [stats.poisson.logpmf([2, 4, 9], b * np.array([1e6, 2e6, 4e6])).sum()
          for b in (f.slope * 0.9, f.slope, f.slope * 1.1)]
    assert ll[1] > ll[0] and ll[1] > ll[2]
    assert f.df == 2 and 0.05 < f.p_fit <= 1
    assert f.background_leaks == 0 and f.background_offlines == 5000
    assert f.per_1000(1000)[0] == pytest.approx(1000 * 1000 * 15 / 7e6)
    # counts that are not proportional are flagged
    bad = sweep.fit_proportional([1000, 10000], [40, 40], [1000, 1000])
    assert bad.p_fit < 0.001
    none = sweep.fit_proportional([1000], [0], [3000])
    assert none.slope == 0 and none.hi == pytest.approx(3.689 / 3e6, rel=1e-3)
    with pytest.raises(ValueError):
        sweep.fit_proportional([0], [0], [100])


def test_extrapolation_to_production():
    f = sweep.fit_proportional([1000], [10], [1000])         # 1e-5 per offline per (1/s)
    e = sweep.extrapolate(f, sweep.Scenario(offlines_per_day=10_000, preemptions_per_s=100))
    assert e["leaks_per_day"] == pytest.approx(10.0)
    lo, hi = compare.poisson_ci(10)
    assert (e["lo"], e["hi"]) == pytest.approx((lo, hi))
    assert e["p_any_per_day"] == pytest.approx(1 - math.exp(-10))
    assert "10,000 memory cgroups a day" in e["scenario"] and "100 preemptions/s" in e["scenario"]
    with pytest.raises(ValueError):
        sweep.Scenario(offlines_per_day=0)


def test_sweep_points_and_spec():
    runs = pd.DataFrame({"rate": [1000, 1000, 0], "offlines": [500, 1500, 4000],
                         "leaked_caches": [1, 4, 0]})
    pts = sweep.points(runs)
    assert list(pts.rate) == [0, 1000] and list(pts.leaks) == [0, 5]
    assert pts.leak_rate.iloc[1] == pytest.approx(2.5)
    assert pts.hi.iloc[1] == pytest.approx(1000 * compare.poisson_ci(5, 2000)[1])
    assert sweep.model_spec(0) is None
    assert sweep.model_spec(1000, "1ms", "slab_free:before_cmpxchg=0.1:20us") == \
        "slab_free:before_cmpxchg=0.1:20us,preempt=1000/s:1ms"
    assert sweep.parse_rates("0, 1000,3e3") == [0, 1000, 3000]
    for bad in ("0", "x", "1000,1000", "-5,100"):
        with pytest.raises(ValueError):
            sweep.parse_rates(bad)


def test_sweep_real_run_structure(tmp_path, capsys):
    s = sweep.leak_vs_preemption("naive", rates=[0, 2000], seconds=0.15, repeat=1,
                                 outlive=1.0, scenario=sweep.Scenario(10_000, 500))
    assert list(s.runs.columns) == ["rate", "run", "seed", "offlines", "leaked_caches",
                                    "seconds", "ops"]
    assert list(s.points.rate) == [0, 2000] and (s.points.offlines > 0).all()
    assert s.fit.background_offlines == s.points.offlines.iloc[0]
    assert s.extrapolation["preemptions_per_s"] == 500
    text = s.format()
    assert all(len(line) <= 100 for line in text.splitlines())
    flat = " ".join(text.split())
    assert "per day" in flat and "assumes:" in flat and "500 preemptions/s per CPU" in flat
    s.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="named points"):
        sweep.leak_vs_preemption(rates=[1000], preempt="preempt=10/s:1ms")
    assert main(["extrapolate", "--rates", "0,2000", "--seconds", "0.1", "--repeat", "1",
                 "--outlive", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "leaked caches per day" in out or "no leak seen" in out
    assert (tmp_path / "sweep_churn_naive_points.csv").exists()


@pytest.mark.parametrize("argv", [["run", "--ops", "0"], ["run", "--preempt", "bogus=1:1us"],
                                  ["compare", "nope"], ["race", "-p", "nope"],
                                  ["run", "-w", "churn", "-p", "barrier:later", "--ops", "10"],
                                  ["run", "--cpus", "0", "--ops", "10"],
                                  ["compare", "naive", "naive"],
                                  ["compare", "naive", "--repeat", "0"],
                                  ["compare", "naive", "--seconds", "0"],
                                  ["extrapolate", "--rates", "0"],
                                  ["extrapolate", "--policy", "nope"],
                                  ["extrapolate", "--slice", "0ms"],
                                  ["extrapolate", "--outlive", "2"],
                                  ["extrapolate", "--preemptions-per-s", "0"]])
def test_cli_bad_input_is_a_clear_error(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("slubcy: error: ")


def test_verdict_says_what_leaks():
    """A leaking policy's verdict names what its leaked caches are (the
    policy's leak_kind): parked by the race for naive, never unregistered
    for keep; a leak-free one says no leak."""
    rows = []
    for p, leaks in (("objcg", 0), ("naive", 30), ("keep", 2000)):
        for run in range(2):
            values = {m: 1.0 for m in workloads.METRICS}
            values.update(offlines=1000, leaked_caches=leaks, leak_rate=leaks)
            rows += [{"policy": p, "workload": "churn", "run": run, "seed": run, "cpus": 2,
                      "metric": m, "value": float(v)} for m, v in values.items()]
    names = ["objcg", "naive", "keep"]
    summary = compare.summarize(pd.DataFrame(rows), names)
    text = " ".join(" ".join(compare.verdicts(summary, names)).split())
    assert "objcg (baseline): no leak: 0 in 2,000 offlines" in text
    assert "naive: LEAKS 30/1000" in text and "what leaks: parked by the race" in text
    assert "what leaks: never unregistered" in text


@pytest.mark.parametrize("argv", [["run", "--seconds", "60", "--cpus", "4"],
                                  ["run", "-w", "churn", "-p", "naive", "--seconds", "60"]])
def test_sigint_mid_run_stops_the_workers_and_exits_130(tmp_path, argv, tree_env):
    """Ctrl-C while `slubcy run`'s workers run: they are stopped and joined,
    the exit status is 130, no traceback, well before --seconds."""
    err_path = tmp_path / "err"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slubcy.cli", *argv], cwd=ROOT, env=tree_env,
            stdout=subprocess.DEVNULL, stderr=err_file, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 60
            # the progress bar (on stderr) shows the workers are running
            while ("/60" not in err_path.read_text() and proc.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            assert proc.poll() is None, err_path.read_text()
            time.sleep(0.3)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = err_path.read_text()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "slubcy: interrupted" in err, err
    assert took < 20


@pytest.mark.slow
def test_seconds_bounds_wall_time_at_many_vcpus(tree_env):
    """--seconds bounds the run whatever the vCPU count: the workers wait at a
    start gate and are released together, none spins while the next ones
    start (256 vCPUs on this host's few cores: 71 s before the gate, ~1.4 s
    after on an idle host; the bound leaves room for a loaded one)."""
    code = """
import time, slubcy.workloads as w
t = time.monotonic()
r = w.run("fastpath", cpus=256, seconds=0.5, progress=False)
print(time.monotonic() - t, max(x["seconds"] for x in r.per_cpu))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=tree_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    wall, longest = map(float, proc.stdout.split())
    assert longest < 15, (wall, longest)
    assert wall < 20, (wall, longest)


def test_time_to_significance_finds_naives_leak_and_not_a_fixs():
    """make run's headline as a figure: naive's leak against objcg becomes
    significant at 1% within seconds; two fixes never differ (inf)."""
    from slubcy.analysis.compare import time_to_significance
    r = time_to_significance(seed=0, max_s=20.0)
    assert r["p"] < 0.01 and 0 < r["seconds"] < 25 and r["leaked"] > 0
    assert r["baseline_leaked"] == 0 and r["offlines"] > 100
    r = time_to_significance("reparent", max_s=0.6, slice_s=0.15)
    assert r["seconds"] == float("inf") and r["p"] == 1.0 and r["leaked"] == 0
    with pytest.raises(ValueError):
        time_to_significance("objcg", "objcg")
    with pytest.raises(ValueError):
        time_to_significance(alpha=1.5)
