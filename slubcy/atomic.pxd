# The atomics, spinlocks and barriers of slubcy/_atomic.h: the only
# declaration of that header.  Every module cimports them from here.
#
# One memory order per operation, and the kernel primitive each stands for
# (include/linux/atomic.h, Documentation/atomic_t.txt, memory-barriers.txt):
#
# | operation                     | order (success / failure) | kernel primitive mirrored                     |
# |-------------------------------|---------------------------|-----------------------------------------------|
# | cpu_relax                     | -                         | cpu_relax() (pause / yield)                   |
# | unlikely, likely              | -                         | unlikely(), likely() (__builtin_expect)       |
# | smp_mb                        | seq_cst fence             | smp_mb()                                      |
# | spin_lock_init                | relaxed store             | spin_lock_init()                              |
# | spin_lock, spin_trylock       | acquire                   | spin_lock(), spin_trylock()                   |
# | spin_unlock                   | release                   | spin_unlock()                                 |
# | slab_word_read                | acquire                   | page->freelist/counters read before cmpxchg_double_slab |
# | slab_word_set                 | release                   | page->freelist/counters set under slab_lock() |
# | slab_cmpxchg                  | acq_rel / acquire         | cmpxchg_double_slab() (cmpxchg_double)        |
# | atomic_int_read               | acquire                   | atomic_read_acquire(), smp_load_acquire()     |
# | atomic_int_set                | release                   | atomic_set_release(), smp_store_release()     |
# | atomic_int_cmpxchg            | acq_rel / acquire         | atomic_cmpxchg()                              |
# | atomic_int_fetch_add          | seq_cst                   | atomic_fetch_add() (fully ordered)            |
# | atomic_uint_read, _set        | acquire, release          | smp_load_acquire(), smp_store_release() (mutex tickets) |
# | atomic_uint_cmpxchg           | acq_rel / acquire         | cmpxchg() (mutex_trylock)                     |
# | atomic_uint_fetch_add         | seq_cst                   | xadd of the ticket spinlock (fully ordered)   |
# | atomic_long_add               | relaxed                   | atomic_long_add() (no return: unordered)      |
# | atomic_long_read              | relaxed                   | atomic_long_read()                            |
# | atomic_long_add_release       | release                   | atomic_long_add_return_release()              |
# | atomic_long_read_acquire      | acquire                   | atomic_long_read_acquire()                    |
# | atomic_long_sub_return        | acq_rel                   | atomic_long_sub_return() (css_put_many's percpu_ref_put_many) |
# | atomic_long_xchg              | acq_rel                   | atomic_long_xchg()                            |
# | {long,ptr,ulong,uptr,u64,u16,u8,int}_read_once | relaxed | READ_ONCE() / data_race() of a plain field    |
# | {long,ptr,ulong,u64,u16,u8,int}_write_once | relaxed     | WRITE_ONCE() (under the writer's lock, or by its only writer) |
# | atomic_u64_read               | acquire                   | smp_load_acquire()                            |
# | atomic_u64_set                | release                   | smp_store_release()                           |
# | atomic_u64_or                 | relaxed                   | atomic_long_or() (set bits; no return)        |
# | atomic_u64_fetch_and          | acq_rel                   | atomic_long_fetch_and()                       |
# | atomic_ptr_read               | acquire                   | rcu_dereference() / smp_load_acquire()        |
# | atomic_ptr_set                | release                   | rcu_assign_pointer() / smp_store_release()    |
# | atomic_uptr_read              | acquire                   | READ_ONCE(page->memcg_data) + acquire         |
# | atomic_uptr_cmpxchg           | acq_rel / acquire         | cmpxchg(&page->memcg_data, 0, ...)            |
#
# Where the kernel's value-returning RMWs are fully ordered and ours are
# acq_rel, nothing here relies on a store->load order across them; the one
# place that does (rcu_read_lock_ext's reader count, then the loads of the
# read-side section) uses fetch_add, which is seq_cst.  (Before this file
# the worker loops (workers.pyx) declared their own fetch_add acq_rel, sched.pyx seq_cst: the
# stronger one is kept.)  On x86-64 all of them are one locked instruction.

from libc.stdint cimport uint64_t, uint16_t, uint8_t, uintptr_t

cdef extern from "_atomic.h" nogil:
    void cpu_relax()
    void test_slow_fastpath()     # a test-only build's delay (SLUBCY_TEST_SLOW_FASTPATH)
    bint unlikely(bint x)
    bint likely(bint x)
    void smp_mb()

    void spin_lock_init(int *lock)
    void spin_lock(int *lock)
    int spin_trylock(int *lock)
    void spin_unlock(int *lock)

    uint64_t slab_word_read(uint64_t *p)
    void slab_word_set(uint64_t *p, uint64_t v)
    int slab_cmpxchg(uint64_t *p, uint64_t old, uint64_t new_)

    int atomic_int_read(int *p)
    void atomic_int_set(int *p, int v)
    int atomic_int_cmpxchg(int *p, int old, int new_)
    int atomic_int_fetch_add(int *p, int v)

    unsigned int atomic_uint_read(unsigned int *p)
    void atomic_uint_set(unsigned int *p, unsigned int v)
    int atomic_uint_cmpxchg(unsigned int *p, unsigned int old, unsigned int new_)
    unsigned int atomic_uint_fetch_add(unsigned int *p, unsigned int v)

    void atomic_long_add(long *p, long v)
    long atomic_long_read(long *p)
    void atomic_long_add_release(long *p, long v)
    long atomic_long_read_acquire(long *p)
    long atomic_long_sub_return(long *p, long v)
    long atomic_long_xchg(long *p, long v)

    long long_read_once(long *p)
    void long_write_once(long *p, long v)
    void *ptr_read_once(void **p)
    void ptr_write_once(void **p, void *v)
    unsigned long ulong_read_once(unsigned long *p)
    uintptr_t uptr_read_once(uintptr_t *p)
    void ulong_write_once(unsigned long *p, unsigned long v)
    uint64_t u64_read_once(uint64_t *p)
    void u64_write_once(uint64_t *p, uint64_t v)
    uint16_t u16_read_once(uint16_t *p)
    void u16_write_once(uint16_t *p, uint16_t v)
    uint8_t u8_read_once(uint8_t *p)
    void u8_write_once(uint8_t *p, uint8_t v)
    int int_read_once(int *p)
    void int_write_once(int *p, int v)

    uint64_t atomic_u64_read(uint64_t *p)
    void atomic_u64_set(uint64_t *p, uint64_t v)
    void atomic_u64_or(uint64_t *p, uint64_t v)
    uint64_t atomic_u64_fetch_and(uint64_t *p, uint64_t v)

    void *atomic_ptr_read(void **p)
    void atomic_ptr_set(void **p, void *v)
    uintptr_t atomic_uptr_read(uintptr_t *p)
    int atomic_uptr_cmpxchg(uintptr_t *p, uintptr_t old, uintptr_t new_)
