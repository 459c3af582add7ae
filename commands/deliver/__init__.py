"""``moments deliver``: POST each moment event to the webhook endpoints configured for it.

One process serves every endpoint of ``MOMENTS_ENDPOINTS_FILE``, each with a Kafka consumer
of its own in a consumer group of its own (``<app id>-deliver-<endpoint>``), so a slow or dead
endpoint holds only its own offsets. Modules, one job each:

- :mod:`.metrics`: the deliverer's Prometheus metrics;
- :mod:`.http`: one signed POST with a timeout (aiohttp), its answer;
- :mod:`.delivery`: one record's delivery, from attempt to recorded outcome (retry tier or
  dead letter), on Protocols so that it is tested with fakes;
- :mod:`.batches`: a fetch's records as chains per account, run concurrently, and the offsets
  that are safe to commit;
- :mod:`.consumer`: an endpoint's consumer loop (due times of retry tiers, pauses, commits);
- :mod:`.topics`: the tier and dead-letter topics, created at start;
- :mod:`.replay`: ``--replay``, dead letters back onto their endpoint's first retry tier;
- :mod:`.run`: the command: settings, endpoints, web server, signals.
"""
