"""slubcy sweep: a grid of runs on a real Dask cluster (a LocalCluster of
worker processes, and a scheduler and workers started as subprocesses on
127.0.0.1), into a Parquet dataset; failures, a killed worker, resuming,
and every kind of bad input refused before a cell runs."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slubcy import workloads
from slubcy.analysis import cluster, results
from slubcy.analysis.grid import AXIS_NAMES, Grid, cell_id, parse_seeds, run_kwargs
from slubcy.cli import main

from conftest import interrupt_when

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"policy": ["naive", "objcg"], "seed": "0:2", "seconds": 0.1, "cpus": [1]}
NMETRICS = len(workloads.METRICS)


def _cells_on_disk(out):
    return sorted(p.stem for p in (Path(out) / "cells").glob("*.parquet"))


def _check_dataset(out, grid):
    """Every cell of `grid` exactly once, each with a row per metric."""
    df = results.load_sweep(out)
    ids = {cell_id(c) for c in grid.cells()}
    assert set(df.cell) == ids and _cells_on_disk(out) == sorted(ids)
    assert (df.groupby("cell").metric.nunique() == NMETRICS).all()
    assert (df.groupby("cell").size() == NMETRICS).all()          # no duplicate rows
    return df


# --- the grid ------------------------------------------------------------------

def test_grid_axes_from_the_command_line_and_a_toml_file(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text('[grid]\npolicy = ["naive", "barrier"]\ncpus = [1, 2, 4]\nseed = "0:3"\n'
                    'seconds = 0.2\noutlive = [0.1, 0.5]\nhz = [250, "expedited"]\n')
    g = Grid.from_axes(toml=toml)
    assert g.size == 2 * 3 * 3 * 2 * 2
    assert g.varied["seed"] == (0, 1, 2) and g.varied["hz"] == ("250", "expedited")
    g2 = Grid.from_axes({"cpus": ["2"], "policy": "objcg"}, toml=toml)    # the command line wins
    assert g2.size == 1 * 1 * 3 * 2 * 2 and g2.varied["cpus"] == (2,)
    cells = g.cells()
    assert len({cell_id(c) for c in cells}) == len(cells)
    assert set(cells[0]) == set(AXIS_NAMES)
    kw = run_kwargs(next(c for c in cells if c["hz"] == "expedited"))
    assert kw["expedited"] and "hz" not in kw and kw["outlive"] in (0.1, 0.5)
    assert kw["preempt"] == workloads.MAIN_PREEMPT            # churn's default: the main job's
    assert g.estimate(2) == pytest.approx(len(cells) * (0.2 + 0.4) / 2)
    assert parse_seeds("3:6") == [3, 4, 5] and parse_seeds("1, 9") == [1, 9]


def test_a_trace_cell_takes_no_length_or_shape(tmp_path):
    trace = ROOT / "tests" / "traces" / "git-clone.perf.txt.xz"
    g = Grid.from_axes({"workload": ["churn", f"trace:{trace}"], "seconds": [0.1, 0.2],
                        "outlive": [0.5, 1.0]})
    cells = g.cells()
    assert g.size == len(cells) == 4 + 1              # churn 2 x 2, the trace once
    [tc] = [c for c in cells if c["workload"].startswith("trace:")]
    assert tc["seconds"] is None and tc["outlive"] is None
    kw = run_kwargs(tc)
    assert "seconds" not in kw and "ops" not in kw and "outlive" not in kw


@pytest.mark.parametrize("given, match", [
    ({"colour": ["red"]}, "unknown sweep parameter"),
    ({"policy": ["nope"]}, "nope"),
    ({"cpus": []}, "empty grid"),
    ({"seed": "5:5"}, "seed range"),
    ({"cpus": ["two"]}, "not a int"),
    ({"cpus": [0]}, "cpus"),
    ({"seconds": [-1]}, "seconds"),
    ({"ops": [10], "seconds": [1]}, "not both"),
    ({"hz": ["fast"]}, "hz"),
    ({"preempt": ["preempt=fast"]}, "preempt"),
    ({"workload": ["trace:/no/such/file"]}, "no such trace"),
    ({"workload": ["spin"]}, "workload"),
    ({"outlive": [2]}, "fraction"),
    ({"policy": ["naive", "naive"]}, "twice"),
    ({"hz": ["250", "0250"]}, "twice"),                   # one value, two spellings
    ({"slots": [0]}, ">= 1"),
    ({"reclaim_every": [0]}, ">= 1"),
    ({"lifetime": [4000]}, "3600"),
    ({"memory": [10 ** 7]}, "arena"),
    ({"seed": [2 ** 63]}, "2\\^63-1"),
])
def test_grid_rejects_bad_input(given, match):
    with pytest.raises(ValueError, match=match):
        Grid.from_axes(given)


def test_grid_values_are_exact_and_spelled_one_way(tmp_path, monkeypatch):
    g = Grid.from_axes({"seed": ["9007199254740993", 9007199254740992], "hz": ["0250"]})
    assert g.varied["seed"] == (9007199254740993, 9007199254740992) and g.varied["hz"] == ("250",)
    trace = ROOT / "tests" / "traces" / "git-clone.perf.txt.xz"
    monkeypatch.chdir(trace.parent)
    g = Grid.from_axes({"workload": ["trace:git-clone.perf.txt.xz", "larson"]})
    wl = {c["workload"]: c for c in g.cells()}
    assert f"trace:{trace}" in wl                       # absolute: workers may run elsewhere
    assert wl["larson"]["preempt"] == "none"            # the main job's preemption is churn's
    assert cluster.cell_timeout(wl["larson"]) == 60 and cluster.cell_timeout(wl[f"trace:{trace}"]) == 3600
    assert cluster.cell_timeout(wl["larson"], 5) == 5
    toml = tmp_path / "g.toml"
    toml.write_text("[grid]\nops = [1000]\n")
    assert Grid.from_axes({"seconds": [0.1]}, toml=toml).varied["seconds"] == (0.1,)
    assert "ops" not in Grid.from_axes({"seconds": [0.1]}, toml=toml).varied


def test_grid_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\npolicy = 1")
    with pytest.raises(ValueError, match="bad.toml"):
        Grid.from_axes(toml=bad)
    bad.write_text('[runs]\npolicy = "naive"\n')
    with pytest.raises(ValueError, match=r"\[grid\]"):
        Grid.from_axes(toml=bad)
    with pytest.raises(ValueError, match="missing.toml"):
        Grid.from_axes(toml=tmp_path / "missing.toml")


@pytest.mark.parametrize("args", [
    ["--param", "colour=red"],
    ["--policy", "naive,nope"],
    ["--cpus", ""],
    ["--seeds", "4:2"],
    ["--preempt", "preempt=1000"],
    ["--workers", "0"],
    ["--timeout", "0"],
])
def test_cli_bad_input_exits_2_before_any_cell_runs(tmp_path, capsys, args):
    out = tmp_path / "out"
    assert main(["sweep", "--out", str(out), "--no-progress", *args]) == 2
    assert "slubcy: error:" in capsys.readouterr().err
    assert not (out / "cells").exists() or not _cells_on_disk(out)


def test_cli_refuses_an_unwritable_out_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["sweep", "--out", str(blocker / "sub"), "--seeds", "0:1", "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_a_clear_error_within_10_s(tmp_path, capsys):
    t0 = time.monotonic()
    assert main(["sweep", "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9",
                 "--seconds", "0.1", "--no-progress"]) == 2
    assert time.monotonic() - t0 < 15
    assert "cannot reach it" in capsys.readouterr().err
    assert not _cells_on_disk(tmp_path / "out")


# --- a LocalCluster of 2 worker processes ------------------------------------------

@pytest.fixture(scope="module")
def local():
    from dask.distributed import Client, LocalCluster
    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40)
    client = Client(lc)
    yield client
    client.close()
    lc.close()


def test_local_cluster_sweep_writes_every_cell_once_and_resumes(local, tmp_path):
    g = Grid.from_axes(SMALL)
    s = cluster.run_sweep(g, tmp_path, client=local, progress=False)
    assert (s["planned"], s["ran"], s["skipped"], s["errors"]) == (4, 4, 0, 0)
    df = _check_dataset(tmp_path, g)
    assert (df.status == "ok").all()
    assert str(df.cpus.dtype) == "Int64" and str(df.seconds.dtype) == "float64"
    assert str(df.expedited.dtype) == "boolean" and set(df.hz) == {250}
    assert set(df.job_objects) == {workloads.CHURN_DEFAULTS["job_objects"]}   # what the run used
    assert not df.worker.str.endswith(f":{os.getpid()}").any()       # ran in worker processes
    by_cell = results.sweep_by_cell(df)
    assert len(by_cell) == 4 and (by_cell.throughput > 0).all()
    assert "measured_seconds" in by_cell and set(by_cell.seconds) == {0.1}
    # resume: only the missing cell runs again
    gone = _cells_on_disk(tmp_path)[0]
    (tmp_path / "cells" / f"{gone}.parquet").unlink()
    s = cluster.run_sweep(g, tmp_path, client=local, progress=False)
    assert (s["ran"], s["skipped"]) == (1, 3)
    _check_dataset(tmp_path, g)
    s = cluster.run_sweep(g, tmp_path, client=local, progress=False)
    assert (s["ran"], s["skipped"]) == (0, 4)


def test_a_failing_cell_is_recorded_and_the_others_run(local, tmp_path):
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is not a kmem trace\n")
    g = Grid.from_axes({"workload": ["churn", f"trace:{garbage}"], "seconds": 0.1, "cpus": [1]})
    s = cluster.run_sweep(g, tmp_path / "out", client=local, progress=False)
    assert (s["ran"], s["errors"]) == (2, 1)
    df = results.load_sweep(tmp_path / "out")
    bad = df[df.workload.str.startswith("trace:")]
    assert len(bad) == 1 and bad.status.iloc[0] == "error" and bad.error.iloc[0]
    assert bad.metric.isna().all()
    assert (df[df.workload == "churn"].status == "ok").all()


def test_sweep_by_cell_keeps_every_metric(local, tmp_path):
    g = Grid.from_axes({"workload": ["larson"], "seconds": 0.1, "cpus": [1]})
    cluster.run_sweep(g, tmp_path, client=local, progress=False)
    wide = results.sweep_by_cell(results.load_sweep(tmp_path))
    assert set(workloads.METRICS) - {"seconds"} <= set(wide.columns)
    assert wide.offline_p50_us.isna().all() and (wide.throughput > 0).all()


def test_a_cell_past_its_timeout_is_recorded_and_its_worker_restarted(local, tmp_path):
    g = Grid.from_axes({"seconds": 0.5, "cpus": [1], "seed": "0:2"})
    s = cluster.run_sweep(g, tmp_path, client=local, progress=False, timeout=0.05)
    assert (s["ran"], s["errors"]) == (2, 2)
    df = results.load_sweep(tmp_path)
    assert (df.status == "timeout").all() and df.error.str.contains("still running").all()
    local.wait_for_workers(2, timeout=30)
    g = Grid.from_axes({"seconds": 0.1, "cpus": [1]})          # the cluster works on
    assert cluster.run_sweep(g, tmp_path / "after", client=local, progress=False)["errors"] == 0


def test_a_killed_worker_is_replaced_and_every_cell_is_there_once(tmp_path):
    from dask.distributed import Client, LocalCluster
    g = Grid.from_axes({"policy": ["naive", "objcg"], "seed": "0:4", "seconds": 0.3, "cpus": [1]})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=50) as lc, Client(lc) as client:
        pids = client.run(os.getpid)
        box = {}
        th = threading.Thread(target=lambda: box.update(
            s=cluster.run_sweep(g, tmp_path, client=client, progress=False)))
        th.start()
        deadline = time.monotonic() + 60
        while not _cells_on_disk(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(next(iter(pids.values())), signal.SIGKILL)     # mid-sweep: others in flight
        th.join(120)
        assert not th.is_alive()
        assert set(client.run(os.getpid).values()) - set(pids.values())   # a new process
    assert box["s"]["ran"] == 8
    df = _check_dataset(tmp_path, g)
    assert (df.status == "ok").all(), df[df.status != "ok"].error.unique()


# --- a scheduler and workers as subprocesses, through --scheduler -----------------

def _spawn(args, env=None, cwd=ROOT):
    # (a worker started with -m has its working directory first on sys.path)
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=cwd,
                            env=dict(os.environ, **(env or {})),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def scheduler(tmp_path, request):
    """A dask scheduler on 127.0.0.1 and two workers of this tree, as
    subprocesses; yields (address, start_worker)."""
    procs = []
    info = tmp_path / "scheduler.json"
    procs.append(_spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(info)]))
    deadline = time.monotonic() + 60
    while not info.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    import json
    time.sleep(0.2)
    address = json.loads(info.read_text())["address"]

    def start_worker(pythonpath=str(ROOT), nanny=True):
        procs.append(_spawn(["worker", address, "--nthreads", "1", "--no-dashboard",
                             "--host", "127.0.0.1", *([] if nanny else ["--no-nanny"])],
                            env={"PYTHONPATH": pythonpath}, cwd=pythonpath))

    nanny = getattr(request, "param", True)
    start_worker(nanny=nanny)
    start_worker(nanny=nanny)
    from dask.distributed import Client
    with Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    try:
        yield address, start_worker, procs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_sweep_through_an_external_scheduler(scheduler, tmp_path, capsys):
    address, start_worker, _ = scheduler
    out = tmp_path / "out"
    assert main(["sweep", "--scheduler", address, "--policy", "naive,objcg", "--seeds", "0:2",
                 "--seconds", "0.1", "--cpus", "1", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 cells" in text and f"on {address}" in text
    _check_dataset(out, Grid.from_axes(SMALL))
    # a worker with another slubcy joins: the client refuses the cluster
    fake = tmp_path / "fake"
    (fake / "slubcy").mkdir(parents=True)
    (fake / "slubcy" / "__init__.py").write_text('__version__ = "0.0.0+other"\n')
    start_worker(str(fake))
    from dask.distributed import Client
    with Client(address, timeout="30s") as c:
        c.wait_for_workers(3, timeout=60)
    assert main(["sweep", "--scheduler", address, "--seconds", "0.1", "--cpus", "1",
                 "--out", str(tmp_path / "out2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0+other" in err and "another slubcy" in err
    assert not _cells_on_disk(tmp_path / "out2")


def test_sigint_mid_sweep_exits_130_and_keeps_finished_cells(tmp_path, tree_env):
    """Ctrl-C: the client stops, the cluster is closed, every cell written
    is whole, and the sweep started again runs only the others."""
    out = tmp_path / "out"
    argv = ["sweep", "--policy", "naive,objcg", "--seeds", "0:6", "--seconds", "0.3",
            "--cpus", "1", "--out", str(out), "--no-progress"]
    rc, _, err = interrupt_when(argv, lambda: bool(_cells_on_disk(out)), tmp_path, tree_env)
    assert rc == 130, err
    assert "slubcy: interrupted" in err and "Traceback" not in err
    kept = _cells_on_disk(out)
    assert 1 <= len(kept) < 12
    df = results.load_sweep(out)                    # every file is whole
    assert sorted(df.cell.unique()) == kept and (df.groupby("cell").size() == NMETRICS).all()
    s = cluster.run_sweep(Grid.from_axes({"policy": ["naive", "objcg"], "seed": "0:6",
                                          "seconds": 0.3, "cpus": [1]}),
                          out, n_workers=2, progress=False)
    assert (s["skipped"], s["ran"]) == (len(kept), 12 - len(kept))


def test_a_lost_scheduler_stops_the_sweep_and_records_nothing_false(scheduler, tmp_path):
    """The scheduler dies mid-sweep: the cells done are kept, the others are
    not recorded as failed (a resume runs them), and the error says so."""
    address, _, procs = scheduler
    g = Grid.from_axes({"policy": ["naive", "objcg"], "seed": "0:4", "seconds": 0.3, "cpus": [1]})
    box = {}

    def sweep():
        try:
            cluster.run_sweep(g, tmp_path, scheduler=address, progress=False)
        except cluster.SweepStopped as e:
            box["stopped"] = str(e)

    th = threading.Thread(target=sweep)
    th.start()
    deadline = time.monotonic() + 60
    while not _cells_on_disk(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    procs[0].kill()                                      # the scheduler
    th.join(120)
    assert not th.is_alive() and "stopped" in box and "resume" in box["stopped"]
    kept = _cells_on_disk(tmp_path)
    assert 1 <= len(kept) < 8
    df = results.load_sweep(tmp_path)
    assert (df.status == "ok").all()                     # nothing recorded as failed


@pytest.mark.parametrize("scheduler", [False], indirect=True, ids=["no-nanny"])
def test_a_hung_cell_on_a_worker_without_a_nanny_does_not_stop_the_sweep(scheduler, tmp_path):
    address, _, _ = scheduler
    g = Grid.from_axes({"seconds": [0.5, 0.1], "cpus": [1]})
    s = cluster.run_sweep(g, tmp_path, scheduler=address, progress=False, timeout=0.05)
    assert (s["ran"], s["errors"]) == (2, 2)
    assert (results.load_sweep(tmp_path).status == "timeout").all()
