"""Shared parameters of the asv suites (asv imports every module here; this
one defines no benchmarks).

SLUBCY_ASV_SECONDS shortens or lengthens the timed workload runs (default
0.5 s each); the test suite sets it small so one asv pass stays quick.
"""
import importlib
import os

# every registered policy, with barrier's synchronous variant beside its default (async)
# and reap's per-CPU variant beside its default (reap = reap:ipi)
POLICIES = ["keep", "naive", "barrier", "barrier:sync", "reparent", "reap", "reap:percpu", "objcg"]
VCPUS = [1, 2]
SLUBS = ["4.0", "7.0"]      # Machine(slub=...): cpu slabs, percpu sheaves


def seconds():
    return float(os.environ.get("SLUBCY_ASV_SECONDS", "0.5"))



def need(module, *names):
    """`module` imported, with each of `names` on it (a dotted name reaches
    into it: "Machine.memcg_offline"); on a commit that lacks any of them,
    NotImplementedError, which asv records as skipped.  The suite runs over
    the project's history (`asv run A..B`, `asv continuous`), where an older
    commit does not have a newer API: call it first in every setup."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise NotImplementedError(f"this commit has no {module} ({e})") from None
    for name in names:
        obj = mod
        for part in name.split("."):
            if not hasattr(obj, part):
                raise NotImplementedError(f"this commit's {module} has no {name}")
            obj = getattr(obj, part)
    return mod


def need_slub(slub):
    """NotImplementedError when this commit's Machine has no allocator
    generation `slub` ("4.0": cpu slabs; "7.0": percpu sheaves): a commit
    before Machine(slub=...) has neither, as a keyword."""
    gens = need("slubcy.machine", "SLUB_GENERATIONS").SLUB_GENERATIONS
    if slub not in gens:
        raise NotImplementedError(f"this commit has no slub {slub!r}")


def need_policy(spec):
    """NotImplementedError when this commit does not know policy `spec`."""
    if spec is None:
        return
    try:
        from slubcy.policies import available
    except ImportError:
        try:
            from policies import available          # before it was slubcy.policies
        except ImportError as e:
            raise NotImplementedError(f"this commit has no policy registry ({e})") from None
    if spec.split(":")[0] not in available():
        raise NotImplementedError(f"this commit has no policy {spec!r}")
