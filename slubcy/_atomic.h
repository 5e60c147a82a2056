/*
 * What Cython cannot say: atomics, a test-and-test-and-set spinlock, the
 * pause instruction and a full fence.  Declared for Cython in one place,
 * slubcy/atomic.pxd, which says for each operation its memory order and the
 * kernel primitive it stands for; every module cimports them from there.
 *
 * One memory order per operation (see atomic.pxd for the table):
 *  - plain reads are acquire and plain sets release (smp_load_acquire /
 *    smp_store_release), except the relaxed statistics counters
 *    atomic_long_read / atomic_long_add (atomic_long_t in kmem_cache_node);
 *  - value-returning read-modify-writes are acq_rel, as the kernel's
 *    "fully ordered" RMWs need here; fetch_add is seq_cst (a reader
 *    registration, rcu_read_lock_ext, must be ordered before the loads that
 *    follow it: store->load, which acq_rel does not give);
 *  - slab_cmpxchg(): the slab page's (freelist, counters) word.  Success is
 *    acq_rel: release publishes the free pointer written into the object
 *    before the swap (set_freepointer in __slab_free), acquire makes the
 *    objects' free pointers visible to whoever takes the list (get_freelist,
 *    acquire_slab);
 *  - spin_lock()/spin_unlock(): acquire / release, like the kernel's spinlocks.
 * On x86-64 every RMW is one locked instruction whatever its order.
 */
#ifndef SLUBCY_ATOMIC_H
#define SLUBCY_ATOMIC_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define slubcy_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define slubcy_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define slubcy_cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

static inline void cpu_relax(void) { slubcy_cpu_relax(); }

/* Test only: a build with SLUBCY_TEST_SLOW_FASTPATH=N (setup.py passes the
   environment variable of that name; 0, no code, by default) spins N pauses
   in the allocation fast path, so that the tests can check that asv's gate
   flags a slower build as a regression (tests/test_notebooks.py). */
#ifndef SLUBCY_TEST_SLOW_FASTPATH
#define SLUBCY_TEST_SLOW_FASTPATH 0
#endif
static inline void test_slow_fastpath(void)
{
	for (int i = 0; i < SLUBCY_TEST_SLOW_FASTPATH; i++)
		slubcy_cpu_relax();
}

/* unlikely(), likely(): include/linux/compiler.h's branch hints (__builtin_expect), so
   gcc lays the hot path out straight and keeps its registers for it. */
static inline int unlikely(int x) { return __builtin_expect(!!x, 0); }
static inline int likely(int x) { return __builtin_expect(!!x, 1); }

/* smp_mb(): a full barrier (mfence / dmb ish) */
static inline void smp_mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* --- spinlocks ------------------------------------------------------------ */
static inline void spin_lock_init(int *lock) { __atomic_store_n(lock, 0, __ATOMIC_RELAXED); }

static inline void spin_lock(int *lock)
{
	for (;;) {
		if (!__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
			return;
		while (__atomic_load_n(lock, __ATOMIC_RELAXED))
			slubcy_cpu_relax();
	}
}

static inline int spin_trylock(int *lock)
{
	return !__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE);
}

static inline void spin_unlock(int *lock) { __atomic_store_n(lock, 0, __ATOMIC_RELEASE); }

/* --- the slab page's (freelist, counters) word ---------------------------- */
static inline uint64_t slab_word_read(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void slab_word_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* The cmpxchg_double of SLUB, on one 64-bit word.  Returns 1 on success. */
static inline int slab_cmpxchg(uint64_t *p, uint64_t old, uint64_t new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, 0,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* --- int ------------------------------------------------------------------ */
static inline int atomic_int_read(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_int_set(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int atomic_int_cmpxchg(int *p, int old, int new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int atomic_int_fetch_add(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

/* --- unsigned int (the sleeping mutexes' tickets) ------------------------- */
static inline unsigned int atomic_uint_read(unsigned int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_uint_set(unsigned int *p, unsigned int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int atomic_uint_cmpxchg(unsigned int *p, unsigned int old, unsigned int new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline unsigned int atomic_uint_fetch_add(unsigned int *p, unsigned int v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

/* --- long ----------------------------------------------------------------- */
/* relaxed statistics counters */
static inline void atomic_long_add(long *p, long v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline long atomic_long_read(long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
/*
 * Counters a waiter polls without the writer's lock (the RCU, deferred-
 * shrink and workqueue counts rcu_barrier() and flush_workqueue() wait on):
 * the add releases what was done before it, the read acquires it.
 */
static inline void atomic_long_add_release(long *p, long v) { __atomic_fetch_add(p, v, __ATOMIC_RELEASE); }
static inline long atomic_long_read_acquire(long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* reference counts: the drop that reaches 0 sees every earlier drop's stores */
static inline long atomic_long_sub_return(long *p, long v) { return __atomic_sub_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline long atomic_long_xchg(long *p, long v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }

/* --- READ_ONCE / WRITE_ONCE ---------------------------------------------- */
/*
 * READ_ONCE()/WRITE_ONCE() of a plain field (relaxed, a plain mov on x86):
 * the kernel's data_race()/READ_ONCE peeks at a field written under a lock
 * (n->nr_partial) or by its owner, and the writes they race with.  Not an
 * RMW: the writer holds the lock, or is the only writer.
 */
static inline long long_read_once(long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void long_write_once(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void *ptr_read_once(void **p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void ptr_write_once(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uintptr_t uptr_read_once(uintptr_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline unsigned long ulong_read_once(unsigned long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void ulong_write_once(unsigned long *p, unsigned long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t u64_read_once(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void u64_write_once(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint16_t u16_read_once(uint16_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void u16_write_once(uint16_t *p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint8_t u8_read_once(uint8_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void u8_write_once(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int int_read_once(int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void int_write_once(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

/* --- uint64_t ------------------------------------------------------------- */
static inline uint64_t atomic_u64_read(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_u64_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* Bits of the Python API's per-slab bitmap of objects it handed out. */
static inline void atomic_u64_or(uint64_t *p, uint64_t v) { __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
static inline uint64_t atomic_u64_fetch_and(uint64_t *p, uint64_t v)
{
	return __atomic_fetch_and(p, v, __ATOMIC_ACQ_REL);
}

/* --- pointers and pointer-sized words ------------------------------------- */
/* Pointers peeked at unlocked (the RCU state words rcu_pending and rcu_cur,
   memcg_caches[] slots, obj_cgroup.memcg, a store-buffer drain). */
static inline void *atomic_ptr_read(void **p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_ptr_set(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* page->memcg_data */
static inline uintptr_t atomic_uptr_read(uintptr_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline int atomic_uptr_cmpxchg(uintptr_t *p, uintptr_t old, uintptr_t new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

#endif /* SLUBCY_ATOMIC_H */
