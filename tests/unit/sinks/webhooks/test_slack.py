"""The Slack message: what it says, Slack's escaping, and Slack's size limits."""

from __future__ import annotations

import json
import re

from sinks.webhooks.slack import MAX_BLOCKS, SECTION_TEXT_LIMIT, escape, fit, link, slack_payload
from tests.support.webhook_samples import alert, notification


def section_texts(payload: dict[str, object]) -> list[str]:
    blocks = payload["blocks"]
    assert isinstance(blocks, list)
    return [block["text"]["text"] for block in blocks]


def test_says_who_what_and_why() -> None:
    payload = slack_payload(notification())
    json.dumps(payload)  # a JSON object Slack can take
    text = "\n".join(section_texts(payload))
    assert "1 creator outperforming its cohort" in text
    assert "spring" in text
    assert "@maya.eats (maya)" in text
    assert "ER 15.2% vs cohort median 7.1%" in text
    assert "z 4.20 (≥ 3.5)" in text
    assert "lift 2.14x (≥ 1.5x)" in text
    assert "Status: *firing* since 2026-11-22 09:01 UTC" in text
    assert "views 12,000" in text
    assert "revenue 598.80" in text
    assert (
        "<https://dash.example/campaigns/spring?creator=maya&amp;window=1h|Open the dashboard>"
        in text
    )
    assert payload["text"].startswith("*1 creator outperforming its cohort*")


def test_resolved_and_other_metrics() -> None:
    resolved = alert(
        status="resolved",
        ends_at_ms=1_795_341_660_000,
        resolved_reason="cooled",
        metric="cpa",
        value=4.5,
        baseline=12.25,
    )
    text = "\n".join(section_texts(slack_payload(notification(alerts=[resolved], kind="resolved"))))
    assert "no longer outperforming" in text
    assert "Status: *resolved* (cooled) at 2026-11-22 10:01 UTC" in text
    assert "CPA 4.50 vs cohort median 12.25" in text


def test_escapes_the_three_control_characters_only() -> None:
    hostile = alert("c<1>", handle="<!channel> & <@U123>", explanation='ER > median & "big"')
    text = "\n".join(section_texts(slack_payload(notification(alerts=[hostile]))))
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt; (c&lt;1&gt;)" in text
    assert 'ER &gt; median &amp; "big"' in text  # quotes are not entity-encoded
    # The only raw '<' left opens the dashboard link.
    assert re.findall(r"<[^>]*>", text) == [
        "<https://dash.example/campaigns/spring?creator=maya&amp;window=1h|Open the dashboard>"
    ]
    assert escape("a&b<c>d") == "a&amp;b&lt;c&gt;d"
    assert link("https://x/y?a|b>c", "<go>") == "<https://x/y?a%7Cb%3Ec|&lt;go&gt;>"


def test_many_creators_stay_within_fifty_blocks() -> None:
    many = [alert(f"creator-{i:03d}", handle=f"@c{i:03d}") for i in range(120)]
    payload = slack_payload(notification(alerts=many))
    texts = section_texts(payload)
    assert len(texts) == MAX_BLOCKS
    # title + 47 creators + summary + link
    assert sum("vs cohort median" in t for t in texts) == 47
    summary = texts[-2]
    assert summary.startswith("…and 73 more creators: @c047, @c048")
    assert summary.endswith("and 53 more")
    assert all(len(t) <= SECTION_TEXT_LIMIT for t in texts)
    assert len(payload["text"]) <= 3000
    assert "120 creators" in payload["text"]


def test_exactly_as_many_creators_as_fit_need_no_summary() -> None:
    payload = slack_payload(notification(alerts=[alert(f"c{i}") for i in range(48)]))
    texts = section_texts(payload)
    assert len(texts) == MAX_BLOCKS
    assert not any(t.startswith("…and") for t in texts)


def test_a_long_text_is_cut_to_the_section_limit_outside_entities() -> None:
    long = alert(explanation="&" * 5000)
    texts = section_texts(slack_payload(notification(alerts=[long])))
    cut = texts[1]
    assert len(cut) <= SECTION_TEXT_LIMIT
    assert cut.endswith("…")
    assert re.fullmatch(r"(?:[^&]|&amp;)*…", cut.replace("\n", " "))


def test_fit_never_splits_an_entity_or_a_link() -> None:
    assert fit("abc", 3) == "abc"
    assert fit("abcd", 3) == "ab…"
    assert fit("ab&amp;cd", 5) == "ab…"  # '&am' would be a broken entity
    assert fit("x <https://a/b|label> y", 10) == "x …"
    assert fit("&lt;&gt;", 7) == "&lt;…"
