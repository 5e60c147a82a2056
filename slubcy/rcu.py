"""call_rcu() for Python callbacks: one RCU thread per Machine takes every
callback queued so far, waits for one grace period (Machine.synchronize, which
releases the GIL) and runs them — the batching of call_rcu_sched()."""
import threading


class RCU:
    def __init__(self, machine):
        self._machine = machine
        self._cond = threading.Condition()
        self._pending = []
        self._queued = 0            # callbacks ever queued
        self._done = 0              # callbacks run
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

    def _run(self):
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop and not self._pending:
                    return
                batch, self._pending = self._pending, []
            self._machine.synchronize()
            for func, args in batch:
                try:
                    func(*args)
                except Exception as e:     # a callback's error must not stop RCU
                    self.errors.append(e)
            with self._cond:
                self._grace_periods += 1
                self._done += len(batch)
                self._cond.notify_all()

    def barrier(self, timeout=None):
        """rcu_barrier(): every callback queued before the call has run."""
        from slubcy.errors import Timeout
        with self._cond:
            target = self._queued
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise Timeout(f"rcu_barrier: callbacks still pending after {timeout} s")

    def stats(self):
        with self._cond:
            return {"grace_periods": self._grace_periods, "callbacks": self._done}

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
