"""The machine's RCU thread: call_rcu() for Python callbacks, and a poller
for the C callbacks queued by nogil code (policies), which running workers
also advance at their quiescent states.  Each pass takes every callback
queued so far and runs them after one grace period -- the batching of
call_rcu_sched().  It also runs the workqueue (memcg_kmem_cache_wq): the
deferred shrinks of dead caches, off the vCPUs.

The thread holds the machine by a weak reference only, taking a strong one
for one pass at a time: a machine dropped without close() is finalised (its
kworker stopped, its arena freed) and this thread then ends."""
import threading
import weakref

POLL = 0.0005       # C callbacks cannot notify: look for them this often


class RCU:
    def __init__(self, machine):
        self._ref = weakref.ref(machine)
        self._cond = threading.Condition()
        self._pending = []
        self._queued = 0            # Python callbacks ever queued
        self._done = 0              # Python callbacks run
        self._grace_periods = 0
        self._stop = False
        self.errors = []            # exceptions raised by callbacks
        self._thread = threading.Thread(target=self._run, name="slubcy-rcu", daemon=True)
        self._thread.start()

    def call(self, func, args):
        with self._cond:
            self._pending.append((func, args))
            self._queued += 1
            self._cond.notify_all()

    @property
    def _machine(self):
        m = self._ref()
        if m is None or m.closed:
            from slubcy.errors import MachineClosed
            raise MachineClosed("the machine is gone")
        return m

    def _c_pending(self, m):
        n = m.rcu_c_counts()
        queued, done, wq_queued, wq_done = n["queued"], n["done"], n["deact_queued"], n["deact_done"]
        return queued > done or wq_queued > wq_done

    def _run(self):
        from slubcy.errors import MachineClosed
        while True:
            try:
                if not self._step():
                    return
            except MachineClosed:       # closed, or dropped without close()
                if self._ref() is None or self._stop:
                    return
                with self._cond:
                    self._cond.wait(POLL)
            except Exception as e:      # keep serving: a dead RCU thread stalls every barrier
                self.errors.append(e)
                with self._cond:
                    self._cond.wait(POLL)

    def _step(self):
        """One pass; False when stopped."""
        with self._cond:
            while not self._pending and not self._stop:
                m = self._machine
                if self._c_pending(m):
                    break
                del m
                self._cond.wait(POLL)
            m = self._machine
            if self._stop and not self._pending and not self._c_pending(m):
                return False
            batch, self._pending = self._pending, []
        if self._c_pending(m):
            m.rcu_process_c()
        if not batch:
            with self._cond:
                self._cond.notify_all()
                self._cond.wait(POLL)
            return True
        m.synchronize()
        for func, args in batch:
            try:
                func(*args)
            except Exception as e:     # a callback's error must not stop RCU
                self.errors.append(e)
        with self._cond:
            self._grace_periods += 1
            self._done += len(batch)
            self._cond.notify_all()
        return True

    def barrier(self, timeout=None):
        """rcu_barrier(): every callback queued before the call has run."""
        from slubcy.errors import Timeout
        target = self._queued
        n = self._machine.rcu_c_counts()
        c_target, wq_target = n["queued"], n["deact_queued"]

        def done():
            n = self._machine.rcu_c_counts()
            c_done, wq_done = n["done"], n["deact_done"]
            return self._done >= target and c_done >= c_target and wq_done >= wq_target
        with self._cond:
            ok = self._cond.wait_for(done, timeout)
        # (the thread notifies after every pass, C callbacks included)
        if not ok:
            raise Timeout(f"rcu_barrier: callbacks still pending after {timeout} s")

    def stats(self):
        with self._cond:
            n = self._machine.rcu_c_counts()
            queued, done, gps, wq_done = n["queued"], n["done"], n["grace_periods"], n["deact_done"]
            return {"grace_periods": self._grace_periods, "callbacks": self._done,
                    "c_callbacks": done, "c_grace_periods": gps, "deferred_shrinks": wq_done}

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
