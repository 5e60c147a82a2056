# The workloads' hand-over channel between vCPUs (workers.pyx; bench.pyx's
# bare larson loop uses the same one, so the two carry the same traffic).
from libc.stdint cimport uint64_t
from libc.stdlib cimport free
from libc.string cimport memset
from slubcy.atomic cimport atomic_u64_read, atomic_u64_set

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)


# A single-producer single-consumer ring of object pointers between vCPUs
# (the workload's hand-over channel, not part of the allocator).  Each side
# keeps a private copy of the other side's index and reads the shared one only
# when its copy says full / empty (Lamport's ring with cached indices, as in
# FastForward or DPDK's rte_ring), and a producer may publish its head every
# few pushes: otherwise every hand-over costs several cache-line transfers
# (head, tail and the slot, each way), which on two cores cost more than the
# remote free being measured.  Every field group is on its own cache line.
cdef struct ring:
    uint64_t head           # published by the producer (release)
    char _pad0[56]
    uint64_t tail           # published by the consumer (release)
    char _pad1[56]
    uint64_t mask           # read-only while running
    void **slots
    uint64_t publish_mask   # publish head when prod & publish_mask == 0
    char _pad2[40]
    uint64_t prod           # producer only: next slot to fill (>= head)
    uint64_t tail_seen      # producer only: last tail read
    char _pad3[48]
    uint64_t head_seen      # consumer only: last head read
    char _pad4[56]

cdef inline bint ring_push(ring *r, void *p) noexcept nogil:
    """Stage p; published at once, or with the next publish_mask + 1 pushes
    (and by ring_publish()).  False if the ring is full."""
    cdef uint64_t h = r.prod
    if h - r.tail_seen > r.mask:
        r.tail_seen = atomic_u64_read(&r.tail)
        if h - r.tail_seen > r.mask:
            return False
    r.slots[h & r.mask] = p
    h += 1
    r.prod = h
    if (h & r.publish_mask) == 0:
        atomic_u64_set(&r.head, h)
    return True

cdef inline void ring_publish(ring *r) noexcept nogil:
    """Make every staged object visible to the consumer."""
    if (r.prod & r.publish_mask) != 0:
        atomic_u64_set(&r.head, r.prod)

cdef inline void *ring_pop(ring *r) noexcept nogil:
    cdef uint64_t t = r.tail
    cdef void *p
    if t == r.head_seen:
        r.head_seen = atomic_u64_read(&r.head)
        if t == r.head_seen:
            return NULL
    p = r.slots[t & r.mask]
    atomic_u64_set(&r.tail, t + 1)
    return p


cdef inline ring *rings_alloc(long n, long size, uint64_t publish_mask) noexcept nogil:
    """`n` empty rings of `size` slots (a power of two), each field group on
    its cache line and the slots cache-line aligned (a batch of 8 hand-overs
    fills exactly one line); the head published every publish_mask + 1
    pushes.  NULL if memory runs out (nothing left allocated)."""
    cdef ring *r = <ring *>aligned_alloc(64, n * sizeof(ring))
    cdef long i
    if r == NULL:
        return NULL
    memset(r, 0, n * sizeof(ring))
    for i in range(n):
        r[i].mask = size - 1
        r[i].publish_mask = publish_mask
        r[i].slots = <void **>aligned_alloc(64, (<size_t>size * sizeof(void *) + 63)
                                           & ~(<size_t>63))
        if r[i].slots == NULL:
            rings_free(r, n)
            return NULL
    return r

cdef inline void rings_free(ring *r, long n) noexcept nogil:
    cdef long i
    if r != NULL:
        for i in range(n):
            free(r[i].slots)
        free(r)
