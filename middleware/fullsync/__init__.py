"""Full Sync: both sides read in full, compared with the store, only the differences written.

Modules
-------
``engine``      the run's phases (read CC → read links → stream SF → sync → duplicates →
                reconcile → CC→SF opt-outs); see its docstring.
``spool``       on-disk SQLite holding both sides and the links, joined by email and Id.
``run``         run lifecycle: lock, run record, resume from checkpoint, budget pauses, partitions.
``checkpoint``  resumable state in the setup's cursors.
``budget``      the share of each vendor's daily calls a run may spend.
``partitions``  Id ranges for several workers.
``schedule``    pure: when a setup's next Full Sync is due (manual/daily/weekly, time zone).
``clock``       what the minute tick of the clock process enqueues.
"""
