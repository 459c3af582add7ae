"""``moments status``: the table and exit status (:mod:`.render`) are pure; :mod:`.fetch`
asks the workers over HTTP."""
