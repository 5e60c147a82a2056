"""asv: how cost grows with the work (issue #15 item 2).  Every figure reads
lower-is-better.

- OfflineByCaches.track_offline_us: one memcg_offline() (queueing to the end
  of its work item on the kworker, HZ=250 grace periods) of a memcg with N
  child caches (1, 4, 16, 64), each holding objects, 10 other memcgs online,
  per policy: grows with N under barrier:sync (a grace period per cache,
  4.0-4.10), stays flat under the 4.11 async barrier and objcg.
- OfflineByMemcgs.track_offline_us: the same offline with 1 child cache and
  N other memcgs online (10, 100, 1000, 4000; the model has 4096 kmemcg
  ids): should not grow with N.
- ChurnVcpus.track_ns_per_op: churn (objcg) ns/op against vCPUs 1-64 on
  this host's cores: no collapse when oversubscribed.
- ArenaSize.track_ns_per_op: larson ns/op on 2 vCPUs against the arena's
  size (64 MiB, 1 GiB, 16 GiB sparse): flat.
- MemcgMemory.track_bytes_per_memcg, track_bytes_per_child_cache: C heap
  growth (bytes, glibc mallinfo2) per memcg created and per child cache
  created (a memcg allocating from an accounted cache under a
  per-memcg-cache policy), over 1000 memcgs / 256 child caches: the
  core's structures (Python objects live in pymalloc's arenas, not counted).
"""
import os

try:
    from .common import need, need_policy, seconds
except ImportError:                 # run as a script: benchmarks/ is sys.path[0]
    from common import need, need_policy, seconds

POLICIES = ["barrier:sync", "barrier", "objcg"]
REPEAT = 5


def _heap_bytes():
    """Bytes the C heap has handed out (glibc mallinfo2().uordblks plus its
    mmap'ed chunks, hblkhd): what the core's calloc/malloc of memcgs and
    caches costs, byte-exact where RSS moves by pages.  Process RSS where
    mallinfo2 is missing (glibc < 2.33, musl)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL(None)
        f = libc.mallinfo2
    except (OSError, AttributeError):
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    f.restype = Mallinfo2
    mi = f()
    return mi.uordblks + mi.hblkhd


def _offline_us(policy, ncaches, nmemcgs, repeat=REPEAT):
    """Median offline latency (us) of a memcg with `ncaches` child caches,
    `nmemcgs` other memcgs online (slubcy.analysis.perf._offline_us)."""
    perf = need("slubcy.analysis.perf", "_offline_us")
    need("slubcy", "Machine.memcg_offline", "Machine.memcg_create", "Machine.flush_work")
    need_policy(policy)
    return perf._offline_us(policy, ncaches, nmemcgs, repeat)


class _OfflineCurve:
    """One axis of the offline's cost: track_offline_us(policy, n) is
    _offline_us with `n` on the subclass's axis."""
    timeout = 600

    def setup(self, policy, n):
        need_policy(policy)

    def track_offline_us(self, policy, n):
        return self.measure(policy, n)
    track_offline_us.unit = "us"


class OfflineByCaches(_OfflineCurve):
    params = (POLICIES, [1, 4, 16, 64])
    param_names = ["policy", "caches_per_memcg"]

    def measure(self, policy, ncaches):
        return _offline_us(policy, ncaches, 10)


class OfflineByMemcgs(_OfflineCurve):
    params = (POLICIES, [10, 100, 1000, 4000])
    param_names = ["policy", "live_memcgs"]

    def measure(self, policy, nmemcgs):
        return _offline_us(policy, 1, nmemcgs)


class ChurnVcpus:
    """churn (objcg) ns per operation against vCPUs, 1 to 64 on this host's
    cores (oversubscribed): no collapse (make perf's figure 12: 64 vCPUs
    >= 0.5x the throughput of 2)."""
    params = [[1, 2, 4, 8, 16, 32, 64]]
    param_names = ["vcpus"]
    timeout = 600

    def setup(self, vcpus):
        need("slubcy.workloads", "run")
        need_policy("objcg")

    def track_ns_per_op(self, vcpus):
        from slubcy import workloads
        r = workloads.run("churn", cpus=vcpus, seconds=seconds(), seed=0, policy="objcg")
        return 1e9 / r.metrics["throughput"]
    track_ns_per_op.unit = "ns/op"


class ArenaSize:
    """larson ns per operation on 2 vCPUs against the arena's size (64 MiB
    to 16 GiB, sparse): flat."""
    params = [[64 << 20, 1 << 30, 16 << 30]]
    param_names = ["arena_bytes"]
    timeout = 300

    def setup(self, memory):
        need("slubcy.workloads", "run")

    def track_ns_per_op(self, memory):
        import slubcy
        from slubcy import workloads
        with slubcy.Machine(cpus=2, memory=memory) as m:
            r = workloads.run("larson", cpus=2, ops=1_000_000, machine=m)
        return 1e9 / r.metrics["throughput"]
    track_ns_per_op.unit = "ns/op"


class MemcgMemory:
    params = [["barrier", "objcg"]]
    param_names = ["policy"]
    timeout = 300

    def setup(self, policy):
        need("slubcy", "Machine.memcg_create", "SLAB_ACCOUNT")
        need_policy(policy)

    def track_bytes_per_memcg(self, policy):
        import slubcy
        n = 1000
        with slubcy.Machine(cpus=2, memory=64 << 20, policy=policy) as m:
            before = _heap_bytes()
            memcgs = [m.memcg_create(f"g{i}") for i in range(n)]
            grown = _heap_bytes() - before
            del memcgs
        return grown / n
    track_bytes_per_memcg.unit = "bytes"

    def track_bytes_per_child_cache(self, policy):
        import slubcy
        ncaches, nmemcgs = 16, 16
        with slubcy.Machine(cpus=2, memory=256 << 20, policy=policy) as m:
            caches = [m.kmem_cache_create(f"acct-{i}", 64, flags=slubcy.SLAB_ACCOUNT)
                      for i in range(ncaches)]
            memcgs = [m.memcg_create(f"g{i}") for i in range(nmemcgs)]
            before = _heap_bytes()
            objs = [(c, m.kmem_cache_alloc(c, memcg=g)) for g in memcgs for c in caches]
            m.flush_work(timeout=60)
            grown = _heap_bytes() - before
            children = len(m.child_caches())
            for c, a in objs:
                m.kmem_cache_free(c, a)
        # objcg (5.9) makes no child caches: its growth is per charged object
        return grown / children if children else float("nan")
    track_bytes_per_child_cache.unit = "bytes"


if __name__ == "__main__":
    for policy in POLICIES:
        print(policy, "by caches:", [round(_offline_us(policy, n, 10, 3)) for n in (1, 4, 16, 64)],
              "by memcgs:", [round(_offline_us(policy, 1, n, 3)) for n in (10, 100, 1000, 4000)])
    mm = MemcgMemory()
    for policy in ("barrier", "objcg"):
        print(policy, "bytes per memcg", round(mm.track_bytes_per_memcg(policy)),
              "per child cache", mm.track_bytes_per_child_cache(policy))
