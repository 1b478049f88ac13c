"""Signing a hook's body: the contract's header and the Standard Webhooks headers.

A hook with a secret gets, on every attempt:

- ``X-Creatorpulse-Signature: sha256=<hex>``: HMAC-SHA256 of the body (contract section 3);
- ``webhook-signature: v1,<base64>``: the Standard Webhooks signature over
  ``<webhook-id>.<webhook-timestamp>.<body>``, made by the ``standardwebhooks`` package,
  so a receiver verifies it with ``Webhook(secret).verify(body, headers)``.

Every hook, signed or not, gets ``webhook-id`` (the notification id: the same on every
retry, so a receiver can drop a repeat) and ``webhook-timestamp`` (unix seconds of this
attempt; receivers reject one more than a few minutes off, which stops replays).

**The secret** is a Standard Webhooks secret: ``whsec_`` followed by the base64 of at
least 24 random bytes (the prefix may be left out). :func:`new_secret` makes one. Both
signatures use the same key, the *decoded* bytes: a receiver checks the contract header
with ``hmac.new(base64.b64decode(secret.removeprefix("whsec_")), body, "sha256")``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
#: The Standard Webhooks spec asks for 24 to 64 random bytes; fewer is refused.
MIN_SECRET_BYTES = 24

LEGACY_HEADER = "X-Creatorpulse-Signature"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


@dataclass(frozen=True)
class SigningKey:
    """The decoded secret. Its bytes never appear in ``repr`` or a log line."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"a secret is {SECRET_PREFIX}<base64 of at least {MIN_SECRET_BYTES} random "
                f"bytes>; this one has {len(self.key)} (make one with new_secret())"
            )


def parse_secret(value: str) -> SigningKey:
    """``whsec_<base64>`` (or the bare base64) to its key; ``ValueError`` says what is wrong."""
    text = value.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"not a Standard Webhooks secret: expected {SECRET_PREFIX}<base64 of at least "
            f"{MIN_SECRET_BYTES} random bytes>"
        ) from None
    return SigningKey(key)


def new_secret() -> str:
    """A fresh secret in the form :func:`parse_secret` reads (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def legacy_signature(body: bytes, key: SigningKey) -> str:
    """The contract header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(key.key, body, hashlib.sha256).hexdigest()


def webhook_headers(
    body: bytes, *, message_id: str, timestamp_s: int, key: SigningKey | None
) -> dict[str, str]:
    """The headers of one attempt: id and timestamp always, both signatures with a key.

    ``body`` must be the exact bytes sent (UTF-8 JSON): the signatures cover them.
    """
    headers = {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp_s)}
    if key is not None:
        at = datetime.fromtimestamp(timestamp_s, tz=UTC)
        headers[SIGNATURE_HEADER] = Webhook(key.key).sign(message_id, at, body.decode("utf-8"))
        headers[LEGACY_HEADER] = legacy_signature(body, key)
    return headers
