"""Fast-path figures, measured in one process run (machines here are shared
and noisy: only ratios measured side by side mean anything).

    .venv/bin/python benchmarks/fastpath.py [--n N] [--repeat R]

- fast-path alloc+free pair (64 B cache) in a nogil C loop vs the same loop
  over libc malloc/free: target >= 2x faster;
- the bulk Python API (kmem_cache_alloc_bulk + kmem_cache_free_bulk of 10,000
  objects) per object: target <= 10 ns for each call's share.
Exits 1 if a target is missed.
"""
import argparse
import sys
import time

import slubcy
from slubcy import bench


def best(fn, repeat):
    return min(fn() for _ in range(repeat))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5_000_000, help="pairs per nogil loop")
    ap.add_argument("--bulk", type=int, default=10_000, help="objects per bulk call")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    with slubcy.Machine(cpus=1, memory=256 << 20) as m:
        c = m.kmem_cache_create("bench-64", 64)
        bench.fastpath_pairs(c, 1000)                       # warm the cpu slab
        slub = best(lambda: bench.fastpath_pairs(c, args.n), args.repeat) / args.n
        libc = best(lambda: bench.libc_pairs(args.n, 64), args.repeat) / args.n

        def bulk_alloc():
            t0 = time.perf_counter()
            arr = m.kmem_cache_alloc_bulk(c, args.bulk)
            t1 = time.perf_counter()
            m.kmem_cache_free_bulk(c, arr)
            t2 = time.perf_counter()
            return (t1 - t0, t2 - t1)

        bulk_alloc()
        runs = [bulk_alloc() for _ in range(args.repeat * 3)]
        alloc_ns = min(r[0] for r in runs) / args.bulk * 1e9
        free_ns = min(r[1] for r in runs) / args.bulk * 1e9
        m.validate()

    rows = [
        ("fast-path alloc+free pair (64 B)", slub * 1e9, "ns"),
        ("libc malloc+free pair (64 B)", libc * 1e9, "ns"),
        ("ratio libc / slubcy", libc / slub, "x (target >= 2)"),
        (f"bulk alloc, {args.bulk} objects, per object", alloc_ns, "ns (target <= 10)"),
        (f"bulk free, {args.bulk} objects, per object", free_ns, "ns (target <= 10)"),
    ]
    for name, value, unit in rows:
        print(f"{name:45s} {value:8.2f} {unit}")
    ok = libc / slub >= 2 and alloc_ns <= 10 and free_ns <= 10
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
