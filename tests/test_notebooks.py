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
POLICY_NOTEBOOK = ROOT / "results" / "policy_comparison.ipynb"


def _asv(args, conf, home, tree=ROOT):
    # asv drops PYTHONPATH: ASV_PYTHONPATH makes its benchmark processes import
    # this tree, not whichever tree the shared venv's editable install points at
    env = dict(os.environ, HOME=str(home), SLUBCY_ASV_SECONDS="0.05", ASV_PYTHONPATH=str(tree))
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


def _dashboard():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import dashboard
    finally:
        sys.path.pop(0)
    return dashboard


def test_asv_publish_writes_a_dashboard_that_needs_no_network(asv_results, tmp_path):
    """`make dashboard`: asv's pages load jQuery, flot and Bootstrap from
    CDNs; after benchmarks/dashboard.py no page loads a script or a
    stylesheet from off the machine, and each one it loads is a file there."""
    r = _asv(["publish"], asv_results["conf"], asv_results["home"])
    assert r.returncode == 0, r.stdout + r.stderr
    html = asv_results["dir"].parent / "html"
    assert (html / "index.html").exists()
    assert json.loads((html / "index.json").read_text())["benchmarks"]
    dashboard = _dashboard()
    before = dashboard.remote_resources(html)
    assert any("flot" in url for urls in before.values() for url in urls), before
    assert dashboard.main([str(html), "--cache", str(tmp_path / "cache")]) == 0
    assert dashboard.remote_resources(html) == {}
    loaded = 0
    for page in html.rglob("*.html"):
        for _, url in dashboard.loaded_resources(page.read_text()):
            assert (page.parent / url).is_file(), (page, url)
            loaded += 1
    assert loaded >= 10
    vendor = html / "vendor"
    assert "jQuery" in (vendor / "jquery.min.js").read_text()
    assert "$.plot" in (vendor / "jquery.flot.min.js").read_text() or \
        "plot" in (vendor / "jquery.flot.min.js").read_text()
    assert "orderBars" in (vendor / "jquery.flot.orderBars.js").read_text()
    assert dashboard.main([str(html), "--cache", str(tmp_path / "cache")]) == 0   # idempotent


def test_dashboard_renders_offline_in_a_headless_browser(asv_results, tmp_path):
    """The localized dashboard loaded by Chromium (Debian's package) with
    every host but 127.0.0.1 unresolvable: asv's scripts run (the summary
    grid of benchmark plots is built) and nothing sends it to error.html.
    Runs where `chromium` is installed (apt-get install chromium); the
    static check above runs everywhere."""
    import functools
    import http.server
    import shutil
    import threading
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (apt-get install chromium); the static check still ran")
    html = tmp_path / "html"
    r = _asv(["publish", "--html-dir", str(html)], asv_results["conf"], asv_results["home"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _dashboard().main([str(html), "--cache", str(tmp_path / "cache")]) == 0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                              "--virtual-time-budget=5000", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        server.shutdown()
    assert "benchmark-plot" in dom and "time_fastpath_pairs" in dom, dom[:2000]
    assert "failed to load" not in dom and "airspeed velocity error" not in dom


def test_dashboard_refuses_a_remote_script_it_cannot_serve(tmp_path, capsys):
    (tmp_path / "index.html").write_text(
        '<html><script src="https://cdn.example.org/unknown-lib.min.js"></script></html>')
    assert _dashboard().main([str(tmp_path), "--cache", str(tmp_path / "cache")]) == 2
    assert "unknown-lib.min.js" in capsys.readouterr().err
    assert _dashboard().main([str(tmp_path / "missing")]) == 2


def test_every_tracked_figure_reads_lower_is_better(asv_results):
    """asv flags a larger value as a regression: no benchmark may track a
    rate, a speed-up or a met/unmet flag, and every one has a real unit."""
    meta = json.loads((asv_results["dir"] / "benchmarks.json").read_text())
    tracks = {n: b for n, b in meta.items() if isinstance(b, dict) and b.get("type") == "track"}
    assert len(tracks) >= 10
    for name, b in tracks.items():
        unit = b.get("unit") or ""
        assert unit and "unit" not in unit, name                       # no placeholder
        assert "/s" not in unit and unit not in ("ratio", "met", "x"), (name, unit)


def test_asv_compare_flags_a_slowdown_and_not_a_speedup(asv_results, tmp_path):
    """The regression gate's verdict on two commits' results: the fast path
    made 2x slower at one size is flagged worse (+), 2x faster at another
    better (-), the unchanged one not at all."""
    import shutil
    res = tmp_path / "results"
    shutil.copytree(asv_results["dir"], res)
    base = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    [head_file] = [p for p in (res / "slubcy-test").glob(asv_results["head"][:8] + "-*.json")]
    data = json.loads(head_file.read_text())
    name = "bench_slub.FastPath.time_fastpath_pairs"
    col = data["result_columns"].index("result")
    base_data = json.loads(json.dumps(data))
    base_data["commit_hash"] = base
    (res / "slubcy-test" / head_file.name.replace(asv_results["head"][:8], base[:8])).write_text(
        json.dumps(base_data))
    values = data["results"][name][col]                 # sizes 64, 192, 512
    data["results"][name][col] = [values[0] * 2, values[1] / 2, values[2]]
    for k in ("stats_ci_99_a", "stats_ci_99_b"):        # --quick: no spread to weigh
        if k in data["result_columns"]:
            data["results"][name][data["result_columns"].index(k)] = None
    head_file.write_text(json.dumps(data))
    conf = json.loads(Path(asv_results["conf"]).read_text())
    conf["results_dir"] = str(res)
    cpath = tmp_path / "asv.conf.json"
    cpath.write_text(json.dumps(conf))
    r = _asv(["compare", base, asv_results["head"], "--machine", "slubcy-test", "--factor", "1.1"],
             cpath, asv_results["home"])
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if "time_fastpath_pairs" in line]
    # a markdown table: | change | before | after | ratio | benchmark (parameter) |
    marks = {line.split("time_fastpath_pairs(")[1].split(")")[0]: line.split("|")[1].strip()
             for line in rows}
    assert marks == {"64": "+", "192": "-", "512": ""}, r.stdout


def _slowed_tree(tmp, pauses):
    """A copy of the package whose bench extension is built with
    SLUBCY_TEST_SLOW_FASTPATH=pauses (setup.py's test-only flag: that many
    pause instructions in every fast-path allocation)."""
    import shutil

    import numpy
    from setuptools import Distribution, Extension
    tree = tmp / "slowed"
    shutil.copytree(ROOT / "slubcy", tree / "slubcy", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "policies", tree / "policies",
                    ignore=shutil.ignore_patterns("__pycache__"))
    source = ROOT / "slubcy" / "bench.c"            # generated by the install's build
    assert source.is_file(), "build the tree first (make install)"
    ext = Extension("slubcy.bench", [str(source)],
                    include_dirs=[str(ROOT / "slubcy"), numpy.get_include()],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                                   ("SLUBCY_TEST_SLOW_FASTPATH", str(pauses))],
                    extra_compile_args=["-O2"])
    cmd = Distribution({"name": "slowed", "ext_modules": [ext]}).get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(tree), str(tmp / "build")
    cmd.force = True                    # the copied .so is newer than bench.c
    cmd.ensure_finalized()
    cmd.run()
    return tree


def test_asv_flags_a_slowed_build_and_not_a_faster_one(asv_results, tmp_path):
    """The regression gate on real measurements of two builds: the fast path
    built with SLUBCY_TEST_SLOW_FASTPATH (pauses in every allocation),
    recorded as the parent commit's results, against the normal build's
    results for HEAD.  Slowed after normal is flagged worse (+) at every
    size; normal after slowed (a faster build) is never flagged worse."""
    import shutil
    res = tmp_path / "results"
    shutil.copytree(asv_results["dir"], res)
    conf = json.loads(Path(asv_results["conf"]).read_text())
    conf["results_dir"] = str(res)
    cpath = tmp_path / "asv.conf.json"
    cpath.write_text(json.dumps(conf))
    base = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = _slowed_tree(tmp_path, 16)
    r = _asv(["run", "-E", "existing:same", "--machine", "slubcy-test", "--launch-method",
              "spawn", "--set-commit-hash", base, "--quick", "--show-stderr",
              "-b", r"FastPath\.time_fastpath_pairs"], cpath, asv_results["home"], tree=tree)
    assert r.returncode == 0, r.stdout + r.stderr

    def marks(before, after):
        r = _asv(["compare", before, after, "--machine", "slubcy-test", "--factor", "1.1"],
                 cpath, asv_results["home"])
        assert r.returncode == 0, r.stdout + r.stderr
        rows = [line for line in r.stdout.splitlines() if "time_fastpath_pairs(" in line]
        return {line.split("time_fastpath_pairs(")[1].split(")")[0]: line.split("|")[1].strip()
                for line in rows}

    head = asv_results["head"]
    assert marks(head, base) == {"64": "+", "192": "+", "512": "+"}     # slowed: worse
    assert set(marks(base, head).values()) == {"-"}                    # faster: better


def test_load_asv_keeps_environments_apart(asv_results, tmp_path):
    """Two environments' results for one commit are two rows each, told
    apart by `env`, never averaged."""
    import shutil
    res = tmp_path / "results"
    shutil.copytree(asv_results["dir"], res)
    [head_file] = list((res / "slubcy-test").glob(asv_results["head"][:8] + "-*.json"))
    data = json.loads(head_file.read_text())
    data["env_name"] = "virtualenv-py3.11-other"
    (res / "slubcy-test" / f"{asv_results['head'][:8]}-virtualenv-py3.11-other.json").write_text(
        json.dumps(data))
    df = results.load_asv(res)
    fast = df[df.benchmark == "bench_slub.FastPath.time_fastpath_pairs"]
    assert set(fast.env) == {data["env_name"], json.loads(head_file.read_text())["env_name"]}
    assert (fast.groupby(["env", "size"]).size() == 1).all()
    assert len(fast) == 6 and fast.python.notna().all()


def test_load_asv_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make bench"):
        results.load_asv(tmp_path)


def test_every_notebook_is_executed_by_a_test():
    assert [p.name for p in NOTEBOOKS] == ["policy_comparison.ipynb", "sweep.ipynb"]


def test_sweep_notebook_executes(tmp_path, monkeypatch):
    """With no dataset in SLUBCY_SWEEP_DIR the notebook runs a small grid on a
    LocalCluster, then plots the leak rate against the preemption rate with
    exact intervals, throughput against vCPUs and retained memory against
    the churn rate."""
    monkeypatch.setenv("SLUBCY_SWEEP_DIR", str(tmp_path))
    monkeypatch.setenv("SLUBCY_FRESH_SECONDS", "0.1")
    monkeypatch.setenv("SLUBCY_FRESH_SEEDS", "0:1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = ROOT / "results" / "sweep.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors, errors
    df = results.load_sweep(tmp_path)
    assert df.cell.nunique() == 16 and (df.status == "ok").all()
    for fig in ("sweep_leak_vs_preemption", "sweep_throughput_vs_vcpus", "sweep_retained_vs_churn"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 10_000, fig
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.output_type == "stream")
    from slubcy import workloads
    rows = 16 * len(workloads.METRICS)
    assert "running 16 cells on a LocalCluster" in text and f"16 cells, {rows} rows" in text


@pytest.mark.parametrize("path", [POLICY_NOTEBOOK], ids=[POLICY_NOTEBOOK.name])
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
