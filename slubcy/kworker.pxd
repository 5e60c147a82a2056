# The machine's kworker: one thread on no vCPU running an ordered workqueue
# (cgroup_destroy_wq's css_killed_work_fn, memcg_kmem_cache_create_wq's
# memcg_kmem_cache_create_func), one work item at a time, in order.

cdef extern from "pthread.h" nogil:
    ctypedef struct pthread_t:
        pass
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass

cdef struct work_struct:
    work_struct *next
    void (*func)(work_struct *w) noexcept nogil     # runs it, then frees it
    void (*cancel)(work_struct *w) noexcept nogil   # the queue is torn down: free it
    void *key0                                      # what makes two items the same work
    void *key1                                      # (queue_work(..., unique=True))

cdef struct workqueue:
    pthread_mutex_t lock
    pthread_cond_t more
    pthread_t thread
    int started
    int stop
    work_struct *head
    work_struct *tail
    long queued              # items ever queued (duplicates not counted)
    long done                # ... run
    long cancelled           # ... dropped when the queue stopped
    long pending_max         # the deepest the queue has been
    long tid                 # the kworker's thread id (gettid)
    int busy                 # an item is running

cdef int workqueue_start(workqueue *wq) noexcept nogil
cdef void workqueue_stop(workqueue *wq) noexcept nogil
cdef int queue_work(workqueue *wq, work_struct *w, bint unique) noexcept nogil
cdef int flush_workqueue(workqueue *wq, double timeout) noexcept nogil
cdef long current_tid() noexcept nogil
