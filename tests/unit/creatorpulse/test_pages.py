"""The worker's /leaderboard parameters: defaults, bounds, and which one is wrong."""

from __future__ import annotations

import pytest

from creatorpulse.web.dashboard import BadParameter
from creatorpulse.web.pages import leaderboard_query


def test_defaults_and_good_values() -> None:
    assert leaderboard_query({}) == (None, 3600, 20, "er")
    assert leaderboard_query({"campaign": ""}) == (None, 3600, 20, "er")
    assert leaderboard_query({"campaign": "c1", "last_s": "60", "limit": "500"}) == (
        "c1",
        60,
        500,
        "er",
    )
    assert leaderboard_query({"last_s": str(30 * 86_400), "limit": "1"}) == (
        None,
        2_592_000,
        1,
        "er",
    )
    assert leaderboard_query({"sort": "ROAS"})[3] == "roas"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"last_s": "-5"}, "last_s"),
        ({"last_s": "abc"}, "last_s"),
        ({"last_s": str(30 * 86_400 + 1)}, "last_s"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "1e3"}, "limit"),
    ],
)
def test_a_bad_value_names_its_parameter(query: dict[str, str], name: str) -> None:
    with pytest.raises(BadParameter) as raised:
        leaderboard_query(query)
    assert raised.value.name == name
    assert str(raised.value).startswith(f"{name}: expected an integer from 1 to ")


def test_an_unknown_sort_names_the_keys() -> None:
    with pytest.raises(BadParameter) as raised:
        leaderboard_query({"sort": "likes"})
    assert raised.value.name == "sort"
    assert "er|ctr|cvr|cpa|roas|views|revenue" in str(raised.value)
