"""Read a kmem trace (perf script, trace-cmd report, tracefs text; plain,
gzip, xz or bzip2) into a `Trace`: columns of numpy arrays plus a
`ParseReport`.  The per-line work is C (`slubcy.trace._parse`); this module
opens the file, feeds it in chunks, and derives what needs the whole trace
(the format, the kernel generation, `accounted` from gfp_flags)."""
import bz2
import dataclasses
import gzip
import io
import json
import lzma
import os
import sys
import time

import numpy as np

from slubcy.trace import _parse, gfp as _gfp
from slubcy.trace.errors import TraceError

KMALLOC, KFREE, KMEM_CACHE_ALLOC, KMEM_CACHE_FREE = (
    _parse.KMALLOC, _parse.KFREE, _parse.KMEM_CACHE_ALLOC, _parse.KMEM_CACHE_FREE)
EVENT_NAMES = _parse.EVENT_NAMES
GFP_ABSENT, GFP_SYMBOLIC, GFP_HEX, GFP_PARTIAL = (
    _parse.GFP_ABSENT, _parse.GFP_SYMBOLIC, _parse.GFP_HEX, _parse.GFP_PARTIAL)
COLUMNS = tuple((name, np.dtype(dt)) for name, dt in _parse.COLUMNS)
STRING_COLUMNS = ("name", "call_site", "comm", "cgroup")
CHUNK = 1 << 20     # fits L2: measured faster than 4 and 16 MiB
PERF_DATA_MAGIC = (b"PERFILE2", b"PERFFILE")


@dataclasses.dataclass
class ParseReport:
    """What `parse` saw.  `features` counts lines showing each generation
    feature; `generation` is the kernel range they fit (a guess: a feature
    absent from a short trace may just not have fired)."""
    path: str = None
    compression: str = "none"
    format: str = "unknown"         # perf-script | trace-cmd | tracefs | mixed
    lines: int = 0
    header_lines: int = 0           # blank, '#' comments, lines before the first event
    events: int = 0                 # kmem events parsed (rows)
    events_by_type: dict = dataclasses.field(default_factory=dict)
    node_events: int = 0            # kmalloc_node / kmem_cache_alloc_node (<= 6.0), folded
    other_events: dict = dataclasses.field(default_factory=dict)   # name -> lines
    unparseable: int = 0
    unparseable_lines: list = dataclasses.field(default_factory=list)  # [(line, text)] first few
    truncated_last_line: bool = False   # the input did not end in a newline
    null_frees: int = 0             # kfree(NULL) (6.18 traces it), kmem_cache_free of NULL
    null_allocs: int = 0            # failed allocations (ptr 0)
    hashed_pointers: bool = False   # tracefs %p hashing (hash-ptr): 32-bit ids, may collide
    generation: str = "unknown"
    accounted_from: str = "none"    # field | gfp_flags | field+gfp_flags | none
    features: dict = dataclasses.field(default_factory=dict)
    cpus: int = 0                   # highest [cpu] + 1
    tasks: int = 0                  # distinct tids
    comms: int = 0
    caches_named: int = 0           # distinct name= values
    time_span_s: float = 0.0
    bytes_read: int = 0
    seconds: float = 0.0
    lines_per_s: float = 0.0
    events_per_s: float = 0.0

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["unparseable_lines"] = [list(x) for x in self.unparseable_lines]
        return d

    def to_json(self, **kw):
        return json.dumps(self.to_dict(), **kw)

    def __str__(self):
        ev = ", ".join(f"{k} {v}" for k, v in self.events_by_type.items())
        feats = [k for k, v in self.features.items() if v]
        out = [
            f"{self.path or '<text>'}: {self.format}" +
            (f" ({self.compression})" if self.compression != "none" else ""),
            f"  lines {self.lines:,}: events {self.events:,}, header {self.header_lines:,}, "
            f"other events {sum(self.other_events.values()):,}, unparseable {self.unparseable:,}",
            f"  events: {ev}" + (f"; {self.node_events:,} from _node events" if self.node_events else ""),
            f"  kernel generation: {self.generation}; accounted from: {self.accounted_from}; "
            f"pointers {'HASHED (32-bit ids: collisions possible)' if self.hashed_pointers else 'raw'}",
            f"  {self.cpus} cpus, {self.tasks:,} tasks ({self.comms:,} comms), "
            f"{self.caches_named:,} cache names, {self.time_span_s:.3f} s traced",
            f"  kfree(NULL) {self.null_frees:,}, failed allocations {self.null_allocs:,}",
            f"  features: {', '.join(feats) or 'none'}",
        ]
        if self.other_events:
            top = sorted(self.other_events.items(), key=lambda kv: -kv[1])[:8]
            out.append("  other events: " + ", ".join(f"{k} {v}" for k, v in top))
        for ln, text in self.unparseable_lines:
            out.append(f"  unparseable line {ln}: {text[:160]}")
        if self.truncated_last_line:
            out.append("  the last line has no newline (truncated?)")
        out.append(f"  parsed {self.bytes_read / 1e6:.1f} MB in {self.seconds:.3f} s: "
                   f"{self.lines_per_s / 1e6:.2f} M lines/s, {self.events_per_s / 1e6:.2f} M events/s")
        return "\n".join(out)


class Trace:
    """A parsed trace: one row per kmem event, in file order.

    `columns[name]` for each of COLUMNS (also as attributes: `t.ptr`, ...);
    `strings[col][id]` resolves the int32 ids of name / call_site / comm /
    cgroup (-1: absent); `report` is the ParseReport."""

    def __init__(self, columns, strings, report):
        self.columns = columns
        self.strings = strings
        self.report = report

    def __len__(self):
        return len(self.columns["event"])

    def __getattr__(self, name):
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def string(self, column, i):
        """The string of row i's `column` (None when absent)."""
        sid = int(self.columns[column][i])
        return None if sid < 0 else self.strings[column][sid]

    def to_frame(self):
        """A pandas DataFrame: the string columns as categoricals, `event` as
        its name."""
        import pandas as pd
        d = {}
        for name, _ in COLUMNS:
            a = self.columns[name]
            if name in STRING_COLUMNS:
                d[name] = pd.Categorical.from_codes(a, categories=pd.Index(self.strings[name])) \
                    if len(set(self.strings[name])) == len(self.strings[name]) \
                    else [self.strings[name][i] if i >= 0 else None for i in a]
            elif name == "event":
                d[name] = pd.Categorical.from_codes(a.astype(np.int8), categories=list(EVENT_NAMES))
            else:
                d[name] = a
        return pd.DataFrame(d)


def _open(path):
    """(binary file object, raw file for progress, compression, size)."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a trace") from None
    except PermissionError:
        raise TraceError(f"{path}: permission denied") from None
    size = os.fstat(raw.fileno()).st_size
    head = raw.read(8)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw), raw, "gzip", size
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw), raw, "xz", size
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw), raw, "bz2", size
    return raw, raw, "none", size


def _check_head(data, name):
    if data.startswith(PERF_DATA_MAGIC):
        raise TraceError(f"{name}: a binary perf.data file, not text; convert it with "
                         f"`perf script -i {name} > trace.txt` and parse that")
    if b"\0" in data[:65536]:
        raise TraceError(f"{name}: a binary file, not trace text (perf script, trace-cmd "
                         f"report or tracefs output)")


def _progress_bar(progress, total, name):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"parsing {os.path.basename(name)}",
                file=sys.stderr, leave=False)


def parse(path, strict=False, progress=None, chunk_size=CHUNK, max_examples=10,
          require_events=True):
    """Parse the trace file at `path` (plain, gzip, xz or bz2; '-' reads
    stdin).  Unparseable lines are counted (first `max_examples` kept with
    their line numbers) unless `strict`, which raises TraceError at the
    first.  Raises TraceError for a missing/empty/binary file and, when
    `require_events`, for a file with no kmem event."""
    if path == "-":
        f, raw, comp, size, name = sys.stdin.buffer, None, "none", None, "<stdin>"
    else:
        name = os.fspath(path)
        f, raw, comp, size = _open(name)
    t0 = time.perf_counter()
    p = _parse.Parser(_gfp.decode, strict=strict, max_examples=max_examples)
    bar = _progress_bar(progress, size, name)
    nread = 0
    rest = b""
    first = True
    last_pos = 0
    try:
        while True:
            try:
                data = f.read(chunk_size)
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise TraceError(f"{name}: cannot read ({comp}): {e}") from None
            if first:
                if not data:
                    raise TraceError(f"{name}: empty file")
                _check_head(data, name)
                first = False
            if not data:
                break
            nread += len(data)
            buf = rest + data if rest else data
            try:
                used = p.feed(buf)
            except ValueError as e:
                raise TraceError(f"{name}: {e}") from None
            rest = buf[used:]
            if bar is not None and raw is not None:
                pos = raw.tell()
                bar.update(pos - last_pos)
                last_pos = pos
        if rest:
            try:
                p.feed(rest, final=True)
            except ValueError as e:
                raise TraceError(f"{name}: {e}") from None
    finally:
        if bar is not None:
            bar.close()
        if f is not sys.stdin.buffer:
            f.close()
            if raw is not None and raw is not f:
                raw.close()
    return _finish(p, name if path != "-" else None, comp, nread, bool(rest),
                   time.perf_counter() - t0, require_events)


def parse_text(text, strict=False, require_events=False, max_examples=10):
    """Parse trace text (str or bytes) held in memory: for tests and tools."""
    if isinstance(text, str):
        text = text.encode()
    t0 = time.perf_counter()
    p = _parse.Parser(_gfp.decode, strict=strict, max_examples=max_examples)
    try:
        p.feed(text, final=True)
    except ValueError as e:
        raise TraceError(str(e)) from None
    return _finish(p, None, "none", len(text), bool(text) and not text.endswith(b"\n"),
                   time.perf_counter() - t0, require_events)


def _finish(p, name, comp, nread, truncated, seconds, require_events):
    feats = p.features()
    counts = p.event_counts()
    strings = p.strings()
    cols = p.take_arrays()
    r = ParseReport(path=name, compression=comp)
    r.lines = p.lines
    r.header_lines = p.blank + p.preamble
    r.events = len(cols["event"])
    r.events_by_type = dict(zip(EVENT_NAMES, counts))
    r.node_events = feats["node_events"]
    r.other_events = p.other_events()
    r.unparseable = p.bad
    r.unparseable_lines = list(p.bad_examples)
    r.truncated_last_line = truncated
    r.null_frees = feats["null_frees"]
    r.null_allocs = feats["null_allocs"]
    r.features = _features(feats, counts)
    r.hashed_pointers = r.features["hashed_pointers"]
    r.format = _format(feats, r.events)
    r.generation = _generation(r.features, counts)
    r.accounted_from = derive_accounted(cols, r.features)
    r.cpus = int(p.max_cpu) + 1
    r.tasks = int(len(np.unique(cols["tid"]))) if r.events else 0
    r.comms = len(strings["comm"])
    r.caches_named = len(strings["name"])
    r.time_span_s = (p.ts_max - p.ts_min) / 1e9 if r.events else 0.0
    r.bytes_read = nread
    r.seconds = seconds
    r.lines_per_s = r.lines / seconds if seconds > 0 else 0.0
    r.events_per_s = r.events / seconds if seconds > 0 else 0.0
    where = name or "trace"
    if require_events and r.events == 0:
        what = (f"{sum(r.other_events.values())} other events "
                f"({', '.join(list(r.other_events)[:5])})" if r.other_events else
                f"{r.lines} lines, none an event line")
        raise TraceError(f"{where}: no kmem events (kmalloc, kfree, kmem_cache_alloc, "
                         f"kmem_cache_free) in it: {what}; record them with `slubcy trace "
                         f"record -- CMD` or `perf record -e 'kmem:k*'`")
    return Trace(cols, strings, r)


def _features(f, counts):
    """The generation features, as booleans, from the per-line counters."""
    ptrs = f["ptr_hashed_like"] + f["ptr_kernel_like"]
    return {
        "name_on_alloc": f["name_on_alloc"] > 0,            # 6.18+
        "name_on_free": f["name_on_free"] > 0,              # 5.12+
        "accounted_field": f["accounted_field"] > 0,        # 6.0+
        "node_field": f["node_field"] > 0,                  # 6.1+ (node= on kmalloc/kmem_cache_alloc)
        "node_events": f["node_events"] > 0,                # <= 6.0
        "symbolic_call_site": f["call_site_symbolic"] > 0,  # 5.4+
        "hex_call_site": f["call_site_hex"] > 0,            # <= 5.3 (or an unknown symbol)
        "hashed_pointers": ptrs > 0 and f["ptr_hashed_like"] * 2 > ptrs,
        "gfp_symbolic": f["gfp_symbolic"] > 0,
        "gfp_hex": f["gfp_hex"] > 0,
        "gfp_unknown_names": f["gfp_unknown_names"] > 0,
        "kfree_null": f["null_frees"] > 0,
        "cgroup": f["cgroup"] > 0,
        "latency_flags": f["flags_column"] > 0,
        "tgid_column": f["tgid_column"] > 0,
        "pid_tid": f["pid_tid"] > 0,
        "raw_fields": f["failed_to_parse"] > 0,             # trace-cmd "[FAILED TO PARSE]"
    }


def _format(f, events):
    if not events:
        return "unknown"
    perf = f["perf_prefix"]
    # libtraceevent (perf, trace-cmd) prints %p as 0x...; tracefs never does
    tcmd = f["padded_event"] + f["failed_to_parse"]
    if perf and perf < events:
        return "mixed"
    if perf:
        return "perf-script"
    if tcmd or f["ptr_0x"]:
        return "trace-cmd"
    return "tracefs"


def _generation(feat, counts):
    """The kernel range the trace's event formats fit (include/trace/events/kmem.h)."""
    if feat["name_on_alloc"]:
        return "6.18+"
    if feat["accounted_field"]:
        if feat["node_field"] and not feat["node_events"]:
            return "6.1-6.17"
        if feat["node_events"]:
            return "6.0"
        return "6.0-6.17"
    if feat["name_on_free"]:
        return "5.12-5.19"
    if feat["symbolic_call_site"]:
        return "5.4-5.11" if counts[KMEM_CACHE_FREE] else "5.4-5.19"
    if feat["hex_call_site"]:
        return "<=5.3"
    return "unknown"


def derive_accounted(cols, feat):
    """Fill `accounted` (-1) from gfp_flags where the trace has no
    accounted= field (before 6.0): __GFP_ACCOUNT set -> 1; unset -> 0 for
    kmalloc, left -1 for kmem_cache_alloc (a SLAB_ACCOUNT cache is charged
    whatever the gfp says, and gfp_flags cannot show the cache's flags).
    A hex gfp_flags is read only when call sites are symbolic (5.4+), where
    ___GFP_ACCOUNT is 0x400000 (0x100000 before 4.15).  Returns where the
    column's values come from."""
    ev, acc, kind, g = cols["event"], cols["accounted"], cols["gfp_kind"], cols["gfp"]
    alloc = (ev == KMALLOC) | (ev == KMEM_CACHE_ALLOC)
    had = bool(np.any(acc[alloc] >= 0)) if len(ev) else False
    usable = (kind == GFP_SYMBOLIC) | (kind == GFP_PARTIAL)
    if feat.get("symbolic_call_site"):
        usable |= kind == GFP_HEX
    todo = alloc & (acc < 0) & usable
    if not np.any(todo):
        return "field" if had else "none"
    set_ = (g & np.uint64(_gfp.ACCOUNT)) != 0
    acc[todo & set_] = 1
    acc[todo & ~set_ & (ev == KMALLOC)] = 0
    return "field+gfp_flags" if had else "gfp_flags"
