"""Every kind of bad input raises its documented exception and changes nothing:
the cache state is the same before and after, and validate() passes."""
import numpy as np
import pytest

import slubcy
from slubcy import errors


@pytest.fixture
def c(m):
    return m.kmem_cache_create("obj", 96)


def unchanged(m, c, fn, exc):
    """fn() raises exc; the cache state and validate() are as before."""
    before = m.cache_state_info(c)
    pages = m.page_alloc_info()
    with pytest.raises(exc):
        fn()
    assert m.cache_state_info(c) == before
    assert m.page_alloc_info() == pages
    m.validate()


def test_free_outside_arena(m, c):
    a = m.kmem_cache_alloc(c)
    start, size = m.arena
    for bad in (8, start - 8, start + size, start + size + 4096, 2**64 - 8):
        unchanged(m, c, lambda: m.kmem_cache_free(c, bad), errors.NotInArena)
        unchanged(m, c, lambda: m.kfree(bad), errors.NotInArena)
    for bad in (-1, 0, 2**64, 2**70):
        unchanged(m, c, lambda: m.kmem_cache_free(c, bad), errors.NotInArena)
    for bad in (1.5, "0x10", None, True):
        unchanged(m, c, lambda: m.kmem_cache_free(c, bad), TypeError)
    m.kmem_cache_free(c, a)


def test_free_inside_arena_not_an_object(m, c):
    a = m.kmem_cache_alloc(c)
    for bad in (a + 1, a + 8, a + c.size // 2):
        unchanged(m, c, lambda: m.kmem_cache_free(c, bad), errors.NotAnObject)
    # past the last object of the slab (the slab's leftover bytes)
    page, _ = m.virt_to_slab(a)
    leftover = page + c.objects_per_slab * c.size
    assert leftover < page + (4096 << c.order)
    unchanged(m, c, lambda: m.kmem_cache_free(c, leftover), errors.NotAnObject)
    # a free page of the arena, and the middle of a kmalloc_large block
    start, size = m.arena
    unchanged(m, c, lambda: m.kmem_cache_free(c, start + size - 4096), errors.NotAnObject)
    big = m.kmalloc(20000)
    unchanged(m, c, lambda: m.kfree(big + 4096), errors.NotAnObject)
    unchanged(m, c, lambda: m.kmem_cache_free(c, big), errors.NotAnObject)
    m.kfree(big)
    m.kmem_cache_free(c, a)


def test_double_free(m, c):
    a, b = m.kmem_cache_alloc(c), m.kmem_cache_alloc(c)
    m.kmem_cache_free(c, a)
    unchanged(m, c, lambda: m.kmem_cache_free(c, a), errors.DoubleFree)
    unchanged(m, c, lambda: m.kmem_cache_free(c, a, cpu=1), errors.DoubleFree)
    unchanged(m, c, lambda: m.kfree(a), errors.DoubleFree)
    # remote free: the object sits on the slab's own freelist, not the cpu's
    m.kmem_cache_free(c, b, cpu=1)
    unchanged(m, c, lambda: m.kmem_cache_free(c, b), errors.DoubleFree)
    # a bulk free listing an object twice, or listing a free one, frees nothing
    arr = m.kmem_cache_alloc_bulk(c, 100)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, np.append(arr, arr[7])), errors.DoubleFree)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, np.append(arr, np.uint64(a))), errors.DoubleFree)
    m.kmem_cache_free_bulk(c, arr)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, arr[:1]), errors.DoubleFree)


def test_free_into_wrong_cache(m, c):
    other = m.kmem_cache_create("other", 96)
    a = m.kmem_cache_alloc(other)
    unchanged(m, c, lambda: m.kmem_cache_free(c, a), errors.WrongCache)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, [a]), errors.WrongCache)
    with slubcy.Machine(memory=1 << 20) as m2:
        foreign = m2.kmem_cache_create("obj", 96)
        unchanged(m, c, lambda: m.kmem_cache_free(foreign, a), errors.WrongCache)
    m.kfree(a)          # kfree finds the object's own cache
    m.validate()


def test_alloc_from_destroyed_cache(m):
    d = m.kmem_cache_create("gone", 64)
    m.kmem_cache_destroy(d)
    assert d.destroyed
    for fn in (lambda: m.kmem_cache_alloc(d), lambda: m.kmem_cache_alloc_bulk(d, 4),
               lambda: m.kmem_cache_free(d, 0x1000), lambda: m.kmem_cache_shrink(d),
               lambda: m.kmem_cache_destroy(d), lambda: d.min_partial, lambda: m.cache_stat_info(d)):
        with pytest.raises(errors.CacheDestroyed):
            fn()
    m.validate()
    # the name is free again
    m.kmem_cache_destroy(m.kmem_cache_create("gone", 64))


def test_destroy_refused_while_objects_remain(m, c):
    a = m.kmem_cache_alloc(c)
    with pytest.raises(errors.CacheBusy):
        m.kmem_cache_destroy(c)
    m.validate()
    b = m.kmem_cache_alloc(c)       # still usable
    m.kmem_cache_free(c, a)
    m.kmem_cache_free(c, b)
    m.kmem_cache_destroy(c)
    assert m.page_alloc_info()["pages_used"] == 0
    with pytest.raises(ValueError):
        m.kmem_cache_destroy(m.kmem_cache("kmalloc-64"))


@pytest.mark.parametrize("size", [0, -1, -4096, 7, slubcy.KMALLOC_MAX_SIZE + 1, 2**63])
def test_bad_sizes(m, c, size):
    unchanged(m, c, lambda: m.kmem_cache_create("x", size), ValueError)
    if size < 1 or size > slubcy.KMALLOC_MAX_SIZE:
        unchanged(m, c, lambda: m.kmalloc(size), ValueError)
    assert "x" not in [k.name for k in m.caches]


@pytest.mark.parametrize("align", [3, 6, 24, -8, 1 << 40])
def test_align_not_power_of_two(m, c, align):
    unchanged(m, c, lambda: m.kmem_cache_create("x", 64, align=align), ValueError)


def test_bad_create_arguments(m, c):
    unchanged(m, c, lambda: m.kmem_cache_create("obj", 64), ValueError)      # duplicate name
    unchanged(m, c, lambda: m.kmem_cache_create("", 64), ValueError)
    unchanged(m, c, lambda: m.kmem_cache_create("x" * 64, 64), ValueError)
    unchanged(m, c, lambda: m.kmem_cache_create("x", 64, flags=1 << 40), ValueError)
    unchanged(m, c, lambda: m.kmem_cache_create("x", 64, flags=0x10000), ValueError)  # STORE_USER
    unchanged(m, c, lambda: m.kmem_cache_create("x", 64, ctor=42), TypeError)
    unchanged(m, c, lambda: m.kmem_cache_create("x", "64"), TypeError)
    unchanged(m, c, lambda: m.kmem_cache_create(b"x", 64), ValueError)


@pytest.mark.parametrize("cpu", [-1, 2, 1000, 2**40])
def test_vcpu_out_of_range(m, c, cpu):
    a = m.kmem_cache_alloc(c)
    unchanged(m, c, lambda: m.kmem_cache_alloc(c, cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kmem_cache_free(c, a, cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kmem_cache_alloc_bulk(c, 10, cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, [a], cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kmalloc(8, cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kfree(a, cpu=cpu), errors.InvalidCPU)
    unchanged(m, c, lambda: m.kmem_cache_alloc(c, cpu=1.0), TypeError)
    m.kmem_cache_free(c, a)


def test_calls_after_close():
    m = slubcy.Machine(memory=4 << 20)
    c = m.kmem_cache_create("obj", 64)
    a = m.kmem_cache_alloc(c)
    m.close()
    m.close()           # idempotent
    calls = [
        lambda: m.kmem_cache_alloc(c), lambda: m.kmem_cache_free(c, a), lambda: m.kmalloc(8),
        lambda: m.kfree(a), lambda: m.kmem_cache_create("y", 64), lambda: m.validate(),
        lambda: m.kmem_cache_alloc_bulk(c, 2), lambda: m.kmem_cache_free_bulk(c, [a]),
        lambda: m.kmem_cache_shrink(c), lambda: m.kmem_cache_destroy(c), lambda: m.slabinfo_text
        if False else m.cache_info(), lambda: m.cache_stat_info(c), lambda: m.read(a, 8),
        lambda: m.write(a, b"x"), lambda: m.virt_to_slab(a), lambda: c.cpu_partial,
        lambda: m.caches, lambda: m.page_alloc_info(), lambda: m.flush_all(c),
    ]
    for fn in calls:
        with pytest.raises(errors.MachineClosed):
            fn()
    with pytest.raises(errors.MachineClosed):
        with m:
            pass


def test_arena_exhausted_single_and_bulk():
    with slubcy.Machine(cpus=1, memory=1 << 20) as m:
        c = m.kmem_cache_create("big", 2048)
        live = []
        with pytest.raises(errors.ArenaExhausted):
            while True:
                live.append(m.kmem_cache_alloc(c))
        assert isinstance(errors.ArenaExhausted("x"), MemoryError)
        m.validate()
        assert m.page_alloc_info()["pages_free"] < (4096 << c.order) // 4096
        state = m.cache_state_info(c)
        with pytest.raises(errors.ArenaExhausted):
            m.kmem_cache_alloc_bulk(c, 10_000)
        m.validate()
        with pytest.raises(errors.ArenaExhausted):
            m.kmalloc(1 << 20)
        assert m.validate()["big"] == len(live)
        m.kmem_cache_free_bulk(c, live)
        m.kmem_cache_shrink(c)
        assert m.page_alloc_info()["pages_used"] == 0
        # and everything is usable again
        arr = m.kmem_cache_alloc_bulk(c, len(live))
        m.kmem_cache_free_bulk(c, arr)
        m.validate()


def test_bulk_alloc_exhaustion_loses_nothing():
    with slubcy.Machine(cpus=1, memory=1 << 20) as m:
        c = m.kmem_cache_create("x", 512)
        keep = m.kmem_cache_alloc_bulk(c, 100)
        before = m.validate()["x"]
        with pytest.raises(errors.ArenaExhausted):
            m.kmem_cache_alloc_bulk(c, 100_000)
        assert m.validate()["x"] == before == 100
        m.kmem_cache_free_bulk(c, keep)


def test_double_free_whichever_call_allocated_and_freed(m, c):
    """Single-object allocations are remembered (page.py_live) so their free
    needs no freelist walk; every other way in and out still ends in a
    walk, and every double free is caught."""
    a = m.kmem_cache_alloc(c)
    m.kmem_cache_free_bulk(c, [a])                  # handed out singly, taken back in bulk
    unchanged(m, c, lambda: m.kmem_cache_free(c, a), errors.DoubleFree)
    b = m.kmem_cache_alloc_bulk(c, 3)               # handed out in bulk: no bit
    m.kmem_cache_free(c, int(b[0]))                 # found live by the walk
    unchanged(m, c, lambda: m.kmem_cache_free(c, int(b[0])), errors.DoubleFree)
    m.kmem_cache_free_bulk(c, b[1:])
    # the same address again, now from the bulk call: the old bit is gone
    x = m.kmem_cache_alloc(c)
    m.kmem_cache_free(c, x)
    again = m.kmem_cache_alloc_bulk(c, 1)
    assert int(again[0]) == x                       # LIFO: the object just freed
    m.kmem_cache_free(c, x)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, again), errors.DoubleFree)
    m.validate()


def test_py_live_bitmaps_go_with_their_slabs():
    with slubcy.Machine(cpus=1, memory=8 << 20) as m:
        c = m.kmem_cache_create("x", 256)
        objs = [m.kmem_cache_alloc(c) for _ in range(200)]
        m.validate()
        for a in objs:
            m.kmem_cache_free(c, a)
        m.kmem_cache_shrink(c)
        assert m.page_alloc_info()["pages_used"] == 0
        d = m.kmem_cache_create("y", 256)           # the same pages, another cache
        arr = m.kmem_cache_alloc_bulk(d, 200)
        assert len(set(int(a) for a in arr) & set(objs)) > 0
        m.validate()                                # no stale "handed out" bit on them
        m.kmem_cache_free_bulk(d, arr)
        unchanged(m, d, lambda: m.kmem_cache_free(d, int(arr[0])), errors.DoubleFree)


def test_bulk_free_checks_across_many_slabs(m, c):
    """Objects of dozens of slabs, in random order (the check's per-slab
    table grows past its first 16 slots): a duplicate or a free object
    anywhere is found, and nothing is freed."""
    arr = m.kmem_cache_alloc_bulk(c, 3000)
    rng = np.random.default_rng(0)
    mixed = rng.permutation(arr)
    assert len({m.virt_to_slab(int(a))[0] for a in mixed[:400]}) > 16
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, np.append(mixed, mixed[5])), errors.DoubleFree)
    m.kmem_cache_free(c, int(mixed[-1]))
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, mixed), errors.DoubleFree)
    m.kmem_cache_free_bulk(c, mixed[:-1])
    m.validate()


def test_bad_bulk_arrays(m, c):
    arr = m.kmem_cache_alloc_bulk(c, 10)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, arr.astype(float)), TypeError)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, arr.reshape(2, 5)), TypeError)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, ["a"]), TypeError)
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, np.array([-5], dtype=np.int64)),
              errors.NotInArena)
    unchanged(m, c, lambda: m.kmem_cache_alloc_bulk(c, -1), ValueError)
    # one bad address anywhere: nothing freed
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, np.append(arr, arr[3] + np.uint64(1))), errors.NotAnObject)
    copy = arr.copy()
    m.kmem_cache_free_bulk(c, arr)
    assert (arr == copy).all()          # the caller's array is not consumed
    m.kmem_cache_free_bulk(c, [])


def test_ctor_that_raises(m):
    def ctor(addr):
        raise RuntimeError("no")
    c = m.kmem_cache_create("ctor", 64, ctor=ctor)
    with pytest.raises(errors.CtorError):
        m.kmem_cache_alloc(c)
    m.validate()
    assert m.validate()["ctor"] == 0
    with pytest.raises(errors.CtorError):
        m.kmem_cache_alloc_bulk(c, 50)
    assert m.validate()["ctor"] == 0


def test_ctor_error_left_by_a_worker_loses_nothing():
    """A worker's slab constructor raised (its error stays for the next
    Python call): the Python allocation that reports it frees its object,
    which must then count as free -- not as handed out -- so no later free
    of it is accepted."""
    from slubcy.workers import Run
    calls = [0]

    def ctor(addr):
        calls[0] += 1
        if calls[0] > 200:
            raise RuntimeError("boom")
    with slubcy.Machine(cpus=1) as m:
        c = m.kmem_cache_create("x", 64, ctor=ctor)
        run = Run(m, "batch", [c], 1, 2000, batch=256)
        run.start()
        run.finish()
        with pytest.raises(errors.CtorError):
            m.kmem_cache_alloc(c)
        m.validate()                    # no free object marked as handed out
        slabs = {m.virt_to_slab(a)[0] for a in m.kmem_cache_alloc_bulk(c, 1)}
        for sl in slabs:
            for i in range(c.objects_per_slab):
                addr = sl + i * c.size
                try:
                    m.kmem_cache_free(c, addr)
                except errors.DoubleFree:
                    pass
        m.validate()


def test_read_write_bounds(m, c):
    a = m.kmem_cache_alloc(c)
    m.write(a, b"x" * c.object_size)
    assert m.read(a, 3) == b"xxx"
    start, size = m.arena
    unchanged(m, c, lambda: m.write(a, b"x" * (c.object_size + 1)), errors.InvalidAccess)
    unchanged(m, c, lambda: m.write(start + size, b"x"), errors.InvalidAccess)
    unchanged(m, c, lambda: m.read(start + size - 4, 8), errors.InvalidAccess)
    unchanged(m, c, lambda: m.read(start - 1, 1), errors.InvalidAccess)
    unchanged(m, c, lambda: m.write(start + size - 4096, b"x"), errors.InvalidAccess)
    m.kmem_cache_free(c, a)
    # use after free: the free pointer lives in a free object
    unchanged(m, c, lambda: m.write(a, b"\0" * 8), errors.InvalidAccess)


def test_red_zone_overwrite_is_caught_and_restored(m):
    c = m.kmem_cache_create("dbg", 60, flags=slubcy.SLAB_RED_ZONE | slubcy.SLAB_POISON
                            | slubcy.SLAB_CONSISTENCY_CHECKS)
    a = m.kmem_cache_alloc(c)
    assert c.inuse > c.object_size
    assert m.read(a + c.object_size, c.inuse - c.object_size) == b"\xcc" * (c.inuse - c.object_size)
    m.write(a + c.object_size, b"\x00")            # one byte past the object
    with pytest.raises(errors.SlabCorruption):
        m.kmem_cache_free(c, a)
    m.validate()                                   # restored, object still allocated
    assert m.validate()["dbg"] == 1
    m.kmem_cache_free(c, a)
    assert m.validate()["dbg"] == 0
    # freed objects are poisoned: POISON_FREE ... POISON_END
    assert m.read(a, c.object_size) == b"\x6b" * (c.object_size - 1) + b"\xa5"


def test_bad_machine_arguments():
    for kw, exc in [({"cpus": 0}, ValueError), ({"cpus": 2, "nr_cpu_ids": 1}, ValueError),
                    ({"memory": 1000}, ValueError), ({"memory": (1 << 20) + 1}, ValueError),
                    ({"memory": 64 << 30}, ValueError), ({"slub_max_order": 11}, ValueError),
                    ({"slub_min_order": -1}, ValueError), ({"cpus": "2"}, TypeError),
                    ({"hz": 0}, ValueError), ({"hz": 1 << 20}, ValueError), ({"hz": 250.0}, TypeError),
                    ({"hz": True}, TypeError), ({"hz": 10, "ipi_timeout": 0.1}, ValueError)]:
        with pytest.raises(exc):
            slubcy.Machine(**kw)


def run_isolated(code, timeout=60):
    """`code` in a fresh interpreter (it could spin or crash without the fix
    under test); its exit status and output."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def test_ctor_that_frees_its_object():
    """A constructor freeing the object it constructs: the slab is not yet
    allocatable, so the free is refused (NotAnObject), nothing is put on two
    lists and later allocations and frees do not spin."""
    rc, out = run_isolated("""
import slubcy
from slubcy import errors
refused = []
with slubcy.Machine(cpus=3, memory=16 << 20) as m:
    def ctor(addr):
        # (from vCPU 2: allocations run on vCPUs 0 and 1)
        for free in (lambda: m.kmem_cache_free(c, addr, cpu=2), lambda: m.kfree(addr, cpu=2),
                     lambda: m.kmem_cache_free_bulk(c, [addr], cpu=2)):
            try:
                free()
            except errors.NotAnObject as e:
                refused.append(str(e))
        m.write(addr, b"built")                 # initialising it is allowed
    c = m.kmem_cache_create("selfish", 64, ctor=ctor)
    a = m.kmem_cache_alloc(c)
    assert m.read(a, 5) == b"built"
    assert len(refused) == 3 * c.objects_per_slab, refused[:3]
    assert "constructors are running" in refused[0], refused[0]
    m.validate()
    for i in range(20000):
        m.kmem_cache_free(c, m.kmem_cache_alloc(c, cpu=i % 2), cpu=(i // 2) % 2)
    m.kmem_cache_free(c, a)
    assert m.validate()["selfish"] == 0
print("ok")
""")
    assert rc == 0 and "ok" in out, out


def test_arena_bound_is_what_the_freelist_word_addresses():
    """The packed freelist word keeps an object's offset / 8 + 1 in 32 bits:
    the last 8-byte object of the largest accepted arena round-trips, 32 GiB
    (whose last object would encode as 0, NULL) is refused."""
    from slubcy.machine import MAX_ARENA, _fc_freelist_offset
    assert MAX_ARENA % 4096 == 0 and MAX_ARENA > 31 << 30
    for off in (0, 8, MAX_ARENA - 4096, MAX_ARENA - 8):
        assert _fc_freelist_offset(off) == off
    assert _fc_freelist_offset((32 << 30) - 8) is None      # why 32 GiB is refused
    for memory in (32 << 30, MAX_ARENA + 4096, 64 << 30):
        with pytest.raises(ValueError, match="packed freelist word"):
            slubcy.Machine(memory=memory)


def test_last_object_of_the_largest_arena():
    """The largest arena (mapped lazily): its very last 8-byte object is
    allocated, freed remotely and then refused as a double free."""
    rc, out = run_isolated("""
import slubcy
from slubcy import errors
from slubcy.machine import MAX_ARENA
with slubcy.Machine(cpus=2, memory=MAX_ARENA) as m:
    start, size = m.arena
    assert size == MAX_ARENA
    for order in range(10, 1, -1):    # the arena but its last pages (kmalloc_large)
        while True:
            try:
                m.kmalloc(4096 << order)
            except errors.ArenaExhausted:
                break
    last = start + size - 8
    objs = []
    c = m.kmem_cache_create("tiny", 8)
    while not objs or objs[-1] != last:
        try:
            objs.append(m.kmem_cache_alloc(c, cpu=0))
        except errors.ArenaExhausted:
            raise SystemExit(f"last object never allocated: {max(objs):#x} vs {last:#x}")
    m.kmem_cache_free(c, last, cpu=1)          # remote: onto the slab's own freelist
    try:
        m.kmem_cache_free(c, last, cpu=1)
    except errors.DoubleFree:
        pass
    else:
        raise SystemExit("double free of the last object accepted")
    m.validate()
print("ok")
""", timeout=120)
    assert rc == 0 and "ok" in out, out


def test_child_cache_name_cut_on_a_character_boundary():
    """"root(id:name)" is cut to 63 bytes: never inside a UTF-8 character, so
    validate(), cache_info() and the reports keep working."""
    with slubcy.Machine(cpus=1, memory=16 << 20, policy="keep") as m:
        root = m.kmem_cache_create("r" * 40, 64, flags=slubcy.SLAB_ACCOUNT)
        for k in range(4):              # shift the cut through a 3-byte character
            g = m.memcg_create("x" * k + "é" * 6 + "€" * 10)
            m.kmem_cache_free(root, m.kmem_cache_alloc(root, memcg=g))
        m.flush_work(timeout=30)        # the kworker creates the child caches
        names = [c.name for c in m.child_caches()]
        assert len(names) == 4 and all(len(n.encode()) <= 63 for n in names), names
        m.validate()
        assert len(m.cache_info()) >= 5
        from slubcy.analysis import report
        report.tools_slabinfo(m.cache_info())


def test_names_with_nul_are_refused(m, c):
    for bad in ("a\0b", "\0"):
        unchanged(m, c, lambda: m.kmem_cache_create(bad, 64), ValueError)
        unchanged(m, c, lambda: m.memcg_create(bad), ValueError)
    m.kmem_cache_create("a", 64)
    with pytest.raises(ValueError):
        m.kmem_cache_create("a\0c", 64)
    assert "a" in m.validate()


def test_contract_leftovers_are_clear_errors(m, c):
    unchanged(m, c, lambda: m.kmem_cache_create("f", 64, flags=2**64), ValueError)
    unchanged(m, c, lambda: m.kmem_cache_create("f", 64, flags=2**64 + slubcy.SLAB_POISON),
              ValueError)
    for n in (2**64, 2**63, 2**40, -1):
        unchanged(m, c, lambda: m.kmem_cache_alloc_bulk(c, n), ValueError)
    for bad in (5, 1.5, object()):
        with pytest.raises(TypeError, match="policy"):
            slubcy.Machine(policy=bad)


def test_alloc_bulk_refused_before_the_child_cache_exists():
    with slubcy.Machine(cpus=1, memory=16 << 20, policy="keep") as m:
        c = m.kmem_cache_create("acct", 64, flags=slubcy.SLAB_ACCOUNT)
        g = m.memcg_create("g")
        for n in (-1, 2**64):
            with pytest.raises(ValueError):
                m.kmem_cache_alloc_bulk(c, n, memcg=g)
        assert m.child_caches() == []


@pytest.mark.parametrize("spec", ["keep:x", "objcg:7", "naive:foo", "reparent:x",
                                  "barrier:x", "reap:x"])
def test_junk_policy_options_are_refused(spec):
    with pytest.raises(ValueError):
        slubcy.Machine(policy=spec)


def test_free_bulk_refuses_masked_arrays(m, c):
    arr = m.kmem_cache_alloc_bulk(c, 4)
    masked = np.ma.masked_array(arr, mask=[0, 1, 0, 1])
    unchanged(m, c, lambda: m.kmem_cache_free_bulk(c, masked), TypeError)
    m.kmem_cache_free_bulk(c, masked.compressed())
    m.kmem_cache_free_bulk(c, arr[[1, 3]])
    assert m.validate()["obj"] == 0


@pytest.mark.parametrize("bulk", [False, True])
def test_objcg_refused_free_stays_charged(bulk):
    """Under objcg a free refused for an overwritten red zone leaves the
    object allocated and charged: its later free uncharges it once."""
    with slubcy.Machine(cpus=1, memory=16 << 20, policy="objcg") as m:
        c = m.kmem_cache_create("rz", 64, flags=slubcy.SLAB_ACCOUNT | slubcy.SLAB_RED_ZONE)
        g = m.memcg_create("g")
        a = m.kmem_cache_alloc(c, memcg=g)
        charged = g.nr_bytes
        assert charged > 0
        m.write(a + 64, b"\xff")            # the red zone right after the object
        with pytest.raises(errors.SlabCorruption):
            if bulk:
                m.kmem_cache_free_bulk(c, [a])
            else:
                m.kmem_cache_free(c, a)
        assert g.nr_bytes == charged        # refused: still charged
        m.kmem_cache_free(c, a)             # (the zone was restored)
        assert g.nr_bytes < charged         # uncharged once, now
        with pytest.raises(errors.DoubleFree):
            m.kmem_cache_free(c, a)
        m.validate()


@pytest.mark.parametrize("argv", [
    ["run", "--ops", "100000000000000000000000"],
    ["run", "--ops", "10", "--seed", "-1"],
    ["run", "--ops", "10", "--seed", str(2**64)],
    ["run", "--seconds", "1e300"],
    ["run", "--seconds", "inf"],
    ["compare", "keep", "--ops", "10", "--seed", "-1"],
    ["compare", "keep", "--seconds", "1e300"],
    ["extrapolate", "--seconds", "1e300"],
    ["extrapolate", "--seconds", "0.1", "--seed", "-1"],
    ["sweep", "--seconds", "1e300", "--out", "sweep-out-never-written"],
    ["sweep", "--seconds", "0.1", "--seeds=-1:2", "--out", "sweep-out-never-written"],
])
def test_cli_bounds_are_clear_errors(argv):
    # (a fresh interpreter: unbounded, --seconds 1e300 would run for ever)
    rc, out = run_isolated("import sys; from slubcy.cli import main; sys.exit(main(%r))" % argv)
    assert rc == 2, out
    assert "slubcy: error:" in out and "Traceback" not in out, out
