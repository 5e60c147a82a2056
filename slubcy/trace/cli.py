"""`slubcy trace record` and `slubcy trace parse`.  `register(sub)` adds
them to slubcy's argparse subparsers; errors are TraceError (exit 2 from
slubcy.cli.main)."""
import argparse
import gzip
import lzma
import os
import shutil
import subprocess
import sys
import tempfile

from slubcy.trace.errors import TraceError

EVENTS = ("kmem:kmalloc", "kmem:kfree", "kmem:kmem_cache_alloc", "kmem:kmem_cache_free")
PERMISSION_HINTS = ("permission", "paranoid", "eacces", "not permitted", "access to performance")


def record(cmd, out="kmem-trace.txt.xz", system_wide=False, perf="perf", quiet=False):
    """Run `perf record` of the four kmem events on cmd (a list), then
    `perf script` into out (xz if it ends .xz, gzip if .gz).  Returns
    (cmd's exit status as perf reports it, bytes written)."""
    if not cmd:
        raise TraceError("trace record: no command given (slubcy trace record [--out FILE] -- CMD ...)")
    exe = shutil.which(perf)
    if exe is None:
        raise TraceError(f"trace record: `{perf}` not found on PATH; install perf "
                         f"(linux-tools / linux-perf) or record with trace-cmd or tracefs")
    if shutil.which(cmd[0]) is None:
        raise TraceError(f"trace record: cannot run {cmd[0]!r}: command not found or not executable")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise TraceError(f"trace record: directory {out_dir} does not exist")
    with tempfile.TemporaryDirectory(prefix="slubcy-trace-") as tmp:
        data = os.path.join(tmp, "perf.data")
        argv = [exe, "record", "-q"]
        for e in EVENTS:
            argv += ["-e", e]
        if system_wide:
            argv.append("-a")
        argv += ["-o", data, "--"] + list(cmd)
        try:
            rec = subprocess.run(argv, stderr=subprocess.PIPE, stdin=sys.stdin)
        except OSError as e:
            raise TraceError(f"trace record: cannot run {exe}: {e}") from None
        err = rec.stderr.decode("utf-8", "replace")
        low = err.lower()
        last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), "")
        if "workload failed" in low:
            raise TraceError(f"trace record: cannot run {cmd[0]!r}: {last}")
        if not os.path.exists(data) or os.path.getsize(data) == 0:
            if any(h in low for h in PERMISSION_HINTS):
                raise TraceError("trace record: permission refused by perf (kmem tracepoints "
                                 "need root, or CAP_PERFMON and a readable tracefs with "
                                 "kernel.perf_event_paranoid <= -1)" + (f": {last}" if last else ""))
            raise TraceError(f"trace record: perf record failed (exit {rec.returncode})"
                             + (f": {last}" if last else ""))
        if err.strip() and not quiet:
            sys.stderr.write(err)
        opener = (lzma.open if out.endswith(".xz") else gzip.open if out.endswith(".gz") else open)
        with opener(out, "wb") as f:
            scr = subprocess.run([exe, "script", "-i", data], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            if scr.returncode != 0:
                last = scr.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
                raise TraceError(f"trace record: perf script failed: {last[0]}")
            f.write(scr.stdout)
    return rec.returncode, os.path.getsize(out)


def _record(args):
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    status, size = record(cmd, out=args.out, system_wide=args.system_wide)
    from slubcy.trace.parse import parse
    t = parse(args.out, progress=False, require_events=False)
    r = t.report
    print(f"{args.out}: {size:,} bytes, {r.events:,} kmem events "
          f"({', '.join(f'{k} {v}' for k, v in r.events_by_type.items())}); "
          f"command exit status {status}")
    return 0


def _parse(args):
    from slubcy.trace.parse import parse
    t = parse(args.file, strict=args.strict, progress=False if args.no_progress else None)
    print(t.report.to_json(indent=2) if args.json else t.report)
    return 0


def _replay(args):
    import json
    from slubcy.trace.replay import format_report, replay_trace
    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus must be >= 1, got {args.cpus}")
    preempt = None if args.preempt in (None, "none") else args.preempt
    policy = args.policy or ("objcg" if args.slub == "7.0" else "barrier")
    r = replay_trace(args.trace, policy=policy, cpus=args.cpus, memcg_by=args.memcg_by,
                     slabinfo=args.slabinfo, preempt=preempt, hz=args.hz,
                     expedited=args.expedited, seed=args.seed, slub=args.slub,
                     progress=False if (args.json or args.no_progress) else None)
    if args.json:
        d = r.to_dict()
        d["slabinfo"] = [{k: v for k, v in i.items() if isinstance(v, (int, float, str))}
                         for i in r.slabinfo]
        print(json.dumps(d, default=str))
    else:
        print(format_report(r))
    return 0


def register(sub):
    """Add `trace record`, `trace parse` and `replay` to slubcy's subparsers."""
    rp = sub.add_parser(
        "replay", help="replay a kmem trace through the core under a policy",
        description="Replays TRACE (perf script, trace-cmd report or tracefs text; see `slubcy "
                    "trace parse`) on one worker thread per traced CPU, through the core's "
                    "allocation and free entry, with a memcg per task group taken offline "
                    "through the policy after the group's last event; prints the trace report, "
                    "the workload metrics and the slabinfo at the end.")
    rp.add_argument("trace", help="the trace file (.gz .xz .bz2 too)")
    rp.add_argument("--policy", "-p", default=None,
                    help="dead-cache policy (default barrier; objcg with --slub 7.0)")
    rp.add_argument("--cpus", type=int, default=None,
                    help="vCPUs (default: one per traced CPU; fewer fold them round-robin)")
    rp.add_argument("--memcg-by", choices=["comm", "tid", "cgroup", "none"], default=None,
                    help="task groups that get a memcg each (default: cgroup if the trace has "
                         "them, else comm)")
    rp.add_argument("--slabinfo", metavar="FILE",
                    help="a /proc/slabinfo copy or /sys/kernel/slab directory of the traced "
                         "machine: names and geometry of caches the trace does not name")
    rp.add_argument("--preempt", metavar="SPEC", default=None,
                    help="as for slubcy run, e.g. slab_free:before_cmpxchg=0.05:1ms:sleep; "
                         "default none")
    rp.add_argument("--hz", type=int, default=None)
    rp.add_argument("--expedited", action="store_true")
    rp.add_argument("--slub", choices=["4.0", "7.0"], default="4.0",
                    help="allocator generation (7.0: sheaves; policy objcg)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--json", action="store_true",
                    help="one JSON object: metrics, per vCPU, trace report, slabinfo")
    rp.add_argument("--no-progress", action="store_true")
    rp.set_defaults(func=_replay)
    tr = sub.add_parser("trace", help="kmem traces: record one with perf, or check one parses")
    tsub = tr.add_subparsers(dest="trace_command", required=True)
    rec = tsub.add_parser(
        "record", help="perf record the kmem events of CMD, perf script into FILE",
        description="Runs `perf record -e kmem:kmalloc -e kmem:kfree -e kmem:kmem_cache_alloc "
                    "-e kmem:kmem_cache_free` on CMD (its tasks; -a for every CPU) and writes "
                    "`perf script` text to --out (xz if it ends .xz, gzip if .gz).")
    rec.add_argument("--out", "-o", default="kmem-trace.txt.xz", help="default kmem-trace.txt.xz")
    rec.add_argument("--system-wide", "-a", action="store_true",
                     help="every task on every CPU while CMD runs (perf record -a)")
    rec.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    rec.set_defaults(func=_record)
    par = tsub.add_parser("parse", help="parse a trace and print its report (format, kernel "
                                        "generation, events, unparseable lines)")
    par.add_argument("file", help="perf script / trace-cmd report / tracefs text; .gz .xz .bz2 "
                                  "too; '-' for stdin")
    par.add_argument("--json", action="store_true", help="the ParseReport as JSON")
    par.add_argument("--strict", action="store_true", help="an unparseable line is an error")
    par.add_argument("--no-progress", action="store_true")
    par.set_defaults(func=_parse)
    return tr
