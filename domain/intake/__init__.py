"""Intake: records validated, dead-lettered, deduplicated, placed, and metered into state."""
