"""Replay a kmem trace on a Machine under a dead-cache policy: parse
(slubcy.trace.parse), map (slubcy.trace.mapping), run the nogil replay
(slubcy.trace._replay, one worker thread per vCPU), and report the workload metrics (slubcy.workloads.METRICS), the slabinfo at the
end and a trace report.

    r = slubcy.trace.replay_trace("trace.txt.xz", policy="naive")
    r.metrics["leaked_caches"]; r.trace["size_mismatches"]; r.slabinfo
"""
import dataclasses
import time

import numpy as np

import slubcy
from slubcy.trace.errors import TraceError
from slubcy.trace.mapping import Mapping, map_trace
from slubcy.trace.parse import Trace, parse
from slubcy.workloads import Result, apply_preempt, drive, run_metrics

MAX_ARENA = 32 * (1 << 30) - 4096
TRACE_PREFIX = "trace:"


@dataclasses.dataclass
class ReplayResult(Result):
    """A workload Result plus `trace` (the trace report: events by type,
    unmatched frees, live objects, caches created, size checks, events per
    second) and `slabinfo` (Machine.cache_info() once the replay ran, the
    objects never freed still live)."""
    trace: dict = dataclasses.field(default_factory=dict)
    slabinfo: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {**super().to_dict(), "trace": self.trace}


def _arena(mapping):
    """Arena bytes: room for every allocation of the trace at once (the
    vCPUs run at their own pace, so the traced peak is no bound), their
    slabs' slack, and a floor; never more than the arena can address."""
    want = 3 * mapping.total_bytes + (128 << 20) + len(mapping.caches) * mapping.ncpus * (1 << 20)
    want = (want + 4095) // 4096 * 4096
    return int(min(MAX_ARENA, max(256 << 20, want)))


def create_caches(m, mapping):
    """The mapping's caches on machine `m` (kmalloc-N exist; kmalloc-cg-N
    and the trace's caches are created), as KmemCache in op.arg order."""
    out = []
    for sp in mapping.caches:
        try:
            c = m.kmem_cache(sp.name)
        except KeyError:
            c = m.kmem_cache_create(sp.name, sp.object_size, align=sp.align, flags=sp.flags)
        out.append(c)
    return out


def size_checks(mapping, caches):
    """For every slab allocation, the replayed cache's size against the
    trace's bytes_alloc (kmalloc: the size class; kmem_cache_alloc: the
    created cache's size)."""
    from slubcy.trace.parse import KMALLOC
    sizes = np.array([c.size for c in caches], dtype=np.int64)
    got = sizes[mapping.alloc_cache] if len(mapping.alloc_cache) else np.zeros(0, np.int64)
    bad = got != mapping.alloc_bytes
    km = mapping.alloc_event == KMALLOC
    per = {}
    for i in np.unique(mapping.alloc_cache[bad]):
        sel = bad & (mapping.alloc_cache == i)
        per[caches[i].name] = {"events": int(sel.sum()), "size": int(sizes[i]),
                               "bytes_alloc": sorted({int(x) for x in mapping.alloc_bytes[sel]})[:5]}
    return {"kmalloc_checked": int(km.sum()), "kmalloc_mismatches": int((bad & km).sum()),
            "kmem_cache_alloc_checked": int((~km).sum()),
            "kmem_cache_alloc_mismatches": int((bad & ~km).sum()),
            "kmalloc_large_checked": mapping.counts["page_allocs"],
            "kmalloc_large_mismatches": mapping.counts["large_size_mismatches"],
            "mismatched_caches": per}


def replay_trace(trace, policy="barrier", cpus=None, memcg_by=None, slabinfo=None,
                 preempt=None, hz=None, expedited=False, seed=0, memory=None, progress=None,
                 validate=True, slub="4.0"):
    """Replay `trace` (a path or a parsed Trace) on a fresh Machine with
    `policy`, one worker thread per vCPU (`cpus`, default one per traced
    CPU).  Returns a ReplayResult; `validate()` runs at the end (and its
    failure raises)."""
    t_parse = time.monotonic()
    if not isinstance(trace, Trace):
        trace = parse(trace, progress=False if progress is None else progress)
    parse_s = time.monotonic() - t_parse
    t_map = time.monotonic()
    mp = map_trace(trace, cpus=cpus, memcg_by=memcg_by, slabinfo=slabinfo)
    map_s = time.monotonic() - t_map
    if mp.groups and policy is None:
        policy = "objcg" if slub == "7.0" else "barrier"
    from slubcy.machine import MAX_CPUS
    if mp.ncpus > MAX_CPUS:
        raise TraceError(f"the trace has {mp.ncpus} CPUs; a machine has at most {MAX_CPUS} vCPUs "
                         "(give --cpus)")
    m = slubcy.Machine(cpus=mp.ncpus, memory=memory or _arena(mp), seed=seed, policy=policy,
                       hz=hz, expedited=expedited, slub=slub)
    try:
        # the kernel's memory is present: no first-touch faults in the replay
        m.arena_populate()
        if preempt:
            apply_preempt(m, preempt)
        caches = create_caches(m, mp)
        checks = size_checks(mp, caches)
        from slubcy.trace._replay import Replay
        r = Replay(m, mp.ops, mp.bounds, caches, mp.groups, mp.group_cpus, mp.nslots)

        def sample():
            # the end of the trace: its objects never freed are live, the
            # offlines its groups queued and their deferred work have run
            # (so nothing moves slabs while they are counted)
            m.flush_work()
            m.rcu_barrier(timeout=30)
            return (m.slab_usage_info(), m.memcg_stat_info(), m.cache_info(),
                    m.validate() if validate else None)

        per, lat, offline_errors, ((used, nslots, pages), mst, info, live_in_use) = drive(
            r, lambda: _wait(r, sum(mp.counts["events_per_vcpu"]), progress), sample)
        quiesced = True
        try:
            m.policy_quiesce()
        except slubcy.Timeout:
            quiesced = False
        after = m.memcg_stat_info()
        in_use = m.validate() if validate else None
        lat = sorted(lat)
        elapsed = max((w["seconds"] for w in per), default=0.0)
        total_ops = sum(w["ops"] for w in per)
        metrics = run_metrics(total_ops, elapsed, pages, mst, after, lat, used, nslots)
        cnt = mp.counts
        allocs = sum(w["allocs"] + w["page_allocs"] for w in per)
        frees = sum(w["frees"] + w["page_frees"] for w in per) - sum(w["drained"] for w in per)
        events = sum(w["events"] for w in per)
        eps = [w["events"] / w["seconds"] if w["seconds"] > 0 else 0.0 for w in per]
        eps_cpu = [w["events"] / w["cpu_seconds"] if w["cpu_seconds"] > 0 else 0.0 for w in per]
        # excluding the waits for another vCPU's allocation or memcg
        eps_busy = [w["events"] / (w["seconds"] - w["wait_s"]) if w["seconds"] > w["wait_s"] else 0.0
                    for w in per]
        tr = {
            "path": trace.report.path, "format": trace.report.format,
            "generation": trace.report.generation, **cnt,
            "caches_created": [sp.name for sp in mp.caches if not _existing(sp)],
            "caches": [dataclasses.asdict(sp) for sp in mp.caches],
            "memcg_by": mp.memcg_by, "memcgs": len(mp.groups),
            "memcgs_created": sum(w["memcgs_created"] for w in per),
            "memcg_failures": sum(w["memcg_failures"] for w in per),
            "rmdirs": sum(w["rmdirs"] + w["rmdir_errors"] for w in per),
            "offline_errors": offline_errors + sum(w["rmdir_errors"] for w in per),
            "size_checks": checks,
            "size_mismatches": checks["kmalloc_mismatches"] + checks["kmem_cache_alloc_mismatches"]
            + checks["kmalloc_large_mismatches"],
            "replayed_allocs": allocs, "replayed_frees": frees,
            "alloc_failures": sum(w["alloc_failures"] for w in per),
            "live_objects": allocs - frees,
            "live_slab_objects": int(used),
            # at the end of the trace (the drain's frees aside)
            "live_pages_kmalloc_large": sum(w["page_allocs"] - w["page_frees"] + w["drained_pages"]
                                            for w in per),
            "remote_waits": sum(w["waits"] for w in per),
            "events_replayed": events,
            "events_per_s": events / elapsed if elapsed > 0 else 0.0,
            "events_per_s_per_vcpu": eps,
            "events_per_cpu_s_per_vcpu": eps_cpu,
            "events_per_busy_s_per_vcpu": eps_busy,
            "parse_s": parse_s, "map_s": map_s,
            "validate_objects": None if in_use is None else int(sum(in_use.values())),
            "validate_live_objects": None if live_in_use is None
            else int(sum(live_in_use.values())),
            "quiesced": quiesced,
        }
        stats = {c.name: m.cache_stat_info(c) for c in caches}
        params = {"hz": m.hz, "expedited": m.expedited, "preempt": preempt or "",
                  "memcg_by": mp.memcg_by, "trace": trace.report.path or ""}
        label = TRACE_PREFIX + (trace.report.path or "<text>")
        return ReplayResult(label, str(m.policy or "none"), mp.ncpus, seed, metrics, per, stats,
                            [], lat, params, trace=tr, slabinfo=info)
    finally:
        m.close()


def _existing(sp):
    return sp.kmalloc and not sp.accounted


def _wait(r, total, progress):
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="ev", unit_scale=True, leave=False)
    last = 0
    while not r.producing_done:
        time.sleep(0.05 if bar is not None else 0.001)
        if bar is not None:
            now = sum(r.events())
            bar.update(now - last)
            last = now
    if bar is not None:
        bar.close()


def format_report(res):
    """The text `slubcy replay` prints: the metrics, the trace report and
    the slabinfo of the caches that hold slabs at the end."""
    from slubcy.analysis import report
    t = res.trace
    out = [f"{t['path']}: {t['format']}, kernel {t['generation']}, replayed on {res.cpus} vCPUs "
           f"(trace CPUs folded), policy {res.policy}, memcg by {t['memcg_by']}"]
    ev = ", ".join(f"{k} {v:,}" for k, v in t["events_by_type"].items())
    out.append(f"  events {t['events']:,} ({ev}); replayed {t['events_replayed']:,}")
    out.append(f"  skipped: NULL frees {t['null_frees']:,}, failed allocations "
               f"{t['failed_allocs']:,}, ZERO_SIZE_PTR {t['zero_size']:,}, unmatched frees "
               f"{t['unmatched_frees']:,} (allocated before the trace began)")
    out.append(f"  allocations {t['replayed_allocs']:,}, frees {t['replayed_frees']:,} "
               f"({t['remote_frees']:,} remote), live at the end {t['live_objects']:,} "
               f"(slab objects in use {t['live_slab_objects']:,}, kmalloc_large blocks "
               f"{t['live_pages_kmalloc_large']:,}); pointers reused while live "
               f"{t['pointer_reuse_while_live']:,}" +
               (" (hashed pointers: collisions)" if t["hashed_pointers"] else
                " (their frees were not traced)"))
    sc = t["size_checks"]
    out.append(f"  size checks: kmalloc {sc['kmalloc_mismatches']:,} of {sc['kmalloc_checked']:,} "
               f"mismatched, kmem_cache_alloc {sc['kmem_cache_alloc_mismatches']:,} of "
               f"{sc['kmem_cache_alloc_checked']:,}, kmalloc_large "
               f"{sc['kmalloc_large_mismatches']:,} of {sc['kmalloc_large_checked']:,}" +
               (" (bytes_alloc above the class: slub_debug or KASAN?)"
                if t["kmalloc_debug_suspected"] else ""))
    out.append(f"  caches created {len(t['caches_created'])}: "
               + ", ".join(t["caches_created"][:12]) + (" ..." if len(t["caches_created"]) > 12 else ""))
    out.append(f"  memcgs {t['memcgs']} (created {t['memcgs_created']}, removed {t['rmdirs']}), "
               f"charged allocations {t['charged_allocs']:,}")
    out.append(f"  {t['events_per_s'] / 1e6:.2f} M events/s (per vCPU: "
               + ", ".join(f"{x / 1e6:.2f}" for x in t["events_per_s_per_vcpu"]) + " M; per CPU-second "
               + ", ".join(f"{x / 1e6:.2f}" for x in t["events_per_cpu_s_per_vcpu"]) + " M; waits aside "
               + ", ".join(f"{x / 1e6:.2f}" for x in t["events_per_busy_s_per_vcpu"]) + " M)")
    out.append("metrics:")
    width = max(map(len, res.metrics))
    for k, v in res.metrics.items():
        shown = "-" if v is None else f"{v:,.3f}" if isinstance(v, float) else f"{v:,}"
        out.append(f"  {k:{width}s} {shown}")
    out.append("slabinfo (the trace's objects never freed still live):")
    out.append(report.proc_slabinfo([i for i in res.slabinfo if i["nr_slabs"]]))
    return "\n".join(out)


def tile_trace(trace, k):
    """`trace` repeated k times back to back (for throughput measurements):
    each copy's pointers moved to their own range (bit 44 up) and its
    timestamps after the previous copy's; tasks, caches and CPUs shared."""
    c = trace.columns
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    span = int(c["ts_ns"].max() - c["ts_ns"].min()) + 1 if len(c["ts_ns"]) else 1
    cols = {}
    for name, arr in c.items():
        if name == "ptr":
            parts = [np.where(arr > 16, arr + (np.uint64(i) << np.uint64(44)), arr)
                     for i in range(k)]
        elif name == "ts_ns":
            parts = [arr + i * span for i in range(k)]
        else:
            parts = [arr] * k
        cols[name] = np.concatenate(parts)
    return Trace(cols, trace.strings, trace.report)
