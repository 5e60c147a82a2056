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
