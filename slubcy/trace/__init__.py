"""Kernel kmem traces (perf script, trace-cmd report, tracefs text) read
into columns for replay: `parse(path) -> Trace` (`Trace.columns`,
`Trace.strings`, `Trace.report`).  See DESIGN.md, "Trace layer"."""
from slubcy.trace.errors import TraceError
from slubcy.trace.parse import (COLUMNS, EVENT_NAMES, GFP_ABSENT, GFP_HEX, GFP_PARTIAL,
                                GFP_SYMBOLIC, KFREE, KMALLOC, KMEM_CACHE_ALLOC,
                                KMEM_CACHE_FREE, STRING_COLUMNS, ParseReport, Trace,
                                parse, parse_text)

__all__ = ["parse", "parse_text", "Trace", "ParseReport", "TraceError", "COLUMNS",
           "STRING_COLUMNS", "EVENT_NAMES", "KMALLOC", "KFREE", "KMEM_CACHE_ALLOC",
           "KMEM_CACHE_FREE", "GFP_ABSENT", "GFP_SYMBOLIC", "GFP_HEX", "GFP_PARTIAL"]
