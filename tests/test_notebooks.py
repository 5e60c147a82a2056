"""asv and the results notebooks, for real: `asv check` on the suites, one
quick asv run whose result file the notebooks' loader reads back, and every
notebook in results/ executed headless by nbclient on a short fresh run."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from slubcy.analysis import results

pytestmark = pytest.mark.slow      # asv runs and a notebook executed: tens of seconds
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "results").glob("*.ipynb"))


def _asv(args, conf, home):
    # asv drops PYTHONPATH: ASV_PYTHONPATH makes its benchmark processes import
    # this tree, not whichever tree the shared venv's editable install points at
    env = dict(os.environ, HOME=str(home), SLUBCY_ASV_SECONDS="0.05", ASV_PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "asv", *args, "--config", str(conf)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def asv_results(tmp_path_factory):
    """The project's asv.conf.json with results and html moved to a temp dir;
    one quick run of two small benchmarks, recorded for HEAD."""
    from asv.util import load_json
    tmp = tmp_path_factory.mktemp("asv")
    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    # the branch checked out (a clone of a feature branch has no local main)
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"),
                results_dir=str(tmp / "results"), html_dir=str(tmp / "html"),
                env_dir=str(tmp / "env"), branches=[branch])
    path = tmp / "asv.conf.json"
    path.write_text(json.dumps(conf))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    check = _asv(["check", "-E", "existing:same"], path, tmp)
    assert check.returncode == 0, check.stdout + check.stderr
    r = _asv(["machine", "--yes", "--machine", "slubcy-test"], path, tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _asv(["run", "-E", "existing:same", "--machine", "slubcy-test", "--launch-method",
              "spawn", "--set-commit-hash", head, "--quick", "--show-stderr",
              "-b", r"FastPath\.time_fastpath_pairs|Offline\.time_memcg_offline"], path, tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    return {"dir": tmp / "results", "head": head, "check": check.stdout, "conf": path, "home": tmp}


def test_asv_check_passes(asv_results):
    assert "No problems found" in asv_results["check"]


def test_quick_asv_run_is_read_back(asv_results):
    df = results.load_asv(asv_results["dir"])
    assert set(df.commit) == {asv_results["head"]} and set(df.machine) == {"slubcy-test"}
    fast = df[df.benchmark == "bench_slub.FastPath.time_fastpath_pairs"]
    assert sorted(fast["size"]) == [64, 192, 512]
    assert str(df["size"].dtype) == "Int64"         # ints, though Offline's rows lack a size
    assert (fast.unit == "seconds").all()
    # 100,000 alloc+free pairs: between 10 us (0.1 ns a pair) and 1 s (10 us a pair)
    assert fast.value.between(1e-5, 1.0).all()
    off = df[df.benchmark == "bench_policies.Offline.time_memcg_offline"]
    assert set(off.policy) == {"keep", "naive", "barrier", "barrier:sync", "reparent",
                               "reap", "reap:percpu", "objcg"}
    assert off.value.notna().all() and (off.value > 0).all()


def test_asv_publish_writes_the_dashboard(asv_results):
    r = _asv(["publish"], asv_results["conf"], asv_results["home"])
    assert r.returncode == 0, r.stdout + r.stderr
    html = asv_results["dir"].parent / "html"
    assert (html / "index.html").exists()
    assert json.loads((html / "index.json").read_text())["benchmarks"]


def test_load_asv_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench"):
        results.load_asv(tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, asv_results, monkeypatch):
    """With no results in SLUBCY_RESULTS the notebook makes a short fresh run,
    then plots it and the quick asv results."""
    monkeypatch.setenv("SLUBCY_RESULTS", str(tmp_path))
    monkeypatch.setenv("SLUBCY_ASV_RESULTS", str(asv_results["dir"]))
    monkeypatch.setenv("SLUBCY_FRESH_SECONDS", "0.1")
    monkeypatch.setenv("SLUBCY_FRESH_REPEAT", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    assert results.has_compare(tmp_path)
    for fig in ("policy_throughput_leaks", "policy_retained_over_time", "policy_offline_latency",
                "grace_period_models", "leak_vs_preemption"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 10_000, fig
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.output_type == "stream")
    assert "no comparison in" in text and "policies: objcg, keep, naive" in text
    assert "results, 1 commit(s), machines: slubcy-test" in text
