"""Unit tests: pure domain code, no Kafka, no Faust."""
