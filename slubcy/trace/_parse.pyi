"""Type stubs for slubcy.trace._parse (Cython): the C loop of the kmem trace
parser; slubcy.trace.parse is its Python front end."""
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

KMALLOC: int
KFREE: int
KMEM_CACHE_ALLOC: int
KMEM_CACHE_FREE: int
EVENT_NAMES: tuple[str, ...]
GFP_ABSENT: int
GFP_SYMBOLIC: int
GFP_HEX: int
GFP_PARTIAL: int
FEATURES: tuple[str, ...]
COLUMNS: tuple[tuple[str, type], ...]

class Parser:
    arrays: dict[str, npt.NDArray[Any]]
    n: int
    lines: int
    blank: int
    preamble: int
    other: int
    bad: int
    events_seen: int
    last_bad_line: int
    max_cpu: int
    ts_min: int
    ts_max: int
    bad_examples: list[Any]
    max_examples: int
    strict: bool
    def __init__(self, decode_gfp: Callable[[str], Any], strict: bool = False,
                 max_examples: int = 10, capacity: int = 1 << 16) -> None: ...
    def feed(self, buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
             final: bool = False) -> Any: ...
    def event_counts(self) -> list[int]: ...
    def features(self) -> dict[str, int]: ...
    def strings(self) -> dict[str, list[str]]: ...
    def string_counts(self) -> dict[str, list[int]]: ...
    def other_events(self) -> dict[str, int]: ...
    def gfp_strings(self) -> dict[str, int]: ...
    def take_arrays(self) -> dict[str, npt.NDArray[Any]]: ...
