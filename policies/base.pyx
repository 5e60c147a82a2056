# cython: language_level=3
"""The Policy base class: attach() installs a policy's kernel behaviours and
its offline into a Machine."""


cdef class Policy:
    """A dead-cache policy.  Subclasses set `name`, the four behaviours and
    `offline` (nogil C), and document the kernel version and commit they
    model; `start()`/`stop()` run any thread they need (the reaper)."""
    kernel = ""
    # what a leaked cache (leaked_caches) is under this policy, if any
    leak_kind = ""
    # a policy whose spec takes an option ("barrier:sync") says so; the
    # others refuse one ("keep:x")
    takes_options = False

    def __cinit__(self, *args, **kwargs):
        # a dead cache is destroyed when its last slab goes (if its memcg
        # lets it): every kernel but 3.16 (keep clears it)
        self.unregister_on_empty = 1

    def __init__(self, options=None):
        if options is not None and not self.takes_options:
            raise ValueError(f"policy {self.name or type(self).__name__} takes no option, "
                             f"got {options!r}")
        self.options = options
        if not self.name:
            self.name = type(self).__name__

    def attach(self, Machine machine):
        if self.machine is not None:
            raise ValueError(f"policy {self.name} is attached to another machine already")
        self.machine = machine
        machine.m.per_memcg_caches = self.per_memcg_caches
        machine.m.pages_pin_memcg = self.pages_pin_memcg
        machine.m.cpu_partial_dead_check = self.cpu_partial_dead_check
        machine.m.deact_batch = self.deact_batch
        machine.m.unregister_on_empty = self.unregister_on_empty
        machine.m.policy_offline = self.offline
        machine.m.policy_data = self.data
        # every policy frees memcgs, objcgs or caches by call_rcu from C: the
        # RCU thread runs them (with no worker running, nothing else would)
        machine.start_rcu()
        self.start()

    def detach(self):
        self.stop()

    def start(self):
        pass

    def stop(self):
        pass

    def quiesce(self):
        """Let pending deferred work run (the harness calls this before it
        counts leaked caches): RCU callbacks, here."""
        self.machine.rcu_barrier(timeout=30)

    def describe(self):
        """name, kernel version/commit modelled, options, and the first
        sentence of the policy module's docstring."""
        import sys
        doc = (sys.modules[type(self).__module__].__doc__ or "").strip()
        return {"name": self.name, "kernel": self.kernel, "options": self.options,
                "leak_kind": self.leak_kind, "doc": " ".join(doc.split("\n\n")[0].split())}

    def __repr__(self):
        return f"<policy {self.name}{':' + str(self.options) if self.options else ''}>"
