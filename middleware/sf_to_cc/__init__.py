"""Salesforce → Constant Contact, one module per stage, in the order a batch goes through them.

Which runs first: a job (``jobs/flush.py``, ``jobs/catch_up.py``, ``jobs/sync.py``) calls the
entry point (:func:`flush.run_flush`, :func:`catch_up.run_catch_up`, or
``middleware.sync_now.run_sync_now``), which hands its body to :func:`middleware.runner.run`:
the runner checks the pause, builds the :class:`~middleware.context.Context` and opens the run,
then calls the body. From there::

    runner → flush (orchestration: flush / catch_up_all / sync_records; catch_up for the clock)
           → collect  which records: the intake's ids (an Account's reach its Contacts), the
                      SystemModstamp reads, getDeleted
           → read     re-read from Salesforce by id; the store's links; Constant Contact only
                      where a rule needs a contact; the main list and custom field ids
           → plan     the pure rules of ``middleware.sync.sf_to_cc`` (no I/O)
           → write    the plan carried out against Constant Contact in bulk (imports, list and
                      delete activities, PUTs); opt-outs set again in Salesforce
           → record   links, fingerprints, sync errors, run progress

``pacing`` spaces flushes above half the day's Constant Contact quota. The Full Sync
(``middleware.fullsync``) uses the same read, write and record stages around its own streaming
collect and screening. Nothing here imports ``middleware.cc_to_sf``: what both directions share
is in ``middleware.context`` and ``middleware.outcome``.
"""
