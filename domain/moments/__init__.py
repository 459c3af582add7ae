"""Moments: a step's judged records come back as events (thresholds, milestones, drops and
recoveries, anniversaries, account changes), each pass calling the rules, then the wording."""
