"""asv: the kmem trace parser (slubcy.trace.parse) on perf-script text; the
issue #14 target is >= 1M lines/s on one core.

- TraceParse.time_parse_perf_script: parse a plain-text `perf script` trace
  of LINES lines (the shipped recorded perf traces, tests/traces/*.perf.txt.xz,
  repeated), wall time (the parser is one thread).
- TraceParse.track_ns_per_line: the same, as ns per line (1,000 ns is the
  target; lower is better, as asv reads every figure).

As a script, the figure itself: `python benchmarks/bench_trace.py [LINES]`
(default 1,000,000; best of 3 runs, plain text in the page cache, plus the
xz file as shipped).

SLUBCY_ASV_SECONDS below 0.5 (the test suite's quick pass) makes the trace
100,000 lines.
"""
import glob
import lzma
import os
import sys
import tempfile
import time

try:
    from .common import need
except ImportError:                 # run as a script: benchmarks/ is sys.path[0]
    from common import need

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = os.path.join(os.path.dirname(HERE), "tests", "traces")


def lines_wanted():
    if float(os.environ.get("SLUBCY_ASV_SECONDS", "0.5")) < 0.5:
        return 100_000
    return 1_000_000


def make_trace(path, lines):
    """Write >= `lines` lines of perf script text to path; return the count."""
    texts = [lzma.open(f).read() for f in sorted(glob.glob(os.path.join(TRACES, "*.perf.txt.xz")))]
    if not texts:
        raise NotImplementedError("no shipped perf traces under tests/traces")
    n = 0
    with open(path, "wb") as f:
        while n < lines:
            for t in texts:
                f.write(t)
                n += t.count(b"\n")
    return n


def lines_per_s(path, repeat=3, clock=time.perf_counter):
    """(lines/s, lines, seconds) of the best of `repeat` parses, timed by
    `clock` (time.process_time: CPU time of this one-thread process, which a
    loaded host does not inflate)."""
    from slubcy.trace import parse
    best = None
    for _ in range(repeat):
        t0 = clock()
        t = parse(path, progress=False)
        dt = clock() - t0
        best = dt if best is None else min(best, dt)
    return t.report.lines / best, t.report.lines, best


class TraceParse:
    timeout = 600

    def setup_cache(self):
        need("slubcy.trace", "parse")
        path = os.path.abspath("perf-script.txt")
        make_trace(path, lines_wanted())
        return path

    def time_parse_perf_script(self, path):
        from slubcy.trace import parse
        parse(path, progress=False)

    def track_ns_per_line(self, path):
        return 1e9 / lines_per_s(path, repeat=1)[0]
    track_ns_per_line.unit = "ns"


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "perf-script.txt")
        lines = make_trace(path, n)
        size = os.path.getsize(path)
        for clock, what in ((time.perf_counter, "wall"), (time.process_time, "CPU")):
            rate, lines, dt = lines_per_s(path, clock=clock)
            print(f"plain perf script text, {lines:,} lines, {size / 1e6:.0f} MB: {dt:.3f} s {what}, "
                  f"{rate / 1e6:.2f} M lines/s, {size / dt / 1e6:.0f} MB/s (best of 3)")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        xz = path + ".xz"
        with open(path, "rb") as src, lzma.open(xz, "wb", preset=1) as dst:
            dst.write(src.read())
        rate, lines, dt = lines_per_s(xz, repeat=1)
        print(f"the same, xz-compressed: {dt:.3f} s, {rate / 1e6:.2f} M lines/s "
              f"(xz decompression included)")
