"""Type stubs for slubcy.trace._replay (Cython): the nogil replay of a
mapped kmem trace (slubcy.trace.mapping); slubcy.trace.replay drives it."""
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from slubcy.machine import KmemCache, Machine
from slubcy.workers import VcpuWorkers

OP_ALLOC: int
OP_FREE: int
OP_ALLOC_PAGES: int
OP_FREE_PAGES: int
OPF_PUBLISH: int
OPF_WAIT: int
OPF_CHARGE: int
OPF_MEMCG_CREATE: int
OPF_GROUP_LAST: int
OPF_LIVE: int
OP_DTYPE: np.dtype[Any]

class Replay(VcpuWorkers):
    """One replay on `machine`: start(), then finish(sample)."""
    def __new__(cls, machine: Machine, ops: npt.NDArray[Any], bounds: Any,
                caches: list[KmemCache], group_names: list[str], group_cpus: Any,
                nslots: int) -> Self: ...
    @property
    def ngroups(self) -> int: ...
    def events(self) -> list[int]: ...
    def finish(self, sample: Any = None) -> tuple[list[dict[str, Any]], list[float], int, Any]: ...
