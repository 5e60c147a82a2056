"""Thread scaling and grace-period latency, measured in one process run.

    .venv/bin/python benchmarks/scaling.py [--seconds S] [--repeat R]

- `fastpath` throughput with 2 workers vs 1 (target >= 1.8x on 2 cores);
- `larson` throughput with 2 workers vs 1 (reported; issue #6 sets >= 1.4x);
- synchronize() latency while 2 vCPUs run `fastpath` (p50 / p99);
- the cost of moving a cache line between two threads (ping-pong), before
  and after: larson's remote frees pay it several times each, and it varies
  several-fold with where the two threads land (same core complex or not),
  so the larson ratio means little without it.
Runs alternate 1 and 2 workers so drift hits both alike.  Both runs model
the same 2-CPU machine (nr_cpu_ids=2, which sizes the slabs: calculate_order),
so only the number of workers differs.  Exits 1 if the fastpath target is
missed.
"""
import argparse
import statistics
import sys
import threading
import time

import slubcy
from slubcy import bench, workloads
from slubcy.workload import Run


def throughput(workload, cpus, seconds, seed):
    return workloads.run(workload, cpus=cpus, seconds=seconds, seed=seed,
                         nr_cpu_ids=2).metrics["throughput"]


def cacheline_transfer_ns(n=200_000, repeat=3):
    """Median one-way cache-line transfer between two threads, ns (a thread
    that cannot run at once shows up as microseconds)."""
    out = []
    for _ in range(repeat):
        pp = bench.CachelinePingPong()
        t = threading.Thread(target=pp.pong, args=(n,))
        t.start()
        out.append(pp.ping(n))
        t.join()
    return statistics.median(out)


def grace_period_latency(n):
    with slubcy.Machine(cpus=3) as m:       # vCPU 2 stays idle
        c = m.kmem_cache_create("gp", 64)
        run = Run(m, "fastpath", [c], 2, -1)
        run.start()
        lat = []
        try:
            time.sleep(0.05)
            for _ in range(n):
                t0 = time.perf_counter()
                m.synchronize(timeout=5)
                lat.append(time.perf_counter() - t0)
        finally:
            run.request_stop()
            run.finish()
        return lat


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    ok = True
    xfer = [cacheline_transfer_ns()]
    for workload, target in (("fastpath", 1.8), ("larson", 1.4)):
        one, two = [], []
        for i in range(args.repeat):
            one.append(throughput(workload, 1, args.seconds, i))
            two.append(throughput(workload, 2, args.seconds, i))
        ratio = statistics.median(two) / statistics.median(one)
        print(f"{workload:9s} 1 worker {statistics.median(one) / 1e6:8.1f} Mops/s   "
              f"2 workers {statistics.median(two) / 1e6:8.1f} Mops/s   "
              f"ratio {ratio:4.2f}x (target >= {target})")
        if workload == "fastpath":
            ok &= ratio >= target
    xfer.append(cacheline_transfer_ns())
    print(f"cache-line transfer between two threads: {xfer[0]:.0f} ns before, {xfer[1]:.0f} ns after")
    lat = sorted(grace_period_latency(2000))
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    print(f"synchronize() with 2 busy vCPUs: p50 {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
