"""The processing engine: records in bulk, one Kafka transaction per step, state after commit.

- :mod:`engine.step`: what a step is (its partition, state view, outputs, offsets).
- :mod:`engine.committers`: how a step reaches Kafka (a transactional producer per
  input partition under exactly-once; one idempotent producer and plain offset
  commits under at-least-once).
- :mod:`engine.changelogs`: restore and standby: reading changelogs into stores.
- :mod:`engine.engine`: the loop that owns partitions, runs steps and applies state.

Faust stays the application around it (group membership, co-partitioned
assignment, web server, timers); every reach into Faust's internals is in
:mod:`app.faust_internals`.
"""
