"""JSON encoding of everything the worker holds or sends: orjson, right-sized.

orjson 3.12 and later (3.13.0 installed when this was written) return ``dumps``
output in a bytes object whose allocation is never shrunk to its length: at least
4,096 bytes however short the JSON (``sys.getsizeof`` reports only the length;
tracemalloc shows the allocation). A processing step holds one such value per key it
writes, in its pending writes and again in its changelog messages, until its Kafka
transaction commits; with up to 20,000 records a step over eight partitions in
flight, at 100,000 accounts that was ~700 MB of mostly empty buffers, most of a
worker's peak RSS (docs/capacity.md, Memory). A copy of the exact length costs a
fraction of the encoding (one ``memcpy`` of a few hundred bytes) and gives the
buffer back at once.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON (orjson's encoding) in a bytes object of its size."""
    return bytes(memoryview(orjson.dumps(obj)))
