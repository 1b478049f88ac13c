"""Hook configuration: what each hook is, parsed from a setting string or a TOML table.

Two forms, one result (a tuple of :class:`HookConfig`):

- a **setting string** (one environment variable): hooks separated by whitespace, each
  ``[NAME=]KIND[:URL]``, e.g. ``"log ops=webhook:https://ops.example/hook
  team=slack:https://hooks.slack.com/services/T/B/X"``. Whitespace is the separator
  because it is the one character a URL cannot hold. A hook without a name is named
  after its kind. The string form has no per-hook options: ``secret`` and
  ``timeout_s`` given to :func:`parse_hooks` apply to every hook it names that takes them;
- a **TOML table** (``tomllib``-loaded), one sub-table per hook, keyed by name::

      [hooks.ops]
      kind = "webhook"
      url = "https://ops.example/hook"
      secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
      timeout_s = 5

Every error is a :class:`HookConfigError` whose message starts with the key to fix
(``hooks.ops.url: ...``), so a command can print it and exit 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from sinks.webhooks.signing import SigningKey, parse_secret

HookKind = Literal["webhook", "slack", "log"]
KINDS: tuple[HookKind, ...] = ("webhook", "slack", "log")

#: A hook answers within this or the attempt counts as a timeout and is retried.
DEFAULT_TIMEOUT_S = 5.0
#: Connecting gets its own, shorter bound: a host that does not answer SYN should not
#: use up the whole attempt.
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: An attempt is work the caller awaits; a minute is already far past any sane receiver.
MAX_TIMEOUT_S = 60.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEYS = frozenset({"kind", "url", "secret", "timeout_s", "connect_timeout_s"})


class HookConfigError(ValueError):
    """A hook setting that cannot work. ``key`` names it (``hooks.ops.url``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class HookConfig:
    """One hook. ``url`` and ``secret`` are credentials (a Slack URL is one), so they stay
    out of ``repr``; log lines name a hook by ``name``."""

    name: str
    kind: HookKind
    url: str | None = field(default=None, repr=False)
    secret: SigningKey | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        key = f"hooks.{self.name}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise HookConfigError(
                key,
                "a name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        if self.kind not in KINDS:
            raise HookConfigError(
                f"{key}.kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        if self.kind == "log":
            if self.url is not None:
                raise HookConfigError(f"{key}.url", "a log hook has no url")
        else:
            _check_url(f"{key}.url", self.url)
        if self.secret is not None and self.kind != "webhook":
            raise HookConfigError(f"{key}.secret", "only a webhook hook signs; remove the secret")
        _check_seconds(f"{key}.timeout_s", self.timeout_s)
        _check_seconds(f"{key}.connect_timeout_s", self.connect_timeout_s)
        if self.connect_timeout_s > self.timeout_s:
            raise HookConfigError(
                f"{key}.connect_timeout_s",
                "must not exceed timeout_s, which bounds the whole attempt",
            )


def parse_hooks(
    value: str | Mapping[str, Any] | None,
    *,
    secret: str | SigningKey | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    prefix: str = "hooks",
) -> tuple[HookConfig, ...]:
    """Hooks from a setting string or a TOML table (see the module docstring).

    ``secret`` and ``timeout_s`` apply to the string form only (the table gives them per
    hook); ``secret`` signs every webhook hook the string names (a string is
    parsed with :func:`~sinks.webhooks.signing.parse_secret`; parse it first to have an
    error name its setting).
    ``prefix`` is the key error messages start with: the setting's name, or the TOML
    table's path.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return _from_string(value, secret=secret, timeout_s=timeout_s, prefix=prefix)
    if isinstance(value, Mapping):
        return _from_table(value, prefix=prefix)
    raise HookConfigError(prefix, f"must be a string or a table, got {type(value).__name__}")


def _from_string(
    value: str, *, secret: str | SigningKey | None, timeout_s: float, prefix: str
) -> tuple[HookConfig, ...]:
    signing_key = _secret("secret", secret) if isinstance(secret, str) else secret
    hooks: list[HookConfig] = []
    for item in value.split():
        name, sep, rest = item.partition("=")
        if not sep or ":" in name:  # no NAME=, or the '=' is inside the URL
            name, rest = "", item
        kind, _, url = rest.partition(":")
        if kind not in KINDS:
            raise HookConfigError(
                prefix,
                f"{item!r}: each hook is [NAME=]KIND[:URL] with KIND one of {', '.join(KINDS)}",
            )
        try:
            hook = HookConfig(
                name=name or kind,
                kind=kind,
                url=url or None,
                secret=signing_key if kind == "webhook" else None,
                timeout_s=timeout_s,
                connect_timeout_s=min(DEFAULT_CONNECT_TIMEOUT_S, timeout_s),
            )
        except HookConfigError as error:
            field_name = error.key.removeprefix(f"hooks.{name or kind}").lstrip(".")
            where = f"{field_name}: " if field_name else ""
            raise HookConfigError(prefix, f"{item!r}: {where}{error.problem}") from None
        hooks.append(hook)
    _check_unique(hooks, prefix)
    return tuple(hooks)


def _from_table(table: Mapping[str, Any], *, prefix: str) -> tuple[HookConfig, ...]:
    hooks: list[HookConfig] = []
    for name, entry in table.items():
        key = f"{prefix}.{name}"
        if not isinstance(entry, Mapping):
            raise HookConfigError(key, "must be a table with kind, url, secret, timeout_s")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise HookConfigError(
                f"{key}.{unknown[0]}", f"unknown key; known: {', '.join(sorted(_KEYS))}"
            )
        if "kind" not in entry:
            raise HookConfigError(f"{key}.kind", f"missing; one of {', '.join(KINDS)}")
        for text_key in ("url", "secret"):
            if entry.get(text_key) is not None and not isinstance(entry[text_key], str):
                raise HookConfigError(f"{key}.{text_key}", "must be a string")
        raw_secret = entry.get("secret")
        timeout = entry.get("timeout_s", DEFAULT_TIMEOUT_S)
        try:
            hook = HookConfig(
                name=str(name),
                kind=entry["kind"],
                url=entry.get("url"),
                secret=_secret(f"{key}.secret", raw_secret) if raw_secret else None,
                timeout_s=timeout,
                connect_timeout_s=entry.get("connect_timeout_s", _default_connect(timeout)),
            )
        except HookConfigError as error:
            # HookConfig names keys hooks.<name>.<field>; the caller's prefix may differ.
            rest = error.key.removeprefix(f"hooks.{name}")
            raise HookConfigError(f"{key}{rest}", error.problem) from None
        hooks.append(hook)
    return tuple(hooks)


def _check_unique(hooks: list[HookConfig], prefix: str) -> None:
    seen: set[str] = set()
    for hook in hooks:
        if hook.name in seen:
            raise HookConfigError(
                prefix, f"two hooks named {hook.name!r}; give each its own NAME= in NAME=KIND:URL"
            )
        seen.add(hook.name)


def _secret(key: str, value: str) -> SigningKey:
    try:
        return parse_secret(value)
    except ValueError as error:
        raise HookConfigError(key, str(error)) from None


def _default_connect(timeout: Any) -> Any:
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return min(DEFAULT_CONNECT_TIMEOUT_S, timeout)
    return DEFAULT_CONNECT_TIMEOUT_S


def _check_url(key: str, url: str | None) -> None:
    if not url:
        raise HookConfigError(key, "missing; an http:// or https:// URL")
    if not isinstance(url, str) or any(c.isspace() for c in url):
        raise HookConfigError(key, "must be an http:// or https:// URL without spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise HookConfigError(key, f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookConfigError(key, "must be an http:// or https:// URL with a host")


def _check_seconds(key: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= MAX_TIMEOUT_S:
        raise HookConfigError(
            key, f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {value!r}"
        )
