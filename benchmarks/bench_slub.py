"""asv: the allocator's own paths, wall time (threads run without the GIL, so
process_time would sum CPUs).

- FastPath.time_fastpath_pairs: 100,000 kmem_cache_alloc + kmem_cache_free
  pairs on one vCPU in a nogil loop (the lockless per-cpu freelist).
- Workload.time_ops: a fixed number of operations of the fastpath, remote
  (every free is a remote __slab_free: the compare-and-swap slow path) and
  larson workloads on 1 and 2 vCPUs.
"""
import slubcy
from slubcy import bench, workloads

from .common import VCPUS, need


class FastPath:
    params = [[64, 192, 512]]
    param_names = ["size"]

    def setup(self, size):
        need("slubcy.bench", "fastpath_pairs")
        self.m = slubcy.Machine(cpus=1, memory=64 << 20)
        self.c = self.m.kmem_cache_create(f"bench-{size}", size)
        bench.fastpath_pairs(self.c, 10_000)        # populate the cpu slab

    def teardown(self, size):
        self.m.close()

    def time_fastpath_pairs(self, size):
        bench.fastpath_pairs(self.c, 100_000)


class Workload:
    params = (["fastpath", "remote", "larson"], VCPUS)
    param_names = ["workload", "vcpus"]
    ops = 2_000_000

    def setup(self, workload, vcpus):
        need("slubcy.workloads", "run")
        if workload == "remote" and vcpus < 2:
            raise NotImplementedError("remote frees need a second vCPU")
        self.m = slubcy.Machine(cpus=vcpus, memory=256 << 20)

    def teardown(self, workload, vcpus):
        if hasattr(self, "m"):          # not set when setup skipped the combination
            self.m.close()

    def time_ops(self, workload, vcpus):
        workloads.run(workload, cpus=vcpus, ops=self.ops, machine=self.m)
