# The kernel's <linux/list.h>, the few operations SLUB uses: circular, doubly
# linked, with the head embedded in the owner (here struct page's lru).

cdef struct list_head:
    list_head *next
    list_head *prev


cdef inline void INIT_LIST_HEAD(list_head *head) noexcept nogil:
    head.next = head
    head.prev = head


cdef inline void __list_add(list_head *new, list_head *prev, list_head *next) noexcept nogil:
    next.prev = new
    new.next = next
    new.prev = prev
    prev.next = new


cdef inline void list_add(list_head *new, list_head *head) noexcept nogil:
    __list_add(new, head, head.next)


cdef inline void list_add_tail(list_head *new, list_head *head) noexcept nogil:
    __list_add(new, head.prev, head)


cdef inline void list_del(list_head *entry) noexcept nogil:
    entry.next.prev = entry.prev
    entry.prev.next = entry.next
    entry.next = NULL
    entry.prev = NULL


cdef inline bint list_empty(const list_head *head) noexcept nogil:
    return head.next == head


cdef inline void list_splice(list_head *list, list_head *head) noexcept nogil:
    """Join `list` in front of head's first entry (list_splice); `list` is left stale."""
    cdef list_head *first
    cdef list_head *last
    if list_empty(list):
        return
    first = list.next
    last = list.prev
    first.prev = head
    last.next = head.next
    head.next.prev = last
    head.next = first


cdef inline void list_splice_init(list_head *list, list_head *head) noexcept nogil:
    """list_splice(), then `list` is reinitialised empty (list_splice_init)."""
    list_splice(list, head)
    INIT_LIST_HEAD(list)
