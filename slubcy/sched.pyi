"""Type stubs for slubcy.sched (Cython): the vCPUs are C-level (cimport sched.pxd);
Python sees the preemption enums."""
import enum

class preempt_context(enum.IntEnum):
    PREEMPTIBLE = 0
    PREEMPT_DISABLED = 1

class preempt_mode(enum.IntEnum):
    PREEMPT_SPIN = 0
    PREEMPT_YIELD = 1
    PREEMPT_SLEEP = 2

class preempt_point_id(enum.IntEnum):
    PP_SLAB_FREE_BEFORE_CMPXCHG = 0
    PP_PUT_CPU_PARTIAL = 1
    PP_PUT_CPU_PARTIAL_AFTER_READ = 2
    PP_OFFLINE_AFTER_MARK_DEAD = 3
    PP_OFFLINE_BEFORE_SHRINK = 4
    PP_PCS_REFILL = 5
    PP_PCS_FLUSH_SPARE = 6
    NR_PREEMPT_POINTS = 7
