"""The trace layer's one exception."""
from slubcy.errors import SlubError


class TraceError(SlubError, ValueError):
    """A trace file that cannot be used: missing, empty, binary (perf.data),
    with no kmem events, an unparseable line under strict=True; or `slubcy
    trace record` without perf or without permission.  Its message is one
    line; the CLI prints it and exits 2."""
