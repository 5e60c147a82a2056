"""Issue #6's performance figures, each with its baseline measured in the same
process run, the ratio and the target (`make perf`).

    .venv/bin/python benchmarks/perf.py [--quick] [--only KEY ...]

Exits 1 if a target is missed.  The measuring functions are slubcy.analysis.perf's
(one per figure); this is only the command line around them.
"""
import argparse
import math
import sys
import time


def _fmt(x, unit=""):
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "nan"
    digits = 2 if abs(x) < 100 else 1 if abs(x) < 10_000 else 0
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def main(argv=None):
    from slubcy.analysis import perf

    keys = [f.key for f in perf.FIGURES]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke pass (numbers are rough)")
    ap.add_argument("--only", nargs="+", choices=keys, metavar="KEY",
                    help=f"measure only these figures: {', '.join(keys)}")
    args = ap.parse_args(argv)
    cfg = perf.QUICK if args.quick else perf.DEFAULT

    print(f"{'figure':44s} {'measured':>14s}   {'baseline':30s} {'':>14s} {'ratio':>9s}  "
          f"{'target':14s} result")
    missed = []
    t_start = time.perf_counter()
    for fig in perf.FIGURES:
        if args.only and fig.key not in args.only:
            continue
        m = fig.func(cfg)
        ok = fig.check(m)
        result = "info" if ok is None else "ok" if ok else "MISSED"
        if ok is False:
            missed.append(fig.title)
        ratio = "-" if m.ratio is None else f"{_fmt(m.ratio)}x"
        print(f"{fig.title:44s} {_fmt(m.figure, fig.unit):>14s}   {fig.baseline_title:30s} "
              f"{_fmt(m.baseline, fig.unit if m.baseline is not None else ''):>14s} {ratio:>9s}  "
              f"{fig.target_text():14s} {result}" + (f"   ({m.note})" if m.note else ""), flush=True)
    print(f"({time.perf_counter() - t_start:.0f} s{', --quick: rough numbers' if args.quick else ''})")
    if missed:
        print(f"TARGETS MISSED: {len(missed)}: " + "; ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
