"""Map a parsed kmem trace (`slubcy.trace.Trace`) onto the model: caches,
kmalloc classes, vCPUs, allocation/free pairs and memcg groups, as arrays
of operations for the nogil replay (`slubcy.trace._replay`).  Everything
here is vectorised numpy over the whole trace (a Python loop runs only
over distinct caches and call sites); nothing touches a Machine.

The rules (DESIGN.md §11, "Mapping"):

- rows with ptr NULL (kfree(NULL), failed allocations) or ZERO_SIZE_PTR
  (kmalloc(0)) are counted and skipped;
- the trace's total order is the timestamps' (stable: file order breaks
  ties); each vCPU runs its rows in that order;
- a free matches the most recent unfreed allocation of its pointer (a
  stack per pointer: with real pointers a deeper stack means a lost free,
  with hashed ones a collision -- a new generation of the pointer); a free
  with nothing to match (allocated before the trace began) is counted and
  skipped; an allocation never freed is live at the end;
- kmalloc: bytes_req > 8 KiB goes to the page allocator (kmalloc_large,
  order get_order(bytes_req); charged to the group's memcg when accounted,
  __memcg_kmem_charge_page, the page holding the memcg until freed); else the kmalloc size class of bytes_req,
  kmalloc-cg-N when accounted (5.14's KMALLOC_CGROUP caches);
- kmem_cache_alloc: the cache its event names (6.18), else the matching
  free's name (5.12+), else the name seen with the same (call site,
  bytes_req, bytes_alloc), else a --slabinfo snapshot's cache of that
  size, else a cache per (call site's function, bytes_req, bytes_alloc);
  created with object_size = bytes_req and the alignment flags
  (SLAB_HWCACHE_ALIGN, SLAB_TYPESAFE_BY_RCU, align) that make its size
  bytes_alloc (or the snapshot's);
- memcgs: one per task group (--memcg-by comm|tid|cgroup) that makes an
  accounted allocation, created at the group's first operation and removed
  after its last.
"""
import dataclasses
import os
import re

import numpy as np

from slubcy import model as _model
from slubcy.trace.errors import TraceError
from slubcy.trace.parse import KFREE, KMALLOC, KMEM_CACHE_ALLOC, KMEM_CACHE_FREE, Trace
from slubcy.trace._replay import (OP_ALLOC, OP_ALLOC_PAGES, OP_DTYPE, OP_FREE, OP_FREE_PAGES,
                                 OPF_CHARGE, OPF_GROUP_LAST, OPF_LIVE, OPF_MEMCG_CREATE,
                                 OPF_PUBLISH, OPF_WAIT)

PAGE_SIZE = 4096
KMALLOC_MAX_CACHE_SIZE = 8192
KMALLOC_MAX_SIZE = PAGE_SIZE << 10
ZERO_SIZE_PTR = 16
# the kmalloc size classes of the machine (create_kmalloc_caches)
KMALLOC_CLASSES = np.array([8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192])
SLAB_HWCACHE_ALIGN = _model.SLAB_HWCACHE_ALIGN
SLAB_TYPESAFE_BY_RCU = _model.SLAB_TYPESAFE_BY_RCU
SLAB_ACCOUNT = 0x04000000
MEMCG_BY = ("comm", "tid", "cgroup", "none")
_ALIGNS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclasses.dataclass
class CacheSpec:
    """A cache the replay uses: an existing kmalloc cache, or one to create."""
    name: str
    object_size: int
    size: int                 # bytes_alloc the trace says (the most common)
    align: int = 0
    flags: int = 0
    accounted: bool = False
    kmalloc: bool = False     # kmalloc-N (exists) or kmalloc-cg-N
    source: str = "name"      # name | free-name | call-site | slabinfo | call-site-key | kmalloc
    geometry_ok: bool = True  # a geometry with size == bytes_alloc was found
    events: int = 0


@dataclasses.dataclass
class Mapping:
    """What the replay runs: `ops` (OP_DTYPE), vCPU i's stream
    `ops[bounds[i]:bounds[i+1]]`; `caches` (op.arg of an OP_ALLOC);
    `groups` (memcg names) and `group_cpus` (vCPUs with operations of
    each); `nslots` allocations; `counts` for the trace report; per slab
    allocation, its cache index, traced bytes_alloc and event type, for
    the size checks once the caches exist."""
    ncpus: int
    trace_cpus: list
    ops: np.ndarray
    bounds: np.ndarray
    caches: list
    groups: list
    group_cpus: np.ndarray
    nslots: int
    counts: dict
    memcg_by: str
    alloc_cache: np.ndarray
    alloc_bytes: np.ndarray
    alloc_event: np.ndarray
    total_bytes: int


def kmalloc_class(size):
    """kmalloc_index() as sizes: the class each bytes_req (array) falls in."""
    return KMALLOC_CLASSES[np.searchsorted(KMALLOC_CLASSES, np.maximum(size, 1))]


def get_order(size):
    """get_order() of an array of sizes."""
    pages = (np.asarray(size, dtype=np.int64) + PAGE_SIZE - 1) // PAGE_SIZE
    return np.ceil(np.log2(np.maximum(pages, 1))).astype(np.int64)


def infer_geometry(object_size, size):
    """(align, flags) with which kmem_cache_create(object_size) gets `size`
    (calculate_alignment + calculate_sizes), simplest first; None if none
    does.  SLAB_TYPESAFE_BY_RCU stands for every reason the kernel moves
    the free pointer after the object (a ctor, RCU; 5.7+ also poison)."""
    obj = max(8, int(object_size))
    for align in _ALIGNS:
        for flags in (0, SLAB_HWCACHE_ALIGN, SLAB_TYPESAFE_BY_RCU,
                      SLAB_HWCACHE_ALIGN | SLAB_TYPESAFE_BY_RCU):
            a = _model.calculate_alignment(flags, align, obj)
            if _model.calculate_sizes(obj, a, flags, False)["size"] == size:
                return align, flags
    return None


def read_slabinfo(path):
    """A snapshot of the traced machine's caches: /proc/slabinfo text (2.x:
    name, objsize = the cache's size) or a /sys/kernel/slab directory
    (object_size, slab_size, align, hwcache_align, destroy_by_rcu).
    Returns {name: {"size", "object_size" (or None), "align", "flags"}}."""
    if not os.path.exists(path):
        raise TraceError(f"--slabinfo {path}: no such file or directory")
    out = {}
    if os.path.isdir(path):
        def val(d, f, default=None):
            try:
                with open(os.path.join(d, f)) as fh:
                    return int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                return default
        for name in sorted(os.listdir(path)):
            d = os.path.join(path, name)
            if name.startswith(":") or not os.path.isdir(d):
                continue
            size = val(d, "slab_size")
            if size is None:
                continue
            flags = (SLAB_HWCACHE_ALIGN if val(d, "hwcache_align", 0) else 0) | \
                    (SLAB_TYPESAFE_BY_RCU if val(d, "destroy_by_rcu", 0) else 0)
            out[name] = {"size": size, "object_size": val(d, "object_size"),
                         "align": val(d, "align", 0), "flags": flags}
        if not out:
            raise TraceError(f"--slabinfo {path}: no cache directory (object_size, slab_size) in it")
        return out
    with open(path, errors="replace") as fh:
        lines = fh.read().splitlines()
    for ln in lines:
        if not ln.strip() or ln.startswith("#") or ln.startswith("slabinfo"):
            continue
        f = ln.split()
        if len(f) < 6:
            continue
        try:
            out[f[0]] = {"size": int(f[3]), "object_size": None, "align": 0, "flags": None}
        except ValueError:
            continue
    if not out:
        raise TraceError(f"--slabinfo {path}: not /proc/slabinfo text (name active num objsize "
                         "objperslab pagesperslab ...) nor a /sys/kernel/slab directory")
    return out


def _shift(a, start, fill=0):
    """a shifted by one within groups that begin where `start` is True."""
    out = np.empty_like(a)
    out[0] = fill
    out[1:] = a[:-1]
    out[start] = fill
    return out


def match_frees(key, is_alloc):
    """Pair frees with allocations of the same key (pointer), rows in total
    order: a stack per key (the clamped running depth D_i = max(D_{i-1} +
    x_i, 0) = S_i - min(0, min_{j<=i} S_j), then parentheses matching by
    level).  Returns (alloc_of: for each matched free the row of its
    allocation, else -1; unmatched: frees with nothing to match;
    collision: allocations of a key that was live)."""
    n = len(key)
    alloc_of = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return alloc_of, np.zeros(0, bool), np.zeros(0, bool)
    s = np.argsort(key, kind="stable")
    ks = key[s]
    x = np.where(is_alloc[s], 1, -1).astype(np.int64)
    start = np.ones(n, bool)
    start[1:] = ks[1:] != ks[:-1]
    gid = np.cumsum(start) - 1
    S = np.cumsum(x)
    base = (S - x)[start]
    srel = S - base[gid]
    big = 2 * n + 2
    prefmin = np.minimum.accumulate(srel - gid * big) + gid * big
    depth = srel - np.minimum(prefmin, 0)
    dprev = _shift(depth, start)
    alloc_s = x > 0
    unmatched_s = ~alloc_s & (dprev == 0)
    collision_s = alloc_s & (dprev > 0)
    level = np.where(alloc_s, depth, dprev)
    idx = np.flatnonzero(~unmatched_s)
    q = idx[np.lexsort((idx, level[idx], gid[idx]))]
    frees = np.flatnonzero(~alloc_s[q])
    if len(frees):
        prev = q[frees - 1]
        cur = q[frees]
        assert alloc_s[prev].all() and (gid[prev] == gid[cur]).all() \
            and (level[prev] == level[cur]).all(), "free matching broke its invariant"
        alloc_of[s[cur]] = s[prev]
    unmatched = np.zeros(n, bool)
    unmatched[s[unmatched_s]] = True
    collision = np.zeros(n, bool)
    collision[s[collision_s]] = True
    return alloc_of, unmatched, collision


def _func(call_site):
    """'do_sys_open+0x1c/0x60' -> 'do_sys_open'; a bare address stays."""
    return re.split(r"[+.]", call_site, maxsplit=1)[0] if call_site and not \
        call_site.startswith("0x") else (call_site or "?")


def _safe_name(name):
    name = re.sub(r"[^\w.:()/+-]", "_", name)
    return name[:63] or "?"


def map_trace(trace, cpus=None, memcg_by=None, slabinfo=None):
    """Map `trace` (a Trace) onto `cpus` vCPUs (default: one per traced CPU;
    fewer fold traced CPUs round-robin).  `memcg_by`: comm, tid, cgroup or
    none (default: cgroup when the trace has cgroups, else comm).
    `slabinfo`: a snapshot path or the dict read_slabinfo returns."""
    if not isinstance(trace, Trace):
        raise TypeError(f"map_trace needs a slubcy.trace.Trace, not {type(trace).__name__}")
    c = trace.columns
    strings = trace.strings
    snap = read_slabinfo(slabinfo) if isinstance(slabinfo, (str, os.PathLike)) else slabinfo
    ev = c["event"]
    ptr = c["ptr"]
    is_alloc_all = (ev == KMALLOC) | (ev == KMEM_CACHE_ALLOC)
    counts = {
        "events": int(len(ev)),
        "events_by_type": {k: int((ev == v).sum()) for k, v in
                           (("kmalloc", KMALLOC), ("kfree", KFREE),
                            ("kmem_cache_alloc", KMEM_CACHE_ALLOC),
                            ("kmem_cache_free", KMEM_CACHE_FREE))},
        "null_frees": int((~is_alloc_all & (ptr == 0)).sum()),
        "failed_allocs": int((is_alloc_all & (ptr == 0)).sum()),
        "zero_size": int((ptr == ZERO_SIZE_PTR).sum()),
        "hashed_pointers": bool(trace.report.hashed_pointers),
    }
    rows = np.flatnonzero(ptr > ZERO_SIZE_PTR)
    rows = rows[np.argsort(c["ts_ns"][rows], kind="stable")]
    n = len(rows)
    if n == 0:
        raise TraceError(f"{trace.report.path or 'trace'}: no allocation or free of a real "
                         "pointer to replay")
    e = ev[rows]
    a = is_alloc_all[rows]
    alloc_of, unmatched, collision = match_frees(ptr[rows], a)
    counts["unmatched_frees"] = int(unmatched.sum())
    counts["unmatched_by_type"] = {k: int((unmatched & (e == v)).sum())
                                   for k, v in (("kfree", KFREE), ("kmem_cache_free", KMEM_CACHE_FREE))}
    counts["pointer_reuse_while_live"] = int(collision.sum())
    freed = np.zeros(n, bool)
    freed[alloc_of[alloc_of >= 0]] = True
    replayed = ~unmatched
    breq = c["bytes_req"][rows].astype(np.int64)
    balloc = c["bytes_alloc"][rows].astype(np.int64)
    acc = c["accounted"][rows]

    # -- caches -------------------------------------------------------------
    cache_of = np.full(n, -1, dtype=np.int64)       # index into specs
    specs = []
    by_name = {}

    def spec_index(name, **kw):
        if name not in by_name:
            by_name[name] = len(specs)
            specs.append(CacheSpec(name=name, **kw))
        return by_name[name]

    km = a & (e == KMALLOC)
    large = km & (breq > KMALLOC_MAX_CACHE_SIZE)
    small = km & ~large
    cls = np.zeros(n, dtype=np.int64)
    cls[small] = kmalloc_class(breq[small])
    counts["kmalloc_debug_suspected"] = False
    if small.any():
        bigger = (balloc[small] > cls[small]).mean()
        counts["kmalloc_debug_suspected"] = bool(bigger > 0.5)   # slub_debug / KASAN redzones
    cg = small & (acc == 1)
    for sel_mask, acct in ((small & ~cg, False), (cg, True)):
        idx = np.flatnonzero(sel_mask)
        sizes, inv = np.unique(cls[idx], return_inverse=True)
        ids = np.array([spec_index(f"kmalloc-cg-{sz}" if acct else f"kmalloc-{sz}",
                                   object_size=int(sz), size=int(sz), kmalloc=True,
                                   accounted=acct, flags=SLAB_ACCOUNT if acct else 0,
                                   source="kmalloc") for sz in sizes], dtype=np.int64)
        if len(idx):
            cache_of[idx] = ids[inv]
    kca = a & (e == KMEM_CACHE_ALLOC)
    name = c["name"][rows].astype(np.int64)
    source = np.zeros(n, dtype=np.int8)              # 1 name, 2 free's name, 3 call site
    source[kca & (name >= 0)] = 1
    fr = np.flatnonzero(alloc_of >= 0)
    al = alloc_of[fr]
    take = kca[al] & (name[al] < 0) & (name[fr] >= 0)
    name[al[take]] = name[fr[take]]
    source[al[take]] = 2
    cs = c["call_site"][rows].astype(np.int64)
    key = ((cs + 1) << 44) | ((breq & 0x3FFFFF) << 22) | (balloc & 0x3FFFFF)
    named = kca & (name >= 0)
    unnamed = kca & (name < 0)
    if unnamed.any() and named.any():
        ks, first = np.unique(key[named], return_index=True)
        pos = np.searchsorted(ks, key[unnamed])
        pos = np.minimum(pos, len(ks) - 1)
        hit = ks[pos] == key[unnamed]
        idx = np.flatnonzero(unnamed)[hit]
        name[idx] = name[np.flatnonzero(named)[first[pos[hit]]]]
        source[idx] = 3
    names = strings["name"]
    idx = np.flatnonzero(kca & (name >= 0))
    if len(idx):
        nids, inv = np.unique(name[idx], return_inverse=True)
        src = np.bincount(inv * 4 + source[idx], minlength=4 * len(nids)).reshape(-1, 4).argmax(1)
        ids = np.array([spec_index(_safe_name(names[nid]), object_size=0, size=0,
                                   source={1: "name", 2: "free-name", 3: "call-site"}[int(sv)])
                        for nid, sv in zip(nids, src)], dtype=np.int64)
        cache_of[idx] = ids[inv]
    rest = kca & (name < 0)
    if rest.any():
        sites = strings["call_site"]
        rest_idx = np.flatnonzero(rest)
        keys, inv = np.unique(key[rest_idx], return_inverse=True)
        for k in range(len(keys)):
            sel = rest_idx[inv == k]
            r0 = sel[0]
            q, b = int(breq[r0]), int(balloc[r0])
            nm, src = None, "call-site-key"
            if snap:
                cand = [nm_ for nm_, v in snap.items() if v["size"] == b and
                        (v.get("object_size") in (None, q))]
                if len(cand) == 1:
                    nm, src = _safe_name(cand[0]), "slabinfo"
            if nm is None:
                fn = _func(sites[cs[r0]]) if cs[r0] >= 0 else "?"
                nm = _safe_name(f"{fn}-{q}-{b}")
            cache_of[sel] = spec_index(nm, object_size=0, size=0, source=src)
    # geometry of the named caches: the most common (bytes_req, bytes_alloc)
    slab = np.flatnonzero(a & (cache_of >= 0))
    ncache = len(specs)
    events = np.bincount(cache_of[slab], minlength=ncache)
    accounted = np.bincount(cache_of[slab[acc[slab] == 1]], minlength=ncache)
    gkey = (cache_of[slab] << 44) | ((breq[slab] & 0x3FFFFF) << 22) | (balloc[slab] & 0x3FFFFF)
    ukey, ucnt = np.unique(gkey, return_counts=True)
    best = {}
    for kv, cv in zip(ukey.tolist(), ucnt.tolist()):
        ci = kv >> 44
        if ci not in best or cv > best[ci][0]:
            best[ci] = (cv, (kv >> 22) & 0x3FFFFF, kv & 0x3FFFFF)
    for i, sp in enumerate(specs):
        sp.events = int(events[i])
        if sp.kmalloc:
            continue
        q, b = best[i][1], best[i][2]
        sp.object_size, sp.size = max(8, q), b
        sp.accounted = bool(accounted[i])
        known = snap.get(sp.name) if snap else None
        geo = None
        if known and known.get("flags") is not None:
            geo = (known.get("align") or 0, known["flags"])
        if geo is None:
            geo = infer_geometry(sp.object_size, b)
        if geo is None:
            sp.geometry_ok = False
            geo = (0, 0)
        sp.align, sp.flags = geo
        if sp.accounted:
            sp.flags |= SLAB_ACCOUNT
        if sp.object_size > KMALLOC_MAX_SIZE:
            raise TraceError(f"cache {sp.name}: objects of {sp.object_size} bytes exceed "
                             f"{KMALLOC_MAX_SIZE} (KMALLOC_MAX_SIZE)")

    # -- vCPUs ----------------------------------------------------------------
    tcpu = c["cpu"][rows].astype(np.int64)
    uniq = np.unique(tcpu)
    ncpus = len(uniq) if cpus is None else int(cpus)
    if ncpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    vcpu = np.searchsorted(uniq, tcpu) % ncpus

    # -- memcg groups ---------------------------------------------------------
    if memcg_by is None:
        memcg_by = "cgroup" if len(strings["cgroup"]) and (c["cgroup"] >= 0).any() else "comm"
    if memcg_by not in MEMCG_BY:
        raise ValueError(f"--memcg-by must be one of {', '.join(MEMCG_BY)}, got {memcg_by!r}")
    grp = np.full(n, -1, dtype=np.int64)
    gnames = []
    charge = a & (acc == 1) & replayed      # kmalloc_large too: __memcg_kmem_charge_page
    if memcg_by != "none":
        col = {"comm": "comm", "tid": "tid", "cgroup": "cgroup"}[memcg_by]
        gkey = c[col][rows].astype(np.int64)
        valid = gkey >= 0 if memcg_by != "tid" else np.ones(n, bool)
        charge &= valid
        need = np.unique(gkey[charge])
        if len(need):
            pos = np.minimum(np.searchsorted(need, gkey), len(need) - 1)
            has = valid & (need[pos] == gkey)
            grp[has] = pos[has]
            for k in need:
                if memcg_by == "comm":
                    gnames.append(strings["comm"][k])
                elif memcg_by == "tid":
                    gnames.append(f"tid-{k}")
                else:
                    gnames.append(strings["cgroup"][k])
    else:
        charge[:] = False
    counts["accounted_allocs"] = int((a & (acc == 1)).sum())
    counts["accounted_unknown"] = int((a & (acc < 0)).sum())
    counts["charged_allocs"] = int(charge.sum())

    # -- operations -----------------------------------------------------------
    # slots: each vCPU's allocations take a range of their own (in its
    # order), so a vCPU writes only its own cache lines of the slot array
    slot = np.full(n, -1, dtype=np.int64)
    ai = np.flatnonzero(a)
    by_cpu = ai[np.lexsort((ai, vcpu[ai]))]
    slot[by_cpu] = np.arange(len(ai))
    fr = np.flatnonzero(alloc_of >= 0)
    slot[fr] = slot[alloc_of[fr]]
    sel = np.flatnonzero(replayed)
    m = len(sel)
    ops = np.zeros(m, dtype=OP_DTYPE)
    kind = np.where(a, np.where(large, OP_ALLOC_PAGES, OP_ALLOC),
                    OP_FREE).astype(np.uint8)
    freed_large = np.zeros(n, bool)
    freed_large[fr] = large[alloc_of[fr]]
    kind[freed_large] = OP_FREE_PAGES
    arg = np.where(large, get_order(breq), np.maximum(cache_of, 0))
    flags = np.zeros(n, dtype=np.uint8)
    remote = np.zeros(n, bool)
    remote[fr] = vcpu[fr] != vcpu[alloc_of[fr]]
    flags[remote] |= OPF_WAIT
    pub = np.zeros(n, bool)
    pub[alloc_of[fr[remote[fr]]]] = True
    flags[pub] |= OPF_PUBLISH
    flags[charge] |= OPF_CHARGE
    flags[a & ~freed] |= OPF_LIVE
    group_cpus = np.zeros(len(gnames), dtype=np.int64)
    if len(gnames):
        gs = sel[grp[sel] >= 0]
        g = grp[gs]
        firsts = gs[np.unique(g, return_index=True)[1]]
        flags[firsts] |= OPF_MEMCG_CREATE
        # the last operation of each (group, vCPU)
        gv = g * ncpus + vcpu[gs]
        rev = gs[::-1]
        lasts = rev[np.unique(gv[::-1], return_index=True)[1]]
        flags[lasts] |= OPF_GROUP_LAST
        group_cpus = np.bincount(grp[lasts], minlength=len(gnames))
    ops["kind"] = kind[sel]
    ops["flags"] = flags[sel]
    ops["arg"] = arg[sel]
    ops["group"] = grp[sel]
    ops["slot"] = slot[sel]
    order = np.lexsort((np.arange(m), vcpu[sel]))
    ops = ops[order]
    bounds = np.searchsorted(vcpu[sel][order], np.arange(ncpus + 1))
    counts["replayed_events"] = int(m)
    counts["allocations"] = int(a.sum())
    counts["frees"] = int(len(fr))
    counts["remote_frees"] = int(remote.sum())
    counts["live_at_end"] = int((a & ~freed).sum())
    counts["page_allocs"] = int(large.sum())
    counts["events_per_vcpu"] = [int(x) for x in np.diff(bounds)]
    sl = a & ~large
    total = int(balloc[sl].sum() + (PAGE_SIZE << get_order(breq[large])).sum())
    counts["large_size_mismatches"] = int(((PAGE_SIZE << get_order(breq[large])) != balloc[large]).sum())
    return Mapping(ncpus=ncpus, trace_cpus=[int(x) for x in uniq], ops=ops, bounds=bounds,
                   caches=specs, groups=gnames, group_cpus=group_cpus, nslots=int(a.sum()),
                   counts=counts, memcg_by=memcg_by, alloc_cache=cache_of[sl],
                   alloc_bytes=balloc[sl], alloc_event=e[sl], total_bytes=total)
