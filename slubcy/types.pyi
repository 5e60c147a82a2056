"""Type stubs for slubcy.types (Cython): the core's structs are C-level
(cimport types.pxd); Python sees the statistics enum, the kernel's enum
stat_item in its order."""
import enum

class stat_item(enum.IntEnum):
    ALLOC_FASTPATH = 0
    ALLOC_SLOWPATH = 1
    FREE_FASTPATH = 2
    FREE_SLOWPATH = 3
    FREE_FROZEN = 4
    FREE_ADD_PARTIAL = 5
    FREE_REMOVE_PARTIAL = 6
    ALLOC_FROM_PARTIAL = 7
    ALLOC_SLAB = 8
    ALLOC_REFILL = 9
    ALLOC_NODE_MISMATCH = 10
    FREE_SLAB = 11
    CPUSLAB_FLUSH = 12
    DEACTIVATE_FULL = 13
    DEACTIVATE_EMPTY = 14
    DEACTIVATE_TO_HEAD = 15
    DEACTIVATE_TO_TAIL = 16
    DEACTIVATE_REMOTE_FREES = 17
    DEACTIVATE_BYPASS = 18
    ORDER_FALLBACK = 19
    CMPXCHG_DOUBLE_CPU_FAIL = 20
    CMPXCHG_DOUBLE_FAIL = 21
    CPU_PARTIAL_ALLOC = 22
    CPU_PARTIAL_FREE = 23
    CPU_PARTIAL_NODE = 24
    CPU_PARTIAL_DRAIN = 25
    NR_SLUB_STAT_ITEMS = 26
