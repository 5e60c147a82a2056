"""Type stubs for slubcy.policies.reap (Cython)."""
from typing import ClassVar

from slubcy.policies.base import Policy
from slubcy.preempt import parse_duration as parse_duration

VARIANTS: tuple[str, ...]
DEFAULT_PERIOD: dict[str, str]
MIN_PERIOD_NS: int
MAX_PERIOD_NS: int

class ReapPolicy(Policy):
    variants: ClassVar[tuple[str, ...]]
    def __init__(self, options: str | None = None) -> None: ...
    @property
    def variant(self) -> str: ...
    @property
    def period(self) -> float: ...
    @property
    def kernel(self) -> str: ...  # type: ignore[override]
    @property
    def passes(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def reaps(self) -> int: ...
    def quiesce(self, timeout: float = 30.0) -> None: ...
