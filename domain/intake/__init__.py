"""Intake: records validated, dead-lettered, deduplicated, placed, and metered into state
(period, daily and lifetime totals, the account's plan)."""
