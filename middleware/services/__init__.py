"""Services: the operations on the store and the queue under the admin API, CLI and dashboard.

One layer under every front end: ``connections``, ``connect`` (OAuth flows), ``setups``, ``runs``,
``errors`` (sync errors) and ``queue`` (failed jobs). Functions take plain arguments (settings, a
store session or the store, Redis) and return plain dicts shaped by ``shapes``; they raise the
exceptions of ``exceptions``, which the web maps to HTTP problems and the CLI to messages. Nothing
here imports Flask or ``middleware.web``.
"""
