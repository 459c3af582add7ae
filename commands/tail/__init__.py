"""``moments tail``: the event lines (:mod:`.render`) are pure; :mod:`.follow` reads the
event topics."""
