"""A parameter sweep's grid: every run parameter with its values, expanded
to cells (one `workloads.run` each), checked before anything runs.

    g = Grid.from_axes({"policy": ["naive", "objcg"], "cpus": [1, 2],
                        "seed": range(0, 20), "seconds": [0.2]})
    g.cells()            # [{'policy': 'naive', 'workload': 'churn', 'cpus': 1, ...}, ...]
    g.estimate(slots=2)  # seconds, on 2 worker processes

Axes (each a list of values; a scalar is a list of one):

- policy, workload (a name or trace:FILE), cpus, seconds or ops (one of
  the two), memory (MiB), seed ("A:B" is range(A, B)), preempt (a spec as
  `slubcy run --preempt` takes, "none", or "main": the main job's,
  workloads.MAIN_PREEMPT, churn's default), hz (ticks per second, or
  "expedited"), and churn's shape parameters (workloads.SHAPE_PARAMS).

A TOML file gives the same axes in a [grid] table; the command line's
override the file's.  Every value is checked when the grid is built (a bad
policy, spec, number or missing trace file is a ValueError naming it), and
a grid with an empty axis is an error.
"""
import hashlib
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass

from slubcy import workloads
from slubcy.machine import MAX_ARENA

# Each axis: its type and its default (a list of values).  A cell's
# parameters are typed columns of the sweep's dataset in this order.
AXES = {
    "policy": (str, ["objcg"]),
    "workload": (str, ["churn"]),
    "cpus": (int, [2]),
    "seconds": (float, [0.5]),
    "ops": (int, []),
    "memory": (int, []),                # MiB; [] = the workload's default
    "seed": (int, [0]),
    "preempt": (str, ["main"]),
    "hz": (str, ["250"]),
    "slub": (str, ["4.0"]),             # allocator generation (Machine(slub=...))
    **{name: (type(workloads.CHURN_DEFAULTS[name]), []) for name in workloads.SHAPE_PARAMS},
}
AXIS_NAMES = tuple(AXES)
MAX_CELLS = 1_000_000
# What a cell costs besides its run: a fresh Machine (mmap, caches), the
# churn policy's kworker and RCU threads, the teardown (measured: 0.2-0.4 s).
CELL_OVERHEAD_S = 0.4
MAX_MEMORY_MIB = MAX_ARENA >> 20              # the arena's limit (Machine)
MAX_SEED = (1 << 63) - 1


def parse_seeds(text):
    """'0:20' -> range(0, 20); '1,5,9' -> [1, 5, 9]."""
    text = str(text).strip()
    if ":" in text:
        a, _, b = text.partition(":")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            raise ValueError(f"bad seed range {text!r}: A:B with integers A < B") from None
        if lo < 0 or hi <= lo:
            raise ValueError(f"bad seed range {text!r}: needs 0 <= A < B")
        return list(range(lo, hi))
    return [int(x) for x in split_values(text)]


def split_values(text):
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _typed(name, value):
    kind = AXES[name][0]
    if isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a {kind.__name__}")
    try:
        if kind is int:
            if isinstance(value, int):
                return value
            text = str(value).strip()
            try:
                return int(text)                # exact, whatever its size
            except ValueError:
                f = float(text)                 # "1e3"
                if not f.is_integer():
                    raise ValueError from None
                return int(f)
        if kind is float:
            f = float(value)
            if not math.isfinite(f):
                raise ValueError
            return f
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a {kind.__name__}") from None


def _normal(name, v):
    """One spelling per value, so that one run is one cell id: hz as a
    plain integer, a trace by its absolute path (workers may run
    elsewhere)."""
    if name == "hz" and v != "expedited":
        try:
            return str(int(v))
        except ValueError:
            return v                            # refused by _check_value
    if name == "workload" and v.startswith("trace:"):
        return "trace:" + os.path.abspath(v[len("trace:"):])
    return v


def _check_value(name, v):
    """ValueError if `v` is no value of axis `name`."""
    from slubcy import policies as registry
    from slubcy.cli import WORKLOADS
    from slubcy.preempt import parse_spec
    if name == "policy":
        registry.get_policy(v)
    elif name == "workload":
        if v.startswith("trace:"):
            if not os.path.isfile(v[len("trace:"):]):
                raise ValueError(f"workload {v!r}: no such trace file")
        elif v not in WORKLOADS:
            raise ValueError(f"workload {v!r}: one of {', '.join(WORKLOADS)} or trace:FILE")
    elif name == "cpus" and not 1 <= v <= 1024:
        raise ValueError(f"cpus {v}: must be in 1..1024")
    elif name == "seconds":
        workloads.check_bounds(seconds=v)
        if v <= 0:
            raise ValueError(f"seconds {v}: must be > 0")
    elif name == "ops":
        workloads.check_bounds(ops=v)
    elif name == "memory" and not 1 <= v <= MAX_MEMORY_MIB:
        raise ValueError(f"memory {v} MiB: must be in 1..{MAX_MEMORY_MIB} (the arena's limit)")
    elif name == "seed":
        workloads.check_bounds(seed=v)
        if v > MAX_SEED:
            raise ValueError(f"seed {v}: a sweep's seeds are at most 2^63-1 (a Parquet int64)")
    elif name == "slub" and v not in registry.GENERATIONS:
        raise ValueError(f"slub {v!r}: one of {', '.join(registry.GENERATIONS)}")
    elif name == "preempt" and v not in ("none", "main"):
        parse_spec(v)
    elif name == "hz" and v != "expedited":
        try:
            hz = int(v)
        except ValueError:
            raise ValueError(f"hz {v!r}: ticks per second (e.g. 250, 1000) or 'expedited'") from None
        if not 1 <= hz <= 100_000:
            raise ValueError(f"hz {v}: must be in 1..100000")
    elif name in ("outlive", "handoff") and not 0 <= v <= 1:
        raise ValueError(f"{name} {v}: a fraction in [0, 1]")
    elif name == "lifetime" and not 0 <= v <= 3600:
        raise ValueError(f"lifetime {v}: seconds in [0, 3600]")
    elif name in ("job_objects", "reclaim_batch", "reclaim_every", "slots") and v < 1:
        raise ValueError(f"{name} {v}: must be >= 1")


@dataclass(frozen=True)
class Grid:
    """Axis name -> tuple of values (an empty tuple: not varied, the
    workload's default)."""
    axes: tuple

    @classmethod
    def from_axes(cls, given=None, toml=None):
        """The grid from `toml` (a path: its [grid] table) and `given`
        (name -> list or scalar, overriding the file), over AXES' defaults."""
        merged = {}
        if toml is not None:
            merged.update(load_toml(toml))
        given = {k: v for k, v in (given or {}).items() if v is not None}
        for a, b in (("ops", "seconds"), ("seconds", "ops")):
            if a in given and b not in given:
                merged.pop(b, None)         # the command line's length replaces the file's
        merged.update(given)
        unknown = sorted(set(merged) - set(AXES))
        if unknown:
            raise ValueError(f"unknown sweep parameter(s) {', '.join(unknown)}: "
                             f"one of {', '.join(AXES)}")
        if "ops" in merged and "seconds" in merged:
            raise ValueError("give seconds or ops, not both")
        axes = []
        for name, (_, default) in AXES.items():
            if name == "seconds" and "ops" in merged:
                default = []
            values = merged.get(name, default)
            if name == "seed" and isinstance(values, str):
                values = parse_seeds(values)
            elif isinstance(values, (str, int, float)) and not isinstance(values, bool):
                values = [values]
            values = [_normal(name, _typed(name, v)) for v in values]
            if name in merged and not values:
                raise ValueError(f"empty grid: {name} has no values")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: a value appears twice in {values}")
            for v in values:
                _check_value(name, v)
            axes.append((name, tuple(values)))
        grid = cls(tuple(axes))
        product = math.prod(len(v) for v in grid.varied.values())
        if product > MAX_CELLS:
            raise ValueError(f"{product:,} cells: more than {MAX_CELLS:,}")
        return grid

    @property
    def varied(self):
        return {k: v for k, v in self.axes if v}

    @property
    def size(self):
        """The number of cells (a trace's cells do not multiply by the
        axes that do not apply to it)."""
        return len(self.cells())

    def cells(self):
        """Every combination, as a dict of every axis (None: not varied).
        A trace is replayed whole: its cells take no seconds, ops or churn
        shape (set to None), so combinations differing only there are one
        cell."""
        names = list(self.varied)
        out, seen = [], set()
        for combo in itertools.product(*(self.varied[n] for n in names)):
            cell = dict.fromkeys(AXIS_NAMES)
            cell.update(zip(names, combo))
            if cell["workload"].startswith("trace:"):
                for name in ("seconds", "ops", *workloads.SHAPE_PARAMS):
                    cell[name] = None
            if cell["preempt"] == "main" and cell["workload"] != "churn":
                cell["preempt"] = "none"    # the main job's preemption is churn's alone
            if cell["slub"] not in (None, "4.0") and not _runs_on(cell["policy"], cell["slub"]):
                continue                    # per-memcg caches on sheaves: no such kernel
            cid = cell_id(cell)
            if cid not in seen:
                seen.add(cid)
                out.append(cell)
        return out

    def max_cpus(self):
        return max(self.varied.get("cpus", (2,)))

    def estimate(self, slots, cells=None):
        """Seconds the grid's cells (or `cells`) take on `slots` worker
        processes (runs of `ops` and traces counted at 1 s each: their
        time is not known before they run)."""
        total = sum((c["seconds"] if c["seconds"] is not None else 1.0) + CELL_OVERHEAD_S
                    for c in (self.cells() if cells is None else cells))
        return total / max(slots, 1)

    def to_dict(self):
        return {k: list(v) for k, v in self.varied.items()}


def load_toml(path):
    """The [grid] table of a TOML file: axis -> value or list."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"grid file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"grid file {path}: {e}") from None
    grid = doc.get("grid")
    if not isinstance(grid, dict):
        raise ValueError(f"grid file {path}: no [grid] table")
    extra = sorted(set(doc) - {"grid"})
    if extra:
        raise ValueError(f"grid file {path}: unknown table(s) {', '.join(extra)}: only [grid]")
    return grid


def _runs_on(policy, slub):
    from slubcy import policies as registry
    try:
        registry.split_generation(f"{policy}@{slub}")
    except ValueError:
        return False
    return True


def cell_id(cell):
    """A stable name for a cell: the hash of its parameters (slub 4.0, the
    default, is left out: cells of sweeps made before the axis keep their
    ids)."""
    canon = json.dumps({k: cell.get(k) for k in AXIS_NAMES
                        if not (k == "slub" and cell.get(k) in (None, "4.0"))}, sort_keys=True)
    return hashlib.sha1(canon.encode()).hexdigest()[:16]


def run_kwargs(cell):
    """`workloads.run` keyword arguments for a cell."""
    kw = {"workload": cell["workload"], "cpus": cell["cpus"], "seed": cell["seed"],
          "policy": cell["policy"], "progress": False}
    if cell["ops"] is not None:
        kw["ops"] = cell["ops"]
    elif not cell["workload"].startswith("trace:"):
        kw["seconds"] = cell["seconds"]
    if cell["memory"] is not None:
        kw["memory"] = cell["memory"] << 20
    if cell.get("slub") is not None:
        kw["slub"] = cell["slub"]
    pre = cell["preempt"]
    if pre == "main":
        kw["preempt"] = workloads.MAIN_PREEMPT if cell["workload"] == "churn" else None
    elif pre not in (None, "none"):
        kw["preempt"] = pre
    if cell["hz"] == "expedited":
        kw["expedited"] = True
    elif cell["hz"] is not None:
        kw["hz"] = int(cell["hz"])
    if not cell["workload"].startswith("trace:"):
        for name in workloads.SHAPE_PARAMS:
            if cell[name] is not None:
                kw[name] = cell[name]
    return kw
