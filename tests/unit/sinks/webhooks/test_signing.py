"""Webhook signatures: the contract's HMAC header and Standard Webhooks, checked by
independent code (the ``standardwebhooks`` package's verifier, stdlib ``hmac``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from sinks.webhooks.signing import (
    SigningKey,
    legacy_signature,
    new_secret,
    parse_secret,
    webhook_headers,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks / Svix documentation.
    headers = webhook_headers(
        b'{"test": 2432232314}',
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp_s=1614265330,
        key=parse_secret(SECRET),
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_both_signatures_verify_with_independent_code() -> None:
    body = '{"alerts":[{"creator_id":"zoë"}]}'.encode()
    headers = webhook_headers(
        body, message_id="n-42", timestamp_s=int(time.time()), key=parse_secret(SECRET)
    )
    assert Webhook(SECRET).verify(body, headers) == {"alerts": [{"creator_id": "zoë"}]}
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Creatorpulse-Signature"], expected)
    assert headers["webhook-id"] == "n-42"


def test_a_changed_body_fails_verification() -> None:
    headers = webhook_headers(
        b'{"z":4.2}', message_id="n-1", timestamp_s=int(time.time()), key=parse_secret(SECRET)
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"z":9.9}', headers)
    assert headers["X-Creatorpulse-Signature"] != legacy_signature(
        b'{"z":9.9}', parse_secret(SECRET)
    )


def test_without_a_secret_only_id_and_timestamp_are_sent() -> None:
    headers = webhook_headers(b"{}", message_id="n-1", timestamp_s=1_700_000_000, key=None)
    assert headers == {"webhook-id": "n-1", "webhook-timestamp": "1700000000"}


def test_secret_forms() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    assert parse_secret(SECRET).key == key
    assert parse_secret(SECRET.removeprefix("whsec_")).key == key
    unpadded = "whsec_" + base64.b64encode(b"x" * 25).decode().rstrip("=")
    assert parse_secret(unpadded).key == b"x" * 25
    fresh = new_secret()
    assert fresh.startswith("whsec_")
    assert len(parse_secret(fresh).key) == 32
    Webhook(fresh)  # the package reads the same form


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_not base64!", "not a Standard Webhooks secret"),
        ("s3cret", "has 4"),  # valid base64, but a password, not a key
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 24 random bytes"),
    ],
)
def test_bad_secrets_are_refused(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_secret(secret)


def test_the_key_never_shows_in_repr() -> None:
    key = parse_secret(SECRET)
    assert "MfKQ" not in repr(key)
    assert repr(key.key) not in repr(key)
    assert repr(SigningKey(b"k" * 24)) == "SigningKey()"
