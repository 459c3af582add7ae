"""Start-up check that every Kafka compression codec can be decoded.

Producers choose ``compression.type`` (none, gzip, snappy, lz4 or zstd); the worker
must read them all. aiokafka (written against 0.13 and 0.14) decodes gzip with the
standard library and the others with ``cramjam``, which only its extras install
(``aiokafka[lz4,snappy,zstd]``, a dependency of this project). Without it the
fetcher raises ``UnsupportedCodecError`` on the first compressed batch and the
worker stops; this check makes that a refusal to start, naming what is missing.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import codec

from domain.errors import CodecError

# Kafka's codecs besides "none", each as aiokafka encodes and decodes it.
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (codec.gzip_encode, codec.gzip_decode),
    "snappy": (codec.snappy_encode, codec.snappy_decode),
    "lz4": (codec.lz4_encode, codec.lz4_decode),
    "zstd": (codec.zstd_encode, codec.zstd_decode),
}

_SAMPLE = b'{"record_id":"codec-check","quantity":1}' * 4


def missing_codecs() -> list[str]:
    """Names of the codecs aiokafka cannot round-trip a small payload through."""
    missing = []
    for name, (encode, decode) in CODECS.items():
        try:
            ok = decode(encode(_SAMPLE)) == _SAMPLE
        except Exception:  # any failure (NotImplementedError when absent) means unusable
            ok = False
        if not ok:
            missing.append(name)
    return missing


def check_codecs() -> None:
    """Raise ``CodecError`` unless every Kafka compression codec can be decoded."""
    missing = missing_codecs()
    if missing:
        raise CodecError(
            f"cannot decode Kafka batches compressed with {', '.join(missing)}: "
            "install usage-moments with its dependencies "
            "(they include aiokafka[lz4,snappy,zstd], which provides cramjam)"
        )
