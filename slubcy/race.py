"""The seed's race, replayed step by step (LKML, 19 May 2014,
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
takes the memcg offline through the policy; if the offline blocks on the held
vCPU, that is shown (not a deadlock), vCPU 1 is released and the offline
finishes.  Then every remaining object is freed, the system is quiesced, and
the verdict is whether a dead cache still holds slabs.
"""
import threading
import time

import slubcy

BLOCK_WAIT = 0.3        # seconds the offline may run before we call it blocked


def replay(policy, seed=0, log=None):
    """Run the interleaving under `policy` (a name or spec); return a dict
    {"policy", "leaked", "steps", "final", ...}.  `log(line)` sees each step."""
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
        per_memcg = bool(m.memcg_caches(root))
        cache = m.memcg_caches(root)[0] if per_memcg else root
        m.flush_all(cache)     # vCPU 0 lets go of the slab: full, unfrozen, on no list
        page = m.virt_to_slab(objs[0])[0]
        step(f"vCPU 0 filled slab {page:#x} of {cache.name} with {len(objs)} objects of memcg "
             f"{g.name!r} and flushed: the slab is full, unfrozen, on no list",
             slab=page, cache=cache.name)

        pp = m.preempt_point("slab_free:before_cmpxchg")
        pp.arm_hold()
        freer = _Thread(lambda: m.kmem_cache_free(root, objs[0], cpu=1))
        cpu = pp.wait_held(timeout=10)
        step(f"vCPU {cpu}: __slab_free of {objs[0]:#x} finds the slab full, decides to freeze "
             "it (new.frozen = 1) and is preempted before its cmpxchg_double",
             held_cpu=cpu)

        offline = _Thread(lambda: m.memcg_offline(g))
        offline.join(BLOCK_WAIT)
        blocked = offline.is_alive()
        if blocked:
            step(f"vCPU 0: offline of {g.name!r} through {m.policy} is blocked waiting for vCPU 1 "
                 "(a grace period or a cross-vCPU call it cannot serve while preempted)",
                 offline_blocked=True)
        else:
            step(f"vCPU 0: offline of {g.name!r} through {m.policy} completed while vCPU 1 is "
                 f"preempted ({offline.value * 1e6:.0f} us): caches marked dead and shrunk",
                 offline_blocked=False)
        pp.release()
        freer.join(10)
        freer.check()
        st = _slab_where(m, cache, page)
        step(f"vCPU 1 resumes: its cmpxchg lands; the slab is now {st}", slab_state=st)
        if blocked:
            offline.join(30)
            step(f"vCPU 0: the offline finished after vCPU 1 went on "
                 f"({offline.value * 1e6:.0f} us in all)")
        offline.check()

        for a in objs[1:]:
            m.kmem_cache_free(root, a, cpu=0)
        step(f"vCPU 0 frees the other {len(objs) - 1} objects; the slab is now "
             f"{_slab_where(m, cache, page)}")
        m._policy_quiesce()
        stats = m.memcg_stats()
        leaked = stats["leaked_caches"] > 0
        final = {"memcg": "freed" if g.freed else "dying" if g.dying else "online",
                 "slab": _slab_where(m, cache, page), **stats}
        step("quiesced: " + ("LEAK: a dead cache still holds a slab after every object was freed"
                             if leaked else "no dead cache holds slabs") + f"; memcg {final['memcg']}")
        m.validate()
        return {"policy": str(m.policy), "leaked": leaked, "offline_blocked": blocked,
                "steps": steps, "final": final}


def _slab_where(m, cache, page):
    if cache.destroyed:
        return "gone (cache destroyed)"
    try:
        st = m.cache_state(cache)
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
