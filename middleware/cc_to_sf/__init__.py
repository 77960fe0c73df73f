"""Constant Contact → Salesforce, one module per stage, in the order a batch goes through them.

Which runs first: a job (``jobs/poll.py``, or Sync Now's ``middleware.sync_now``) calls
:func:`poll.run_poll`, which hands :func:`poll.poll` to :func:`middleware.runner.run`: the runner
checks the pause, builds the :class:`~middleware.context.Context` and opens the run, then calls
the body. From there::

    runner → poll    (orchestration: the reads in order, batches, cursors moved last)
           → read    the source changed since its cursor, opt-outs, cleared opt-outs, retries
           → match   the batch's addresses in Salesforce (and company Accounts)
           → (plan)  the pure rules of ``middleware.sync.cc_to_sf`` (no I/O)
           → write   opt-outs, Accounts, records, affiliations, in Salesforce
           → record  links, sync errors, resolved errors, run progress

The Full Sync's opt-out phase uses :func:`read.org_info` and :func:`match.find_matches`. Nothing
here imports ``middleware.sf_to_cc``: what both directions share is in ``middleware.context`` and
``middleware.outcome``.
"""
