"""Delivering notifications to hooks: signed webhooks, Slack, and a log line.

A hook receives one :class:`~schemas.alerts.Notification` per message. The pieces, each
usable and tested alone:

- :mod:`.config`: :class:`HookConfig` (name, kind ``webhook`` | ``slack`` | ``log``,
  url, secret, timeouts) and :func:`parse_hooks`, which reads a setting string or a
  TOML table and names the key of anything wrong;
- :mod:`.signing`: the headers of one attempt: ``webhook-id`` (the notification id,
  the same on every retry: an idempotency key), ``webhook-timestamp``, and with a
  secret both ``webhook-signature`` (Standard Webhooks, made by the ``standardwebhooks``
  package) and the contract's ``X-Creatorpulse-Signature: sha256=<hex HMAC>``;
- :mod:`.delivery`: :class:`Deliverer`, the in-memory outbox: per-hook pending
  notifications, attempts due at an injected clock, the retry policy
  (:class:`RetrySchedule`, :func:`decide`), and a :class:`Delivery` record per attempt;
- :mod:`.slack`: the Slack incoming-webhook message (``text`` + ``blocks``, escaped,
  within Slack's limits);
- :mod:`.loghook`: the log hook's one structured line per notification.

Typical use (the caller stores each record, e.g. in the ``alerts`` table)::

    deliverer = Deliverer(parse_hooks(setting), on_delivery=store)
    await deliverer.start()
    deliverer.submit(notification)      # never waits
    await deliverer.run_due()           # waits at most one hook timeout

One attempt with no outbox (a ``test-hook`` command, say) is
``HttpTransport().post(hook, body, webhook_headers(...))``, from :mod:`.delivery`.

The outbox lives in memory: what survives a restart is the caller's record of the
attempts (submit again what was not delivered). docs/webhooks.md is the user's guide.
"""

from sinks.webhooks.config import HookConfig, HookConfigError, parse_hooks
from sinks.webhooks.delivery import Deliverer, Delivery, DeliveryStatus, RetrySchedule
from sinks.webhooks.signing import SigningKey, new_secret, parse_secret, webhook_headers
from sinks.webhooks.slack import slack_payload

__all__ = [
    "Deliverer",
    "Delivery",
    "DeliveryStatus",
    "HookConfig",
    "HookConfigError",
    "RetrySchedule",
    "SigningKey",
    "new_secret",
    "parse_hooks",
    "parse_secret",
    "slack_payload",
    "webhook_headers",
]
