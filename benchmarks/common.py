"""Shared parameters of the asv suites (asv imports every module here; this
one defines no benchmarks).

SLUBCY_ASV_SECONDS shortens or lengthens the timed workload runs (default
0.5 s each); the test suite sets it small so one asv pass stays quick.
"""
import os

# every registered policy, with barrier's synchronous variant beside its default (async)
# and reap's per-CPU variant beside its default (reap = reap:ipi)
POLICIES = ["keep", "naive", "barrier", "barrier:sync", "reparent", "reap", "reap:percpu", "objcg"]
VCPUS = [1, 2]


def seconds():
    return float(os.environ.get("SLUBCY_ASV_SECONDS", "0.5"))

