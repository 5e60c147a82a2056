"""The 2014 race, replayed step by step (LKML, 19 May 2014,
537A4D27.1050909@parallels.com):

    CPU0                                CPU1
    ----                                ----
    memcg offline:                      __slab_free:
                                        // the slab is full: freeze it
                                        new.frozen = 1
                                        // preempted before the cmpxchg
    mark cache s dead
    kmem_cache_shrink(s)
                                        cmpxchg_double_slab(...) succeeds
                                        // a free slab on a per-cpu partial
                                        // list of a dead cache: it leaks

vCPU 1 is held at the preemption point `slab_free:before_cmpxchg` while vCPU 0
takes the memcg offline through the policy.  On a CONFIG_PREEMPT kernel the
preempted task has context-switched, a quiescent state for RCU-sched, and its
CPU takes interrupts: no grace period and no IPI waits for it, so every
policy's offline completes while it is held, and what keeps the fixes from
leaking is put_cpu_partial()'s `cpu_partial == 0` check (4.0, d6e0b7fa) when
the free resumes -- `dead_check=False` (a test-only knob) switches it off to
show it.

`window="put_cpu_partial"` holds vCPU 1 instead inside put_cpu_partial(),
preemption disabled, after its load of cpu_partial (the cache still alive)
with its push to c->partial still in the store buffer: the window the
barrier itself closes.  A synchronize_sched() waits for it (the offline is
shown blocked until vCPU 1 is released), an IPI drains it; with no wait
(`naive`, `barrier:none`) the shrink misses the slab and it leaks.

If the offline blocks on the held vCPU, that is shown (not a deadlock), vCPU 1
is released and the offline finishes.  Then every remaining object is freed,
the system is quiesced, and the verdict is whether a dead cache still holds
slabs.
"""
import threading
import time

import slubcy

BLOCK_WAIT = 0.3        # seconds the offline may run before we call it blocked
WINDOWS = {"slab_free": "slab_free:before_cmpxchg", "put_cpu_partial": "put_cpu_partial:after_read"}


def replay(policy, seed=0, log=None, window="slab_free", dead_check=True):
    """Run the interleaving under `policy` (a name or spec); return a dict
    {"policy", "leaked", "offline_blocked", "steps", "final", ...}.
    `log(line)` sees each step.  `window` is where vCPU 1 is held (see the
    module docstring); `dead_check=False` switches off put_cpu_partial()'s
    cpu_partial == 0 check (test-only)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: one of {', '.join(WINDOWS)}")
    steps = []

    def step(text, **data):
        steps.append({"step": len(steps) + 1, "what": text, **data})
        if log is not None:
            log(f"{len(steps):2d}. {text}")

    with slubcy.Machine(cpus=2, memory=16 << 20, policy=policy, seed=seed,
                        ipi_timeout=30.0) as m:
        root = m.kmem_cache_create("dentry", 192, flags=slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN)
        g = m.memcg_create("job")
        # the first allocation queues the child cache's creation on the
        # kworker and comes from the root cache (memcg_kmem_get_cache,
        # 4.0-5.8): wait for the creation, then fill a slab of the child
        first = m.kmem_cache_alloc(root, cpu=0, memcg=g)
        m.flush_work(timeout=30)
        m.kmem_cache_free(root, first, cpu=0)
        objs = [m.kmem_cache_alloc(root, cpu=0, memcg=g) for _ in range(root.objects_per_slab)]
        per_memcg = bool(m.child_caches(root))
        cache = m.child_caches(root)[0] if per_memcg else root
        m.flush_all(cache)     # vCPU 0 lets go of the slab: full, unfrozen, on no list
        page = m.virt_to_slab(objs[0])[0]
        step(f"vCPU 0 filled slab {page:#x} of {cache.name} with {len(objs)} objects of memcg "
             f"{g.name!r} and flushed: the slab is full, unfrozen, on no list",
             slab=page, cache=cache.name)

        if not dead_check:
            m._set_cpu_partial_dead_check(False)
            step("test-only: put_cpu_partial()'s cpu_partial == 0 check is switched off")
        pp = m.preempt_point(WINDOWS[window])
        pp.arm_hold()
        freer = _Thread(lambda: m.kmem_cache_free(root, objs[0], cpu=1))
        cpu = pp.wait_held(timeout=10)
        if window == "slab_free":
            step(f"vCPU {cpu}: __slab_free of {objs[0]:#x} finds the slab full, decides to freeze "
                 "it (new.frozen = 1) and is preempted before its cmpxchg_double: its task is "
                 "switched out (a quiescent state for RCU-sched) and its vCPU takes interrupts",
                 held_cpu=cpu)
        else:
            step(f"vCPU {cpu}: __slab_free of {objs[0]:#x} froze the full slab and is inside "
                 "put_cpu_partial() with preemption disabled: it read cpu_partial (alive), its "
                 "push to c->partial is still in the store buffer; it is delayed there (not "
                 "quiescent for RCU-sched; an interrupt would drain the store first)",
                 held_cpu=cpu)

        offline = _Thread(lambda: m.memcg_offline(g))
        offline.join(BLOCK_WAIT)
        blocked = offline.is_alive()
        if blocked:
            step(f"vCPU 0: offline of {g.name!r} through {m.policy} is blocked waiting for vCPU 1 "
                 "(a grace period waits for its preempt-disabled section)",
                 offline_blocked=True)
        else:
            step(f"vCPU 0: offline of {g.name!r} through {m.policy} completed while vCPU 1 is "
                 f"held ({offline.value * 1e6:.0f} us): caches marked dead",
                 offline_blocked=False)
            # deferred work (call_rcu_sched, then the workqueue's shrink) may
            # run while vCPU 1 is held: a preempted task does not hold a grace
            # period; a preempt-disabled section does
            try:
                m.rcu_barrier(timeout=BLOCK_WAIT)
                step("the offline's deferred work, if any (a grace period, then each dead "
                     "cache's shrink), has run while vCPU 1 is held", deferred_waits=False)
            except slubcy.Timeout:
                step("the offline's deferred work waits for vCPU 1: its grace period cannot end "
                     "while vCPU 1 is in a preempt-disabled section", deferred_waits=True)
        pp.release()
        freer.join(10)
        freer.check()
        st = _slab_where(m, cache, page)
        step(f"vCPU 1 resumes: " + ("its cmpxchg lands" if window == "slab_free" else
                                    "its push becomes visible, its dead check used the stale "
                                    "load") + f"; the slab is now {st}", slab_state=st)
        if blocked:
            offline.join(30)
            step(f"vCPU 0: the offline finished after vCPU 1 went on "
                 f"({offline.value * 1e6:.0f} us in all)")
        offline.check()

        for a in objs[1:]:
            m.kmem_cache_free(root, a, cpu=0)
        step(f"vCPU 0 frees the other {len(objs) - 1} objects; the slab is now "
             f"{_slab_where(m, cache, page)}")
        m.policy_quiesce()
        stats = m.memcg_stat_info()
        leaked = stats["leaked_caches"] > 0
        final = {"memcg": "freed" if g.freed else "dying" if g.dying else "online",
                 "slab": _slab_where(m, cache, page), **stats}
        step("quiesced: " + ("LEAK: a dead cache still holds a slab after every object was freed"
                             if leaked else "no dead cache holds slabs") + f"; memcg {final['memcg']}")
        m.validate()
        return {"policy": policy if isinstance(policy, str) else str(m.policy), "window": window, "dead_check": dead_check,
                "leaked": leaked, "offline_blocked": blocked, "steps": steps, "final": final}


def _slab_where(m, cache, page):
    if cache.destroyed:
        return "gone (cache destroyed)"
    try:
        st = m.cache_state_info(cache)
    except slubcy.CacheDestroyed:
        return "gone (cache destroyed)"
    if page not in st["slabs"]:
        return "discarded"
    s = st["slabs"][page]
    where = [f"on vCPU {i}'s partial list" for i, c in enumerate(st["cpus"]) if page in c["partial"]]
    where += [f"vCPU {i}'s cpu slab" for i, c in enumerate(st["cpus"]) if c["page"] == page]
    if page in st["node"]["partial"]:
        where.append("on the node partial list")
    return (f"{'frozen' if s['frozen'] else 'unfrozen'}, {s['inuse']}/{s['objects']} in use, "
            + (", ".join(where) or "on no list"))


class _Thread(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True)
        self._fn, self.value, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.value = self._fn()
        except BaseException as e:
            self.error = e

    def check(self):
        if self.error is not None:
            raise self.error


# -- Linux 7.0: the seed's question under sheaves ------------------------------

# window -> the preemption point vCPU 1 is held at (rcu_sheaf holds none:
# its window is a grace period)
SHEAF_WINDOWS = {"rcu_sheaf": None, "refill": "sheaves:refill",
                 "flush_spare": "sheaves:flush_spare"}


def replay_sheaves(window="rcu_sheaf", barrier=True, seed=0, log=None):
    """The seed's race in 7.0's form, step by step on Machine(slub="7.0"):
    free objects hide per CPU again -- in sheaves, rcu sheaves and the
    barn -- and shrinking or destroying a cache must find them while frees
    race with it.  Returns {"window", "barrier", "leaked", "retained_pages",
    "dying_memcgs", "steps", "final", "verdict"}.

    `rcu_sheaf`: kfree_rcu() fills vCPU 0's rcu_free sheaf, which goes to
    call_rcu; the cache is destroyed before that grace period ends (a 1 Hz
    tick makes it last a second or two).  7.0's __kmem_cache_shutdown()
    flushes every vCPU's sheaves and then waits in rcu_barrier()
    (b55b423e8518) before it shrinks the barn: the rcu sheaf lands, is
    flushed, and the destroy succeeds.  `barrier=False` drops that wait: the
    sheaf's objects are still out when free_partial() looks, the destroy
    fails with "Slab cache still has objects" (in the kernel: a WARN and a
    leaked cache, or with 6.18's bug, a use after free when the sheaf lands
    in the destroyed cache's barn).

    `refill`: vCPU 1 allocates with no sheaf to swap in; 7.0 drops the
    cpu_sheaves lock to refill an empty sheaf from slabs
    (__pcs_replace_empty_main) and the task is preempted there, holding a
    full sheaf whose slabs are full and off every list.  vCPU 0 frees its
    objects, rmdirs its memcg and shrinks the cache: flush_all() cannot see
    the sheaf in the task's hands.  `flush_spare`: vCPU 1 frees into a full
    main with a full spare and a full barn (E2BIG); the spare, taken off the
    vCPU, waits to be flushed to its slabs when the task is preempted.  In
    both the shrink leaves slabs pinned; nothing leaks: the sheaf is back on
    its vCPU (or its objects on their slabs) when the task runs, the next
    shrink frees them, and under objcg no memcg waits for them (the objects
    were uncharged before they entered a sheaf).  `barrier` does not apply."""
    if window not in SHEAF_WINDOWS:
        raise ValueError(f"unknown sheaves window {window!r}: one of {', '.join(SHEAF_WINDOWS)}")
    steps = []

    def step(text, **data):
        steps.append({"step": len(steps) + 1, "what": text, **data})
        if log is not None:
            log(f"{len(steps):2d}. {text}")

    if window == "rcu_sheaf":
        return _replay_rcu_sheaf(barrier, seed, step, steps)
    return _replay_pcs_window(window, seed, step, steps)


def _replay_rcu_sheaf(barrier, seed, step, steps):
    with slubcy.Machine(cpus=2, memory=16 << 20, slub="7.0", policy="objcg", seed=seed,
                        hz=1, ipi_timeout=30.0) as m:
        c = m.kmem_cache_create("files_cache", 192,
                                flags=slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN)
        objs = [m.kmem_cache_alloc(c, cpu=0) for _ in range(c.sheaf_capacity)]
        m.rcu_barrier(timeout=30)
        step(f"vCPU 0 allocated {len(objs)} objects of {c.name} (sheaf capacity "
             f"{c.sheaf_capacity}); grace periods end at a 1 Hz tick: one to two seconds")
        if not barrier:
            m._set_rcu_barrier_in_shutdown(False)
            step("test-only: __kmem_cache_shutdown()'s rcu_barrier() (b55b423e8518) is off")
        for a in objs:
            m.kfree_rcu(a, cpu=0)
        st = m.cache_state_info(c)
        step(f"vCPU 0: kfree_rcu() of all {len(objs)}: they fill its rcu_free sheaf, which "
             f"goes to call_rcu(rcu_free_sheaf) when full ({st['sheaves']['in_rcu']} sheaf in "
             "flight); every object is freed as far as the cache's user knows",
             in_rcu=st["sheaves"]["in_rcu"])
        t0 = time.monotonic()
        try:
            m.kmem_cache_destroy(c)
            ok = True
        except slubcy.CacheBusy as e:
            ok, err = False, str(e)
        dt = time.monotonic() - t0
        if ok:
            step(f"kmem_cache_destroy: flush_all, then rcu_barrier() waited {dt * 1e3:.0f} ms "
                 "for the sheaf's grace period; rcu_free_sheaf put it in the barn, barn_shrink "
                 "flushed it, free_partial freed every slab: destroyed", destroy_ms=dt * 1e3)
            final = {"destroyed": True, "nr_slabs": 0}
            leaked = False
        else:
            info = m.cache_info(c)
            step(f"kmem_cache_destroy: flush_all, barn_shrink, free_partial with the rcu "
                 f"sheaf still in flight: {info['nr_slabs']} slabs hold its objects -- "
                 f"refused: {err.split(': ', 1)[-1]} (the kernel WARNs and leaks the cache; "
                 "6.18 before the fix then barned the sheaf into the freed cache)",
                 destroy_ms=dt * 1e3, nr_slabs=info["nr_slabs"])
            m.rcu_barrier(timeout=30)
            st = m.cache_state_info(c)
            step(f"the grace period ends: rcu_free_sheaf puts the sheaf in the barn "
                 f"({len(st['sheaves']['barn_full'])} full barn sheaf): into a cache its "
                 "user has already destroyed", barn_full=len(st["sheaves"]["barn_full"]))
            final = {"destroyed": False, "nr_slabs": m.cache_info(c)["nr_slabs"]}
            leaked = True
            m._set_rcu_barrier_in_shutdown(True)
            m.kmem_cache_destroy(c)
        m.validate()
    verdict = ("LEAK: the cache was destroyed with objects in flight" if leaked else
               "no leak: destroy waited for the rcu sheaves in flight")
    step("verdict: " + verdict)
    return {"window": "rcu_sheaf", "barrier": barrier, "leaked": leaked, "retained_pages": 0,
            "dying_memcgs": 0, "steps": steps, "final": final, "verdict": verdict}


def _replay_pcs_window(window, seed, step, steps):
    with slubcy.Machine(cpus=2, memory=32 << 20, slub="7.0", policy="objcg", seed=seed,
                        ipi_timeout=30.0) as m:
        c = m.kmem_cache_create("dentry", 192,
                                flags=slubcy.SLAB_ACCOUNT | slubcy.SLAB_HWCACHE_ALIGN)
        cap = c.sheaf_capacity
        g = m.memcg_create("job")
        job = [m.kmem_cache_alloc(c, cpu=0, memcg=g) for _ in range(4 * cap)]
        m.flush_all(c)
        step(f"vCPU 0 allocated {len(job)} objects of {c.name} for memcg {g.name!r} "
             f"(sheaf capacity {cap}); the vCPUs' sheaves are flushed")
        if window == "refill":
            pp = m.preempt_point(SHEAF_WINDOWS[window])
            pp.arm_hold()
            worker = _Thread(lambda: m.kmem_cache_alloc(c, cpu=1))
            cpu = pp.wait_held(timeout=10)
            step(f"vCPU {cpu}: allocation finds main empty, no spare, an empty barn: 7.0 drops "
                 f"the cpu_sheaves lock, refills an empty sheaf from slabs ({cap} objects: "
                 "their slabs now full and off every list) and is preempted before it relocks",
                 held_cpu=cpu)
        else:
            mine = [m.kmem_cache_alloc(c, cpu=1) for _ in range(13 * cap)]
            freed = 0

            def full():
                st = m.cache_state_info(c)["sheaves"]
                pcs = st["cpus"][1]
                return (len(pcs["main"]) == cap and len(pcs["spare"] or ()) == cap
                        and len(st["barn_full"]) >= 10)
            while not full():
                m.kmem_cache_free(c, mine[freed], cpu=1)
                freed += 1
            step(f"vCPU 1 allocated {len(mine)} objects and freed {freed}: its main and spare "
                 "are full, the barn holds its limit of 10 full sheaves")
            pp = m.preempt_point(SHEAF_WINDOWS[window])
            pp.arm_hold()
            worker = _Thread(lambda: m.kmem_cache_free(c, mine[freed], cpu=1))
            cpu = pp.wait_held(timeout=10)
            step(f"vCPU {cpu}: a free finds main full; the barn refuses the full main (E2BIG): "
                 f"7.0 takes the full spare off the vCPU, drops the lock to flush it to its "
                 "slabs, and is preempted first", held_cpu=cpu)
        for a in job:
            m.kmem_cache_free(c, a, cpu=0)
        m.memcg_rmdir(g)
        m.policy_quiesce()
        step(f"vCPU 0 freed its {len(job)} objects (uncharged, then into its sheaves) and "
             f"rmdir'd {g.name!r}: the memcg is " + ("freed" if g.freed else "dying"),
             memcg="freed" if g.freed else "dying")
        remain = m.kmem_cache_shrink(c)
        used, slots, pages = m.cache_usage_info(c)
        step(f"kmem_cache_shrink: flush_all on both vCPUs (vCPU {cpu} serves it while "
             f"switched out), barn_shrink, the empty slabs discarded -- {pages} slab pages "
             f"remain for {used} objects in use", pages_after_shrink=pages, in_use=used)
        pp.release()
        worker.join(10)
        worker.check()
        used2, _, pages2 = m.cache_usage_info(c)
        step(f"vCPU {cpu} resumes: " + ("relocks and installs its full sheaf as main: the cache "
                                        "now caches objects its shrink never saw"
                                        if window == "refill" else
                                        "flushes the spare to its slabs after the shrink, and "
                                        "installs it as an empty sheaf")
             + f"; {pages2} slab pages for {used2} objects in use", pages=pages2)
        if window == "refill":
            m.kmem_cache_free(c, worker.value, cpu=1)
        else:
            for a in mine[freed + 1:]:
                m.kmem_cache_free(c, a, cpu=0)
        pinned = m.cache_usage_info(c)[2]
        m.kmem_cache_shrink(c)
        after = m.cache_usage_info(c)[2]
        step(f"every object freed: {pinned} slab pages held by sheaves or kept slabs; "
             f"a second shrink leaves {after}", retained_pages=pinned, pages_after=after)
        stats = m.memcg_stat_info()
        m.validate()
        leaked = after > 0 or stats["dying_memcgs"] > 0
        final = {"memcg": "freed" if g.freed else "dying", "pages_after_first_shrink": pages,
                 "retained_pages": pinned, "pages_after_second_shrink": after,
                 "shrink_returned": remain, **stats}
    verdict = ("LEAK" if leaked else
               f"no leak: the window pinned {pinned} pages until the next shrink; "
               f"memcg {final['memcg']}, {final['dying_memcgs']} dying")
    step("verdict: " + verdict)
    return {"window": window, "barrier": True, "leaked": leaked, "retained_pages": pinned,
            "dying_memcgs": stats["dying_memcgs"], "steps": steps, "final": final,
            "verdict": verdict}
