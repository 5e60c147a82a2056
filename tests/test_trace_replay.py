"""Issue #14 items 2-4: kmem traces mapped onto the model and replayed in
nogil C under the policies (slubcy.trace.mapping, slubcy.trace._replay,
slubcy.trace.replay), and the CLI."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from slubcy.trace import TraceError, parse, parse_text
from slubcy.trace.mapping import infer_geometry, map_trace, match_frees
from slubcy.trace.replay import replay_trace, tile_trace

HERE = os.path.dirname(__file__)
RECORDED = sorted(glob.glob(os.path.join(HERE, "traces", "*.txt.xz")))
HANDWRITTEN = sorted(glob.glob(os.path.join(HERE, "traces", "handwritten", "*.txt")))
ROOT = os.path.dirname(HERE)


def perf_line(comm, tid, cpu, t, event, **fields):
    """One `perf script` line of a 6.18 kmem event."""
    body = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{comm:>16s} {tid:6d} [{cpu:03d}] {t:.6f}: kmem:{event}: {body}"


def kmalloc(comm, tid, cpu, t, ptr, req, alloc, accounted="false"):
    return perf_line(comm, tid, cpu, t, "kmalloc", call_site="f+0x1", ptr=f"{ptr:#x}",
                     bytes_req=req, bytes_alloc=alloc, gfp_flags="GFP_KERNEL", node=-1,
                     accounted=accounted)


def cache_alloc(comm, tid, cpu, t, ptr, name, req, alloc, accounted="false"):
    return perf_line(comm, tid, cpu, t, "kmem_cache_alloc", call_site="g+0x2", ptr=f"{ptr:#x}",
                     name=name, bytes_req=req, bytes_alloc=alloc, gfp_flags="GFP_KERNEL",
                     node=-1, accounted=accounted)


def kfree(comm, tid, cpu, t, ptr):
    return perf_line(comm, tid, cpu, t, "kfree", call_site="h+0x3", ptr=f"{ptr:#x}")


def cache_free(comm, tid, cpu, t, ptr, name):
    return perf_line(comm, tid, cpu, t, "kmem_cache_free", call_site="h+0x4", ptr=f"{ptr:#x}",
                     name=name)


def check_consistent(r):
    """validate() ran clean after the drain; allocations - frees = live."""
    t = r.trace
    assert t["validate_objects"] == 0
    assert t["alloc_failures"] == 0 and t["memcg_failures"] == 0
    assert t["replayed_allocs"] == t["allocations"]
    assert t["replayed_frees"] == t["frees"]
    assert t["live_objects"] == t["replayed_allocs"] - t["replayed_frees"] == t["live_at_end"]
    assert t["live_objects"] == t["live_slab_objects"] + t["live_pages_kmalloc_large"]
    assert t["validate_live_objects"] == t["live_slab_objects"]      # validate() at the end of the trace
    assert t["events_replayed"] == t["replayed_events"]
    assert t["rmdirs"] == t["memcgs_created"] == t["memcgs"]
    assert r.metrics["offlines"] == t["memcgs"]
    assert t["offline_errors"] == 0 and t["quiesced"]


@pytest.mark.parametrize("path", RECORDED + HANDWRITTEN, ids=os.path.basename)
@pytest.mark.parametrize("policy", ["naive", "barrier"])
def test_every_shipped_trace_replays(path, policy):
    r = replay_trace(path, policy=policy)
    check_consistent(r)
    assert r.policy == policy
    assert r.metrics["ops"] == r.trace["replayed_allocs"] + r.trace["replayed_frees"] \
        + r.trace["live_objects"]          # the drain frees what the trace never did


@pytest.mark.parametrize("path", RECORDED, ids=os.path.basename)
def test_size_classes_and_cache_sizes_equal_bytes_alloc(path):
    """Every kmalloc of a real trace lands in a class of its bytes_alloc,
    every kmem_cache_alloc in a cache whose size is its bytes_alloc."""
    r = replay_trace(path, policy="objcg")
    sc = r.trace["size_checks"]
    assert sc["kmalloc_checked"] > 0 and sc["kmem_cache_alloc_checked"] > 0
    assert sc["kmalloc_mismatches"] == 0, sc
    assert sc["kmem_cache_alloc_mismatches"] == 0, sc
    assert r.trace["size_mismatches"] == 0
    assert not r.trace["kmalloc_debug_suspected"]
    check_consistent(r)


def test_mismatches_are_counted():
    text = "\n".join([
        kmalloc("a", 1, 0, 1.0, 0xffff888000001000, 40, 72),        # class 64, not 72
        cache_alloc("a", 1, 0, 1.1, 0xffff888000002000, "odd", 104, 104),
        cache_alloc("a", 1, 0, 1.2, 0xffff888000003000, "odd", 104, 104),
        cache_alloc("a", 1, 0, 1.3, 0xffff888000004000, "odd", 104, 136),   # not the cache's
    ]) + "\n"
    r = replay_trace(parse_text(text), policy="barrier")
    sc = r.trace["size_checks"]
    assert sc["kmalloc_mismatches"] == 1 and sc["kmem_cache_alloc_mismatches"] == 1
    assert r.trace["size_mismatches"] == 2
    assert sc["mismatched_caches"]["kmalloc-64"]["bytes_alloc"] == [72]
    check_consistent(r)


def test_geometry_inference():
    # kernels' own pairs (6.18): plain, HWCACHE_ALIGN, free pointer after the object
    assert infer_geometry(192, 192) == (0, 0)
    assert infer_geometry(1568, 1600)[1] & 0x2000             # mm_struct: HWCACHE_ALIGN
    assert infer_geometry(96, 104)[1] & 0x80000               # anon_vma: TYPESAFE_BY_RCU
    assert infer_geometry(2080, 2112) is not None             # sighand_cache
    assert infer_geometry(100, 99) is None


def test_match_frees_is_a_stack_per_pointer():
    #           A1 A2 F  F  F  A3
    key = np.array([7, 7, 7, 7, 7, 7], dtype=np.uint64)
    is_alloc = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    alloc_of, unmatched, collision = match_frees(key, is_alloc)
    assert alloc_of.tolist() == [-1, -1, 1, 0, -1, -1]        # LIFO: newest generation first
    assert unmatched.tolist() == [False, False, False, False, True, False]
    assert collision.tolist() == [False, True, False, False, False, False]
    key = np.array([1, 2, 1, 2, 3], dtype=np.uint64)
    alloc_of, unmatched, _ = match_frees(key, np.array([0, 1, 1, 0, 1], dtype=bool))
    assert alloc_of.tolist() == [-1, -1, -1, 1, -1] and unmatched.tolist()[0]


def test_hashed_pointer_collision():
    """tracefs hash-ptr: two live objects print the same 32-bit id; the
    second allocation is a new generation, each free takes one."""
    lines = ["# tracer: nop"]
    fmt = ("           find-7710    [00{cpu}] ..... {t:.6f}: {ev}: call_site=x+0x1/0x10 "
           "ptr=00000000b5f16af8 {rest}")
    alloc = "name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags=GFP_KERNEL node=-1 accounted=false"
    lines += [fmt.format(cpu=0, t=1.0, ev="kmem_cache_alloc", rest=alloc),
              fmt.format(cpu=1, t=1.1, ev="kmem_cache_alloc", rest=alloc),
              fmt.format(cpu=1, t=1.2, ev="kmem_cache_free", rest="name=maple_node"),
              fmt.format(cpu=0, t=1.3, ev="kmem_cache_free", rest="name=maple_node"),
              fmt.format(cpu=0, t=1.4, ev="kmem_cache_free", rest="name=maple_node")]
    t = parse_text("\n".join(lines) + "\n")
    assert t.report.hashed_pointers
    r = replay_trace(t, policy="naive")
    assert r.trace["pointer_reuse_while_live"] == 1
    assert r.trace["unmatched_frees"] == 1                    # the third free
    assert r.trace["live_objects"] == 0 and r.trace["frees"] == 2
    check_consistent(r)


def test_a_free_waits_for_its_allocation_on_another_cpu():
    """vCPU 1's only event frees what vCPU 0 allocates after 20,000 events
    of its own: vCPU 1 reaches it long before; it must wait."""
    lines, t = [], 1.0
    for i in range(10_000):
        p = 0xffff888000100000 + (i % 7) * 64
        lines += [kmalloc("a", 1, 0, t, p, 64, 64), kfree("a", 1, 0, t + 1e-7, p)]
        t += 2e-6
    target = 0xffff888000900000
    lines.append(kmalloc("a", 1, 0, t, target, 200, 256))
    lines.append(kfree("b", 2, 1, t + 1e-6, target))
    r = replay_trace(parse_text("\n".join(lines) + "\n"), policy="barrier")
    assert r.trace["remote_frees"] == 1
    assert r.per_cpu[1]["remote_frees"] == 1 and r.per_cpu[1]["skipped_frees"] == 0
    assert r.trace["live_objects"] == 0
    check_consistent(r)


def test_memcg_per_group_goes_offline_after_its_last_event():
    lines, t = [], 1.0
    for g, comm in enumerate(("job-a", "job-b", "job-c")):
        for i in range(50):
            p = 0xffff888001000000 + (g * 100 + i) * 256
            lines.append(cache_alloc(comm, 100 + g, g % 2, t, p, "dentry", 192, 192, "true"))
            t += 1e-6
    # every dentry outlives its job and is freed later by another task
    for g in range(3):
        for i in range(50):
            p = 0xffff888001000000 + (g * 100 + i) * 256
            lines.append(cache_free("kswapd0", 90, (g + 1) % 2, t, p, "dentry"))
            t += 1e-6
    trace = parse_text("\n".join(lines) + "\n")
    for policy in ("naive", "barrier", "objcg"):
        r = replay_trace(trace, policy=policy)
        assert r.trace["memcgs"] == 3 and r.metrics["offlines"] == 3
        assert r.trace["charged_allocs"] == 150
        assert r.metrics["leaked_memcgs"] == 0
        check_consistent(r)
    r = replay_trace(trace, policy="barrier", memcg_by="tid")
    assert r.trace["memcgs"] == 3
    r = replay_trace(trace, policy="barrier", memcg_by="none")
    assert r.trace["memcgs"] == 0 and r.metrics["offlines"] == 0
    check_consistent(r)


def test_kmalloc_large_and_kmalloc_cg():
    text = "\n".join([
        kmalloc("a", 1, 0, 1.0, 0xffff888000010000, 20000, 32768),
        kmalloc("a", 1, 0, 1.1, 0xffff888000020000, 100, 128, "true"),
        kmalloc("a", 1, 0, 1.2, 0xffff888000030000, 100, 128),
        kfree("a", 1, 1, 1.3, 0xffff888000010000),
    ]) + "\n"
    r = replay_trace(parse_text(text), policy="barrier")
    names = {c["name"]: c for c in r.trace["caches"]}
    assert "kmalloc-cg-128" in names and names["kmalloc-cg-128"]["accounted"]
    assert "kmalloc-128" in names and "kmalloc-cg-128" in r.trace["caches_created"]
    assert r.trace["page_allocs"] == 1 and r.trace["size_checks"]["kmalloc_large_mismatches"] == 0
    assert r.trace["live_pages_kmalloc_large"] == 0
    check_consistent(r)


def test_unnamed_caches_from_slabinfo_and_call_sites(tmp_path):
    """Before 5.12 neither event names the cache: the snapshot does."""
    lines = ["# tracer: nop"]
    for i in range(4):
        lines.append(f"           mkdir-4410    [001] ....  2210.10000{i}: kmem_cache_alloc: "
                     f"call_site=__d_alloc+0x2a/0x1f0 ptr=00000000{0x3a1b2c30 + i:08x} "
                     "bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL")
        lines.append(f"           mkdir-4410    [001] ....  2210.20000{i}: kmem_cache_alloc: "
                     f"call_site=alloc_inode+0x2a/0x1f0 ptr=00000000{0x4a1b2c30 + i:08x} "
                     "bytes_req=616 bytes_alloc=624 gfp_flags=GFP_KERNEL")
    t = parse_text("\n".join(lines) + "\n")
    r = replay_trace(t, policy="barrier")
    assert sorted(r.trace["caches_created"]) == ["__d_alloc-192-192", "alloc_inode-616-624"]
    snap = tmp_path / "slabinfo"
    snap.write_text("slabinfo - version: 2.1\n# name <active_objs> ...\n"
                    "dentry 100 100 192 21 1 : tunables 0 0 0 : slabdata 5 5 0\n"
                    "inode_cache 10 10 624 26 4 : tunables 0 0 0 : slabdata 1 1 0\n")
    r = replay_trace(t, policy="barrier", slabinfo=str(snap))
    assert sorted(r.trace["caches_created"]) == ["dentry", "inode_cache"]
    assert r.trace["size_mismatches"] == 0
    check_consistent(r)


def test_cpus_fold_and_preempt():
    path = os.path.join(HERE, "traces", "python-imports.perf.txt.xz")
    r = replay_trace(path, policy="naive", cpus=1,
                     preempt="slab_free:before_cmpxchg=0.05:1ms:sleep")
    assert r.cpus == 1 and r.trace["remote_frees"] == 0
    check_consistent(r)
    r = replay_trace(path, policy="barrier", cpus=3)
    assert r.cpus == 3
    check_consistent(r)


def test_tiled_trace_replays():
    t = tile_trace(parse(os.path.join(HERE, "traces", "cc-compile.perf.txt.xz"), progress=False), 5)
    r = replay_trace(t, policy="reparent")
    assert r.trace["events_replayed"] == 5 * map_trace(
        parse(os.path.join(HERE, "traces", "cc-compile.perf.txt.xz"), progress=False)
    ).counts["replayed_events"]
    check_consistent(r)


def test_bad_input(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        replay_trace(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(TraceError, match="empty"):
        replay_trace(str(tmp_path / "empty.txt"))
    (tmp_path / "perf.data").write_bytes(b"PERFILE2" + b"\0" * 100)
    with pytest.raises(TraceError, match="perf script"):
        replay_trace(str(tmp_path / "perf.data"))
    (tmp_path / "sched.txt").write_text(
        "bash 1 [000] 1.000000: sched:sched_switch: prev_comm=bash\n")
    with pytest.raises(TraceError, match="no kmem events"):
        replay_trace(str(tmp_path / "sched.txt"))
    # only NULL frees: nothing to replay
    (tmp_path / "null.txt").write_text(kfree("a", 1, 0, 1.0, 0).replace("0x0", "(nil)") + "\n")
    with pytest.raises(TraceError, match="nothing|no allocation"):
        replay_trace(str(tmp_path / "null.txt"))
    path = os.path.join(HERE, "traces", "handwritten", "v6.0.tracefs.txt")
    with pytest.raises(TraceError, match="slabinfo"):
        replay_trace(path, slabinfo=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="memcg-by"):
        replay_trace(path, memcg_by="pid")


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "slubcy.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_replay_and_exit_codes(tmp_path):
    path = os.path.join(HERE, "traces", "cc-compile.perf.txt.xz")
    p = _cli("replay", path, "--policy", "naive", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["policy"] == "naive" and d["trace"]["size_mismatches"] == 0
    assert d["slabinfo"] and "leaked_caches" in d
    p = _cli("replay", path)
    assert p.returncode == 0 and "size checks" in p.stdout and "slabinfo - version" in p.stdout
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "perf.data").write_bytes(b"PERFILE2" + b"\0" * 100)
    for bad in (str(tmp_path / "missing"), str(tmp_path / "empty.txt"),
                str(tmp_path / "perf.data"), os.path.join(HERE, "traces", "README.md")):
        p = _cli("replay", bad)
        assert p.returncode == 2, (bad, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("slubcy: error:"), p.stderr
    p = _cli("replay", path, "--slabinfo", str(tmp_path / "nope"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    p = _cli("replay", path, "--memcg-by", "pid")
    assert p.returncode == 2


def test_cli_run_and_compare_a_trace_workload(tmp_path):
    trace = os.path.join(HERE, "traces", "handwritten", "v6.0.tracefs.txt")
    p = _cli("run", "--workload", f"trace:{trace}", "--policy", "naive", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["trace"]["memcgs"] == 1
    p = _cli("compare", "objcg", "naive", "--workload", f"trace:{trace}", "--repeat", "2",
             "--out", str(tmp_path), "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "naive" in p.stdout
    names = sorted(os.listdir(tmp_path))
    assert "compare_trace-v6.0.tracefs.csv" in names and "compare_trace-v6.0.tracefs_meta.json" in names
    p = _cli("run", "--workload", "trace:")
    assert p.returncode == 2


@pytest.mark.parametrize("accounted,dying", [("true", 1), ("false", 0)])
def test_charged_kmalloc_large_pins_its_memcg(accounted, dying):
    """__memcg_kmem_charge_page (4.x-5.12): an accounted kmalloc_large is
    charged to the task's memcg and its page holds the memcg until freed,
    so the job's memcg is dying, not freed, while the page lives (even under
    objcg, which reparents only slab objects); the drain frees it."""
    text = "\n".join([
        cache_alloc("job", 7, 0, 1.0, 0xffff888000040000, "dentry", 192, 192, "true"),
        kmalloc("job", 7, 0, 1.1, 0xffff888000100000, 20000, 32768, accounted),
        cache_free("job", 7, 0, 1.2, 0xffff888000040000, "dentry"),
    ]) + "\n"
    r = replay_trace(parse_text(text), policy="objcg")
    assert r.trace["memcgs"] == 1 and r.metrics["offlines"] == 1
    assert r.trace["live_pages_kmalloc_large"] == 1
    assert r.metrics["dying_memcgs"] == dying
    assert r.metrics["leaked_memcgs"] == 0         # the drain freed the block
    check_consistent(r)
