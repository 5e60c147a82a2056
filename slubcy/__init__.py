"""slubcy: the Linux SLUB slab allocator in Cython, with memory cgroups and
dead-cache policies.  See DESIGN.md for the architecture.

    m = slubcy.Machine(cpus=2, memory=256 << 20)
    c = m.kmem_cache_create("dentry", 192, flags=slubcy.SLAB_HWCACHE_ALIGN)
    a = m.kmem_cache_alloc(c, cpu=0); m.kmem_cache_free(c, a, cpu=1)
"""
__version__ = "0.1.0"        # the one place; pyproject.toml reads it

import os as _os
from typing import TYPE_CHECKING

# numpy's OpenBLAS starts a pool of threads that spin after use; slubcy uses
# numpy only for arrays of addresses, and on 2 cores those spinners steal
# the vCPU threads' time (measured: 10% of a bulk-API profile).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

from slubcy.errors import (ArenaExhausted, CacheBusy, CacheDestroyed, CPUBusy, CtorError, DoubleFree,
                           InvalidAccess, InvalidCPU, InvalidFree, MachineBusy, MachineClosed,
                           NotAnObject, Timeout,
                           NotInArena, SlabCorruption, SlubError, WrongCache)
from slubcy.errors import HoldRefused
from slubcy.machine import (FLAGS, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, STAT_ITEMS, KmemCache,
                            Machine, DEFAULT_HZ)

globals().update(FLAGS)
if TYPE_CHECKING:       # the names FLAGS defines above, for type checkers and IDEs
    SLAB_CONSISTENCY_CHECKS: int
    SLAB_RED_ZONE: int
    SLAB_POISON: int
    SLAB_HWCACHE_ALIGN: int
    SLAB_CACHE_DMA: int
    SLAB_STORE_USER: int
    SLAB_RECLAIM_ACCOUNT: int
    SLAB_PANIC: int
    SLAB_TYPESAFE_BY_RCU: int
    SLAB_TRACE: int
    SLAB_ACCOUNT: int

__all__ = [
    "Machine", "KmemCache", "DEFAULT_HZ", "STAT_ITEMS", "FLAGS", "KMALLOC_MAX_SIZE", "KMALLOC_MAX_CACHE_SIZE",
    "SlubError", "MachineClosed", "CacheDestroyed", "CacheBusy", "InvalidCPU", "ArenaExhausted",
    "InvalidFree", "NotInArena", "NotAnObject", "WrongCache", "DoubleFree", "InvalidAccess",
    "SlabCorruption", "CtorError", "CPUBusy", "MachineBusy", "Timeout", *FLAGS,
]
__all__.append("HoldRefused")
