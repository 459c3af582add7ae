"""Rules: what metered state means (thresholds, drops, milestones, anniversaries, changes).

And which plan a moment suggests.
"""
