# cython: language_level=3
"""The machine's kworker: an ordered workqueue run by one C thread that is on
no vCPU (like the RCU thread), so the work it runs stalls no worker.

Linux runs the offline of a removed cgroup from a kworker of
cgroup_destroy_wq (cgroup_rmdir -> cgroup_destroy_locked -> kill_css ->
css_killed_ref_fn -> queue_work(cgroup_destroy_wq, css_killed_work_fn) ->
offline_css -> mem_cgroup_css_offline), one at a time (the workqueue is
created with max_active 1), and creates a memcg's missing child caches from
another (memcg_schedule_kmem_cache_create -> memcg_kmem_cache_create_func on
memcg_kmem_cache_create_wq, 4.9; the system workqueue before).  One ordered
queue serves both here: work runs one item at a time, in the order queued.

queue_work() may be called from any thread, a vCPU's included: it takes a
pthread mutex for a few stores and wakes the kworker.  flush_workqueue()
waits until every item queued before it has run (or was dropped because the
queue stopped).  workqueue_stop() lets the running item finish, drops the
rest (each item's cancel() frees it and tells any waiter) and joins the
thread.
"""

from libc.stdlib cimport free
from posix.time cimport timespec, nanosleep

from slubcy.sched cimport sched_yield
from slubcy.atomic cimport atomic_long_add_release, atomic_long_read_acquire
from slubcy.sched cimport monotonic, backoff_wait

cdef extern from "pthread.h" nogil:
    int pthread_create(pthread_t *thread, void *attr, void *(*start)(void *) noexcept nogil,
                       void *arg)
    int pthread_join(pthread_t thread, void **retval)
    int pthread_mutex_init(pthread_mutex_t *m, void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_signal(pthread_cond_t *c)


cdef extern from *:
    """
    #include <unistd.h>
    #include <sys/syscall.h>
    static inline long slubcy_gettid(void) { return (long)syscall(SYS_gettid); }
    """
    long gettid "slubcy_gettid"() nogil


cdef long current_tid() noexcept nogil:
    """The calling thread's id (gettid(), as threading.get_native_id())."""
    return gettid()


cdef void *worker_thread(void *arg) noexcept nogil:
    """worker_thread() of a one-thread, max_active = 1 workqueue."""
    cdef workqueue *wq = <workqueue *>arg
    cdef work_struct *w
    wq.tid = gettid()
    pthread_mutex_lock(&wq.lock)
    while True:
        while wq.head == NULL and not wq.stop:
            pthread_cond_wait(&wq.more, &wq.lock)
        if wq.stop:
            break
        w = wq.head
        wq.head = w.next
        if wq.head == NULL:
            wq.tail = NULL
        wq.busy = 1
        pthread_mutex_unlock(&wq.lock)
        w.func(w)                       # process_one_work(): frees w
        pthread_mutex_lock(&wq.lock)
        wq.busy = 0
        atomic_long_add_release(&wq.done, 1)
    # destroy_workqueue(): what is still queued is dropped
    while wq.head != NULL:
        w = wq.head
        wq.head = w.next
        w.cancel(w)
        atomic_long_add_release(&wq.cancelled, 1)
    wq.tail = NULL
    pthread_mutex_unlock(&wq.lock)
    return NULL


cdef int workqueue_start(workqueue *wq) noexcept nogil:
    """alloc_ordered_workqueue() and its kworker.  0, or -1."""
    if wq.started:
        return 0
    pthread_mutex_init(&wq.lock, NULL)
    pthread_cond_init(&wq.more, NULL)
    wq.stop = 0
    if pthread_create(&wq.thread, NULL, worker_thread, wq) != 0:
        pthread_cond_destroy(&wq.more)
        pthread_mutex_destroy(&wq.lock)
        return -1
    wq.started = 1
    return 0


cdef void workqueue_stop(workqueue *wq) noexcept nogil:
    """destroy_workqueue(): finish the running item, drop the queued ones,
    join the kworker.  Idempotent."""
    if not wq.started:
        return
    pthread_mutex_lock(&wq.lock)
    wq.stop = 1
    pthread_cond_signal(&wq.more)
    pthread_mutex_unlock(&wq.lock)
    pthread_join(wq.thread, NULL)
    pthread_cond_destroy(&wq.more)
    pthread_mutex_destroy(&wq.lock)
    wq.started = 0


cdef int queue_work(workqueue *wq, work_struct *w, bint unique) noexcept nogil:
    """queue_work(): 0 if queued; 1 if `unique` and an item with the same
    func and keys is pending already (the caller keeps `w`); -1 if the queue
    is stopped (the caller keeps `w`)."""
    cdef work_struct *x
    cdef long depth = 0
    if not wq.started:
        return -1
    pthread_mutex_lock(&wq.lock)
    if wq.stop:
        pthread_mutex_unlock(&wq.lock)
        return -1
    x = wq.head
    while x != NULL:
        if unique and x.func == w.func and x.key0 == w.key0 and x.key1 == w.key1:
            pthread_mutex_unlock(&wq.lock)
            return 1
        depth += 1
        x = x.next
    w.next = NULL
    if wq.tail != NULL:
        wq.tail.next = w
    else:
        wq.head = w
    wq.tail = w
    # under wq.lock, but atomic: wait_kworker() and flush_workqueue() read
    # it without the lock (release: the item is on the list before it counts)
    atomic_long_add_release(&wq.queued, 1)
    if depth + 1 > wq.pending_max:
        wq.pending_max = depth + 1
    pthread_cond_signal(&wq.more)
    pthread_mutex_unlock(&wq.lock)
    return 0


cdef int flush_workqueue(workqueue *wq, double timeout) noexcept nogil:
    """flush_workqueue(): wait until every item queued so far has run (or
    was dropped).  0, or -1 after `timeout` seconds (< 0: no limit)."""
    cdef long target
    cdef int spins = 0
    cdef double deadline
    if not wq.started:
        return 0
    pthread_mutex_lock(&wq.lock)
    target = atomic_long_read_acquire(&wq.queued)
    pthread_mutex_unlock(&wq.lock)
    deadline = monotonic() + timeout if timeout >= 0 else 1e300
    while atomic_long_read_acquire(&wq.done) + atomic_long_read_acquire(&wq.cancelled) < target:
        if monotonic() > deadline:
            return -1
        backoff_wait(&spins, 20000)
    return 0
