"""Tests for slubcy.analysis.report: /proc/slabinfo, tools/vm/slabinfo and the SLUB
statistics files, on synthetic cache dicts whose expected output is worked
out by hand below."""

import importlib.util
import pathlib
import sys

import pandas as pd
import pytest

try:
    from slubcy.analysis import report
except Exception:  # report.py is pure Python: test it even if the compiled core is not built
    _path = pathlib.Path(__file__).resolve().parents[1] / "slubcy" / "report.py"
    _spec = importlib.util.spec_from_file_location("slubcy_report_standalone", _path)
    report = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = report
    _spec.loader.exec_module(report)


# Kernel flag bits (include/linux/slab.h).
SLAB_CONSISTENCY_CHECKS = 0x100
SLAB_RED_ZONE = 0x400
SLAB_POISON = 0x800
SLAB_HWCACHE_ALIGN = 0x2000
SLAB_CACHE_DMA = 0x4000
SLAB_STORE_USER = 0x10000
SLAB_RECLAIM_ACCOUNT = 0x20000
SLAB_PANIC = 0x40000
SLAB_TYPESAFE_BY_RCU = 0x80000
SLAB_TRACE = 0x200000
SLAB_ACCOUNT = 0x04000000


def cache(name, **kw):
    d = dict(name=name, object_size=192, size=192, align=64, offset=0, order=0,
             objects_per_slab=21, pages_per_slab=1, flags=0, min_partial=5,
             cpu_partial=30, nr_slabs=0, nr_partial=0, total_objects=0,
             partial_free_objects=0, cpu_slabs=0, cpu_partial_slabs=0,
             root=None, memcg=None)
    d.update(kw)
    return d


# The worked example.  A dentry-like cache: 192-byte objects, order 0, so
# 4096 // 192 = 21 objects per slab.  10 slabs -> 210 object slots.  3 slabs
# on the node partial list holding 25 free objects; 2 vCPUs have a cpu slab,
# 1 slab sits on a per-cpu partial list.
#
# /proc/slabinfo (get_slabinfo + cache_show):
#   active_objs = 210 - 25 = 185, num_objs = 210, objsize = size = 192,
#   objperslab = 21, pagesperslab = 1 << 0 = 1, tunables 0 0 0,
#   active_slabs = num_slabs = 10, sharedavail 0.
#   "%-17s" pads "dentry" (6) with 11 blanks; " %6lu" of 185 is "    185", ...
#
# tools/vm/slabinfo (slabcache):
#   Objects = 185 (sysfs objects = total - count_partial(count_free)),
#   Objsize = object_size = 192,
#   Space = store_size(10 * 4096 = 40960): > 1000, 40960 // 100 = 409 -> "40.9K",
#   cpu_slabs (sysfs) = 2 cpu slabs + 1 per-cpu partial slab = 3,
#   Slabs/Part/Cpu = (10 - 3)/3/3 = "7/3/3",
#   O/S = 21, O = 0,
#   %Fr = 3 * 100 // 10 = 30,
#   %Ef = 185 * 192 * 100 // 40960 = 3552000 // 40960 = 86 (86.7 truncated),
#   Flg: HWCACHE_ALIGN -> 'A', RECLAIM_ACCOUNT -> 'a', PANIC has no letter: "Aa".
DENTRY = cache("dentry", flags=SLAB_HWCACHE_ALIGN | SLAB_RECLAIM_ACCOUNT | SLAB_PANIC,
               nr_slabs=10, nr_partial=3, total_objects=210, partial_free_objects=25,
               cpu_slabs=2, cpu_partial_slabs=1)

PROC_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>\n")
DENTRY_PROC_ROW = ("dentry" + " " * 11 + "    185    210    192   21    1"
                   " : tunables    0    0    0 : slabdata     10     10      0\n")

TOOLS_HEADER = ("Name" + " " * 19 + "Objects Objsize    Space Slabs/Part/Cpu  O/S O %Fr %Ef Flg\n")
DENTRY_TOOLS_ROW = ("dentry" + " " * 15 + "      185     192    40.9K          7/3/3   21 0  30  86 Aa\n")


# ---------------------------------------------------------------------------
# /proc/slabinfo
# ---------------------------------------------------------------------------

def test_proc_header_and_row_exact():
    assert report.proc_slabinfo([DENTRY]) == PROC_HEADER + DENTRY_PROC_ROW


def test_proc_header_columns_line_up_with_rows():
    header = PROC_HEADER.splitlines()[1]
    row = DENTRY_PROC_ROW.rstrip("\n")
    # "%-17s " is 18 wide: "# name" plus 12 blanks.
    assert header.index("<active_objs>") == 18
    assert header[18:].split(" : ")[0].count("<") == 5
    assert row[:18] == "dentry" + " " * 12
    assert row.count(":") == header.count(":") == 2


def test_proc_empty_list_prints_header_only():
    assert report.proc_slabinfo([]) == PROC_HEADER


def test_proc_objsize_is_size_and_pagesperslab_from_order():
    # kmalloc-96 with red zone and user tracking: object_size 96, size 168.
    # order 1 -> pagesperslab 1 << 1 = 2; 8192 // 168 = 48 objects per slab.
    # 4 slabs, 192 slots, 40 free on partial slabs -> 152 active.
    c = cache("kmalloc-96", object_size=96, size=168, order=1, objects_per_slab=48,
              pages_per_slab=2, nr_slabs=4, nr_partial=2, total_objects=192,
              partial_free_objects=40)
    row = report.proc_slabinfo([c]).splitlines()[2]
    assert row == ("kmalloc-96" + " " * 7 + "    152    192    168   48    2"
                   " : tunables    0    0    0 : slabdata      4      4      0")


def test_proc_long_name_is_not_truncated():
    c = cache("a_very_long_cache_name_indeed", nr_slabs=1, total_objects=21)
    row = report.proc_slabinfo([c]).splitlines()[2]
    assert row.startswith("a_very_long_cache_name_indeed     21     21    192")


def test_proc_rows_in_given_order():
    a = cache("zeta", nr_slabs=1, total_objects=21)
    b = cache("Alpha", nr_slabs=1, total_objects=21)
    lines = report.proc_slabinfo([a, b]).splitlines()[2:]
    assert [line.split()[0] for line in lines] == ["zeta", "Alpha"]


# ---------------------------------------------------------------------------
# memcg accumulation (memcg_accumulate_slabinfo)
# ---------------------------------------------------------------------------

# Two per-memcg children of dentry, one of them of an offlined memcg (a dead
# cache that still holds a slab).  Child 1: 3 slabs, 63 slots, 10 free on
# partial slabs -> 53 active.  Child 2: 1 slab, 21 slots, 20 free -> 1 active.
# Accumulated row: active_objs 185 + 53 + 1 = 239, num_objs 210 + 63 + 21 = 294,
# active_slabs = num_slabs = 10 + 3 + 1 = 14; objsize/objperslab/pagesperslab
# stay the root's.
CHILD1 = cache("dentry(2:job-1)", root="dentry", memcg="job-1", nr_slabs=3, nr_partial=1,
               total_objects=63, partial_free_objects=10, cpu_slabs=1,
               flags=SLAB_HWCACHE_ALIGN | SLAB_RECLAIM_ACCOUNT)
CHILD2 = cache("dentry(3:job-2)", root="dentry", memcg="job-2", nr_slabs=1, nr_partial=1,
               total_objects=21, partial_free_objects=20,
               flags=SLAB_HWCACHE_ALIGN | SLAB_RECLAIM_ACCOUNT)
OTHER = cache("filp", object_size=256, size=256, objects_per_slab=16, nr_slabs=2,
              nr_partial=0, total_objects=32, partial_free_objects=0, cpu_slabs=1,
              flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC)


def test_memcg_children_fold_into_root_row():
    text = report.proc_slabinfo([CHILD1, DENTRY, OTHER, CHILD2])
    lines = text.splitlines()
    assert len(lines) == 4                          # header x2, dentry, filp
    assert lines[2] == ("dentry" + " " * 11 + "    239    294    192   21    1"
                        " : tunables    0    0    0 : slabdata     14     14      0")
    assert lines[3].startswith("filp" + " " * 13 + "     32     32    256   16    1")


def test_memcg_frame_matches_accumulated_row():
    frame = report.slabinfo_frame([DENTRY, CHILD1, CHILD2, OTHER])
    assert list(frame["name"]) == ["dentry", "filp"]
    row = frame.iloc[0]
    assert (row["active_objs"], row["num_objs"], row["active_slabs"], row["num_slabs"]) == \
        (239, 294, 14, 14)
    assert (row["objsize"], row["objperslab"], row["pagesperslab"]) == (192, 21, 1)


def test_memcg_child_without_root_is_an_error():
    orphan = cache("dentry(9:x)", root="nosuch", memcg="x")
    with pytest.raises(ValueError, match="nosuch"):
        report.proc_slabinfo([DENTRY, orphan])
    with pytest.raises(ValueError, match="nosuch"):
        report.tools_slabinfo([DENTRY, orphan])


def test_tools_lists_memcg_children_separately():
    text = report.tools_slabinfo([DENTRY, CHILD1, CHILD2, OTHER])
    names = [line.split()[0] for line in text.splitlines()[1:]]
    # Sorted by name with strcasecmp, children under their own names.
    assert names == ["dentry", "dentry(2:job-1)", "dentry(3:job-2)", "filp"]
    lines = text.splitlines()
    # dentry's own numbers, not accumulated.
    assert lines[1] == DENTRY_TOOLS_ROW.rstrip("\n")
    # Child 1: objects 53, Space 3*4096 = 12288 -> "12.2K", cpu 1,
    # slabs 3 - 1 = 2, "2/1/1", %Fr 100 // 3 = 33, %Ef 53*192*100 // 12288 = 82.
    assert lines[2] == ("dentry(2:job-1)" + " " * 6 +
                        "       53     192    12.2K          2/1/1   21 0  33  82 Aa")
    # include_memcg=False: what the 3.16/4.0 tool shows (children are under
    # /sys/kernel/slab/<root>/cgroup/, which it does not read).
    names = [line.split()[0] for line in
             report.tools_slabinfo([DENTRY, CHILD1, CHILD2, OTHER],
                                   include_memcg=False).splitlines()[1:]]
    assert names == ["dentry", "filp"]


# ---------------------------------------------------------------------------
# tools/vm/slabinfo
# ---------------------------------------------------------------------------

def test_tools_header_and_row_exact():
    assert report.tools_slabinfo([DENTRY]) == TOOLS_HEADER + DENTRY_TOOLS_ROW


def test_tools_header_columns_line_up_with_rows():
    header = TOOLS_HEADER.rstrip("\n")
    row = DENTRY_TOOLS_ROW.rstrip("\n")
    # Every header word ends where its right-aligned field ends.
    for word, field in (("Objects", "185"), ("Objsize", "192"), ("Space", "40.9K"),
                        ("Slabs/Part/Cpu", "7/3/3"), ("O/S", "21"), ("%Fr", "30"),
                        ("%Ef", "86")):
        assert header.index(word) + len(word) == row.index(" " + field + " ") + 1 + len(field)


@pytest.mark.parametrize("value, text", [
    (0, "0"),
    (999, "999"),
    (1000, "1000"),              # not > 1000: printed as is
    (1001, "1.0K"),              # 1001 // 100 = 10
    (4096, "4.0K"),
    (40960, "40.9K"),            # truncated, not rounded (40.96)
    (999999, "999.9K"),
    (1000000, "1000.0K"),        # not > 1000000: still K
    (1000001, "1.0M"),
    (1048576, "1.0M"),           # decimal units: 1 MiB is 1.0M
    (123456789, "123.4M"),
    (1000000000, "1000.0M"),
    (1000000001, "1.0G"),
    (5368709120, "5.3G"),        # 5 GiB: 5368709120 // 10**8 = 53 -> "5.3G"
])
def test_store_size_rounding(value, text):
    assert report.store_size(value) == text


def test_store_size_rejects_negative_and_non_integers():
    with pytest.raises(ValueError):
        report.store_size(-1)
    with pytest.raises(TypeError):
        report.store_size(1.5)


@pytest.mark.parametrize("flags, letters", [
    (0, ""),
    (SLAB_CACHE_DMA, "d"),
    (SLAB_HWCACHE_ALIGN, "A"),
    (SLAB_POISON, "P"),
    (SLAB_RECLAIM_ACCOUNT, "a"),
    (SLAB_RED_ZONE, "Z"),
    (SLAB_CONSISTENCY_CHECKS, "F"),
    (SLAB_STORE_USER, "U"),
    (SLAB_TRACE, "T"),
    (SLAB_PANIC | SLAB_TYPESAFE_BY_RCU | SLAB_ACCOUNT, ""),
    # slabcache() appends in the order d A P a Z F U T, whatever the bits.
    (SLAB_TRACE | SLAB_STORE_USER | SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE
     | SLAB_RECLAIM_ACCOUNT | SLAB_POISON | SLAB_HWCACHE_ALIGN | SLAB_CACHE_DMA, "dAPaZFUT"),
    (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_CONSISTENCY_CHECKS, "PZFU"),
])
def test_flag_letters(flags, letters):
    c = cache("c", flags=flags, nr_slabs=1, total_objects=21)
    line = report.tools_slabinfo([c]).splitlines()[1]
    assert line.endswith(" " + letters)
    assert report.tools_slabinfo_frame([c])["flags"].tolist() == [letters]


def test_no_flags_leaves_trailing_blank():
    # "%3ld %s\n" with an empty flag string still prints the blank.
    # %Ef = 21 * 192 * 100 // 4096 = 98.
    c = cache("c", nr_slabs=1, total_objects=21)
    assert report.tools_slabinfo([c]).splitlines()[1].endswith(" 98 ")


def test_empty_caches_skipped_unless_show_empty():
    empty = cache("empty_cache")
    assert report.tools_slabinfo([empty]) == ""        # no line, so no header either
    text = report.tools_slabinfo([DENTRY, empty])
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["dentry"]
    # -z: with slabs == 0, %Fr and %Ef print 100, Space 0, "0/0/0".
    text = report.tools_slabinfo([DENTRY, empty], show_empty=True)
    assert text.splitlines()[1] == DENTRY_TOOLS_ROW.rstrip("\n")
    assert text.splitlines()[2] == ("empty_cache" + " " * 10 +
                                    "        0     192        0          0/0/0   21 0 100 100 ")
    # -e: only the empty ones.
    text = report.tools_slabinfo([DENTRY, empty], only_empty=True)
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["empty_cache"]


def test_tools_sorted_case_insensitively():
    names = ["kmalloc-8", "TCP", "anon_vma", "Acpi-State", "a_b", "ab"]
    caches = [cache(n, nr_slabs=1, total_objects=21) for n in names]
    listed = [line.split()[0] for line in report.tools_slabinfo(caches).splitlines()[1:]]
    assert listed == ["a_b", "ab", "Acpi-State", "anon_vma", "kmalloc-8", "TCP"]


def test_tools_page_size_and_order():
    # order 3 with 16 KiB pages: one slab is 16384 << 3 = 131072 bytes.
    c = cache("big", object_size=8192, size=8192, order=3, objects_per_slab=16,
              nr_slabs=2, total_objects=32, partial_free_objects=0)
    row = report.tools_slabinfo_frame([c], page_size=16384).iloc[0]
    assert row["space"] == 262144
    assert row["eff_pct"] == 32 * 8192 * 100 // 262144        # 100
    assert "262.1K" in report.tools_slabinfo([c], page_size=16384)


def _parse_tools_line(line):
    parts = line.split()
    slabs, partial, cpu = (int(x) for x in parts[4].split("/"))
    return {
        "name": parts[0], "objects": int(parts[1]), "objsize": int(parts[2]),
        "space": parts[3], "slabs": slabs, "partial": partial, "cpu": cpu,
        "objs_per_slab": int(parts[5]), "order": int(parts[6]),
        "free_pct": int(parts[7]), "eff_pct": int(parts[8]),
        "flags": parts[9] if len(parts) > 9 else "",
    }


def test_tools_frame_equals_text():
    infos = [DENTRY, CHILD1, CHILD2, OTHER, cache("empty_cache")]
    frame = report.tools_slabinfo_frame(infos)
    assert list(frame.columns) == ["name", "objects", "objsize", "space", "slabs", "partial",
                                   "cpu", "objs_per_slab", "order", "free_pct", "eff_pct",
                                   "flags"]
    parsed = [_parse_tools_line(line) for line in report.tools_slabinfo(infos).splitlines()[1:]]
    assert len(frame) == len(parsed) == 4
    for (_, row), p in zip(frame.iterrows(), parsed):
        got = row.to_dict()
        assert report.store_size(got.pop("space")) == p.pop("space")
        assert got == p
    assert frame["objects"].dtype == "int64"


def test_slabinfo_frame_equals_text():
    infos = [DENTRY, CHILD1, OTHER, CHILD2]
    frame = report.slabinfo_frame(infos)
    assert list(frame.columns) == ["name", "active_objs", "num_objs", "objsize", "objperslab",
                                   "pagesperslab", "limit", "batchcount", "sharedfactor",
                                   "active_slabs", "num_slabs", "sharedavail"]
    # The frame's column names are the header's field names.
    header = report.proc_slabinfo([]).splitlines()[1]
    assert [f.strip("<>") for f in header.split() if f.startswith("<")] == list(frame.columns[1:])
    for (_, row), line in zip(frame.iterrows(), report.proc_slabinfo(infos).splitlines()[2:]):
        p = line.split()
        nums = [int(x) for x in p[1:6] + p[8:11] + p[13:16]]
        assert [row["name"]] + nums == list(row)
    assert all(frame[c].dtype == "int64" for c in frame.columns[1:])


def test_empty_frames_have_columns():
    assert list(report.slabinfo_frame([]).columns) == list(report.SLABINFO_COLUMNS)
    assert list(report.tools_slabinfo_frame([]).columns) == list(report.TOOLS_SLABINFO_COLUMNS)


def test_bad_cache_dicts_raise_clear_errors():
    bad = dict(DENTRY)
    del bad["nr_partial"]
    with pytest.raises(ValueError, match="nr_partial"):
        report.proc_slabinfo([bad])
    with pytest.raises(ValueError, match="total_objects"):
        report.tools_slabinfo([cache("x", total_objects=1, partial_free_objects=2)])
    with pytest.raises(ValueError, match=">= 0"):
        report.proc_slabinfo([cache("x", nr_slabs=-1)])
    with pytest.raises(TypeError):
        report.proc_slabinfo([cache("x", nr_slabs="3")])
    with pytest.raises(TypeError):
        report.proc_slabinfo(DENTRY)


# ---------------------------------------------------------------------------
# SLUB statistics
# ---------------------------------------------------------------------------

STAT_ORDER = [
    "ALLOC_FASTPATH", "ALLOC_SLOWPATH", "FREE_FASTPATH", "FREE_SLOWPATH", "FREE_FROZEN",
    "FREE_ADD_PARTIAL", "FREE_REMOVE_PARTIAL", "ALLOC_FROM_PARTIAL", "ALLOC_SLAB",
    "ALLOC_REFILL", "ALLOC_NODE_MISMATCH", "FREE_SLAB", "CPUSLAB_FLUSH", "DEACTIVATE_FULL",
    "DEACTIVATE_EMPTY", "DEACTIVATE_TO_HEAD", "DEACTIVATE_TO_TAIL",
    "DEACTIVATE_REMOTE_FREES", "DEACTIVATE_BYPASS", "ORDER_FALLBACK",
    "CMPXCHG_DOUBLE_CPU_FAIL", "CMPXCHG_DOUBLE_FAIL", "CPU_PARTIAL_ALLOC",
    "CPU_PARTIAL_FREE", "CPU_PARTIAL_NODE", "CPU_PARTIAL_DRAIN",
]


def make_stats(ncpu=3, **nonzero):
    stats = {name: [0] * ncpu for name in STAT_ORDER}
    for name, counts in nonzero.items():
        stats[name.upper()] = list(counts)
    return stats


def test_stats_frame_order_columns_totals():
    stats = make_stats(ALLOC_FASTPATH=[4854, 0, 5114], CPU_PARTIAL_DRAIN=[0, 2, 0])
    # Give the dict in reverse order: the frame follows enum stat_item anyway.
    frame = report.stats_frame(dict(reversed(list(stats.items()))))
    assert list(frame.index) == STAT_ORDER
    assert frame.index.name == "stat"
    assert list(frame.columns) == ["cpu0", "cpu1", "cpu2", "total"]
    assert frame.loc["ALLOC_FASTPATH"].tolist() == [4854, 0, 5114, 9968]
    assert frame.loc["CPU_PARTIAL_DRAIN", "total"] == 2
    assert frame["total"].sum() == 9970
    assert all(frame[c].dtype == "int64" for c in frame.columns)


def test_stats_text_single_file_only_nonzero_cpus():
    stats = make_stats(ALLOC_FASTPATH=[4854, 0, 5114])
    assert report.stats_text(stats, "alloc_fastpath") == "9968 C0=4854 C2=5114\n"
    assert report.stats_text(stats, "ALLOC_FASTPATH") == "9968 C0=4854 C2=5114\n"
    assert report.stats_text(stats, "free_slab") == "0\n"


def test_stats_text_all_files():
    stats = make_stats(ALLOC_FASTPATH=[4854, 0, 5114], FREE_SLOWPATH=[0, 7, 0])
    lines = report.stats_text(stats).splitlines()
    assert len(lines) == 26
    assert lines[0] == "alloc_fastpath:9968 C0=4854 C2=5114"
    assert lines[3] == "free_slowpath:7 C1=7"
    assert lines[-1] == "cpu_partial_drain:0"
    assert [line.split(":")[0] for line in lines] == [n.lower() for n in STAT_ORDER]


def test_stats_accept_lowercase_and_missing_items():
    frame = report.stats_frame({"alloc_slab": [1, 2]})
    assert frame.loc["ALLOC_SLAB"].tolist() == [1, 2, 3]
    assert frame.drop(index="ALLOC_SLAB")["total"].sum() == 0


def test_stats_bad_input():
    with pytest.raises(ValueError, match="NOT_A_STAT"):
        report.stats_frame({"NOT_A_STAT": [1]})
    with pytest.raises(ValueError, match="expected 2"):
        report.stats_frame({"ALLOC_SLAB": [1, 2], "FREE_SLAB": [1]})
    with pytest.raises(ValueError, match="twice"):
        report.stats_frame({"ALLOC_SLAB": [1], "alloc_slab": [1]})
    with pytest.raises(ValueError):
        report.stats_frame({"ALLOC_SLAB": [-1]})
    with pytest.raises(TypeError):
        report.stats_frame({"ALLOC_SLAB": 5})
    with pytest.raises(ValueError):
        report.stats_text(make_stats(), "bogus")


# slab_stats() of tools/vm/slabinfo -r, worked by hand.  Sums:
#   alloc: fastpath 900 + slowpath 100 = 1000; free: 700 + 300 = 1000.
#   Fastpath   900  700  900*100/1000 = 90  700*100/1000 = 70
#   Slowpath   1000-900 = 100  300  10  30
#   Page Alloc 20  5  2  0 (0.5 truncated)
#   Add partial  to_head 3 + to_tail 1 = 4  free_add_partial 40  0  4
#   Remove partial  alloc_from_partial 30  free_remove_partial 8  3  0
#   Cpu partial list  25  50  2  5
#   RemoteObj/SlabFrozen  2  150  0  15
#   Flushes 4.  Deactivations: 6 + 2 + 3 + 1 + 8 = 20:
#   full 6 -> 30%, empty 2 -> 10%, head 3 -> 15%, tail 1 -> 5%, bypass 8 -> 40%,
#   refilled 5 -> 25%, node mismatch 0 -> 0%.
#   cmpxchg_double_fail 7, cmpxchg_double_cpu_fail 1.
R_STATS = make_stats(
    2,
    ALLOC_FASTPATH=[600, 300], ALLOC_SLOWPATH=[100, 0], FREE_FASTPATH=[700, 0],
    FREE_SLOWPATH=[0, 300], ALLOC_SLAB=[20, 0], FREE_SLAB=[5, 0],
    DEACTIVATE_TO_HEAD=[3, 0], DEACTIVATE_TO_TAIL=[0, 1], FREE_ADD_PARTIAL=[40, 0],
    ALLOC_FROM_PARTIAL=[30, 0], FREE_REMOVE_PARTIAL=[8, 0], CPU_PARTIAL_ALLOC=[25, 0],
    CPU_PARTIAL_FREE=[50, 0], DEACTIVATE_REMOTE_FREES=[2, 0], FREE_FROZEN=[150, 0],
    CPUSLAB_FLUSH=[4, 0], DEACTIVATE_FULL=[6, 0], DEACTIVATE_EMPTY=[2, 0],
    DEACTIVATE_BYPASS=[8, 0], ALLOC_REFILL=[5, 0], CMPXCHG_DOUBLE_FAIL=[7, 0],
    CMPXCHG_DOUBLE_CPU_FAIL=[0, 1])

R_TEXT = (
    "\n"
    "Slab Perf Counter       Alloc     Free %Al %Fr\n"
    "--------------------------------------------------\n"
    "Fastpath                  900      700  90  70\n"
    "Slowpath                  100      300  10  30\n"
    "Page Alloc                 20        5   2   0\n"
    "Add partial                 4       40   0   4\n"
    "Remove partial             30        8   3   0\n"
    "Cpu partial list           25       50   2   5\n"
    "RemoteObj/SlabFrozen        2      150   0  15\n"
    "Total                    1000     1000\n"
    "\n"
    "Flushes        4\n"
    "\n"
    "Slab Deactivation             Ocurrences  %\n"
    "-------------------------------------------------\n"
    "Slab full                           6   30%\n"
    "Slab empty                          2   10%\n"
    "Moved to head of partial list       3   15%\n"
    "Moved to tail of partial list       1    5%\n"
    "Deactivation bypass                 8   40%\n"
    "Refilled from foreign frees         5   25%\n"
    "Node mismatch                       0    0%\n"
    "\n"
    "Cmpxchg_double Looping\n"
    "------------------------\n"
    "Locked Cmpxchg Double redos   7\n"
    "Unlocked Cmpxchg Double redos 1\n")


def test_tools_slabinfo_stats_exact():
    assert report.tools_slabinfo_stats(R_STATS) == R_TEXT


def test_tools_slabinfo_stats_quirks():
    # Nothing without ALLOC_SLAB (or without allocations).
    assert report.tools_slabinfo_stats(make_stats(ALLOC_FASTPATH=[5, 0, 0])) == ""
    assert report.tools_slabinfo_stats(make_stats(ALLOC_SLAB=[1, 0, 0])) == ""
    # No frees, no flushes, no deactivations, no cmpxchg failures: the %Fr
    # column is 0, the optional blocks vanish, but the two "redos" lines stay
    # (the missing braces in slab_stats()).
    text = report.tools_slabinfo_stats(make_stats(ALLOC_SLOWPATH=[1, 0, 0], ALLOC_SLAB=[1, 0, 0]))
    assert "Page Alloc                  1        0 100   0\n" in text
    assert "Flushes" not in text and "Deactivation" not in text and "Looping" not in text
    assert text.endswith("Total                       1        0\n\n"
                         "Locked Cmpxchg Double redos   0\nUnlocked Cmpxchg Double redos 0\n")
