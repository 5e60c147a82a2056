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

from benchmarks import bench_perf, bench_policies, bench_replay, bench_slub  # noqa: E402
from benchmarks.common import need, need_policy  # noqa: E402
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
