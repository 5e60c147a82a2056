"""Run a sweep's cells on dask.distributed and keep them as a Parquet dataset.

    from slubcy.analysis import cluster, grid
    g = grid.Grid.from_axes({"policy": ["naive", "objcg"], "seed": "0:4", "seconds": 0.2})
    cluster.run_sweep(g, "out/sweep")                 # a LocalCluster sized to the cores
    cluster.run_sweep(g, "out/sweep", scheduler="tcp://10.0.0.1:8786")
    slubcy.analysis.results.load_sweep("out/sweep")   # one row per cell x metric

- **Where cells run.** Each cell is one `workloads.run` on a fresh Machine in
  a worker process (`run_cell`).  By default a `LocalCluster` of
  `cores // vCPUs` worker processes with one thread each, so that runs do
  not share cores (a cell with more vCPUs than the host has cores gets a
  worker of its own and runs oversubscribed, as `slubcy run --cpus` would).
  With `scheduler=`, an existing cluster: every worker must import slubcy of
  this client's version (checked first; a mismatch is refused).
- **Failures.**  A cell that raises is recorded with its error; one that
  runs past `timeout` seconds is recorded as timed out and its worker
  restarted.  A worker that dies is replaced by its nanny and the scheduler
  runs its cell again elsewhere (dask's own retry of lost tasks).
- **The dataset.**  `OUT/cells/<cell id>.parquet`, written by the client as
  each cell finishes (atomically: a temporary file renamed), one row per
  metric with every parameter a typed column; `OUT/sweep.json` the grid.
  A cell id is the hash of its parameters, so a cell run twice (a worker
  lost after finishing it) is one file, and a sweep started again on the
  same OUT skips the cells already there (errors included: delete a file
  to run its cell again).
"""
import json
import math
import os
import socket
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

import slubcy
from slubcy import workloads
from slubcy.analysis import grid as gridmod

CONNECT_TIMEOUT = "10s"


class SweepStopped(RuntimeError):
    """The sweep cannot go on for a reason that is not a cell's own (the
    scheduler lost, a worker with another slubcy): nothing is recorded for
    the cells left, so running the sweep again resumes with them."""


def cell_timeout(cell, given=None):
    """Seconds before a cell counts as hung: `given`, else 10x its length
    + 30 s (at least 60); a run of `ops` or a trace, whose length is not
    known before, an hour."""
    if given is not None:
        return given
    if cell["seconds"] is None:
        return 3600.0
    return max(60.0, 10 * cell["seconds"] + 30)


def _schema():
    fields = [("cell", pa.string())]
    for name in gridmod.AXIS_NAMES:
        kind = gridmod.AXES[name][0]
        if name == "hz":
            fields += [("hz", pa.int64()), ("expedited", pa.bool_())]
        else:
            fields.append((name, {int: pa.int64(), float: pa.float64(), str: pa.string()}[kind]))
    fields += [("status", pa.string()), ("error", pa.string()), ("metric", pa.string()),
               ("value", pa.float64()), ("wall_s", pa.float64()), ("worker", pa.string()),
               ("slubcy_version", pa.string())]
    return pa.schema(fields)


SCHEMA = _schema()


def run_cell(cell, timeout=None):
    """On a worker: run one cell (a fresh Machine) and return its record:
    the cell, status ("ok", "error", "timeout"), error text, metrics, wall
    time, worker.  A run still going after `timeout` seconds is reported as
    timed out (its thread is left to the worker's restart)."""
    out = {"cell": cell, "status": "ok", "error": None, "metrics": {},
           "worker": f"{socket.gethostname()}:{os.getpid()}", "version": slubcy.__version__}
    try:
        from distributed import get_worker
        out["worker_address"] = get_worker().address
    except (ImportError, ValueError):       # called outside a worker
        out["worker_address"] = None
    box = {}

    def target():
        try:
            box["result"] = workloads.run(**gridmod.run_kwargs(cell))
        except BaseException as e:          # noqa: BLE001 - recorded with the cell
            box["error"] = f"{type(e).__name__}: {e}"

    t0 = time.perf_counter()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    out["wall_s"] = time.perf_counter() - t0
    if th.is_alive():
        out["status"], out["error"] = "timeout", f"still running after {timeout:g} s"
    elif "error" in box:
        out["status"], out["error"] = "error", box["error"]
    else:
        out["metrics"] = {k: (math.nan if v is None else float(v))
                          for k, v in box["result"].metrics.items()}
        out["params"] = dict(box["result"].params)
    return out


def record_table(rec):
    """A cell's record as rows of SCHEMA: one per metric (one row with no
    metric for a cell that failed)."""
    cell = rec["cell"]
    base = {"cell": gridmod.cell_id(cell)}
    for name in gridmod.AXIS_NAMES:
        if name == "hz":
            hz = cell.get("hz")
            base["hz"] = None if hz in (None, "expedited") else int(hz)
            base["expedited"] = hz == "expedited"
        else:
            base[name] = cell.get(name)
    # a shape parameter the grid left alone: the value the run used
    used = rec.get("params") or {}
    for name in workloads.SHAPE_PARAMS:
        if base[name] is None and used.get(name) is not None:
            base[name] = gridmod.AXES[name][0](used[name])
    base.update(status=rec["status"], error=rec["error"], wall_s=rec.get("wall_s"),
                worker=rec.get("worker"), slubcy_version=rec.get("version"))
    metrics = rec["metrics"] or {None: math.nan}
    rows = [dict(base, metric=k, value=v) for k, v in metrics.items()]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class Store:
    """A sweep directory: cells/<id>.parquet and sweep.json."""

    def __init__(self, out):
        from slubcy.analysis.compare import check_out
        self.out = check_out(out)
        self.cells_dir = self.out / "cells"
        try:
            self.cells_dir.mkdir(exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None

    def done(self):
        return {p.stem for p in self.cells_dir.glob("*.parquet")}

    def write(self, rec):
        cid = gridmod.cell_id(rec["cell"])
        tmp = self.cells_dir / f".{cid}.{os.getpid()}.tmp"
        pq.write_table(record_table(rec), tmp)
        os.replace(tmp, self.cells_dir / f"{cid}.parquet")
        return cid

    def write_meta(self, grid, planned, scheduler):
        meta = {"grid": grid.to_dict(), "cells": planned, "scheduler": scheduler,
                "slubcy_version": slubcy.__version__}
        tmp = self.out / ".sweep.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.out / "sweep.json")


def local_workers(grid, cores=None):
    """Worker processes for a LocalCluster: cores // the grid's largest vCPU
    count, at least 1 (an oversubscribed cell runs alone)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // grid.max_cpus())


def connect(scheduler=None, n_workers=None):
    """(client, cluster or None): a Client of `scheduler` (a clear error if
    it cannot be reached within 10 s, or if a worker runs another slubcy),
    or of a new LocalCluster of `n_workers` processes on loopback."""
    from dask.distributed import Client, LocalCluster
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=40)
        return Client(cluster), cluster
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise ValueError(f"--scheduler {scheduler}: cannot reach it within "
                         f"{CONNECT_TIMEOUT} ({e})") from None
    try:
        check_workers(client)
    except BaseException:
        client.close()
        raise
    return client, None


def check_workers(client, wait=10.0):
    """ValueError unless the cluster has workers and each runs this slubcy."""
    deadline = time.monotonic() + wait
    while not client.scheduler_info()["workers"]:
        if time.monotonic() > deadline:
            raise ValueError("the scheduler has no workers")
        time.sleep(0.1)
    try:
        # a lambda goes by value (cloudpickle): a worker without slubcy, or
        # with another one, can still run it and answer
        versions = client.run(lambda: __import__("slubcy").__version__)
    except ImportError as e:
        raise ValueError(f"a worker cannot import slubcy ({e}): install it there") from None
    wrong = {w: v for w, v in versions.items() if v != slubcy.__version__}
    if wrong:
        raise ValueError("workers with another slubcy than this client's "
                         f"{slubcy.__version__}: " + ", ".join(f"{w} has {v}" for w, v in wrong.items()))


def _restart(client, address):
    """Restart the worker a hung cell is still running on (its thread cannot
    be stopped otherwise); a worker without a nanny cannot be, and is left."""
    import sys
    try:
        client.restart_workers([address], timeout=60, raise_for_error=False)
    except Exception as e:                  # noqa: BLE001 - the sweep goes on
        print(f"sweep: could not restart {address} ({type(e).__name__}: {e}); its hung "
              "cell keeps a thread busy there", file=sys.stderr)


def run_sweep(grid, out, scheduler=None, n_workers=None, timeout=None, progress=True,
              client=None):
    """Run every cell of `grid` not already in `out`; returns
    {"planned", "skipped", "ran", "errors", "seconds"}.  `client`: use this
    dask client (tests); else connect() from `scheduler`/`n_workers`."""
    from dask.distributed import as_completed
    store = Store(out)
    cells = grid.cells()
    done = store.done()
    todo = [c for c in cells if gridmod.cell_id(c) not in done]
    store.write_meta(grid, len(cells), scheduler)
    summary = {"planned": len(cells), "skipped": len(cells) - len(todo), "ran": 0,
               "errors": 0, "seconds": 0.0}
    if not todo:
        return summary
    own = client is None
    cluster = None
    if own:
        client, cluster = connect(scheduler, n_workers or local_workers(grid))
    t0 = time.monotonic()
    bar = None
    try:
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="cell", desc="sweep")
        from distributed import KilledWorker
        futures = [client.submit(run_cell, c, cell_timeout(c, timeout),
                                 key=f"cell-{gridmod.cell_id(c)}", pure=False) for c in todo]
        cell_of = {f.key: c for f, c in zip(futures, todo)}
        for fut in as_completed(futures):
            try:
                rec = fut.result()
            except KilledWorker as e:       # the cell killed its worker each time: its own
                rec = {"cell": cell_of[fut.key], "status": "error",
                       "error": f"KilledWorker: {e}", "metrics": {}}
            except Exception as e:          # noqa: BLE001 - cancelled, connection lost...
                raise SweepStopped(f"stopped: {type(e).__name__}: {e}; {summary['ran']} cells "
                                   "of this run kept, the others not run (run the sweep "
                                   "again to resume)") from None
            if rec.get("version") not in (None, slubcy.__version__):
                raise SweepStopped(f"stopped: worker {rec.get('worker')} runs slubcy "
                                   f"{rec['version']}, this client {slubcy.__version__}; its "
                                   "cell is not kept (run the sweep again to resume)")
            store.write(rec)
            summary["ran"] += 1
            if rec["status"] != "ok":
                summary["errors"] += 1
                if rec["status"] == "timeout" and rec.get("worker_address"):
                    _restart(client, rec["worker_address"])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    summary["seconds"] = time.monotonic() - t0
    return summary
