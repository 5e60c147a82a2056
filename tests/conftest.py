"""Fixtures shared by several test files.

The `slow` marker (registered in pyproject.toml) tags tests that take tens of
seconds; `make test` runs them too, `pytest -m "not slow"` leaves them out.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slubcy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def m():
    """A small machine (2 vCPUs, 16 MiB), closed after the test.  A file that
    needs another shape defines its own `m`."""
    with slubcy.Machine(cpus=2, memory=16 << 20) as machine:
        yield machine


@pytest.fixture
def tree_env():
    """os.environ for a subprocess that must import this source tree (first
    on PYTHONPATH, ahead of whatever was there)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def _create_child_caches(m, g, *caches):
    """A memcg's first allocation from an accounted cache queues its child
    cache's creation on the kworker and comes, uncharged, from the root cache
    (memcg_kmem_get_cache -> memcg_schedule_kmem_cache_create, 4.0-5.8):
    allocate once from each, let the kworker run, free those objects."""
    first = [(c, m.kmem_cache_alloc(c, memcg=g)) for c in caches]
    m.flush_work(timeout=30)
    for c, a in first:
        m.kmem_cache_free(c, a)


@pytest.fixture
def create_child_caches():
    """create_child_caches(m, memcg, *root_caches): make the memcg's child caches."""
    return _create_child_caches


def interrupt_when(argv, ready, cwd, env, timeout=120):
    """Run `python -m slubcy.cli ARGV`, send it SIGINT once `ready()` holds
    (what Ctrl-C does), and return (returncode, stdout, stderr); the process
    is killed if it outlives the test."""
    proc = subprocess.Popen([sys.executable, "-m", "slubcy.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready(), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
