"""asv: slub 7.0 (percpu sheaves and a per-node barn, Machine(slub="7.0"))
beside slub 4.0 (cpu slab and cpu partial slabs), every benchmark
parameterized by `slub` (issue #17 item 3; `make perf`'s S1-S7 give the
ratios taken side by side in one run).  Every figure reads lower-is-better.

- SlubPair.time_alloc_free_pairs: 100,000 nogil kmem_cache_alloc +
  kmem_cache_free pairs of a 64 B cache on one vCPU (bench.fastpath_pairs).
- SlubRemoteFree.track_ns_per_free: objects allocated on vCPU 0, freed in
  order on vCPU 1 (bench.free_rounds, the frees alone timed), 64 objects a
  slab: 4.0's __slab_free, 7.0's push onto vCPU 1's sheaf.
- SlubBulk.time_bulk_16: kmem_cache_alloc_bulk + kmem_cache_free_bulk of 16
  objects a call, 100,000 objects (bench.bulk_rounds).
- SlubWorkload.track_ns_per_op: larson and churn (objcg) on 2 workers, ns
  per operation (SLUBCY_ASV_SECONDS each).
- SlubPinned.track_bytes_per_vcpu / track_bytes_per_vcpu_shrunk: slab bytes
  per vCPU a cache holds with every object free after bursts of
  allocations and frees on 4 vCPUs (the most over the bursts), before and
  after kmem_cache_shrink (slubcy.analysis.perf.pinned_after_burst).
- SlubBatch.track_ns_per_object: the sheaves v5 cover letter's
  microbenchmark, a batch of 1/10/100/1000 allocations then their frees
  in order, ns per object (bench.replay of the sequence).
"""
try:
    from .common import SLUBS, need, need_slub, seconds
except ImportError:                 # run as a script: benchmarks/ is sys.path[0]
    from common import SLUBS, need, need_slub, seconds


def _machine(slub, **kw):
    import slubcy
    return slubcy.Machine(slub=slub, **kw)


class _OneCache:
    """setup: a fresh Machine(slub, cpus) with a 64 B cache, warmed with
    `warm(cache)`; teardown closes it."""
    cpus = 1
    params = [SLUBS]
    param_names = ["slub"]

    def setup(self, slub, *rest):
        need("slubcy.bench", *self.kernels)
        need_slub(slub)
        self.m = _machine(slub, cpus=self.cpus, memory=64 << 20)
        self.c = self.m.kmem_cache_create("bench-gen-64", 64)
        self.warm()

    def teardown(self, slub, *rest):
        if hasattr(self, "m"):
            self.m.close()


class SlubPair(_OneCache):
    kernels = ("fastpath_pairs",)

    def warm(self):
        from slubcy import bench
        bench.fastpath_pairs(self.c, 10_000)

    def time_alloc_free_pairs(self, slub):
        from slubcy import bench
        bench.fastpath_pairs(self.c, 100_000)


class SlubRemoteFree(_OneCache):
    cpus = 2
    kernels = ("free_rounds",)
    objects, rounds = 4096, 10

    def warm(self):
        from slubcy import bench
        bench.free_rounds(self.c, self.objects, 1, 0, 1)

    def track_ns_per_free(self, slub):
        from slubcy import bench
        n, r = self.objects, self.rounds
        return min(bench.free_rounds(self.c, n, r, 0, 1) for _ in range(3)) / (n * r) * 1e9
    track_ns_per_free.unit = "ns"


class SlubBulk(_OneCache):
    kernels = ("bulk_rounds",)

    def warm(self):
        from slubcy import bench
        bench.bulk_rounds(self.c, 16, 100)

    def time_bulk_16(self, slub):
        from slubcy import bench
        bench.bulk_rounds(self.c, 16, 100_000 // 16)


class SlubWorkload:
    params = (["larson", "churn"], SLUBS)
    param_names = ["workload", "slub"]
    timeout = 300

    def setup(self, workload, slub):
        need("slubcy.workloads", "run")
        need_slub(slub)

    def track_ns_per_op(self, workload, slub):
        from slubcy import workloads
        kw = {"policy": "objcg"} if workload == "churn" else {}
        r = workloads.run(workload, cpus=2, seconds=seconds(), seed=0, slub=slub, **kw)
        return 1e9 / r.metrics["throughput"]
    track_ns_per_op.unit = "ns/op"


class SlubPinned:
    """Deterministic: no timing, one pass over the bursts per call."""
    params = [SLUBS]
    param_names = ["slub"]
    timeout = 300

    def setup(self, slub):
        need("slubcy.analysis.perf", "pinned_after_burst", "PIN_BURSTS", "PIN_CPUS")
        need_slub(slub)

    def _most(self, slub, key):
        from slubcy.analysis import perf
        return max(perf.pinned_after_burst(slub, b)[key] for b in perf.PIN_BURSTS) \
            * 4096 / perf.PIN_CPUS

    def track_bytes_per_vcpu(self, slub):
        return self._most(slub, "pages")
    track_bytes_per_vcpu.unit = "bytes"

    def track_bytes_per_vcpu_shrunk(self, slub):
        return self._most(slub, "shrunk_pages")
    track_bytes_per_vcpu_shrunk.unit = "bytes"


class SlubBatch:
    params = (SLUBS, [1, 10, 100, 1000])
    param_names = ["slub", "batch"]

    def setup(self, slub, batch):
        need("slubcy.bench", "replay")
        need("slubcy.analysis.perf", "batch_ops", "BATCH_SIZE", "BATCH_CAPACITY")
        need_slub(slub)
        import numpy as np
        from slubcy import bench
        from slubcy.analysis import perf
        self.ops, self.nobj = perf.batch_ops(batch, 100_000)
        self.slots = np.zeros(batch, dtype=np.uint64)
        self.m = _machine(slub, cpus=1, memory=64 << 20)
        kw = {"sheaf_capacity": perf.BATCH_CAPACITY} if slub != "4.0" else {}
        self.c = self.m.kmem_cache_create("bench-batch", perf.BATCH_SIZE, **kw)
        bench.replay(self.m, [self.c], self.ops, self.slots)

    def teardown(self, slub, batch):
        if hasattr(self, "m"):
            self.m.close()

    def track_ns_per_object(self, slub, batch):
        from slubcy import bench
        return min(bench.replay(self.m, [self.c], self.ops, self.slots)[0]
                   for _ in range(5)) / self.nobj * 1e9
    track_ns_per_object.unit = "ns"
