"""The Cython core against the pure-Python reference model, step by step.

A hypothesis ``RuleBasedStateMachine`` drives a ``slubcy.Machine`` and a
``slubcy.model.RefMachine`` with the same operations (allocations on a vCPU,
frees of live objects from any vCPU, bursts of both, flush_all, shrink,
destroy attempts) and after every single allocator call compares the whole
``cache_state_info`` of the cache it touched: per-cpu slab, freelist, partial list
and all 26 statistics; the node partial list and counters; every slab's
inuse/objects/frozen/freelist.  ``Machine.validate()`` runs after every step.

Slab identities differ: the core names a slab by its page address, the model
by a creation counter.  A call creates at most one slab, so a slab that
appears on both sides in the same call is paired; pairs are dropped when the
slab is discarded (page addresses may then be reused).  Objects translate as
(page, index) <-> (slab_id, index).
"""

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

from slubcy import model

try:
    import slubcy
    Machine = slubcy.Machine
except (ImportError, AttributeError):          # core not built yet
    Machine = None

pytestmark = pytest.mark.skipif(Machine is None, reason="slubcy.Machine not built")

DEBUG = model.SLAB_POISON | model.SLAB_RED_ZONE | model.SLAB_CONSISTENCY_CHECKS

# name, size, flags: a dentry-like cache (21 objects/slab, cpu_partial 30),
# a debug cache (14 objects/slab, no cpu partials, every op a slow path) and a
# large-object cache whose slabs fill fast (6 objects/slab, cpu_partial 2,
# min_partial 6).
CACHE_SPECS = [
    ("big", 5000, 0),
    ("dbg", 256, DEBUG),
    ("dentry", 192, model.SLAB_HWCACHE_ALIGN),
]


class Mismatch(AssertionError):
    pass


class CachePair:
    """One cache on both sides plus the slab pairing."""

    def __init__(self, core, ref, spec, core_cache, ref_cache):
        self.core = core
        self.ref = ref
        self.spec = spec
        self.c = core_cache
        self.r = ref_cache
        self.page2id = {}       # core page address -> model slab id
        self.id2page = {}
        self.live = []          # [(core address, model object)], allocation order

    # --- pairing and translation -------------------------------------------

    def sync(self, what):
        """Compare the two cache states after one allocator call ``what``."""
        cs = self.core.cache_state_info(self.c)
        rs = self.ref.cache_state_info(self.r)
        core_pages = set(cs["slabs"])
        ref_ids = set(rs["slabs"])
        for page, sid in list(self.page2id.items()):
            if sid not in ref_ids or page not in core_pages:
                # Discarded on at least one side: unpair.  A page the core
                # still has after the model discarded its slab is either a
                # reused address (paired again below with the model's new
                # slab) or a slab the core kept (reported as unpaired).
                del self.page2id[page]
                del self.id2page[sid]
                if sid in ref_ids:
                    raise Mismatch(f"after {what}: core discarded page {page:#x} "
                                   f"but the model keeps slab {sid}: "
                                   f"{rs['slabs'][sid]}")
        new_pages = sorted(core_pages - set(self.page2id))
        new_ids = sorted(ref_ids - set(self.id2page))
        if len(new_pages) != len(new_ids) or len(new_pages) > 1:
            raise Mismatch(
                f"after {what}: unpaired slabs, core pages "
                f"{[hex(p) for p in new_pages]} ({[cs['slabs'][p] for p in new_pages]}) "
                f"vs model slabs {new_ids} ({[rs['slabs'][i] for i in new_ids]})")
        for p, i in zip(new_pages, new_ids):
            self.page2id[p] = i
            self.id2page[i] = p
        tr = self.translate(cs)
        self.compare(tr, rs, what)
        return tr

    def tp(self, page):
        if page is None:
            return None
        try:
            return self.page2id[page]
        except KeyError:
            raise Mismatch(f"core page {page:#x} is not a known slab") from None

    def to(self, obj):
        page, idx = obj
        return (self.tp(page), int(idx))

    def translate(self, cs):
        return {
            "cpus": [{
                "page": self.tp(c["page"]),
                "freelist": [self.to(o) for o in c["freelist"]],
                "partial": [self.tp(p) for p in c["partial"]],
                "stat": dict(c["stat"]),
            } for c in cs["cpus"]],
            "node": {
                "partial": [self.tp(p) for p in cs["node"]["partial"]],
                "nr_partial": cs["node"]["nr_partial"],
                "nr_slabs": cs["node"]["nr_slabs"],
                "total_objects": cs["node"]["total_objects"],
            },
            "slabs": {self.tp(p): {
                "inuse": v["inuse"], "objects": v["objects"], "frozen": bool(v["frozen"]),
                "freelist": [self.to(o) for o in v["freelist"]],
            } for p, v in cs["slabs"].items()},
            "min_partial": cs["min_partial"],
            "cpu_partial": cs["cpu_partial"],
        }

    def compare(self, got, want, what):
        name = self.spec[0]
        errs = []
        for k in ("min_partial", "cpu_partial", "node"):
            if got[k] != want[k]:
                errs.append(f"{k}: core {got[k]} != model {want[k]}")
        for cpu, (g, w) in enumerate(zip(got["cpus"], want["cpus"])):
            for k in ("page", "freelist", "partial"):
                if g[k] != w[k]:
                    errs.append(f"cpu{cpu}.{k}: core {g[k]} != model {w[k]}")
            sd = {k: (g["stat"].get(k), v) for k, v in w["stat"].items()
                  if g["stat"].get(k) != v}
            if sd:
                errs.append(f"cpu{cpu}.stat (core, model): {sd}")
        if len(got["cpus"]) != len(want["cpus"]):
            errs.append("number of cpus differs")
        for sid in sorted(set(got["slabs"]) | set(want["slabs"])):
            g = got["slabs"].get(sid)
            w = want["slabs"].get(sid)
            if g != w:
                errs.append(f"slab {sid} (core page {self.id2page.get(sid, 0):#x}): "
                            f"core {g} != model {w}")
        if errs:
            raise Mismatch(f"cache {name!r} after {what}:\n  " + "\n  ".join(errs))


class CoreVsModel(RuleBasedStateMachine):

    @initialize(ncpu=st.integers(2, 3), with_dentry=st.booleans())
    def setup(self, ncpu, with_dentry):
        self.ncpu = ncpu
        self.core = Machine(cpus=ncpu, nr_cpu_ids=ncpu, memory=64 << 20)
        self.ref = model.RefMachine(cpus=ncpu, nr_cpu_ids=ncpu)
        specs = CACHE_SPECS if with_dentry else CACHE_SPECS[:2]
        self.pairs = [self._create(spec) for spec in specs]

    def _create(self, spec):
        name, size, flags = spec
        c = self.core.kmem_cache_create(name, size, align=0, flags=flags, ctor=None)
        r = self.ref.kmem_cache_create(name, size, align=0, flags=flags, ctor=None)
        for k in ("object_size", "size", "align", "inuse", "offset", "order",
                  "objects_per_slab", "min_partial", "cpu_partial"):
            assert getattr(c, k) == getattr(r, k), (name, k, getattr(c, k), getattr(r, k))
        assert tuple(c.min) == tuple(r.min)
        p = CachePair(self.core, self.ref, spec, c, r)
        p.sync("kmem_cache_create")
        return p

    def teardown(self):
        core = getattr(self, "core", None)
        if core is not None:
            core.close()

    # --- primitive operations, each followed by a comparison ---------------

    def _alloc(self, p, cpu):
        a = self.core.kmem_cache_alloc(p.c, cpu=cpu)
        o = self.ref.kmem_cache_alloc(p.r, cpu)
        what = f"kmem_cache_alloc({p.spec[0]}, cpu={cpu})"
        p.sync(what)
        page, idx = self.core.virt_to_slab(a)
        got = p.to((page, idx))
        if got != o:
            raise Mismatch(f"{what}: core returned {a:#x} = {got}, model {o}")
        p.live.append((a, o))

    def _free(self, p, i, cpu):
        a, o = p.live.pop(i)
        self.core.kmem_cache_free(p.c, a, cpu=cpu)
        self.ref.kmem_cache_free(p.r, o, cpu)
        p.sync(f"kmem_cache_free({p.spec[0]}, {o}, cpu={cpu})")

    # --- rules ---------------------------------------------------------------

    @rule(ci=st.integers(0, 2), cpu=st.integers(0, 2))
    def alloc(self, ci, cpu):
        self._alloc(self.pairs[ci % len(self.pairs)], cpu % self.ncpu)

    @rule(ci=st.integers(0, 2), n=st.integers(1, 80), cpu=st.integers(0, 2))
    def alloc_burst(self, ci, n, cpu):
        p = self.pairs[ci % len(self.pairs)]
        for _ in range(n):
            self._alloc(p, cpu % self.ncpu)

    @rule(ci=st.integers(0, 2), i=st.integers(0, 10**6), cpu=st.integers(0, 2))
    def free(self, ci, i, cpu):
        p = self.pairs[ci % len(self.pairs)]
        if p.live:
            self._free(p, i % len(p.live), cpu % self.ncpu)

    @rule(ci=st.integers(0, 2), n=st.integers(1, 40), cpu=st.integers(0, 2),
          pattern=st.sampled_from(["newest", "oldest", "stride"]))
    def free_burst(self, ci, n, cpu, pattern):
        p = self.pairs[ci % len(self.pairs)]
        for k in range(min(n, len(p.live))):
            if pattern == "newest":
                i = len(p.live) - 1
            elif pattern == "oldest":
                i = 0
            else:
                i = (k * 7) % len(p.live)
            self._free(p, i, cpu % self.ncpu)

    @rule(ci=st.integers(0, 2), i=st.integers(0, 10**6), cpu=st.integers(0, 2))
    def free_slab_mates(self, ci, i, cpu):
        """Free every live object of one slab: drives slabs to empty."""
        p = self.pairs[ci % len(self.pairs)]
        if not p.live:
            return
        sid = p.live[i % len(p.live)][1][0]
        while True:
            idx = next((j for j, (_, o) in enumerate(p.live) if o[0] == sid), None)
            if idx is None:
                break
            self._free(p, idx, cpu % self.ncpu)

    @rule(ci=st.integers(0, 2), cpu=st.integers(0, 2), last=st.booleans())
    def free_one_per_slab(self, ci, cpu, last):
        """Free one live object of every slab that has one: many partial
        slabs at once, so the node list reaches min_partial and empty slabs
        get discarded rather than kept."""
        p = self.pairs[ci % len(self.pairs)]
        chosen = {}
        for a, o in p.live:
            if last or o[0] not in chosen:
                chosen[o[0]] = o
        for o in sorted(chosen.values()):
            idx = next(j for j, (_, x) in enumerate(p.live) if x == o)
            self._free(p, idx, cpu % self.ncpu)

    @rule(ci=st.integers(0, 2))
    def flush_all(self, ci):
        p = self.pairs[ci % len(self.pairs)]
        self.core.flush_all(p.c)
        self.ref.flush_all(p.r)
        p.sync(f"flush_all({p.spec[0]})")

    @rule(ci=st.integers(0, 2))
    def shrink(self, ci):
        p = self.pairs[ci % len(self.pairs)]
        self.core.kmem_cache_shrink(p.c)
        self.ref.kmem_cache_shrink(p.r)
        p.sync(f"kmem_cache_shrink({p.spec[0]})")

    @rule(ci=st.integers(0, 2))
    def destroy(self, ci):
        """kmem_cache_destroy: fails on both sides while objects live (after
        flushing); when it succeeds, the cache is created afresh."""
        k = ci % len(self.pairs)
        p = self.pairs[k]
        core_busy = ref_busy = False
        try:
            self.core.kmem_cache_destroy(p.c)
        except slubcy.CacheBusy:
            core_busy = True
        try:
            self.ref.kmem_cache_destroy(p.r)
        except model.CacheBusy:
            ref_busy = True
        if core_busy != ref_busy:
            raise Mismatch(f"kmem_cache_destroy({p.spec[0]}): core busy={core_busy}, "
                           f"model busy={ref_busy}, live objects={len(p.live)}")
        if core_busy:
            p.sync(f"failed kmem_cache_destroy({p.spec[0]})")
        else:
            assert not p.live
            self.pairs[k] = self._create(p.spec)

    @precondition(lambda self: hasattr(self, "core"))
    @invariant()
    def core_validates(self):
        self.core.validate()
        self.ref.validate()


CoreVsModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreVsModel = pytest.mark.slow(CoreVsModel.TestCase)


def test_scripted_scenario_core_vs_model():
    """A fixed sequence touching every path once, for a readable first failure."""
    sm = CoreVsModel()
    try:
        sm.setup(ncpu=2, with_dentry=True)
        big = 0
        sm.alloc_burst(big, 13, 0)            # 2 full slabs + 1 object, bypasses
        sm.free(big, 0, 1)                    # remote free into a full slab: freeze
        sm.free(big, 0, 1)
        sm.free_burst(big, 6, 1, "oldest")    # more frees, a drain
        sm.flush_all(big)
        sm.alloc_burst(big, 8, 1)             # from node partial, CPU_PARTIAL_NODE
        sm.free_slab_mates(big, 0, 0)
        sm.shrink(big)
        dbg = 1
        sm.alloc_burst(dbg, 30, 0)
        sm.free_burst(dbg, 20, 1, "stride")
        sm.shrink(dbg)
        sm.destroy(dbg)
        sm.free_burst(dbg, 100, 0, "newest")
        sm.destroy(dbg)
        sm.alloc_burst(2, 40, 1)
        sm.free_burst(2, 40, 0, "oldest")
        sm.destroy(2)
        sm.core_validates()
    finally:
        sm.teardown()
