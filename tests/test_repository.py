"""The repository stands alone: no tracked file names a path outside it, and
every project file DESIGN.md names exists."""
import glob
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# absolute paths that are interfaces, not places of this project: the
# kernel's files, the system directories a recorded trace's workload walked
# (tests/traces/record.sh), paths that must not exist (error tests), the
# README's placeholder for "an interpreter of yours"; and cgroup names
# (/system.slice/...) in trace data
ALLOWED_ABSOLUTE = ("/proc/", "/sys/", "/dev/", "/usr/", "/etc/", "/nonexistent/", "/path/to/")
CGROUP = re.compile(r"^/[\w.-]+\.slice/")
ABSOLUTE = re.compile(r"(?:^|[\s`'\"(=\[<,])(/[A-Za-z][\w.-]*(?:/[\w.*<>{}-]+)+)")
RELATIVE_UP = re.compile(r"(?<![\w./])((?:\.\./)+[\w.-]*)")
FILE_URL = re.compile("file" + r"://\S+")      # (split: this line is no URL)


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = [ROOT / f for f in out.decode().split("\0") if f]
    # LICENSE is the FSF's text (its addresses are not paths); symlinks are
    # checked by what they point at
    return [f for f in files if f.name != "LICENSE" and not f.is_symlink() and f.is_file()]


def test_no_tracked_file_names_a_path_outside_the_repository():
    bad = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            for m in ABSOLUTE.finditer(line):
                name = m.group(1) + "/"
                if not (name.startswith(ALLOWED_ABSOLUTE) or CGROUP.match(name)):
                    bad.append(f"{rel}:{n}: {m.group(1)}")
            for m in RELATIVE_UP.finditer(line):
                target = (path.parent / m.group(1)).resolve()
                if not target.is_relative_to(ROOT):
                    bad.append(f"{rel}:{n}: {m.group(1)}")
            bad += [f"{rel}:{n}: {m.group(0)}" for m in FILE_URL.finditer(line)]
    assert bad == []


def test_symlinks_stay_inside_the_repository():
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    links = [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("120000")]
    assert links == ["slubcy/policies"]
    for link in links:
        assert (ROOT / link).resolve().is_relative_to(ROOT) and (ROOT / link).exists()


# a name DESIGN.md gives in backquotes: a project path (a top-level entry of
# the repository first) or a bare project file name; kernel paths (mm/slub.c,
# tools/vm/slabinfo) start with no top-level entry and are left alone, and so
# are the suffixes of output files (`_meta.json`)
NAMED = re.compile(r"`([^`\s]+)`")
PROJECT_EXT = (".py", ".pyx", ".pxd", ".pyi", ".h", ".ipynb", ".json", ".toml", ".md", ".txt")


def design_names():
    text = (ROOT / "DESIGN.md").read_text()
    top = {p.name for p in ROOT.iterdir()} - {".git"}
    paths, bare = set(), set()
    for token in NAMED.findall(text):
        token = token.rstrip(".,:;)")
        first = token.split("/", 1)[0]
        if "/" in token and first in top:
            # `slubcy/page_alloc.pxd/.pyx` names two files
            head, _, alt = token.partition("/.")
            paths.add(head)
            if alt:
                paths.add(head.rsplit(".", 1)[0] + "." + alt)
        elif "/" not in token and token.endswith(PROJECT_EXT) and token[0] not in "._":
            bare.add(token)
    return paths, bare


def test_design_md_exists_and_every_file_it_names_exists():
    assert (ROOT / "DESIGN.md").is_file()
    assert "DESIGN.md" in (ROOT / "README.md").read_text()
    paths, bare = design_names()
    assert "slubcy/slub.pyx" in paths and len(paths) > 20
    missing = [p for p in sorted(paths) if not glob.glob(str(ROOT / p))]
    names = {f.name for f in tracked_files()} | {"DESIGN.md"}
    missing += [b for b in sorted(bare) if b not in names]
    assert missing == []
