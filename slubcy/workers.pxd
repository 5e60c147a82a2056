# The thread side shared by every set of nogil workers that run vCPUs 0..n-1
# (workers.pyx Run, trace/_replay.pyx Replay): one thread per vCPU, a start
# gate, a stop flag, the produce/drain phases and the join.
from slubcy.machine cimport Machine


cdef struct offline_log:     # the offlines a set of workers queued (written by the kworker only)
    double *us               # each one's latency: rmdir's queueing to the end of its work item
    long n
    long cap
    long errors              # offlines whose waits timed out

# cgroup_rmdir()'s done callback for an offline_log (the arg)
cdef void offline_done(void *arg, double latency, int rc) noexcept nogil


cdef class VcpuWorkers:
    cdef Machine machine
    cdef int nworkers
    cdef int stop_flag              # request_stop(), or a worker that gave up
    cdef int phase_count            # workers done producing
    cdef int drain_go               # finish(): the workers may drain and leave
    cdef int start_ready            # workers on their vCPU, at the start gate
    cdef int start_go               # the gate: every worker starts at once
    cdef list threads
    cdef readonly double started

    cdef void run_worker(self, int i) noexcept nogil
    cdef wait_produced(self)
    cdef drain_and_join(self)
