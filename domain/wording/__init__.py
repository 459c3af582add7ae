"""Wording: message formatting and templates, event kinds and the events themselves."""
