"""``moments worker``: a stream-processing worker, wired here and nowhere else.

:mod:`commands.worker.run` checks the environment and starts the worker;
:mod:`commands.worker.wiring` puts the agents, tables and engine onto the app that
:func:`app.main.build_runtime` made.
"""
