"""Type stubs for slubcy.workers (Cython): the nogil worker loops of each workload and `Run`."""
import enum
from typing import Any, Self

from slubcy.machine import KmemCache, Machine

class workload_kind(enum.IntEnum):
    W_FASTPATH = 0
    W_BATCH = 1
    W_REMOTE = 2
    W_LARSON = 3
    W_CHURN = 4

WORKLOADS: dict[str, int]

class VcpuWorkers:
    """One nogil worker thread per vCPU 0..n-1: start(), request_stop()."""
    @property
    def started(self) -> float: ...
    @property
    def producing_done(self) -> bool: ...
    def start(self) -> None: ...
    def request_stop(self) -> None: ...

class Run(VcpuWorkers):
    """One run of a workload on `machine`: start(), then request_stop() and finish()."""
    def __new__(cls, machine: Machine, kind: str, caches: list[KmemCache], nworkers: int,
                 ops_per_worker: int, batch: int = 256, slots: int = 1024, handoff: float = 0.25,
                 seed: int = 0, ring_size: int = 4096, job_objects: int = 256,
                 outlive: float = 0.1, wait_caches: bool = True, lifetime: float = 0.0,
                 reclaim_batch: int = 128, reclaim_every: int = 64) -> Self: ...
    @property
    def kind_name(self) -> str: ...
    @property
    def cache_objs(self) -> list[int]: ...
    def ops(self) -> list[int]: ...
    def finish(self, sample: Any = None) -> list[dict[str, Any]]: ...
