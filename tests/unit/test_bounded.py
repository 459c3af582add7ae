"""domain.common.bounded: a memo dictionary never holds more than its limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.common.bounded import remember


@given(st.lists(st.integers(0, 50)), st.integers(1, 8))
def test_bounded_and_holds_the_last_value(keys: list[int], limit: int) -> None:
    cache: dict[int, str] = {}
    for key in keys:
        assert remember(cache, key, f"v{key}", limit) == f"v{key}"
        assert len(cache) <= limit
        assert cache[key] == f"v{key}"


def test_a_full_cache_is_emptied_before_the_new_entry() -> None:
    cache = {1: "a", 2: "b"}
    remember(cache, 3, "c", 2)
    assert cache == {3: "c"}
    remember(cache, 4, "d", 2)
    assert cache == {3: "c", 4: "d"}
