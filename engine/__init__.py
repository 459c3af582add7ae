"""The processing engine: records in bulk, one Kafka transaction per step, state after commit.

- :mod:`engine.step`: what a step is (its partition, state view, outputs, offsets).
- :mod:`engine.committers`: how a step reaches Kafka (a transactional producer per
  input partition under exactly-once; one idempotent producer and plain offset
  commits under at-least-once).
- :mod:`engine.changelogs`: restore and standby: reading changelogs into stores.
- :mod:`engine.engine`: :class:`~engine.engine.Engine`, the face the worker sees, made of
  :mod:`engine.ownership` (assignments, fencing, restore, release),
  :mod:`engine.scheduler` (records to steps, back-pressure), :mod:`engine.poison`
  (running steps, narrowing down poison), :mod:`engine.checkpoint` (the commit protocol,
  retries, give-up, latch) and :mod:`engine.background` (background slices).

Faust stays the application around it (group membership, co-partitioned
assignment, web server, timers); every reach into Faust's, mode's and aiokafka's
internals is in :mod:`app.faust_internals`.
"""
