"""A webhook receiver on 127.0.0.1 (stdlib ``http.server`` in a thread) for the tests of
the alert sink and the CLI: it verifies both signatures with code of its own (the
``standardwebhooks`` package and ``hmac``), keeps every request, and answers as told.

``processed`` holds each ``webhook-id`` taken as new: a repeat of an id already processed
is answered 200 and not added, as a receiver using the id as an idempotency key would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

#: What to answer the n-th request (1-based) for one webhook-id: a status, (status,
#: headers), or a float: process it, then answer 200 that many seconds later (slow).
Answer = Callable[[int], "int | float | tuple[int, dict[str, str]]"]


class _Slow(Exception):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s


@dataclass
class Received:
    webhook_id: str
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    secret: str | None
    answer: Answer = lambda n: 200
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self, body: bytes, headers: dict[str, str]) -> bool:
        if self.secret is None:
            return True
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get("x-creatorpulse-signature", ""), expected)

    def handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        import time

        delay_s = 0.0
        try:
            return self._handle(body, headers)
        except _Slow as slow:
            delay_s = slow.delay_s
        time.sleep(delay_s)
        return 200, {}

    def _handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        webhook_id = headers.get("webhook-id", "")
        with self.lock:
            if not self.verified(body, headers):
                self.rejected.append(webhook_id)
                return 400, {}
            n = 1 + sum(r.webhook_id == webhook_id for r in self.requests)
            what = self.answer(n)
            if isinstance(what, float):
                self.requests.append(Received(webhook_id, json.loads(body), 200))
                if webhook_id not in self.processed:
                    self.processed.append(webhook_id)
                raise _Slow(what)
            status, extra = (what, {}) if isinstance(what, int) else what
            self.requests.append(Received(webhook_id, json.loads(body), status))
            if 200 <= status < 300 and webhook_id not in self.processed:
                self.processed.append(webhook_id)
            return status, extra

    def alert_keys(self) -> list[str]:
        """``<alert_id>:<kind>`` of every alert in a notification processed as new."""
        out = []
        for webhook_id in self.processed:
            body = next(r.body for r in self.requests if r.webhook_id == webhook_id)
            out += [f"{a['alert_id']}:{body['kind']}" for a in body["alerts"]]
        return out


@contextmanager
def serve(receiver: Receiver) -> Iterator[Receiver]:
    """Serve ``receiver`` on a free port of 127.0.0.1; ``receiver.url`` is its address."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver.handle(body, headers)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test at ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)
