"""slubcy compare: interleaved runs, tidy CSV, plot, table means = CSV means."""
import math

import pytest

import pandas as pd

from slubcy import compare, results, workloads
from slubcy.cli import main


def test_compare_writes_csv_and_plot(tmp_path, capsys):
    assert main(["compare", "naive", "objcg", "--workload", "churn", "--repeat", "2",
                 "--ops", "40000", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    tidy = pd.read_csv(tmp_path / "compare_churn.csv")
    assert set(tidy.metric) == set(workloads.METRICS)
    assert set(tidy.policy) == {"naive", "objcg"}
    assert len(tidy) == 2 * 2 * len(workloads.METRICS)
    assert (tmp_path / "compare_churn.png").stat().st_size > 10_000
    summary = pd.read_csv(tmp_path / "compare_churn_summary.csv")
    for (policy, metric), grp in tidy.groupby(["policy", "metric"]):
        row = summary[(summary.policy == policy) & (summary.metric == metric)].iloc[0]
        if grp.value.notna().any():
            assert math.isclose(row["mean"], grp.value.mean(), rel_tol=1e-9, abs_tol=1e-12)
    assert "offline_p99_us" in out and "ratio to naive" in out
    # the notebooks' loader reads the same files back
    runs = results.load_compare(tmp_path)
    assert runs.policies == ["naive", "objcg"]
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


def test_load_compare_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="slubcy compare --workload churn"):
        results.load_compare(tmp_path)


def test_quantiles():
    assert compare.quantiles([], 4) == []
    assert compare.quantiles([1.0, 2.0, 3.0, 4.0, 5.0], 4) == [
        (0.0, 1.0), (0.25, 2.0), (0.5, 3.0), (0.75, 4.0), (1.0, 5.0)]


def test_interleaved_order_and_statistics():
    assert compare.t975(1) == 12.706 and compare.t975(100) == 1.96
    m, ci = compare.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(ci, 4.303 * 1.0 / math.sqrt(3))
    assert compare.welch_significant([1, 1.1, 0.9, 1.05], [5, 5.1, 4.9, 5.05]) is True
    assert compare.welch_significant([1, 2, 3], [1.5, 2.5, 2]) is False
    assert compare.welch_significant([1], [2, 3]) is None


@pytest.mark.parametrize("argv", [["run", "--ops", "0"], ["run", "--preempt", "bogus=1:1us"],
                                  ["compare", "nope"], ["race", "-p", "nope"],
                                  ["run", "-w", "churn", "-p", "barrier:later", "--ops", "10"],
                                  ["run", "--cpus", "0", "--ops", "10"]])
def test_cli_bad_input_is_a_clear_error(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("slubcy: error: ")
