"""The start-up codec check: every Kafka compression codec decodes, or no start."""

from __future__ import annotations

import os

import pytest
from aiokafka import codec

import commands.worker.run
from app.codecs import CODECS, check_codecs, missing_codecs
from commands.cli import EXIT_CONFIG, main
from domain.errors import CodecError


@pytest.fixture
def without_cramjam(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka as installed without its codec extras (its import of cramjam failed)."""
    monkeypatch.setattr(codec, "cramjam", None)


def test_every_kafka_codec_is_installed() -> None:
    assert set(CODECS) == {"gzip", "snappy", "lz4", "zstd"}
    assert missing_codecs() == []
    check_codecs()


@pytest.mark.usefixtures("without_cramjam")
def test_missing_codecs_are_named() -> None:
    assert missing_codecs() == ["snappy", "lz4", "zstd"]
    with pytest.raises(CodecError, match=r"snappy, lz4, zstd: install usage-moments"):
        check_codecs()


@pytest.mark.usefixtures("without_cramjam")
@pytest.mark.parametrize("command", ["worker", "check-config"])
def test_a_command_refuses_to_start_without_a_codec(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def too_late(*_: object, **__: object) -> None:
        raise AssertionError("the worker was built before the codec check")

    monkeypatch.setattr(commands.worker.run, "worker_runtime", too_late)
    for name in [n for n in os.environ if n.startswith("MOMENTS_")]:
        monkeypatch.delenv(name)
    assert main([command]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("moments: configuration error: cannot decode Kafka batches")
    assert "snappy, lz4, zstd" in err
