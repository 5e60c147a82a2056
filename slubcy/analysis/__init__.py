"""Tooling over the core: what turns runs into numbers, tables and plots.

The core (`slubcy`: the Cython allocator, memcgs, vCPUs, `slubcy.policies`,
the workload driver `slubcy.workloads`, the race replay and the reference
model) is what a run needs.  This subpackage only consumes it:

* `compare`  -- the A/B of policies (interleaved runs, statistics, table,
  verdicts, CSV/JSON/PNG);
* `sweep`    -- leak rate against the preemption rate, fit and extrapolation;
* `results`  -- loaders of `compare`'s files and asv's results for the
  notebooks;
* `report`   -- /proc/slabinfo, tools/vm/slabinfo and the SLUB statistics
  files as text and DataFrames;
* `perf`     -- `make perf`'s figures, each against its baseline.

It imports pandas, scipy and matplotlib; the core needs only numpy.
"""
