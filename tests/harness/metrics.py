"""A worker's ``/metrics`` page, parsed by prometheus_client's exposition parser.

A series that is not on the page raises :class:`MissingSeries`: a misspelled metric
or label must fail the test or the benchmark that reads it, never read as 0. (Every
label value a worker reports is created at start, app/metrics.py, so a series is
there from the first scrape.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


class MissingSeries(AssertionError):
    """A metric series read from a page that does not have it."""


class Metrics:
    """The samples of one scrape, by sample name (``_total``, ``_bucket``... kept)."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series = self.samples.setdefault(sample.name, {})
                series[frozenset(sample.labels.items())] = sample.value

    def series(self, name: str) -> dict[Labels, float]:
        """Every series of sample ``name``; raises when there is none."""
        found = self.samples.get(name)
        if not found:
            raise MissingSeries(f"no series of {name} on the page")
        return found

    def value(self, name: str, **labels: str) -> float:
        """The value of ``name{labels}`` (exactly these labels); raises when absent."""
        key = frozenset(labels.items())
        try:
            return self.series(name)[key]
        except KeyError:
            shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            raise MissingSeries(f"no series {name}{{{shown}}} on the page") from None

    def total(self, name: str) -> float:
        """Sum of every series of ``name`` (over its labels); raises when there is none."""
        return sum(self.series(name).values())

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """{value of ``label``: sum of the series of ``name`` with it}; raises when none."""
        out: dict[str, float] = {}
        for key, value in self.series(name).items():
            labels: Mapping[str, str] = dict(key)
            if label in labels:
                out[labels[label]] = out.get(labels[label], 0.0) + value
        return out

    def histogram_quantile(self, name: str, q: float, since: Metrics | None = None) -> float | None:
        """Prometheus-style quantile of histogram ``name``: linear within the bucket
        that holds it; None while it counted nothing. ``since``: of what it counted after
        that earlier read only."""
        start = since.by_label(f"{name}_bucket", "le") if since is not None else {}
        buckets = sorted(
            (math.inf if le == "+Inf" else float(le), count - start.get(le, 0.0))
            for le, count in self.by_label(f"{name}_bucket", "le").items()
        )
        if not buckets or buckets[-1][1] <= 0:
            return None
        rank = q * buckets[-1][1]
        lower, below = 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
            lower, below = upper, count
        return None
