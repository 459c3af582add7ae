"""Fakes shared by the test tiers (no broker, no Faust)."""
