"""The asv suites run over the project's history (`asv run A..B`, `asv
continuous`): on a commit that lacks an API a benchmark needs, its setup
raises NotImplementedError, which asv records as skipped, not failed.
Older commits are simulated here by taking the API away."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_generations, bench_perf, bench_policies, bench_replay, bench_slub  # noqa: E402
from benchmarks.common import need, need_policy, need_slub  # noqa: E402
from slubcy import workloads  # noqa: E402
from slubcy.analysis import perf  # noqa: E402


def test_figure_keys_are_the_stable_literal_list():
    assert bench_perf.KEYS == [f.key for f in perf.FIGURES]


def test_need_returns_the_module_or_skips():
    assert need("slubcy.workloads", "run", "CHURN_DEFAULTS") is workloads
    assert need("slubcy", "Machine.memcg_offline").Machine
    with pytest.raises(NotImplementedError, match="has no slubcy.nonexistent"):
        need("slubcy.nonexistent")
    with pytest.raises(NotImplementedError, match="has no Machine.no_such_method"):
        need("slubcy", "Machine.no_such_method")
    need_policy("barrier:sync")
    need_policy(None)
    with pytest.raises(NotImplementedError, match="no policy 'sheaves'"):
        need_policy("sheaves")


def test_a_commit_without_cgroup_loop_skips_its_benchmark(monkeypatch):
    monkeypatch.delattr(workloads, "cgroup_loop")
    with pytest.raises(NotImplementedError, match="cgroup_loop"):
        bench_policies.CgroupLoop().setup("barrier", 1)


def test_a_commit_without_the_analysis_package_skips_make_perfs_figures(monkeypatch):
    monkeypatch.setitem(sys.modules, "slubcy.analysis.perf", None)     # import fails
    with pytest.raises(NotImplementedError, match="slubcy.analysis.perf"):
        bench_perf.Targets().setup_cache()
    with pytest.raises(NotImplementedError):
        bench_perf.Targets().track_budget({}, "remote_free")


def test_a_commit_without_a_figure_or_a_policy_skips_that_parameter(monkeypatch):
    with pytest.raises(NotImplementedError, match="no figure 'nope'"):
        bench_perf.Targets().setup({}, "nope")
    with pytest.raises(NotImplementedError, match="no policy"):
        bench_policies.Metrics().setup({}, "objcg", 2, "churn")
    monkeypatch.setattr(bench_policies, "need_policy", lambda spec: need_policy("sheaves"))
    with pytest.raises(NotImplementedError, match="no policy"):
        bench_policies.Offline().setup("objcg")


def test_a_commit_without_the_trace_replay_skips_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "slubcy.trace.replay", None)
    with pytest.raises(NotImplementedError, match="slubcy.trace.replay"):
        bench_replay.TraceReplay().setup("find-usr-include")
    monkeypatch.delattr(bench_slub.bench, "fastpath_pairs")
    with pytest.raises(NotImplementedError, match="fastpath_pairs"):
        bench_slub.FastPath().setup(64)


def test_scaling_suite_measures_growth_where_the_kernel_has_it():
    """bench_scaling on small sizes: barrier:sync's offline grows with the
    caches it must wait a grace period for; the async barrier's does not
    grow with the memcgs online; memory per memcg is a positive count of
    bytes the core allocated."""
    from benchmarks import bench_scaling as b
    one = b._offline_us("barrier:sync", 1, 10, repeat=1)
    eight = b._offline_us("barrier:sync", 8, 10, repeat=1)
    assert eight > 3 * one                      # a grace period (>= 4 ms at HZ=250) per cache
    assert b._offline_us("barrier", 1, 10, repeat=1) < one
    per_memcg = b.MemcgMemory().track_bytes_per_memcg("barrier")
    assert 64 <= per_memcg < 1 << 20
    per_cache = b.MemcgMemory().track_bytes_per_child_cache("barrier")
    assert 64 <= per_cache < 1 << 20
    assert b.MemcgMemory().track_bytes_per_child_cache("objcg") != b.MemcgMemory().track_bytes_per_child_cache("objcg")  # NaN: no child caches


def _run_benchmark(cls, args):
    """asv's calls for one parameter combination: setup, every time_/track_
    method, teardown.  Returns {method: (value, unit)}."""
    b = cls()
    b.setup(*args)
    try:
        return {name: (getattr(b, name)(*args), getattr(getattr(b, name), "unit", None))
                for name in dir(b) if name.startswith(("time_", "track_"))}
    finally:
        if hasattr(b, "teardown"):
            b.teardown(*args)


def test_generation_suite_runs_on_both_generations(monkeypatch):
    """bench_generations in a quick pass: every benchmark runs with slub
    4.0 and 7.0; each tracked figure is a positive time per operation or
    a byte count (lower is better), and after kmem_cache_shrink neither
    generation keeps a slab page."""
    import itertools
    monkeypatch.setenv("SLUBCY_ASV_SECONDS", "0.05")
    b = bench_generations
    out = {}
    for cls in (b.SlubPair, b.SlubRemoteFree, b.SlubBulk, b.SlubWorkload, b.SlubPinned, b.SlubBatch):
        assert "slub" in cls.param_names
        for args in itertools.product(*cls.params):
            for name, (value, unit) in _run_benchmark(cls, args).items():
                out[cls.__name__, name, args] = value
                if name.startswith("track_"):
                    assert unit in ("ns", "ns/op", "bytes"), (cls, name, unit)
                    assert value == value and value >= 0, (cls, name, args, value)
    assert {k[2] for k in out if k[0] == "SlubPair"} == {("4.0",), ("7.0",)}
    for slub in ("4.0", "7.0"):
        assert out["SlubPinned", "track_bytes_per_vcpu", (slub,)] > 0
        assert out["SlubPinned", "track_bytes_per_vcpu_shrunk", (slub,)] == 0
        assert out["SlubRemoteFree", "track_ns_per_free", (slub,)] > 0
        for w in ("larson", "churn"):
            assert out["SlubWorkload", "track_ns_per_op", (w, slub)] > 0
        for batch in (1, 10, 100, 1000):
            assert out["SlubBatch", "track_ns_per_object", (slub, batch)] > 0
    # the same figure as make perf's S6, from the same function
    assert out["SlubPinned", "track_bytes_per_vcpu", ("7.0",)] == perf.slub70_pinned(perf.QUICK).figure


def test_a_commit_without_sheaves_skips_the_generation_suite(monkeypatch):
    from slubcy import machine
    need_slub("4.0")
    need_slub("7.0")
    monkeypatch.setattr(machine, "SLUB_GENERATIONS", {"4.0": 40})
    with pytest.raises(NotImplementedError, match="no slub '7.0'"):
        bench_generations.SlubPair().setup("7.0")
    bench_generations.SlubPinned().setup("4.0")
    monkeypatch.delattr(machine, "SLUB_GENERATIONS")        # before Machine(slub=...)
    for cls, args in ((bench_generations.SlubBulk, ("4.0",)),
                      (bench_generations.SlubWorkload, ("larson", "4.0")),
                      (bench_generations.SlubBatch, ("4.0", 1))):
        with pytest.raises(NotImplementedError, match="SLUB_GENERATIONS"):
            cls().setup(*args)
