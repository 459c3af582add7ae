"""The ``moments`` commands, one module or package each: ``worker`` (the only place the
worker is wired), ``check-config``, ``simulate`` (with the demo accounts), ``tail`` and
``status``. :mod:`commands.cli` parses the command line. Each command keeps its pure part
(traffic model, event lines, status table) apart from its Kafka or HTTP side.
"""
