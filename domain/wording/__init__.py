"""Wording: message templates, the per-kind message builders, event kinds and payloads."""
