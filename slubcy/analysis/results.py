"""Load what slubcy writes into pandas DataFrames, for the notebooks.

    from slubcy.analysis import results
    runs = results.load_compare("results")          # `slubcy compare --out results`
    asv = results.load_asv(".asv/results")          # `make bench`

`load_compare` returns a `CompareResults` of four frames: `tidy` (one row per
run × metric), `summary` (per policy × metric: mean and 95% interval -- for
the leak counts the exact Poisson interval of all runs pooled --, ratio and p
against the baseline), `series` (memcg counts and slab pages sampled over
each run) and `offline` (quantiles of each run's offline latency), and the
`meta` of compare_W_meta.json (`partial` while the compare ran or when it
was interrupted).  `load_asv` flattens asv's result files
(format version 2) into one row per benchmark × parameter combination.
"""
import ast
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# the files `slubcy compare --out DIR` writes for workload W
COMPARE_FILES = {"tidy": "compare_{w}.csv", "summary": "compare_{w}_summary.csv",
                 "series": "compare_{w}_series.csv", "offline": "compare_{w}_offline_us.csv"}


@dataclass
class CompareResults:
    tidy: pd.DataFrame
    summary: pd.DataFrame
    series: pd.DataFrame
    offline: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def policies(self):
        """Policies in the order they were compared (the first is the baseline)."""
        return self.meta.get("policies") or list(dict.fromkeys(self.tidy.policy))

    @property
    def partial(self):
        """True if the compare was interrupted (or is still running): only the
        finished runs are in the files."""
        return bool(self.meta.get("partial", False))

    def wide(self):
        """One row per run, one column per metric."""
        return (self.tidy.pivot_table(index=["policy", "run", "seed", "cpus"], columns="metric",
                                      values="value", sort=False)
                .reset_index().rename_axis(columns=None))


def compare_paths(directory, workload="churn"):
    directory = Path(directory)
    return {k: directory / v.format(w=workload) for k, v in COMPARE_FILES.items()}


def has_compare(directory, workload="churn"):
    return all(p.exists() for p in compare_paths(directory, workload).values())


def load_compare(directory, workload="churn"):
    """The four frames of a `slubcy compare` output directory."""
    paths = compare_paths(directory, workload)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no compare results for {workload!r}: missing {', '.join(missing)}"
                                f" (run `slubcy compare --workload {workload} --out {directory}`)")
    meta_path = Path(directory) / f"compare_{workload}_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return CompareResults(**{k: pd.read_csv(p) for k, p in paths.items()}, meta=meta)


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_asv(results_dir=".asv/results"):
    """Every asv result under `results_dir` as one DataFrame: machine, env
    (asv's environment name: two environments of one commit are two rows,
    never averaged), python, commit, date, benchmark, type, unit, one column per parameter name (values parsed
    from asv's repr strings), value (NaN when skipped or failed), and the 99%
    confidence bounds asv recorded (time benchmarks only)."""
    results_dir = Path(results_dir)
    meta_path = results_dir / "benchmarks.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no asv results in {results_dir} (run `make bench`)")
    meta = json.loads(meta_path.read_text())
    rows = []
    for path in sorted(results_dir.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text())
        if data.get("version") != 2:
            raise ValueError(f"{path}: asv result format {data.get('version')!r}, expected 2")
        columns = data["result_columns"]
        for name, packed in data["results"].items():
            r = dict(zip(columns, packed))
            info = meta.get(name, {})
            names = info.get("param_names", [])
            combos = list(itertools.product(*r.get("params") or [])) or [()]
            values = r["result"] if isinstance(r["result"], list) else [r["result"]]
            lo = r.get("stats_ci_99_a") or [None] * len(values)
            hi = r.get("stats_ci_99_b") or [None] * len(values)
            for combo, value, a, b in zip(combos, values, lo, hi):
                row = {"machine": data["params"].get("machine", path.parent.name),
                       "env": data.get("env_name", path.stem.split("-", 1)[-1]),
                       "python": data["params"].get("python", data.get("python")),
                       "commit": data["commit_hash"],
                       "date": pd.to_datetime(data.get("date"), unit="ms"),
                       "benchmark": name, "type": info.get("type"), "unit": info.get("unit")}
                row.update({k: _literal(v) for k, v in zip(names, combo)})
                row.update(value=float("nan") if value is None else float(value),
                           ci99_lo=a, ci99_hi=b)
                rows.append(row)
    df = pd.DataFrame(rows)
    # a parameter other benchmarks lack would turn its ints into floats
    params = {n for info in meta.values() if isinstance(info, dict)
              for n in info.get("param_names", [])}
    for col in params & set(df.columns):
        raw = [r[col] for r in rows if col in r]
        if raw and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            df[col] = df[col].astype("Int64")
    return df


def load_sweep(directory):
    """`slubcy sweep --out DIR`'s dataset as one frame: a row per cell ×
    metric, every parameter a typed column (pandas' nullable Int64 and
    boolean where a value may be missing), `status` ("ok", "error",
    "timeout") and `error` for a cell that failed (one row, no metric)."""
    import pyarrow.parquet as pq
    from slubcy.analysis.cluster import SCHEMA
    cells = Path(directory) / "cells"
    if not cells.is_dir():
        raise FileNotFoundError(f"{directory}: no sweep here (no cells/ directory)")
    files = sorted(cells.glob("*.parquet"))
    if not files:
        return SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype).astype(
            {f.name: _NULLABLE.get(str(f.type), "object") for f in SCHEMA})
    table = pq.ParquetDataset(files, schema=SCHEMA).read()
    return table.to_pandas().astype({f.name: _NULLABLE[str(f.type)] for f in SCHEMA
                                     if str(f.type) in ("int64", "bool")})


_NULLABLE = {"int64": "Int64", "bool": "boolean", "double": "float64", "string": "object"}


def sweep_by_cell(df):
    """load_sweep's frame with one row per cell that ran: its parameters
    and a column per metric (a metric named like a parameter gets the
    prefix `measured_`: `seconds` is the grid's, `measured_seconds` the
    run's)."""
    from slubcy.analysis.grid import AXIS_NAMES
    ok = df[df.status == "ok"]
    params = ["cell"] + [c for c in ok.columns if c in AXIS_NAMES or c == "expedited"]
    wide = ok.pivot_table(index="cell", columns="metric", values="value", aggfunc="first",
                          observed=True, dropna=False)
    wide.columns = [f"measured_{c}" if c in params else c for c in wide.columns]
    return ok.drop_duplicates("cell")[params].merge(wide.reset_index(), on="cell")
