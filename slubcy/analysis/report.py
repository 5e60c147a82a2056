"""Reports the kernel's users know, from the numbers the core hands over.

Three kernel outputs are reproduced character for character, plus pandas
DataFrames of the same data:

* ``/proc/slabinfo`` version 2.1, as SLUB prints it (:func:`proc_slabinfo`,
  :func:`slabinfo_frame`);
* the default listing of ``tools/vm/slabinfo`` (:func:`tools_slabinfo`,
  :func:`tools_slabinfo_frame`), and the per-cache statistics table of its
  ``-r`` report (:func:`tools_slabinfo_stats`);
* the SLUB statistics files ``/sys/kernel/slab/<cache>/<stat>``
  (:func:`stats_text`, :func:`stats_frame`).

The input is what the core produces: a list of dicts, one per cache, with the
keys in :data:`INFO_KEYS` (see their meaning there), and for the statistics a
dict ``{stat_name: [count on vCPU 0, count on vCPU 1, ...]}``.

Kernel sources these functions mirror (Linux v3.16 .. v4.0; the formats did
not change in between):

* ``mm/slab_common.c``: ``print_slabinfo_header()``,
  ``memcg_accumulate_slabinfo()``, ``cache_show()``, ``slab_show()``
  (``s_show()`` in 3.16), read at torvalds/linux commit d6e0b7fa1186
  ("slub: make dead caches discard free slabs immediately", v4.0); the
  3.16 form (``for_each_memcg_cache_index``) prints the same.
* ``mm/slub.c``: ``get_slabinfo()``, ``show_slab_objects()`` (the sysfs
  ``objects``/``slabs``/``partial``/``cpu_slabs`` files) and ``show_stat()``.
* ``tools/vm/slabinfo.c`` ("slabinfo 4/15/2011"): ``first_line()``,
  ``store_size()``, ``slab_size()``, ``slabcache()``, ``sort_slabs()``,
  ``slab_stats()``, read in a 3.18 tree and at torvalds/linux 016c6cdf (a
  later version whose default line is unchanged).

This module is pure Python + pandas: it never touches the allocator.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping

import pandas as pd

# ``enum stat_item`` (include/linux/slub_def.h) in the kernel's order: the
# core's own enum (slubcy.types).  The sysfs file of each is its lower-case name.
from slubcy.machine import STAT_ITEMS as _STAT_ITEMS

__all__ = [
    "INFO_KEYS",
    "SLABINFO_COLUMNS",
    "TOOLS_SLABINFO_COLUMNS",
    "proc_slabinfo",
    "slabinfo_frame",
    "store_size",
    "tools_slabinfo",
    "tools_slabinfo_frame",
    "tools_slabinfo_stats",
    "stats_frame",
    "stats_text",
]

#: Keys of one cache's dict, as the core produces them.
#:
#: ``nr_slabs``, ``total_objects``: the node counters (``n->nr_slabs``,
#: ``n->total_objects``); ``nr_partial``: slabs on the node partial list;
#: ``partial_free_objects``: free objects on node-partial slabs, the kernel's
#: ``count_partial(n, count_free)``; ``cpu_slabs``: vCPUs whose ``c->page`` is
#: set; ``cpu_partial_slabs``: slabs on the per-cpu partial lists; ``root``:
#: the root cache's name for a per-memcg child cache, ``None`` for a root.
INFO_KEYS = (
    "name", "object_size", "size", "align", "offset", "order",
    "objects_per_slab", "pages_per_slab", "flags", "min_partial", "cpu_partial",
    "nr_slabs", "nr_partial", "total_objects", "partial_free_objects",
    "cpu_slabs", "cpu_partial_slabs", "root", "memcg",
)

_INT_KEYS = tuple(k for k in INFO_KEYS if k not in ("name", "root", "memcg"))

#: Columns of :func:`slabinfo_frame`: the field names of the
#: ``/proc/slabinfo`` header, in its order.
SLABINFO_COLUMNS = (
    "name", "active_objs", "num_objs", "objsize", "objperslab", "pagesperslab",
    "limit", "batchcount", "sharedfactor",
    "active_slabs", "num_slabs", "sharedavail",
)

#: Columns of :func:`tools_slabinfo_frame`, one per field of the
#: ``tools/vm/slabinfo`` line (Slabs/Part/Cpu split in three).
TOOLS_SLABINFO_COLUMNS = (
    "name", "objects", "objsize", "space", "slabs", "partial", "cpu",
    "objs_per_slab", "order", "free_pct", "eff_pct", "flags",
)

# C's unsigned long on the 64-bit machines these tools ran on.
_ULONG_MASK = (1 << 64) - 1

# Flag bits (include/linux/slab.h) and the letter slabcache() prints for each,
# in the order it appends them.  The letters come from sysfs files that test
# one flag each: cache_dma, hwcache_align, poison, reclaim_account, red_zone,
# sanity_checks (SLAB_DEBUG_FREE, later renamed SLAB_CONSISTENCY_CHECKS),
# store_user and trace.  '*' (the cache has aliases) is never printed here:
# slubcy does not merge caches.  SLAB_PANIC, SLAB_DESTROY_BY_RCU
# (SLAB_TYPESAFE_BY_RCU) and SLAB_ACCOUNT have no letter.
_FLAG_LETTERS = (
    (0x00004000, "d"),   # SLAB_CACHE_DMA
    (0x00002000, "A"),   # SLAB_HWCACHE_ALIGN
    (0x00000800, "P"),   # SLAB_POISON
    (0x00020000, "a"),   # SLAB_RECLAIM_ACCOUNT
    (0x00000400, "Z"),   # SLAB_RED_ZONE
    (0x00000100, "F"),   # SLAB_CONSISTENCY_CHECKS (SLAB_DEBUG_FREE)
    (0x00010000, "U"),   # SLAB_STORE_USER
    (0x00200000, "T"),   # SLAB_TRACE
)



# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------

def _as_count(value, what: str) -> int:
    """An integer >= 0 (numpy integers accepted), or a clear exception."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}") from None
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return n


def _check_infos(infos: Iterable[Mapping]) -> list[dict]:
    """Validate the core's cache dicts; return normalised copies, in order."""
    if isinstance(infos, Mapping):
        raise TypeError("infos must be a list of per-cache dicts, not one dict")
    out = []
    for i, info in enumerate(infos):
        if not isinstance(info, Mapping):
            raise TypeError(f"infos[{i}] must be a dict, not {type(info).__name__}")
        missing = [k for k in INFO_KEYS if k not in info]
        if missing:
            raise ValueError(f"infos[{i}] lacks key(s): {', '.join(missing)}")
        name = info["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"infos[{i}]['name'] must be a non-empty str")
        d = {"name": name}
        for k in _INT_KEYS:
            d[k] = _as_count(info[k], f"{name}: {k}")
        for k in ("root", "memcg"):
            v = info[k]
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name}: {k} must be a str or None")
            d[k] = v
        if d["partial_free_objects"] > d["total_objects"]:
            raise ValueError(f"{name}: partial_free_objects > total_objects")
        out.append(d)
    return out


def _roots_and_children(infos: list[dict]) -> list[tuple[dict, list[dict]]]:
    """Pair each root cache with its per-memcg children, roots in the order
    given.  In the kernel a child hangs off its root's memcg_params; here the
    link is the child's ``root`` name."""
    roots: dict[str, list[tuple[dict, list[dict]]]] = {}
    order: list[tuple[dict, list[dict]]] = []
    for d in infos:
        if d["root"] is None:
            entry = (d, [])
            roots.setdefault(d["name"], []).append(entry)
            order.append(entry)
    for d in infos:
        if d["root"] is None:
            continue
        found = roots.get(d["root"])
        if not found:
            raise ValueError(f"memcg cache {d['name']!r}: root cache {d['root']!r} "
                             "is not in the list (or is itself a memcg cache)")
        if len(found) > 1:
            raise ValueError(f"memcg cache {d['name']!r}: root name {d['root']!r} "
                             "is ambiguous (several root caches have it)")
        found[0][1].append(d)
    return order


# ---------------------------------------------------------------------------
# /proc/slabinfo  (mm/slab_common.c, mm/slub.c)
# ---------------------------------------------------------------------------

def _get_slabinfo(d: dict) -> dict:
    """get_slabinfo() of mm/slub.c: SLUB counts as free only the objects on
    node-partial slabs (count_partial(n, count_free)), so free objects parked
    in cpu slabs and per-cpu partial slabs show as active; active_slabs ==
    num_slabs; SLUB has no tunables, so limit/batchcount/shared stay 0 (the
    memset in cache_show())."""
    return {
        "active_objs": (d["total_objects"] - d["partial_free_objects"]) & _ULONG_MASK,
        "num_objs": d["total_objects"],
        "active_slabs": d["nr_slabs"],
        "num_slabs": d["nr_slabs"],
        "objects_per_slab": d["objects_per_slab"],   # oo_objects(s->oo)
        "cache_order": d["order"],                   # oo_order(s->oo)
        "limit": 0, "batchcount": 0, "shared": 0, "shared_avail": 0,
    }


def _memcg_accumulate_slabinfo(children: list[dict], info: dict) -> None:
    """memcg_accumulate_slabinfo(): add each per-memcg child's counts into the
    root's row.  Only these five fields are summed; objsize, objperslab and
    pagesperslab stay the root's.  Children of an offlined memcg (dead caches)
    are still summed: in 3.16 they stay in the root's memcg_caches array until
    destroyed, in 4.0 on the root's memcg_params list."""
    for c in children:
        sinfo = _get_slabinfo(c)
        info["active_slabs"] += sinfo["active_slabs"]
        info["num_slabs"] += sinfo["num_slabs"]
        info["shared_avail"] += sinfo["shared_avail"]
        info["active_objs"] += sinfo["active_objs"]
        info["num_objs"] += sinfo["num_objs"]


def _print_slabinfo_header() -> str:
    """print_slabinfo_header() without CONFIG_DEBUG_SLAB (SLUB)."""
    return ("slabinfo - version: 2.1\n"
            "# name            <active_objs> <num_objs> <objsize> "
            "<objperslab> <pagesperslab>"
            " : tunables <limit> <batchcount> <sharedfactor>"
            " : slabdata <active_slabs> <num_slabs> <sharedavail>"
            "\n")


def _slabinfo_rows(infos: Iterable[Mapping]) -> list[dict]:
    """One accumulated row per root cache, in the order given: slab_show()
    prints only root caches (is_root_cache), each via cache_show()."""
    rows = []
    for root, children in _roots_and_children(_check_infos(infos)):
        sinfo = _get_slabinfo(root)
        _memcg_accumulate_slabinfo(children, sinfo)
        rows.append({
            "name": root["name"],
            "active_objs": sinfo["active_objs"],
            "num_objs": sinfo["num_objs"],
            "objsize": root["size"],                       # s->size, not object_size
            "objperslab": sinfo["objects_per_slab"],
            "pagesperslab": 1 << sinfo["cache_order"],     # (1 << sinfo.cache_order)
            "limit": sinfo["limit"],
            "batchcount": sinfo["batchcount"],
            "sharedfactor": sinfo["shared"],
            "active_slabs": sinfo["active_slabs"],
            "num_slabs": sinfo["num_slabs"],
            "sharedavail": sinfo["shared_avail"],
        })
    return rows


def _cache_show(r: dict) -> str:
    """cache_show(): its three seq_printf() formats, verbatim (Python's %
    accepts C's ``l`` length modifier and ``u``), then slabinfo_show_stats()
    (empty for SLUB) and the newline."""
    return ("%-17s %6lu %6lu %6u %4u %4d" % (
                r["name"], r["active_objs"], r["num_objs"], r["objsize"],
                r["objperslab"], r["pagesperslab"])
            + " : tunables %4u %4u %4u" % (
                r["limit"], r["batchcount"], r["sharedfactor"])
            + " : slabdata %6lu %6lu %6lu" % (
                r["active_slabs"], r["num_slabs"], r["sharedavail"])
            + "\n")


def proc_slabinfo(infos: Iterable[Mapping]) -> str:
    """The text of ``/proc/slabinfo`` (version 2.1) as SLUB prints it.

    The header (print_slabinfo_header()), then one line per root cache in the
    order given, per-memcg child caches folded into their root's line as
    memcg_accumulate_slabinfo() does.  Column by column (get_slabinfo() of
    mm/slub.c): active_objs = total_objects - partial_free_objects, num_objs =
    total_objects, objsize = size, objperslab = objects_per_slab,
    pagesperslab = 1 << order, tunables 0 0 0, active_slabs = num_slabs =
    nr_slabs, sharedavail 0.

    The header is printed even with no cache at all, as 3.16's s_start()
    does (4.0's slab_show() prints it with the first cache, so an empty list
    would give an empty file there; the kernel always has caches).
    """
    return _print_slabinfo_header() + "".join(_cache_show(r) for r in _slabinfo_rows(infos))


def slabinfo_frame(infos: Iterable[Mapping]) -> pd.DataFrame:
    """The data of :func:`proc_slabinfo` as a DataFrame: one row per root
    cache (children accumulated), columns :data:`SLABINFO_COLUMNS` named as
    the fields of the /proc/slabinfo header, rows in the order given."""
    rows = _slabinfo_rows(infos)
    frame = pd.DataFrame(rows, columns=list(SLABINFO_COLUMNS))
    for col in SLABINFO_COLUMNS[1:]:
        frame[col] = frame[col].astype("int64")
    return frame


# ---------------------------------------------------------------------------
# tools/vm/slabinfo  (tools/vm/slabinfo.c, reading mm/slub.c's sysfs files)
# ---------------------------------------------------------------------------

def store_size(value: int) -> str:
    """store_size() of tools/vm/slabinfo.c: a number with K/M/G suffix.

    Above 1000 (strictly) the value is divided by 100 and printed with one
    decimal and 'K'; above 1,000,000 by 100,000 with 'M'; above
    1,000,000,000 by 100,000,000 with 'G'.  The suffixes are decimal, not
    binary, and the division truncates: 4096 -> "4.0K", 40960 -> "40.9K",
    1000 -> "1000", 1001 -> "1.0K", 1048576 -> "1.0M".
    """
    value = _as_count(value, "store_size value") & _ULONG_MASK
    if value > 1000000000:
        divisor, trailer = 100000000, "G"
    elif value > 1000000:
        divisor, trailer = 100000, "M"
    elif value > 1000:
        divisor, trailer = 100, "K"
    else:
        return "%d" % value
    # The C code prints value/divisor, appends the suffix, then memmove()s
    # the last digit and the suffix one place right and puts a '.' before
    # the last digit.  value/divisor is always >= 10 here.
    digits = "%d" % (value // divisor)
    return digits[:-1] + "." + digits[-1] + trailer


def _sysfs(d: dict) -> dict:
    """The sysfs files slabinfo's read_slab_dir() reads, from show_slab_objects()
    and the flag attributes of mm/slub.c (3.16 .. 4.0):

    * objects (SO_ALL|SO_OBJECTS): n->total_objects - count_partial(n,
      count_free), i.e. the same "active" count as /proc/slabinfo;
    * slabs (SO_ALL): n->nr_slabs; partial (SO_PARTIAL): n->nr_partial;
    * cpu_slabs (SO_CPU): 1 per cpu with a c->page, plus page->pages of the
      head of c->partial, i.e. the number of slabs on that per-cpu partial
      list (since Li Zefan's "slub: Fix calculation of cpu slabs", 2013, in
      3.16 and 4.0).  So cpu = cpu_slabs + cpu_partial_slabs here.
    """
    flags = d["flags"]
    return {
        "name": d["name"],
        "objects": (d["total_objects"] - d["partial_free_objects"]) & _ULONG_MASK,
        "object_size": d["object_size"],
        "objs_per_slab": d["objects_per_slab"],
        "order": d["order"],
        "slabs": d["nr_slabs"],
        "partial": d["nr_partial"],
        "cpu_slabs": d["cpu_slabs"] + d["cpu_partial_slabs"],
        "flags": "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit),
    }


def _slab_size(s: dict, page_size: int) -> int:
    """slab_size(): s->slabs * (page_size << s->order)."""
    return (s["slabs"] * (page_size << s["order"])) & _ULONG_MASK


def _slabcache_fields(s: dict, page_size: int) -> dict:
    """The values slabcache() prints in its default (non -D) line."""
    slab_bytes = _slab_size(s, page_size)
    slabs = s["slabs"]
    return {
        "name": s["name"],
        "objects": s["objects"],
        "objsize": s["object_size"],
        "space": slab_bytes,
        # dist_str "%lu/%lu/%d": s->slabs - s->cpu_slabs, s->partial, s->cpu_slabs
        "slabs": (slabs - s["cpu_slabs"]) & _ULONG_MASK,
        "partial": s["partial"],
        "cpu": s["cpu_slabs"],
        "objs_per_slab": s["objs_per_slab"],
        "order": s["order"],
        # %Fr: s->slabs ? (s->partial * 100) / s->slabs : 100
        "free_pct": (s["partial"] * 100) // slabs if slabs else 100,
        # %Ef: s->slabs ? (s->objects * s->object_size * 100) /
        #      (s->slabs * (page_size << s->order)) : 100
        "eff_pct": ((s["objects"] * s["object_size"] * 100) & _ULONG_MASK) // slab_bytes
                   if slabs and slab_bytes else 100,
        "flags": s["flags"],
    }


def _first_line() -> str:
    """first_line() without -D (activity) and without -L (loss)."""
    return ("Name                   Objects Objsize    Space "
            "Slabs/Part/Cpu  O/S O %Fr %Ef Flg\n")


def _strcasecmp_key(name: str) -> bytes:
    # strcasecmp() folds ASCII letters only.
    return name.encode("utf-8", "surrogateescape").lower()


def _tools_rows(infos: Iterable[Mapping], page_size: int, show_empty: bool,
                only_empty: bool, include_memcg: bool) -> list[dict]:
    page_size = _as_count(page_size, "page_size")
    if page_size == 0:
        raise ValueError("page_size must be > 0")
    checked = _check_infos(infos)
    # The kernel would refuse a child whose root does not exist; check the
    # links even when the children are not listed.
    _roots_and_children(checked)
    caches = [_sysfs(d) for d in checked if include_memcg or d["root"] is None]
    # sort_slabs(): by name with strcasecmp() unless -S/-A/-L is given.
    caches.sort(key=lambda s: _strcasecmp_key(s["name"]))
    rows = []
    for s in caches:
        # slabcache(): "if (skip_zero && !show_empty && !s->slabs) return;
        #               if (show_empty && s->slabs) return;"
        # The tool's skip_zero is cleared by -z (our show_empty=True); its
        # show_empty is set by -e (our only_empty=True).
        skip_zero = not show_empty
        if skip_zero and not only_empty and not s["slabs"]:
            continue
        if only_empty and s["slabs"]:
            continue
        rows.append(_slabcache_fields(s, page_size))
    return rows


def _slabcache_line(r: dict) -> str:
    """slabcache()'s printf: "%-21s %8ld %7d %8s %14s %4d %1d %3ld %3ld %s\\n"."""
    dist_str = "%lu/%lu/%d" % (r["slabs"], r["partial"], r["cpu"])
    return "%-21s %8ld %7d %8s %14s %4d %1d %3ld %3ld %s\n" % (
        r["name"], r["objects"], r["objsize"], store_size(r["space"]), dist_str,
        r["objs_per_slab"], r["order"], r["free_pct"], r["eff_pct"], r["flags"])


def tools_slabinfo(infos: Iterable[Mapping], page_size: int = 4096, *,
                   show_empty: bool = False, only_empty: bool = False,
                   include_memcg: bool = True) -> str:
    """The default listing of ``tools/vm/slabinfo`` (no options).

    One line per cache as slabcache() prints it, preceded by first_line()'s
    header, which is printed before the first line only: if no cache is
    listed the output is empty, as the tool's is.  The values are the sysfs
    files the tool reads, mapped from the core's dict (see ``_sysfs``):
    Objects = total_objects - partial_free_objects, Objsize = object_size,
    Space = store_size(nr_slabs * (page_size << order)), Slabs/Part/Cpu =
    (nr_slabs - cpu)/nr_partial/cpu with cpu = cpu_slabs + cpu_partial_slabs,
    O/S = objects_per_slab, O = order, %Fr = 100 * nr_partial / nr_slabs,
    %Ef = 100 * Objects * object_size / Space (integer divisions, 100 for a
    cache without slabs), Flg = the flag letters.

    Caches are sorted by name, case-insensitively, as sort_slabs() does.
    Caches without slabs are skipped unless ``show_empty`` (the tool's -z);
    ``only_empty`` lists only them (the tool's -e).

    ``include_memcg``: per-memcg child caches are listed under their own name,
    separately from their root (their own numbers, not accumulated), as the
    tool shows every cache directory it finds.  Note that in 3.15+ (so 3.16
    and 4.0) SLUB puts them under ``/sys/kernel/slab/<root>/cgroup/`` (Vladimir
    Davydov's "slub: rework sysfs layout for memcg caches"), where the tool,
    which reads only the top directory, never sees them: pass
    ``include_memcg=False`` for exactly what it printed on those kernels.

    Not reproduced: aliases ('*' flag, the tool's renaming of ':t-...'
    unique ids) since slubcy does not merge caches, and the tool's switch to
    the detailed report when exactly one cache matches.
    """
    rows = _tools_rows(infos, page_size, show_empty, only_empty, include_memcg)
    if not rows:
        return ""
    return _first_line() + "".join(_slabcache_line(r) for r in rows)


def tools_slabinfo_frame(infos: Iterable[Mapping], page_size: int = 4096, *,
                         show_empty: bool = False, only_empty: bool = False,
                         include_memcg: bool = True) -> pd.DataFrame:
    """The rows of :func:`tools_slabinfo` (same filters, same order) as a
    DataFrame with columns :data:`TOOLS_SLABINFO_COLUMNS`.

    Values are those printed, before formatting: ``space`` is in bytes (the
    text shows store_size(space)); ``slabs``/``partial``/``cpu`` are the three
    numbers of Slabs/Part/Cpu, so ``slabs`` is nr_slabs minus the cpu slabs,
    as the tool prints it; ``free_pct``/``eff_pct`` are %Fr/%Ef.
    """
    rows = _tools_rows(infos, page_size, show_empty, only_empty, include_memcg)
    frame = pd.DataFrame(rows, columns=list(TOOLS_SLABINFO_COLUMNS))
    for col in TOOLS_SLABINFO_COLUMNS:
        if col not in ("name", "flags"):
            frame[col] = frame[col].astype("int64")
    return frame


# ---------------------------------------------------------------------------
# SLUB statistics  (mm/slub.c show_stat(), tools/vm/slabinfo.c slab_stats())
# ---------------------------------------------------------------------------

_STAT_LOOKUP = {name: name for name in _STAT_ITEMS}
_STAT_LOOKUP.update({name.lower(): name for name in _STAT_ITEMS})


def _check_stats(stats: Mapping) -> tuple[dict[str, list[int]], int]:
    """Normalise ``{stat_name: [count per vCPU]}``: names as in enum stat_item
    (upper case) or as the sysfs files (lower case); missing items count 0;
    every list must have one entry per vCPU."""
    if not isinstance(stats, Mapping):
        raise TypeError("stats must be a dict {stat_name: [count per vCPU]}")
    per_item: dict[str, list[int]] = {}
    ncpu = None
    for key, counts in stats.items():
        name = _STAT_LOOKUP.get(key) if isinstance(key, str) else None
        if name is None:
            raise ValueError(f"unknown SLUB stat item {key!r}")
        if name in per_item:
            raise ValueError(f"stat item {name} given twice")
        if isinstance(counts, (str, bytes, Mapping)) or not isinstance(counts, Iterable):
            raise TypeError(f"{name}: expected a list of per-vCPU counts, "
                            f"not {type(counts).__name__}")
        values = [_as_count(v, f"{name}[cpu {i}]") for i, v in enumerate(counts)]
        if ncpu is None:
            ncpu = len(values)
        elif len(values) != ncpu:
            raise ValueError(f"{name}: {len(values)} per-vCPU counts, expected {ncpu}")
        per_item[name] = values
    ncpu = ncpu or 0
    return {name: per_item.get(name, [0] * ncpu) for name in _STAT_ITEMS}, ncpu


def stats_frame(stats: Mapping) -> pd.DataFrame:
    """A tidy table of the 26 SLUB statistics: index = the stat items in the
    order of ``enum stat_item`` (index name ``stat``), columns ``cpu0`` ..
    ``cpuN-1`` and ``total`` (their sum, as show_stat() adds them up)."""
    per_item, ncpu = _check_stats(stats)
    columns = [f"cpu{i}" for i in range(ncpu)]
    frame = pd.DataFrame([per_item[name] for name in _STAT_ITEMS],
                         index=pd.Index(list(_STAT_ITEMS), name="stat"),
                         columns=columns, dtype="int64")
    frame["total"] = [sum(per_item[name]) for name in _STAT_ITEMS]
    frame["total"] = frame["total"].astype("int64")
    return frame


def _show_stat(counts: list[int]) -> str:
    """show_stat(): "%lu" of the sum over online cpus, then " C%d=%u" for
    every cpu whose count is not zero, then a newline."""
    text = "%lu" % sum(counts)
    for cpu, x in enumerate(counts):
        if x:
            text += " C%d=%u" % (cpu, x)
    return text + "\n"


def stats_text(stats: Mapping, item: str | None = None) -> str:
    """SLUB statistics in the format of their sysfs files (show_stat()).

    With ``item`` (e.g. ``"alloc_fastpath"`` or ``"ALLOC_FASTPATH"``): exactly
    the content of ``/sys/kernel/slab/<cache>/<item>``, such as
    ``"9968 C0=4854 C1=5114\\n"``; cpus whose count is 0 are left out, as the
    kernel does.  Without: all 26 files in enum order, one per line, each
    prefixed with its file name and a colon, as ``grep .`` over those files
    prints them (``"alloc_fastpath:9968 C0=4854 C1=5114"``).

    The kernel keeps each per-cpu counter in an ``unsigned`` (32 bits) and so
    wraps at 2**32; slubcy's counters are wider and are printed whole.
    """
    per_item, _ = _check_stats(stats)
    if item is not None:
        name = _STAT_LOOKUP.get(item) if isinstance(item, str) else None
        if name is None:
            raise ValueError(f"unknown SLUB stat item {item!r}")
        return _show_stat(per_item[name])
    return "".join(f"{name.lower()}:{_show_stat(per_item[name])}" for name in _STAT_ITEMS)


def tools_slabinfo_stats(stats: Mapping) -> str:
    """The statistics part of ``tools/vm/slabinfo -r`` for one cache, as
    slab_stats() prints it from the sums of the sysfs stat files.

    As in the tool: nothing if ALLOC_SLAB is 0 or no allocation was counted;
    the "Flushes" line only if CPUSLAB_FLUSH is not 0; the deactivation table
    only if there were deactivations; and its 3.16/4.0 quirks kept: the
    "Ocurrences" spelling, and the two "Cmpxchg Double redos" lines printed
    even when both counts are 0 (a missing pair of braces makes only the
    "Cmpxchg_double Looping" heading conditional).
    """
    per_item, _ = _check_stats(stats)
    s = {name.lower(): sum(v) for name, v in per_item.items()}
    if not s["alloc_slab"]:
        return ""
    total_alloc = s["alloc_fastpath"] + s["alloc_slowpath"]
    total_free = s["free_fastpath"] + s["free_slowpath"]
    if not total_alloc:
        return ""

    def pct_free(x: int) -> int:
        return x * 100 // total_free if total_free else 0

    row = "%-20s %8lu %8lu %3lu %3lu\n"   # "Fastpath             %8lu ..." etc.
    out = ["\n",
           "Slab Perf Counter       Alloc     Free %Al %Fr\n",
           "--------------------------------------------------\n"]
    slow = total_alloc - s["alloc_fastpath"]
    add_partial = s["deactivate_to_head"] + s["deactivate_to_tail"]
    for label, a, f in (
            ("Fastpath", s["alloc_fastpath"], s["free_fastpath"]),
            ("Slowpath", slow, s["free_slowpath"]),
            ("Page Alloc", s["alloc_slab"], s["free_slab"]),
            ("Add partial", add_partial, s["free_add_partial"]),
            ("Remove partial", s["alloc_from_partial"], s["free_remove_partial"]),
            ("Cpu partial list", s["cpu_partial_alloc"], s["cpu_partial_free"]),
            ("RemoteObj/SlabFrozen", s["deactivate_remote_frees"], s["free_frozen"])):
        out.append(row % (label, a, f, a * 100 // total_alloc, pct_free(f)))
    out.append("Total                %8lu %8lu\n\n" % (total_alloc, total_free))

    if s["cpuslab_flush"]:
        out.append("Flushes %8lu\n" % s["cpuslab_flush"])

    total = (s["deactivate_full"] + s["deactivate_empty"] + s["deactivate_to_head"]
             + s["deactivate_to_tail"] + s["deactivate_bypass"])
    if total:
        out.append("\nSlab Deactivation             Ocurrences  %\n")
        out.append("-------------------------------------------------\n")
        for label, x in (
                ("Slab full", s["deactivate_full"]),
                ("Slab empty", s["deactivate_empty"]),
                ("Moved to head of partial list", s["deactivate_to_head"]),
                ("Moved to tail of partial list", s["deactivate_to_tail"]),
                ("Deactivation bypass", s["deactivate_bypass"]),
                ("Refilled from foreign frees", s["alloc_refill"]),
                ("Node mismatch", s["alloc_node_mismatch"])):
            out.append("%-29s %7lu  %3lu%%\n" % (label, x, x * 100 // total))

    if s["cmpxchg_double_fail"] or s["cmpxchg_double_cpu_fail"]:
        out.append("\nCmpxchg_double Looping\n------------------------\n")
    out.append("Locked Cmpxchg Double redos   %lu\nUnlocked Cmpxchg Double redos %lu\n"
               % (s["cmpxchg_double_fail"], s["cmpxchg_double_cpu_fail"]))
    return "".join(out)
