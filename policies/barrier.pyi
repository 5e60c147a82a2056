"""Type stubs for slubcy.policies.barrier (Cython)."""
from slubcy.policies.base import Policy

MODES: dict[str, int]

class BarrierPolicy(Policy):
    def __init__(self, options: str | None = None) -> None: ...
