"""The `slubcy` command line."""
import argparse
import sys

import slubcy


def _demo(args):
    """A bulk pattern over dentry/inode/filp-like and kmalloc caches on every
    vCPU, with remote frees, then the slabinfo (no memcgs, no policy: for
    those, `run --workload churn`, `compare` and `race`)."""
    import numpy as np
    from slubcy.analysis import report

    rng = np.random.default_rng(args.seed)
    with slubcy.Machine(cpus=args.cpus, memory=args.memory << 20, seed=args.seed,
                        slub=args.slub) as m:
        caches = [m.kmem_cache_create("dentry", 192, flags=slubcy.SLAB_HWCACHE_ALIGN),
                  m.kmem_cache_create("inode_cache", 600, flags=slubcy.SLAB_HWCACHE_ALIGN),
                  m.kmem_cache_create("filp", 256, flags=slubcy.SLAB_HWCACHE_ALIGN)]
        caches += [m.kmem_cache("kmalloc-64"), m.kmem_cache("kmalloc-512")]
        live = []
        for rnd in range(args.rounds):
            for c in caches:
                cpu = int(rng.integers(m.cpus))
                live.append((c, m.kmem_cache_alloc_bulk(c, int(rng.integers(100, 5000)), cpu=cpu)))
            # free a random half of what is live, each batch from a random vCPU
            rng.shuffle(live)
            half = len(live) // 2
            for c, arr in live[:half]:
                m.kmem_cache_free_bulk(c, arr, cpu=int(rng.integers(m.cpus)))
            live = live[half:]
        in_use = m.validate()
        print(report.tools_slabinfo(m.cache_info()))
        print()
        print(report.proc_slabinfo([i for i in m.cache_info() if i["nr_slabs"]]))
        total = sum(in_use.values())
        print(f"\n{total} objects live in {m.page_alloc_info()['pages_used']} pages; validate() passed")
        for c, arr in live:
            m.kmem_cache_free_bulk(c, arr)
        for c in caches:
            m.kmem_cache_shrink(c)
        m.validate()
    return 0


SLUB_HELP = ("allocator generation: 4.0 (cpu slabs, the default) or 7.0 (Linux 7.0's percpu "
             "sheaves and barns; only policies without per-memcg caches, such as objcg, run on it)")


def slub_arg(value):
    """--slub: one generation."""
    from slubcy.policies import GENERATIONS
    if value not in GENERATIONS:
        raise argparse.ArgumentTypeError(f"invalid generation {value!r}: one of "
                                         f"{', '.join(GENERATIONS)}")
    return value


def slubs_arg(value):
    """compare --slub: one generation or a comma list (4.0,7.0)."""
    return [slub_arg(v.strip()) for v in value.split(",")]


HZ_HELP = ("scheduling-clock ticks per second: a grace period ends at a tick, as a kernel's "
           "(default 250, CONFIG_HZ_250)")
EXPEDITED_HELP = ("grace periods end as soon as every vCPU passed a quiescent state, microseconds "
                  "(as synchronize_sched_expedited), not at a tick")


WORKLOADS = ("fastpath", "batch", "remote", "larson", "churn")
WORKLOAD_HELP = ("one of " + ", ".join(WORKLOADS) + ", or trace:FILE (a kmem trace replayed "
                 "whole: see slubcy replay)")


def workload_arg(value):
    """--workload: a workload name or trace:FILE."""
    if value in WORKLOADS:
        return value
    if value.startswith("trace:") and len(value) > len("trace:"):
        return value
    raise argparse.ArgumentTypeError(f"invalid workload {value!r}: {WORKLOAD_HELP}")


PARAM_HELP = ("a workload shape parameter, repeatable: "
              "job_objects, outlive, handoff, lifetime (s), reclaim_batch, reclaim_every, slots "
              "(see slubcy.workloads.CHURN_DEFAULTS)")


def parse_params(items):
    """['lifetime=0.01', 'job_objects=256'] -> {'lifetime': 0.01, 'job_objects': 256}."""
    from slubcy import workloads
    out = {}
    for item in items or ():
        name, eq, value = item.partition("=")
        if not eq or name not in workloads.SHAPE_PARAMS:
            raise ValueError(f"bad --param {item!r}: NAME=VALUE with NAME one of "
                             f"{', '.join(workloads.SHAPE_PARAMS)}")
        kind = type(workloads.CHURN_DEFAULTS[name])
        try:
            out[name] = kind(float(value)) if kind is int and float(value).is_integer() \
                else kind(value)
        except ValueError:
            raise ValueError(f"bad value {value!r} for --param {name}") from None
    return out


def preempt_spec(args):
    """--preempt: 'none' for no preemption; churn defaults to the main
    job's (workloads.MAIN_PREEMPT)."""
    from slubcy import workloads
    if args.preempt is None:
        return workloads.MAIN_PREEMPT if args.workload == "churn" else None
    return None if args.preempt == "none" else args.preempt


def _run(args):
    from slubcy import workloads
    if args.seconds is None and args.ops is None:
        args.seconds = 2.0
    r = workloads.run(args.workload, cpus=args.cpus, ops=args.ops, seconds=args.seconds,
                      seed=args.seed, memory=None if args.memory is None else args.memory << 20,
                      preempt=preempt_spec(args),
                      progress=None if not args.json else False, policy=args.policy,
                      hz=args.hz, expedited=args.expedited, slub=args.slub,
                      **parse_params(args.param))
    if args.json:
        print(r.to_json())
        return 0
    width = max(map(len, r.metrics))
    print(f"workload {r.workload} on {r.cpus} vCPUs, slub {args.slub}, policy {r.policy}, "
          f"seed {r.seed}")
    for k, v in r.metrics.items():
        shown = "-" if v is None else f"{v:,.3f}" if isinstance(v, float) else f"{v:,}"
        print(f"  {k:{width}s} {shown}")
    print("  per vCPU ops: " + ", ".join(f"{w['ops']:,}" for w in r.per_cpu))
    bad = sum(w.get("canary_errors", 0) + w.get("lost", 0) for w in r.per_cpu)
    if bad:
        print(f"  {bad} canary errors or lost objects!")
        return 1
    return 0


def _compare(args):
    from slubcy import policies as registry
    from slubcy.analysis import compare
    names = args.policies or compare.default_policies()
    for n in names:
        registry.get_policy(n.partition("@")[0])    # a bad name fails before any run
    names = registry.with_generations(names, args.slub)
    if not names:
        raise ValueError(f"no policy named runs on slub {','.join(args.slub)}: per-memcg "
                         "caches went in Linux 5.9 (try objcg)")
    for n in names:
        registry.split_generation(n)
    params = parse_params(args.param)
    if args.out is not None:
        compare.check_out(args.out)     # so does an unwritable --out
    preempt = preempt_spec(args)
    try:
        tidy, summary = compare.compare(names, workload=args.workload, repeat=args.repeat,
                                        seed=args.seed, cpus=args.cpus, ops=args.ops,
                                        seconds=args.seconds, out=args.out,
                                        progress=not args.no_progress, hz=args.hz,
                                        expedited=args.expedited, preempt=preempt, **params)
    except KeyboardInterrupt:
        kept = ""
        if args.out is not None:
            import json
            from pathlib import Path
            from slubcy.workloads import label
            meta = Path(args.out) / f"compare_{label(args.workload)}_meta.json"
            if meta.exists():
                m = json.loads(meta.read_text())
                kept = (f": {m['runs_done']} of {m['runs_planned']} runs kept in {args.out}, "
                        "marked partial" if m["partial"] else
                        f": all {m['runs_done']} runs kept in {args.out}, the plot not drawn")
        print(f"slubcy: interrupted{kept}", file=sys.stderr)
        return 130
    gp = ("expedited grace periods" if args.expedited else
          f"grace periods end at a {args.hz or slubcy.DEFAULT_HZ} Hz tick")
    pre = f", preempt {preempt}" if preempt else ""
    import textwrap
    print(textwrap.fill(f"{args.workload} on {args.cpus} vCPUs, {args.repeat} runs per policy, "
                        f"{gp}{pre}", compare.WIDTH, subsequent_indent="    "))
    print(compare.format_table(summary, names))
    print()
    print("\n".join(compare.verdicts(summary, names)))
    if args.out:
        from slubcy.workloads import label
        print(f"wrote to {args.out}:\n  compare_{label(args.workload)}.csv, _summary.csv, _series.csv, "
              "_offline_us.csv, _meta.json and .png")
    return 0


def _extrapolate(args):
    from slubcy import policies as registry
    from slubcy.analysis import compare, sweep
    registry.get_policy(args.policy)
    rates = sweep.parse_rates(args.rates)
    scenario = sweep.Scenario(args.offlines_per_day, args.preemptions_per_s)
    out = compare.check_out(args.out) if args.out is not None else None
    if args.outlive is not None and not 0 <= args.outlive <= 1:
        raise ValueError(f"--outlive is a fraction in [0, 1], got {args.outlive}")
    extra = {} if args.outlive is None else {"outlive": args.outlive}
    policy = args.policy if args.slub == "4.0" else f"{args.policy}@{args.slub}"
    registry.split_generation(policy)
    s = sweep.leak_vs_preemption(policy, rates=rates, seconds=args.seconds,
                                 repeat=args.repeat, cpus=args.cpus, slice=args.slice,
                                 workload=args.workload, seed=args.seed, preempt=args.preempt,
                                 scenario=scenario, progress=not args.no_progress, hz=args.hz,
                                 expedited=args.expedited, **extra)
    print(s.format())
    if out is not None:
        stem = f"sweep_{args.workload}_{args.policy.replace(':', '-')}"
        s.runs.to_csv(out / f"{stem}.csv", index=False)
        s.points.to_csv(out / f"{stem}_points.csv", index=False)
        s.plot(out / f"{stem}.png")
        print(f"wrote {out}/{stem}.csv, _points.csv and .png")
    return 0


def _grid_sweep(args):
    """slubcy sweep: a grid of runs, on a LocalCluster or --scheduler."""
    from slubcy.analysis import cluster, grid as gridmod
    given = {"policy": args.policy, "workload": args.workload, "cpus": args.cpus,
             "seconds": args.seconds, "ops": args.ops, "memory": args.memory,
             "seed": args.seeds, "preempt": args.preempt, "hz": args.hz, "slub": args.slub}
    given = {k: (v if k in ("preempt", "seed") or v is None else gridmod.split_values(v))
             for k, v in given.items()}
    for item in args.param or ():
        name, eq, values = item.partition("=")
        if not eq or name not in gridmod.AXES:
            raise ValueError(f"bad --param {item!r}: NAME=V1[,V2...] with NAME one of "
                             f"{', '.join(gridmod.AXES)}")
        given[name] = gridmod.split_values(values)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    g = gridmod.Grid.from_axes(given, toml=args.grid)
    store = cluster.Store(args.out)             # an unwritable --out fails here
    done = store.done()
    todo = [c for c in g.cells() if gridmod.cell_id(c) not in done]
    client = None
    if args.scheduler:                          # reached (10 s) and checked before anything runs
        client, _ = cluster.connect(args.scheduler)
        slots = max(len(client.scheduler_info()["workers"]), 1)
    else:
        slots = args.workers or cluster.local_workers(g)
    varied = ", ".join(f"{k} x{len(v)}" for k, v in g.varied.items() if len(v) > 1) or "one cell"
    where = (f"on {args.scheduler} ({slots} workers)" if args.scheduler else
             f"on a LocalCluster of {slots} worker process(es), 1 thread each")
    est = g.estimate(slots, todo)
    print(f"sweep: {g.size:,} cells ({varied}); {len(todo):,} to run, "
          f"{g.size - len(todo):,} already in {args.out}")
    print(f"  {where}; about {est:,.0f} s", flush=True)
    try:
        if not todo:
            return 0
        s = cluster.run_sweep(g, args.out, scheduler=args.scheduler, n_workers=slots,
                              timeout=args.timeout, progress=not args.no_progress, client=client)
    except cluster.SweepStopped as e:
        print(f"slubcy: sweep {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    print(f"sweep: {s['ran']} cells ran in {s['seconds']:.1f} s, {s['errors']} failed; "
          f"{s['skipped']} skipped (already done); dataset {args.out}/cells "
          "(slubcy.analysis.results.load_sweep)")
    return 1 if s["errors"] else 0


def _race(args):
    import json
    from slubcy import race
    if args.slub == "7.0" or args.window in race.SHEAF_WINDOWS:
        r = race.replay_sheaves(window=args.window if args.window in race.SHEAF_WINDOWS
                                else "rcu_sheaf", barrier=not args.no_fix, seed=args.seed,
                                log=None if args.json else print)
        if args.json:
            print(json.dumps(r))
        else:
            print("\nslub 7.0, " + r["verdict"])
        return 0
    r = race.replay(args.policy, seed=args.seed, log=None if args.json else print,
                    window=args.window)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"\npolicy {r['policy']}: " + ("LEAKED" if r["leaked"] else "no leak"))
    return 0


def _policies(args):
    from slubcy import policies
    for row in policies.describe_all():
        print(f"{row['name']:12s} {row['kernel']}")
        print(f"{'':12s} {row['doc'].split(': ', 1)[-1].split('. ')[0]}.")
    return 0


def _slabinfo(args):
    from slubcy.analysis import report
    with slubcy.Machine(cpus=args.cpus, memory=args.memory << 20, slub=args.slub) as m:
        print(report.proc_slabinfo(m.cache_info()) if args.proc else
              report.tools_slabinfo(m.cache_info(), show_empty=True))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="slubcy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {slubcy.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a demo allocation pattern and print its slabinfo")
    demo.add_argument("--cpus", type=int, default=2)
    demo.add_argument("--memory", type=int, default=256, help="arena size in MiB")
    demo.add_argument("--rounds", type=int, default=50)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--slub", type=slub_arg, default="4.0", help=SLUB_HELP)
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="run a workload on worker threads and report its metrics")
    run.add_argument("--workload", "-w", default="fastpath", type=workload_arg,
                     help=WORKLOAD_HELP)
    run.add_argument("--policy", "-p", default=None,
                     help="dead-cache policy spec (churn: default barrier), e.g. barrier:sync")
    run.add_argument("--cpus", type=int, default=2, help="vCPUs, one worker thread each")
    bound = run.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=float, help="run for this long (default 2)")
    bound.add_argument("--ops", type=int, help="or for this many operations in all")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--memory", type=int, default=None,
                     help="arena size in MiB (default 256; 1024 for churn)")
    run.add_argument("--preempt", metavar="SPEC",
                     help="POINT=PROBABILITY:DURATION[:MODE][,...], e.g. "
                          "slab_free:before_cmpxchg=0.01:50us, and/or the CONFIG_PREEMPT model "
                          "preempt=RATE/s:SLICE[:exp|fixed], e.g. preempt=1000/s:3ms; 'none' for "
                          "no preemption; churn's default is the main job's, "
                          "slab_free:before_cmpxchg=0.05:1ms:sleep (workloads.MAIN_PREEMPT)")
    run.add_argument("--param", action="append", metavar="NAME=VALUE", help=PARAM_HELP)
    run.add_argument("--hz", type=int, default=None, help=HZ_HELP)
    run.add_argument("--expedited", action="store_true", help=EXPEDITED_HELP)
    run.add_argument("--slub", type=slub_arg, default="4.0", help=SLUB_HELP)
    run.add_argument("--json", action="store_true", help="one JSON object with the metrics")
    run.set_defaults(func=_run)

    cmp_ = sub.add_parser("compare", help="A/B the policies on a workload (default: all, churn)")
    cmp_.add_argument("policies", nargs="*",
                      help="policy specs, the first the baseline (default: every registered "
                           "one, objcg first)")
    cmp_.add_argument("--workload", "-w", default="churn", type=workload_arg,
                      help=WORKLOAD_HELP)
    cmp_.add_argument("--repeat", "-r", type=int, default=3)
    cmp_.add_argument("--seed", type=int, default=0)
    cmp_.add_argument("--cpus", type=int, default=2)
    b2 = cmp_.add_mutually_exclusive_group()
    b2.add_argument("--seconds", type=float, help="per run (default 1)")
    b2.add_argument("--ops", type=int, help="per run")
    cmp_.add_argument("--param", action="append", metavar="NAME=VALUE", help=PARAM_HELP)
    cmp_.add_argument("--hz", type=int, default=None, help=HZ_HELP)
    cmp_.add_argument("--expedited", action="store_true", help=EXPEDITED_HELP)
    cmp_.add_argument("--slub", type=slubs_arg, default=["4.0"],
                      help=SLUB_HELP + "; a comma list (4.0,7.0) runs each policy under each "
                           "generation it runs on; a policy named NAME@7.0 runs on 7.0")
    cmp_.add_argument("--preempt", metavar="SPEC", default=None,
                      help="as for run, e.g. preempt=1000/s:3ms (the CONFIG_PREEMPT model); "
                           "'none' for no preemption; churn's default is the main job's "
                           "(workloads.MAIN_PREEMPT)")
    cmp_.add_argument("--out", default=None,
                      help="directory for the CSVs and the plot, rewritten after every run "
                           "(checked before the first)")
    cmp_.add_argument("--no-progress", action="store_true")
    cmp_.set_defaults(func=_compare)

    gs = sub.add_parser("sweep", help="a grid of runs (any parameters x seeds), on a local "
                                      "Dask cluster or --scheduler, into a Parquet dataset")
    gs.add_argument("--grid", metavar="FILE.toml", default=None,
                    help="the grid's axes in a [grid] table; options below override it")
    gs.add_argument("--policy", "-p", default=None, help="policies, comma-separated")
    gs.add_argument("--workload", "-w", default=None,
                    help="workloads, comma-separated: " + ", ".join(WORKLOADS) + " or trace:FILE")
    gs.add_argument("--cpus", default=None, help="vCPU counts, comma-separated")
    gs.add_argument("--seconds", default=None, help="run lengths, comma-separated")
    gs.add_argument("--ops", default=None, help="operation counts (instead of --seconds)")
    gs.add_argument("--memory", default=None, help="arena sizes in MiB")
    gs.add_argument("--seeds", default=None, help="A:B (seeds A..B-1) or a comma list")
    gs.add_argument("--preempt", action="append", default=None, metavar="SPEC",
                    help="repeatable, one value each: a --preempt spec of run, 'none', or "
                         "'main' (churn's default, workloads.MAIN_PREEMPT)")
    gs.add_argument("--slub", default=None,
                    help="allocator generations, comma-separated (4.0,7.0)")
    gs.add_argument("--hz", default=None,
                    help="grace-period modes, comma-separated: tick rates (250, 1000) or "
                         "'expedited'")
    gs.add_argument("--param", action="append", metavar="NAME=V1[,V2...]",
                    help="a churn shape parameter's values (job_objects, outlive, handoff, "
                         "lifetime, reclaim_batch, reclaim_every, slots); repeatable")
    gs.add_argument("--out", required=True,
                    help="the sweep directory (cells/*.parquet); cells already there are skipped")
    gs.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                    help="an existing Dask scheduler (workers with this slubcy installed)")
    gs.add_argument("--workers", type=int, default=None,
                    help="LocalCluster worker processes (default: cores // largest --cpus)")
    gs.add_argument("--timeout", type=float, default=None,
                    help="seconds before a cell counts as hung (default 10x its length + 30, "
                         "at least 60)")
    gs.add_argument("--no-progress", action="store_true")
    gs.set_defaults(func=_grid_sweep)

    sw = sub.add_parser("extrapolate", help="a policy's leak rate vs the CONFIG_PREEMPT "
                                            "preemption rate, fitted and extrapolated to a "
                                            "production host")
    sw.add_argument("--policy", "-p", default="naive")
    sw.add_argument("--workload", "-w", default="churn",
                    choices=["fastpath", "batch", "remote", "larson", "churn"])
    sw.add_argument("--rates", default=",".join(str(r) for r in (0, 1000, 3000, 10000)),
                    help="preemptions/s per vCPU, comma-separated (0: no preemption model)")
    sw.add_argument("--slice", default="3ms", help="mean time slice of a preempted task")
    sw.add_argument("--seconds", type=float, default=0.5, help="per run")
    sw.add_argument("--repeat", "-r", type=int, default=2, help="runs per rate")
    sw.add_argument("--cpus", type=int, default=2)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--outlive", type=float, default=None,
                    help="churn: fraction of a job's objects freed after its offline")
    sw.add_argument("--preempt", metavar="SPEC", default=None,
                    help="extra named preemption points, e.g. slab_free:before_cmpxchg=0.01:20us")
    sw.add_argument("--hz", type=int, default=None, help=HZ_HELP)
    sw.add_argument("--expedited", action="store_true", help=EXPEDITED_HELP)
    sw.add_argument("--slub", type=slub_arg, default="4.0", help=SLUB_HELP)
    sw.add_argument("--offlines-per-day", type=float, default=10_000,
                    help="production scenario: memory cgroups removed per day (default 10,000)")
    sw.add_argument("--preemptions-per-s", type=float, default=1000.0,
                    help="production scenario: preemptions/s per CPU (default 1000)")
    sw.add_argument("--out", default=None, help="directory for the CSVs and the plot")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=_extrapolate)

    race = sub.add_parser("race", help="replay the 2014 __slab_free race under a policy")
    race.add_argument("--policy", "-p", default="naive", help="policy spec, e.g. barrier:sync")
    race.add_argument("--seed", type=int, default=0)
    race.add_argument("--window", choices=["slab_free", "put_cpu_partial", "rcu_sheaf", "refill",
                                           "flush_spare"], default="slab_free",
                      help="4.0: where vCPU 1 is held: preempted in __slab_free before its "
                           "cmpxchg (the 2014 race), or inside put_cpu_partial with preemption "
                           "off (the window the barrier closes).  7.0 (sheaves): rcu_sheaf "
                           "(kfree_rcu sheaves in flight when the cache is destroyed; the "
                           "default with --slub 7.0), refill (a sheaf refilled with the lock "
                           "dropped while the cache shrinks), flush_spare (a full spare being "
                           "flushed while the cache shrinks)")
    race.add_argument("--slub", type=slub_arg, default="4.0", help=SLUB_HELP)
    race.add_argument("--no-fix", action="store_true",
                      help="7.0 windows: without the kernel's answer (rcu_sheaf: the "
                           "rcu_barrier() in __kmem_cache_shutdown, b55b423e8518)")
    race.add_argument("--json", action="store_true")
    race.set_defaults(func=_race)

    pol = sub.add_parser("policies", help="list the registered dead-cache policies")
    pol.set_defaults(func=_policies)

    si = sub.add_parser("slabinfo", help="the slabinfo of a fresh machine (kmalloc caches)")
    si.add_argument("--cpus", type=int, default=2)
    si.add_argument("--memory", type=int, default=64, help="arena size in MiB")
    si.add_argument("--proc", action="store_true", help="/proc/slabinfo format")
    si.add_argument("--slub", type=slub_arg, default="4.0", help=SLUB_HELP)
    si.set_defaults(func=_slabinfo)

    from slubcy.trace.cli import register as register_trace
    register_trace(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("slubcy: interrupted", file=sys.stderr)
        return 130
    except (slubcy.SlubError, ValueError, TypeError) as e:
        print(f"slubcy: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
