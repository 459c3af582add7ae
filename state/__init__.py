"""The project's own store layer: RocksDB partitions written only after Kafka commits.

One module per concept (after quix-streams' ``state/rocksdb/``): :mod:`state.store`
(one RocksDB per input partition, a column family per table, changelog offsets
beside the data), :mod:`state.transaction` (a step's coalesced reads and writes).
No Kafka and no Faust in here: :mod:`engine` moves the bytes.
"""
