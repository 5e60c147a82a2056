"""The package as installed: slubcy.policies and no top-level `policies`, the
wheel's file list, the type stubs of the Cython modules (mypy.stubtest), what
an IDE sees of Machine(...), and `slubcy --version`."""
import ast
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import slubcy

ROOT = Path(__file__).resolve().parents[1]
# every Cython extension, by the module name it is installed under
EXTENSIONS = sorted([f"slubcy.{p.stem}" for p in (ROOT / "slubcy").glob("*.pyx")] +
                    [f"slubcy.trace.{p.stem}" for p in (ROOT / "slubcy" / "trace").glob("*.pyx")] +
                    [f"slubcy.policies.{p.stem}" for p in (ROOT / "policies").glob("*.pyx")])


def _stub(module):
    """slubcy.policies.base -> policies/base.pyi; slubcy.trace._parse -> slubcy/trace/_parse.pyi."""
    parts = module.split(".")
    if parts[1] == "policies":
        return ROOT / "policies" / f"{parts[-1]}.pyi"
    return ROOT.joinpath(*parts[:-1], f"{parts[-1]}.pyi")


def _run(args, cwd, env=None, timeout=600):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_slubcy_policies_is_the_policies_folder():
    import slubcy.policies
    from slubcy.policies.base import Policy
    assert Path(slubcy.policies.__file__).resolve() == (ROOT / "policies" / "__init__.py").resolve()
    p = slubcy.policies.get_policy("barrier:sync")
    assert isinstance(p, Policy) and type(p).__module__ == "slubcy.policies.barrier"
    assert all(t.startswith("slubcy.policies.") for t in slubcy.policies.BUILTIN.values())


def _installed_from_here():
    try:
        url = json.loads(metadata.distribution("slubcy").read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        return False
    return url.get("url") == ROOT.as_uri()


@pytest.mark.skipif(not _installed_from_here(), reason="slubcy is not installed from this tree "
                    "(`make install` / `pip install -e .` installs it)")
def test_installed_package_has_no_top_level_policies(tmp_path):
    """Outside the source tree, slubcy.policies imports and `policies` does not."""
    assert metadata.distribution("slubcy").read_text("top_level.txt").split() == ["slubcy"]
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="slubcy.policies")}
    assert eps and all(v.startswith("slubcy.policies.") for v in eps.values())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import importlib.util, slubcy.policies; "
            "print(importlib.util.find_spec('policies'), slubcy.policies.available())")
    r = _run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("None ") and "'objcg'" in r.stdout


def test_wheel_file_list(tmp_path):
    """What the wheel's pure part holds (setuptools' build_py, no compiler):
    slubcy, slubcy.policies, slubcy.analysis with their .pxd, .pyi and
    py.typed; no generated .c, no .pyx, no top-level policies/."""
    r = _run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
             cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {p.split("/")[0] for p in files} == {"slubcy"}
    assert not [f for f in files if f.endswith((".c", ".pyx", ".so"))]
    for need in ("slubcy/py.typed", "slubcy/machine.pyi", "slubcy/machine.pxd",
                 "slubcy/policies/__init__.py", "slubcy/policies/base.pxd",
                 "slubcy/policies/base.pyi", "slubcy/analysis/__init__.py",
                 "slubcy/analysis/compare.py"):
        assert need in files, need
    assert (ROOT / "LICENSE").read_text().startswith(
        "                    GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991")


def test_every_extension_has_a_stub():
    assert "slubcy.machine" in EXTENSIONS and "slubcy.policies.base" in EXTENSIONS
    assert [m for m in EXTENSIONS if not _stub(m).exists()] == []


@pytest.mark.slow
def test_stubs_match_the_built_modules():
    """mypy.stubtest: every name, signature and property of the .pyi stubs
    against the imported Cython modules (Cython's pickling helpers allowed)."""
    pytest.importorskip("mypy")
    r = _run([sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases",
              "--mypy-config-file", str(ROOT / "tests" / "stubtest_mypy.ini"),
              "--allowlist", str(ROOT / "tests" / "stubtest_allowlist.txt"), *EXTENSIONS], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_type_checker_sees_the_api(tmp_path):
    """What an IDE sees: Machine's keywords, the flags, return types."""
    pytest.importorskip("mypy")
    good = tmp_path / "good.py"
    good.write_text(
        "import slubcy\n"
        "m = slubcy.Machine(cpus=2, memory=64 << 20, policy='barrier:sync', hz=250)\n"
        "c = m.kmem_cache_create('dentry', 192, flags=slubcy.SLAB_HWCACHE_ALIGN | slubcy.SLAB_ACCOUNT)\n"
        "g = m.memcg_create('job')\n"
        "a: int = m.kmem_cache_alloc(c, cpu=0, memcg=g)\n"
        "latency: float = m.memcg_offline(g)\n"
        "pp = m.preempt_point('slab_free:before_cmpxchg')\n"
        "pp.arm_hold(timeout=1.0)\n"
        "reveal_type(m.kmem_cache_alloc_bulk(c, 10))\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import slubcy\nslubcy.Machine(cpuz=2)\nslubcy.Machine(cpus=2).kmalloc('x')\n")
    args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "tests" / "stubtest_mypy.ini"),
            "--no-incremental", "--cache-dir", os.devnull]
    r = _run([*args, str(good)], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ndarray" in r.stdout
    r = _run([*args, str(bad)], cwd=ROOT)
    assert 'Unexpected keyword argument "cpuz"' in r.stdout, r.stdout + r.stderr
    assert 'incompatible type "str"' in r.stdout


def test_flag_names_declared_for_type_checkers():
    """slubcy/__init__.py's TYPE_CHECKING block names exactly the FLAGS it
    sets at runtime."""
    tree = ast.parse((ROOT / "slubcy" / "__init__.py").read_text())
    declared = {n.target.id for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)}
    assert declared == set(slubcy.FLAGS)


def test_version():
    assert slubcy.__version__ == metadata.version("slubcy") or not _installed_from_here()
    r = _run([sys.executable, "-m", "slubcy.cli", "--version"], cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"slubcy {slubcy.__version__}"
