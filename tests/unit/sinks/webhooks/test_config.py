"""Hook configuration: the setting string and the TOML table, and errors that name the key."""

from __future__ import annotations

import tomllib

import pytest

from sinks.webhooks.config import HookConfig, HookConfigError, parse_hooks
from sinks.webhooks.signing import parse_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXX"


def test_setting_string() -> None:
    hooks = parse_hooks(
        f"log ops=webhook:https://ops.example/hook?team=a&x=1  team=slack:{SLACK}\n"
        "webhook:http://127.0.0.1:8080/in",
        secret=SECRET,
        timeout_s=3,
    )
    assert [(h.name, h.kind, h.url) for h in hooks] == [
        ("log", "log", None),
        ("ops", "webhook", "https://ops.example/hook?team=a&x=1"),
        ("team", "slack", SLACK),
        ("webhook", "webhook", "http://127.0.0.1:8080/in"),
    ]
    assert hooks[1].secret == parse_secret(SECRET)
    assert hooks[3].secret == parse_secret(SECRET)
    assert hooks[0].secret is None
    assert hooks[2].secret is None
    assert {h.timeout_s for h in hooks} == {3}
    assert {h.connect_timeout_s for h in hooks} == {2}
    assert parse_hooks("") == ()
    assert parse_hooks(None) == ()


def test_toml_table() -> None:
    table = tomllib.loads(
        f"""
        [hooks.ops]
        kind = "webhook"
        url = "https://ops.example/hook"
        secret = "{SECRET}"
        timeout_s = 1.5

        [hooks.team]
        kind = "slack"
        url = "{SLACK}"

        [hooks.console]
        kind = "log"
        """
    )
    ops, team, console = parse_hooks(table["hooks"])
    assert ops == HookConfig(
        name="ops",
        kind="webhook",
        url="https://ops.example/hook",
        secret=parse_secret(SECRET),
        timeout_s=1.5,
        connect_timeout_s=1.5,
    )
    assert (team.kind, team.timeout_s, team.secret) == ("slack", 5.0, None)
    assert (console.name, console.url) == ("console", None)


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"ops": {"url": "https://x"}}, "hooks.ops.kind", "missing"),
        ({"ops": {"kind": "email", "url": "https://x"}}, "hooks.ops.kind", "must be one of"),
        ({"ops": {"kind": "webhook"}}, "hooks.ops.url", "missing"),
        ({"ops": {"kind": "webhook", "url": "ftp://x/y"}}, "hooks.ops.url", "http"),
        ({"ops": {"kind": "webhook", "url": "https://"}}, "hooks.ops.url", "with a host"),
        ({"ops": {"kind": "webhook", "url": "http://x:99999/"}}, "hooks.ops.url", "not a URL"),
        ({"ops": {"kind": "log", "url": "https://x"}}, "hooks.ops.url", "no url"),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "retries": 3}},
            "hooks.ops.retries",
            "unknown",
        ),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "secret": "pw"}},
            "hooks.ops.secret",
            "secret",
        ),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "secret": 7}},
            "hooks.ops.secret",
            "string",
        ),
        (
            {"ops": {"kind": "slack", "url": SLACK, "secret": SECRET}},
            "hooks.ops.secret",
            "only a webhook",
        ),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "timeout_s": 0}},
            "hooks.ops.timeout_s",
            "(0, 60]",
        ),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "timeout_s": "5"}},
            "hooks.ops.timeout_s",
            "'5'",
        ),
        (
            {"ops": {"kind": "webhook", "url": "https://x", "timeout_s": True}},
            "hooks.ops.timeout_s",
            "True",
        ),
        (
            {
                "ops": {
                    "kind": "webhook",
                    "url": "https://x",
                    "timeout_s": 1,
                    "connect_timeout_s": 2,
                }
            },
            "hooks.ops.connect_timeout_s",
            "must not exceed",
        ),
        ({"o p": {"kind": "log"}}, "hooks.o p", "a name is"),
        ({"ops": "https://x"}, "hooks.ops", "must be a table"),
    ],
)
def test_table_errors_name_the_key(table: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(HookConfigError) as caught:
        parse_hooks(table)
    assert problem in caught.value.problem
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("email:https://x", "'email:https://x': each hook is"),
        ("ops=webhook", "'ops=webhook': url: missing"),
        ("webhook:https://a/x webhook:https://b/y", "two hooks named 'webhook'"),
        ("ops=log:https://x/y", "no url"),
    ],
)
def test_string_errors_name_the_setting(value: str, problem: str) -> None:
    with pytest.raises(HookConfigError) as caught:
        parse_hooks(value, prefix="CREATORPULSE_HOOKS")
    assert problem in caught.value.problem
    assert caught.value.key == "CREATORPULSE_HOOKS"


def test_a_bad_shared_secret_names_its_key() -> None:
    with pytest.raises(HookConfigError) as caught:
        parse_hooks("webhook:https://x/y", secret="hunter2")
    assert caught.value.key == "secret"


def test_credentials_stay_out_of_repr() -> None:
    (hook,) = parse_hooks(f"team=slack:{SLACK}")
    (signed,) = parse_hooks("webhook:https://x/y", secret=SECRET)
    assert "XXXX" not in repr(hook)
    assert "MfKQ" not in repr(signed)
    assert "team" in repr(hook)
