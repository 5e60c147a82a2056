"""The trace parsers (slubcy.trace): recorded traces of this machine's kernel
(tests/traces/*.xz, see tests/traces/README.md), hand-written lines of every
other kernel generation (tests/traces/handwritten/), synthetic edge cases,
round trips of generated lines, bad input and the `slubcy trace` CLI."""
import bz2
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

from slubcy.trace import (KFREE, KMALLOC, KMEM_CACHE_ALLOC, KMEM_CACHE_FREE, GFP_ABSENT,
                          GFP_HEX, GFP_PARTIAL, GFP_SYMBOLIC, TraceError, parse, parse_text)
from slubcy.trace import gfp as gfpmod

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = os.path.join(HERE, "traces")
HAND = os.path.join(TRACES, "handwritten")
ROOT = os.path.dirname(HERE)
RECORDED = sorted(f for f in os.listdir(TRACES) if f.endswith(".txt.xz"))
EV = {"kmalloc": KMALLOC, "kfree": KFREE, "kmem_cache_alloc": KMEM_CACHE_ALLOC,
      "kmem_cache_free": KMEM_CACHE_FREE, "kmalloc_node": KMALLOC,
      "kmem_cache_alloc_node": KMEM_CACHE_ALLOC}


def hand(name):
    return parse(os.path.join(HAND, name), progress=False)


# ------------------------------------------------------------ a slow reference parser

LINE = re.compile(r"^\s*(?P<comm>.*?)[- ](?P<tid>\d+)\s+(?:\(\s*\d+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                  r"(?:[^\d\s]\S*\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?:kmem:)?(?P<ev>\w+):\s+(?P<rest>.*)$")


def reference(text):
    """Rows as dicts, by regular expressions: an independent reading of the
    same lines (perf script / tracefs, no edge cases)."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        f = dict(kv.split("=", 1) for kv in m["rest"].split())
        secs, _, frac = m["ts"].partition(".")
        p = f["ptr"]
        rows.append(dict(
            event=EV[m["ev"]], cpu=int(m["cpu"]), tid=int(m["tid"]), comm=m["comm"].strip(),
            ts_ns=int(secs) * 10**9 + int((frac + "000000000")[:9]),
            ptr=0 if p in ("(nil)", "(null)") else int(p, 16),
            bytes_req=int(f.get("bytes_req", -1)), bytes_alloc=int(f.get("bytes_alloc", -1)),
            node=int(f.get("node", -1)),
            accounted={"true": 1, "false": 0}.get(f.get("accounted"), -1),
            name=f.get("name"), call_site=f["call_site"],
            gfp=gfpmod.decode(f["gfp_flags"])[0] if "gfp_flags" in f else 0))
    return rows


def assert_rows_equal(t, rows):
    assert len(t) == len(rows)
    for col in ("event", "cpu", "tid", "ts_ns", "ptr", "bytes_req", "bytes_alloc", "node",
                "accounted", "gfp"):
        np.testing.assert_array_equal(t.columns[col], np.array([r[col] for r in rows],
                                                               dtype=t.columns[col].dtype), col)
    for col in ("name", "call_site", "comm"):
        assert [t.string(col, i) for i in range(len(t))] == [r[col] for r in rows], col


# ------------------------------------------------------------ recorded traces

@pytest.mark.parametrize("fname", RECORDED)
def test_recorded_trace(fname):
    t = parse(os.path.join(TRACES, fname), progress=False)
    r = t.report
    assert r.unparseable == 0 and r.events > 5000
    assert r.events == r.lines - r.header_lines
    assert sum(r.events_by_type.values()) == r.events == len(t)
    assert all(v > 0 for v in r.events_by_type.values())
    assert r.generation == "6.18+"             # this machine's kernel (uname -r: 6.18)
    assert r.accounted_from == "field"
    f = r.features
    assert f["name_on_alloc"] and f["name_on_free"] and f["accounted_field"] and f["node_field"]
    assert f["symbolic_call_site"] and not f["node_events"] and f["kfree_null"]
    if ".perf." in fname:
        assert r.format == "perf-script" and not r.hashed_pointers
    else:
        assert r.format == "tracefs" and f["latency_flags"]
        assert r.hashed_pointers == ("nohash" not in fname)
    ev = t.event
    alloc = (ev == KMALLOC) | (ev == KMEM_CACHE_ALLOC)
    assert (t.bytes_alloc[alloc] >= t.bytes_req[alloc]).all()
    assert (t.bytes_req[alloc] > 0).all() and (t.bytes_req[~alloc] == -1).all()
    assert (t.name[ev == KMEM_CACHE_ALLOC] >= 0).all() and (t.name[ev == KMALLOC] == -1).all()
    assert (t.accounted[alloc] >= 0).all() and (t.accounted[~alloc] == -1).all()
    assert (t.gfp_kind[alloc] == GFP_SYMBOLIC).all() and (t.gfp_kind[~alloc] == GFP_ABSENT).all()
    assert (t.call_site >= 0).all() and (t.comm >= 0).all()
    assert r.null_frees == int(((ev == KFREE) & (t.ptr == 0)).sum()) > 0
    nz = t.ptr[t.ptr != 0]
    if r.hashed_pointers:
        assert (nz >> np.uint64(32) == 0).all()
    else:
        assert (nz >> np.uint64(48) == 0xffff).all()
    assert (np.diff(t.line) > 0).all()
    assert set(np.unique(t.cpu)) <= set(range(r.cpus))


@pytest.mark.parametrize("fname", ["cc-compile.perf.txt.xz", "ls-etc.tracefs-nohash.txt.xz"])
def test_recorded_matches_reference_parser(fname):
    text = lzma.open(os.path.join(TRACES, fname)).read().decode()
    assert_rows_equal(parse(os.path.join(TRACES, fname), progress=False), reference(text))


def test_compressed_and_chunked_inputs_agree(tmp_path):
    src = os.path.join(TRACES, "cc-compile.perf.txt.xz")
    raw = lzma.open(src).read()
    (tmp_path / "t.txt").write_bytes(raw)
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "t.txt.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "t.dat").write_bytes(lzma.compress(raw))     # detected by magic, not name
    base = parse(src, progress=False)
    for name, comp in (("t.txt", "none"), ("t.txt.gz", "gzip"), ("t.txt.bz2", "bz2"),
                       ("t.dat", "xz")):
        for chunk in (1 << 20, 4096, 97):
            t = parse(str(tmp_path / name), progress=False, chunk_size=chunk)
            assert t.report.compression == comp
            for col in base.columns:
                np.testing.assert_array_equal(t.columns[col], base.columns[col])
            assert t.strings == base.strings


def test_progress_bar_on_request(capsys):
    parse(os.path.join(TRACES, "cc-compile.perf.txt.xz"), progress=True)
    assert "parsing" in capsys.readouterr().err


# ------------------------------------------------------------ every generation (hand-written)

def test_v4_19_tracefs_hex_call_site_node_events_padded_null():
    t = hand("v4.19.tracefs.txt")
    r = t.report
    assert (r.format, r.generation, r.events, r.unparseable) == ("tracefs", "<=5.3", 7, 0)
    assert r.hashed_pointers and r.node_events == 2 and r.features["hex_call_site"]
    assert not r.features["symbolic_call_site"]
    assert list(t.event) == [KMEM_CACHE_ALLOC, KMALLOC, KMALLOC, KMEM_CACHE_ALLOC, KFREE,
                             KMEM_CACHE_FREE, KFREE]
    assert list(t.node) == [-1, -1, 1, -1, -1, -1, -1]
    assert t.string("call_site", 0) == "ffffffff8121d7a2"
    assert t.string("comm", 3) == "kworker/2:1" and t.tid[3] == 97
    assert t.string("comm", 6) == "<idle>" and t.tid[6] == 0
    assert t.ptr[6] == 0 and r.null_frees == 1          # "ptr=          (null)"
    assert t.ptr[1] == 0x4e6c5b2e and t.ts_ns[0] == 411_094_521_000
    # accounted from the gfp names: kmalloc GFP_KERNEL_ACCOUNT 1, GFP_KERNEL|__GFP_ZERO 0;
    # kmem_cache_alloc without __GFP_ACCOUNT unknown (SLAB_ACCOUNT is not in gfp)
    assert list(t.accounted) == [-1, 1, 0, -1, -1, -1, -1]
    assert r.accounted_from == "gfp_flags"


def test_v4_9_perf():
    t = hand("v4.9.perf.txt")
    r = t.report
    assert (r.format, r.generation, r.events) == ("perf-script", "<=5.3", 5)
    assert not r.hashed_pointers and t.ptr[0] == 0xffff88003a8c1200
    assert list(t.accounted) == [-1, 1, 0, -1, -1] and list(t.node) == [-1, -1, 0, -1, -1]


@pytest.mark.parametrize("fname", ["v5.4.tracefs.txt", "v5.4.perf.txt"])
def test_v5_4_symbolic_call_site(fname):
    t = hand(fname)
    r = t.report
    assert r.generation == "5.4-5.11" and r.features["symbolic_call_site"]
    assert not r.features["hex_call_site"] and not r.features["name_on_free"]
    assert t.string("call_site", 0).startswith("__alloc_file+0x21")
    assert (t.name == -1).all()


def test_v5_12_name_on_free():
    t = hand("v5.12.tracefs.txt")
    assert t.report.generation == "5.12-5.19"
    assert t.string("name", 3) == "dentry" and t.event[3] == KMEM_CACHE_FREE
    assert list(t.accounted) == [1, 1, -1, -1, -1]      # GFP_KERNEL_ACCOUNT on both allocs
    assert t.node[2] == 0 and t.report.node_events == 1


def test_v5_15_accounted_from_gfp_names():
    t = hand("v5.15.perf.txt")
    r = t.report
    assert r.generation == "5.12-5.19" and r.accounted_from == "gfp_flags"
    # __GFP_ACCOUNT / GFP_KERNEL_ACCOUNT -> 1; a kmalloc without -> 0 (kmalloc-N, not -cg-N)
    assert list(t.accounted) == [1, 1, 0, 1, -1, -1, -1]
    assert t.gfp[1] & gfpmod.ACCOUNT and not t.gfp[2] & gfpmod.ACCOUNT
    assert t.gfp[1] == gfpmod.NAMES["GFP_KERNEL"] | gfpmod.ACCOUNT


def test_v5_15_trace_cmd_hex_gfp_and_raw_fields():
    t = hand("v5.15.trace-cmd-hex.txt")
    r = t.report
    assert (r.format, r.events, r.header_lines, r.unparseable) == ("trace-cmd", 6, 3, 0)
    assert r.features["raw_fields"] and r.features["gfp_hex"]
    assert list(t.gfp[:4]) == [0x400cd0, 0x400cc0, 0xcc0, 0x400dc0]
    assert (t.gfp_kind[:4] == GFP_HEX).all()
    assert list(t.accounted[:4]) == [1, 1, 0, 1]        # bit 0x400000, 5.4+ layout
    assert t.string("call_site", 0) == "0xffffffffa1b2c3d4"


def test_hex_gfp_of_an_old_kernel_is_not_read_for_account():
    # <= 5.3 (hex call sites): ___GFP_ACCOUNT was 0x100000 before 4.15
    t = parse_text("  a-1 [000] 1.0: kmalloc: call_site=ffffffff81000000 ptr=0xffff888000001000 "
                   "bytes_req=8 bytes_alloc=8 gfp_flags=0x4000c0\n")
    assert t.gfp[0] == 0x4000c0 and t.accounted[0] == -1 and t.report.accounted_from == "none"


def test_v6_0_accounted_field_and_node_events():
    t = hand("v6.0.tracefs.txt")
    r = t.report
    assert r.generation == "6.0" and r.accounted_from == "field"
    assert list(t.accounted) == [1, 0, 1, 1, -1, -1] and list(t.node[:4]) == [-1, -1, -1, 0]


@pytest.mark.parametrize("fname", ["v6.1.trace-cmd.txt", "v6.1.trace-cmd-noflags.txt"])
def test_v6_1_trace_cmd(fname):
    t = hand(fname)
    r = t.report
    assert r.format == "trace-cmd" and r.generation == "6.1-6.17" and r.unparseable == 0
    assert r.features["latency_flags"] == ("noflags" not in fname)
    assert not r.hashed_pointers and t.ptr[0] == 0xffff9d8c81a2b3c0
    if "noflags" not in fname:
        assert t.node[2] == 1 and r.header_lines == 1


def test_perf_cgroup_column():
    t = hand("v6.8.perf-cgroup.txt")
    assert t.report.features["cgroup"] and t.report.unparseable == 0
    assert [t.string("cgroup", i) for i in range(4)] == [
        "/system.slice/ssh.service", "/user.slice/user-1000.slice/session-3.scope",
        "/user.slice/user-1000.slice/session-3.scope", "unknown"]
    assert t.string("name", 3) == "TCPv6" and t.string("comm", 3) == "kworker/0:1"


def test_tracefs_tgid_column_and_comm_with_spaces():
    t = hand("v6.8.tracefs-tgid.txt")
    assert t.report.unparseable == 0 and t.report.features["tgid_column"]
    assert t.string("comm", 0) == "Web Content" and t.tid[0] == 3301
    assert t.string("comm", 2) == "kworker/u8:2-ev" and t.tid[2] == 77 and t.ptr[2] == 0


def test_kmem_cache_alloc_name_6_18_and_kfree_null_forms():
    t = parse_text(
        "x 1 [000] 1.000001: kmem:kfree: call_site=f+0x1 ptr=(nil)\n"
        "x-1 [000] ..... 1.000002: kfree: call_site=f+0x1/0x2 ptr=0000000000000000\n"
        "x-1 [000] 1.000003: kfree:  call_site=f+0x1 ptr=0x0\n"
        "x-1 [000] 1.000004: kfree: call_site=f+0x1 ptr=(null)\n"
        "x 1 [001] 1.000005: kmem:kmem_cache_alloc: call_site=f+0x1 ptr=0xffff888100000040 "
        "name=kmalloc-cg-64 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL_ACCOUNT node=-1 accounted=true\n")
    assert list(t.ptr[:4]) == [0, 0, 0, 0] and t.report.null_frees == 4
    assert t.report.format == "mixed" and t.report.generation == "6.18+"
    assert t.string("name", 4) == "kmalloc-cg-64" and t.accounted[4] == 1


# ------------------------------------------------------------ edge cases

BASE = ("         bash 42 [001] 10.500000: kmem:kmalloc: call_site=seq_open+0x33 "
        "ptr=0xffff888100a00000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL|__GFP_ZERO "
        "node=-1 accounted=false")


def test_field_order_does_not_matter():
    head, _, fields = BASE.partition("kmem:kmalloc: ")
    parts = fields.split()
    a = parse_text(BASE + "\n")
    for k in range(len(parts)):
        b = parse_text(head + "kmem:kmalloc: " + " ".join(parts[k:] + parts[:k]) + "\n")
        for col in a.columns:
            if col != "line":
                np.testing.assert_array_equal(a.columns[col], b.columns[col])


def test_unknown_fields_are_ignored():
    t = parse_text(BASE + " lru=1 future_field=abc\n")
    assert len(t) == 1 and t.report.unparseable == 0


def test_truncated_lines_never_crash_and_are_counted():
    for cut in range(1, len(BASE)):
        t = parse_text(BASE[:cut] + "\n" + BASE + "\n", require_events=False)
        r = t.report
        other = sum(r.other_events.values())
        assert r.events + r.unparseable + r.header_lines + other == r.lines == 2
        assert t.bytes_req[-1] == 100
        if r.events == 2:   # every required field there (node=, accounted= are optional)
            assert cut > BASE.index("gfp_flags=") + len("gfp_flags=")
    t = parse_text(BASE + "\n" + BASE[:60])         # a last line without newline, cut
    assert t.report.truncated_last_line and t.report.unparseable == 1
    assert t.report.unparseable_lines == [(2, BASE[:60])]


def test_unknown_and_other_events_are_counted_not_unparseable():
    t = parse_text(
        "x 1 [000] 1.0: sched:sched_switch: prev_comm=x prev_pid=1 ==> next_comm=y\n"
        "x 1 [000] 1.1: kmem:mm_page_alloc: page=0xffffea0000000000 pfn=1 order=0\n"
        "x-1 [000] 1.2: kmem_cache_alloc_bulk: whatever=1\n" + BASE + "\n")
    r = t.report
    assert r.events == 1 and r.unparseable == 0
    assert r.other_events == {"sched_switch": 1, "mm_page_alloc": 1, "kmem_cache_alloc_bulk": 1}


def test_frees_before_allocs_and_hashed_collisions_are_kept_in_order():
    lines = [
        "a-1 [000] ..... 1.000001: kfree: call_site=f+0x1/0x2 ptr=00000000deadbeef",
        "a-1 [000] ..... 1.000002: kmalloc: call_site=f+0x1/0x2 ptr=00000000deadbeef bytes_req=8 "
        "bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false",
        # a second object hashing to the same 32-bit id while the first is live
        "b-2 [001] ..... 1.000003: kmem_cache_alloc: call_site=g+0x1/0x2 ptr=00000000deadbeef "
        "name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true",
        "a-1 [000] ..... 1.000004: kfree: call_site=f+0x1/0x2 ptr=00000000deadbeef",
    ]
    t = parse_text("\n".join(lines) + "\n")
    assert t.report.hashed_pointers and len(t) == 4
    assert (t.ptr == 0xdeadbeef).all()
    assert list(t.event) == [KFREE, KMALLOC, KMEM_CACHE_ALLOC, KFREE]
    assert list(t.line) == [1, 2, 3, 4]


def test_unparseable_lines_reported_with_numbers_and_strict():
    bad = BASE.replace("bytes_req=100", "bytes_req=lots")
    text = "\n".join([BASE, bad, "garbage after events", BASE, "x 1 [000] 1.0: kmem:kfree: ptr=0x1"]) + "\n"
    t = parse_text(text, max_examples=2)
    r = t.report
    assert r.events == 2 and r.unparseable == 3
    assert [n for n, _ in r.unparseable_lines] == [2, 3]
    with pytest.raises(TraceError, match="line 2"):
        parse_text(text, strict=True)


def test_crlf_and_preamble_and_comments():
    t = parse_text("version = 6\r\ncpus=2\r\n# comment\r\n" + BASE + "\r\n\r\n")
    assert t.report.header_lines == 4 and len(t) == 1 and t.report.unparseable == 0
    assert t.string("comm", 0) == "bash"


def test_perf_pid_tid_and_nanosecond_timestamps():
    t = parse_text("  bash 41/42 [003] 10.123456789: kmem:kfree: call_site=f+0x1 ptr=0x10\n"
                   "  bash-42 [003] 7: kfree: call_site=f+0x1 ptr=0x10\n")
    assert t.tid[0] == 42 and t.cpu[0] == 3 and t.ts_ns[0] == 10_123_456_789
    assert t.report.features["pid_tid"] and t.ts_ns[1] == 7      # a counter clock: raw


def test_gfp_unknown_names_are_partial():
    t = parse_text(BASE.replace("GFP_KERNEL|__GFP_ZERO", "GFP_KERNEL|__GFP_SOMETHING_NEW") + "\n")
    assert t.gfp_kind[0] == GFP_PARTIAL and t.gfp[0] == gfpmod.NAMES["GFP_KERNEL"]
    assert t.report.features["gfp_unknown_names"]


def test_gfp_names_decode():
    assert gfpmod.decode("none") == (0, True)
    assert gfpmod.decode("GFP_KERNEL_ACCOUNT")[0] == 0xcc0 | 0x400000
    assert gfpmod.decode("GFP_NOFS|__GFP_ZERO|__GFP_NOFAIL")[0] == 0xc40 | 0x100 | 0x8000
    assert gfpmod.decode("GFP_KERNEL|GFP_ZERO") == (0xcc0 | 0x100, True)   # 2.6-era spelling
    assert gfpmod.decode("GFP_FOO") == (0, False)


def test_to_frame():
    t = hand("v6.8.perf-cgroup.txt")
    df = t.to_frame()
    assert list(df["event"].astype(str)) == ["kmem_cache_alloc", "kmalloc", "kfree", "kmem_cache_free"]
    assert df["cgroup"].iloc[3] == "unknown" and df["name"].isna().sum() == 3


# ------------------------------------------------------------ round trips of generated lines

comm_st = st.text(alphabet=st.sampled_from("abcxyz/:-_. 019"), min_size=1, max_size=15).map(
    lambda s: s.strip() or "c").filter(lambda s: not s[0].isdigit() and not s.startswith("#"))
event_st = st.sampled_from(["kmalloc", "kfree", "kmem_cache_alloc", "kmem_cache_free",
                            "kmalloc_node", "kmem_cache_alloc_node"])
gfp_names = st.lists(st.sampled_from(sorted(n for n in gfpmod.NAMES if n != "none")),
                     min_size=1, max_size=4).map("|".join)


@st.composite
def event_line(draw):
    ev = draw(event_st)
    fmt = draw(st.sampled_from(["perf", "trace-cmd", "tracefs"]))
    v = dict(comm=draw(comm_st), tid=draw(st.integers(0, 4_000_000)), cpu=draw(st.integers(0, 4095)),
             secs=draw(st.integers(0, 10**7)), usecs=draw(st.integers(0, 999_999)),
             ptr=draw(st.one_of(st.just(0), st.integers(1, 2**32 - 1) if fmt == "tracefs"
                                else st.integers(2**63, 2**64 - 1))),
             cs=draw(st.one_of(st.from_regex(r"[a-z_][a-z_0-9.]{0,20}\+0x[0-9a-f]{1,4}", fullmatch=True),
                               st.integers(2**63, 2**64 - 1).map(lambda x: f"{x:x}"))),
             req=draw(st.integers(1, 2**22)), name=draw(st.from_regex(r"[a-z][a-z0-9_:-]{0,20}", fullmatch=True)),
             node=draw(st.integers(-1, 7)), acc=draw(st.sampled_from([None, True, False])),
             gfp=draw(st.one_of(gfp_names, st.integers(0, 2**26).map(hex))),
             with_name=draw(st.booleans()), cgroup=draw(st.sampled_from([None, "/a.slice/b"])))
    v["alloc"] = draw(st.integers(v["req"], v["req"] * 2))
    if fmt == "perf":
        ptr = "(nil)" if v["ptr"] == 0 else f"0x{v['ptr']:x}"
        head = f"{v['comm']:>16} {v['tid']:>5} [{v['cpu']:03d}] {v['secs']:5d}.{v['usecs']:06d}: {'kmem:' + ev:>22}: "
    else:
        ptr = f"{v['ptr']:016x}" if fmt == "tracefs" else ("(nil)" if v["ptr"] == 0 else f"0x{v['ptr']:x}")
        flags = " d..1." if fmt == "tracefs" else ""
        evs = f"{ev + ':':<21}" if fmt == "trace-cmd" else ev + ":"
        head = f"{v['comm']:>16}-{v['tid']:<7} [{v['cpu']:03d}]{flags} {v['secs']:5d}.{v['usecs']:06d}: {evs} "
    fields = [f"call_site={v['cs']}", f"ptr={ptr}"]
    alloc = ev in ("kmalloc", "kmem_cache_alloc", "kmalloc_node", "kmem_cache_alloc_node")
    if (ev.startswith("kmem_cache")) and v["with_name"]:
        fields.append(f"name={v['name']}")
    if alloc:
        fields += [f"bytes_req={v['req']}", f"bytes_alloc={v['alloc']}", f"gfp_flags={v['gfp']}"]
        if ev.endswith("_node") or v["node"] != -1:
            fields.append(f"node={v['node']}")
        if v["acc"] is not None:
            fields.append(f"accounted={'true' if v['acc'] else 'false'}")
    if fmt == "perf" and v["cgroup"]:
        fields.append(v["cgroup"])
    return ev, fmt, v, head + " ".join(fields)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_line(), min_size=1, max_size=6))
def test_generated_lines_round_trip(items):
    t = parse_text("\n".join(line for *_, line in items) + "\n")
    assert t.report.unparseable == 0, t.report.unparseable_lines
    assert len(t) == len(items)
    for i, (ev, fmt, v, line) in enumerate(items):
        alloc = ev in ("kmalloc", "kmem_cache_alloc", "kmalloc_node", "kmem_cache_alloc_node")
        assert t.event[i] == EV[ev]
        assert t.string("comm", i) == v["comm"].strip()
        assert (t.tid[i], t.cpu[i]) == (v["tid"], v["cpu"])
        assert t.ts_ns[i] == v["secs"] * 10**9 + v["usecs"] * 1000
        assert t.ptr[i] == v["ptr"]
        assert t.string("call_site", i) == v["cs"]
        named = ev.startswith("kmem_cache") and v["with_name"]
        assert t.string("name", i) == (v["name"] if named else None)
        if alloc:
            assert (t.bytes_req[i], t.bytes_alloc[i]) == (v["req"], v["alloc"])
            has_node = ev.endswith("_node") or v["node"] != -1
            assert t.node[i] == (v["node"] if has_node else -1)
            if v["gfp"].startswith("0x"):
                assert t.gfp_kind[i] == GFP_HEX and t.gfp[i] == int(v["gfp"], 16)
            else:
                assert t.gfp_kind[i] == GFP_SYMBOLIC and t.gfp[i] == gfpmod.decode(v["gfp"])[0]
            if v["acc"] is not None:
                assert t.accounted[i] == int(v["acc"])
        else:
            assert (t.bytes_req[i], t.bytes_alloc[i], t.gfp_kind[i], t.accounted[i]) == (-1, -1, 0, -1)
        assert t.string("cgroup", i) == (v["cgroup"] if fmt == "perf" else None)


# ------------------------------------------------------------ bad input

def test_missing_file():
    with pytest.raises(TraceError, match="no such file"):
        parse("/nonexistent/trace.txt")


def test_empty_file(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(TraceError, match="empty file"):
        parse(str(tmp_path / "e.txt"))
    (tmp_path / "e.txt.xz").write_bytes(lzma.compress(b""))
    with pytest.raises(TraceError, match="empty file"):
        parse(str(tmp_path / "e.txt.xz"))


def test_perf_data_given_by_mistake(tmp_path):
    p = tmp_path / "perf.data"
    p.write_bytes(b"PERFILE2" + bytes(range(256)) * 4)
    with pytest.raises(TraceError, match=r"perf\.data.*perf script -i .*perf\.data > trace\.txt"):
        parse(str(p))


def test_other_binary(tmp_path):
    (tmp_path / "b").write_bytes(b"\x7fELF\x02\x01\x01\0\0\0")
    with pytest.raises(TraceError, match="binary"):
        parse(str(tmp_path / "b"))


def test_no_kmem_events(tmp_path):
    p = tmp_path / "sched.txt"
    p.write_text("x 1 [000] 1.0: sched:sched_switch: prev_comm=x prev_pid=1\n")
    with pytest.raises(TraceError, match="no kmem events.*sched_switch"):
        parse(str(p))
    p.write_text("hello\nworld\n")
    with pytest.raises(TraceError, match="no kmem events"):
        parse(str(p))


# ------------------------------------------------------------ the CLI

def slubcy(*args, env=None):
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "slubcy.cli", *args], capture_output=True,
                          text=True, env=e, timeout=120)


def test_cli_parse_json():
    p = slubcy("trace", "parse", "--json", os.path.join(HAND, "v5.15.perf.txt"))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["generation"] == "5.12-5.19" and d["events"] == 7 and d["format"] == "perf-script"
    p = slubcy("trace", "parse", os.path.join(TRACES, "find-share.tracefs.txt.xz"))
    assert p.returncode == 0 and "HASHED" in p.stdout and "tracefs" in p.stdout


@pytest.mark.parametrize("make", ["missing", "empty", "perfdata", "nokmem"])
def test_cli_bad_input_one_line_exit_2(tmp_path, make):
    f = tmp_path / "t.txt"
    if make == "empty":
        f.write_bytes(b"")
    elif make == "perfdata":
        f.write_bytes(b"PERFILE2\0\0\0\0")
    elif make == "nokmem":
        f.write_text("just text\n")
    p = slubcy("trace", "parse", str(f))
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("slubcy: error:")


def test_cli_record_without_perf(tmp_path):
    p = slubcy("trace", "record", "--out", str(tmp_path / "t.txt"), "--", "true",
               env={"PATH": str(tmp_path)})
    assert p.returncode == 2 and "perf` not found on PATH" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("perf"), reason="needs root and perf")
def test_cli_record_command_not_found(tmp_path):
    p = slubcy("trace", "record", "--out", str(tmp_path / "t.txt"), "--", "/nonexistent/cmd")
    assert p.returncode == 2 and "cannot run '/nonexistent/cmd'" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def _can_drop_privileges():
    return (os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("perf"))


@pytest.mark.skipif(not _can_drop_privileges(), reason="needs root, setpriv and perf")
def test_cli_record_permission_refused(tmp_path):
    # the real perf, run as nobody: it cannot read the tracepoints
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "perf").write_text(f"#!/bin/sh\nexec {shutil.which('setpriv')} --reuid=65534 "
                                 f"--regid=65534 --clear-groups {shutil.which('perf')} \"$@\"\n")
    (bindir / "perf").chmod(0o755)
    p = slubcy("trace", "record", "--out", str(tmp_path / "t.txt"), "--", "true",
               env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert p.returncode == 2 and "permission refused" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("perf"), reason="needs root and perf")
def test_cli_record_real(tmp_path):
    out = tmp_path / "ls.txt.xz"
    p = slubcy("trace", "record", "--out", str(out), "--", "ls", "/")
    assert p.returncode == 0, p.stderr
    assert "kmem events" in p.stdout
    t = parse(str(out), progress=False)
    assert t.report.format == "perf-script" and t.report.events > 10 and t.report.unparseable == 0
    assert "ls" in t.strings["comm"]
