"""Rules: what metered state means (thresholds, projections, drops, overage, anniversaries)
and which plan a moment suggests."""
