"""Build the Cython core: every slubcy/*.pyx and policies/*.pyx is one extension.

policies/ is installed as the subpackage slubcy.policies (pyproject.toml's
package-dir), so policies/NAME.pyx builds the extension slubcy.policies.NAME.
The symlink slubcy/policies (to the top-level policies/) lets Cython resolve
`cimport slubcy.policies.base` and a source tree on PYTHONPATH import it.
"""
import glob
import os

from setuptools import Extension, setup
from Cython.Build import cythonize
import numpy

# SLUBCY_DEBUG=1 builds with assertions and bounds checks on (slower, for bug hunts).
DEBUG = os.environ.get("SLUBCY_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
cflags = ["-O0", "-g"] if DEBUG else ["-O2"]
# SLUBCY_SANITIZE=address,undefined (or thread) builds with -fsanitize=...
# at compile and link time (`make sanitize`, `make tsan`: see the README).
SANITIZE = os.environ.get("SLUBCY_SANITIZE", "")
ldflags = []
if SANITIZE:
    cflags = ["-O1", "-g", "-fno-omit-frame-pointer", f"-fsanitize={SANITIZE}"]
    ldflags = [f"-fsanitize={SANITIZE}"]

# SLUBCY_TEST_SLOW_FASTPATH=N (tests only): N pauses in the allocation fast
# path, a deliberately slowed build for checking asv's regression verdict.
SLOW_N = os.environ.get("SLUBCY_TEST_SLOW_FASTPATH", "")
SLOW = [("SLUBCY_TEST_SLOW_FASTPATH", str(int(SLOW_N)))] if SLOW_N else []


def module_name(path):
    """slubcy/slub.pyx -> slubcy.slub; policies/keep.pyx -> slubcy.policies.keep."""
    name = path[:-4].replace(os.sep, ".")
    return "slubcy." + name if name.startswith("policies.") else name


extensions = [
    Extension(
        module_name(path),
        [path],
        include_dirs=["slubcy", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + SLOW,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    for path in sorted(glob.glob("slubcy/*.pyx") + glob.glob("policies/*.pyx")
                       + glob.glob("slubcy/trace/*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["."]))
