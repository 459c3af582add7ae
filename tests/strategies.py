"""Hypothesis strategies shared by the tests of event rendering."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(max_size=20)
)
"""What a JSON document holds at a leaf (integers within a double's exact range)."""

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any small JSON value: what a field of a complete, partial or garbage event may hold."""
