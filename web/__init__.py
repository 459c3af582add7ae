"""HTTP endpoints of the worker."""
