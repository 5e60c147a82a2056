"""Exceptions of the Python API.  Each leaves the allocator consistent: the
call that raises changes nothing (or, for a partly done bulk call, undoes what
it did) and `Machine.validate()` passes afterwards."""


class SlubError(Exception):
    """Base of every slubcy error."""


class MachineClosed(SlubError, RuntimeError):
    """The Machine was closed; its memory is gone."""


class CacheDestroyed(SlubError, RuntimeError):
    """The kmem_cache was destroyed (or belongs to a closed Machine)."""


class CacheBusy(SlubError, RuntimeError):
    """kmem_cache_destroy() of a cache that still has objects
    ("Slab cache still has objects")."""


class CPUBusy(SlubError, RuntimeError):
    """Another thread runs that vCPU (a vCPU runs one thread at a time)."""


class MachineBusy(SlubError, RuntimeError):
    """Workers are running on the machine: object-level calls, validate() and
    state dumps wait until they stop (control calls such as flush_all,
    kmem_cache_shrink and synchronize work meanwhile)."""


class Timeout(SlubError, TimeoutError):
    """A vCPU did not answer a cross-vCPU request, or a grace period did not
    end, in time (typically: a thread is held at a preemption point)."""


class HoldRefused(SlubError, RuntimeError):
    """A preemption point's hold was reached by the very thread that armed
    it, in a call from Python: it was not held (nobody could release it)."""


class InvalidCPU(SlubError, ValueError):
    """A vCPU number outside 0 .. cpus-1."""


class ArenaExhausted(SlubError, MemoryError):
    """The page allocator has no block of the needed order left."""


class InvalidFree(SlubError, ValueError):
    """A free of something that is not a live object of the cache."""


class NotInArena(InvalidFree):
    """The address is outside the machine's arena."""


class NotAnObject(InvalidFree):
    """Inside the arena, but not the start of an object in a slab."""


class WrongCache(InvalidFree):
    """The object belongs to a different kmem_cache."""


class DoubleFree(InvalidFree):
    """The object is already free (on a freelist), or listed twice."""


class InvalidAccess(SlubError, ValueError):
    """A read or write outside the arena or outside a live object."""


class SlabCorruption(SlubError):
    """validate() or a slub_debug check found an inconsistency or an
    overwritten red zone / poison (which the check restores)."""


class CtorError(SlubError):
    """The cache's constructor raised; the object was not handed out."""
