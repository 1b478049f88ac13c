"""Whether the Kafka a command was given accepts connections: a plain socket, no client.

Kept free of heavy imports (no Faust, no Kafka client) so the CLI can check a
``--kafka-bootstrap`` before it loads them; :mod:`creatorpulse.runtime` re-exports it.
"""

from __future__ import annotations

import socket
import time

from creatorpulse.settings import SettingsError

#: How long a command waits for the Kafka it was given before it stops with a message.
#: Long enough for a broker that is still starting, short enough that a wrong address
#: is reported before the command looks hung (the clients alone retry for 30 s).
KAFKA_CONNECT_TIMEOUT_S = 6.0

BOOTSTRAP_FIX = "check --kafka-bootstrap / CREATORPULSE_KAFKA_BOOTSTRAP"


def wait_for_listener(bootstrap: str, timeout_s: float = KAFKA_CONNECT_TIMEOUT_S) -> None:
    """Return once one of the bootstrap hosts accepts a TCP connection, or raise a
    SettingsError naming the setting after ``timeout_s``.

    A plain socket, so an address nobody listens on costs no client retries and no
    client log lines.
    """
    deadline = time.monotonic() + timeout_s
    hosts = [entry.strip().rpartition(":") for entry in bootstrap.split(",")]
    why = ""
    while True:
        for host, _, port in hosts:
            left = deadline - time.monotonic()
            try:
                with socket.create_connection(
                    (host.strip("[]"), int(port)), min(max(left, 0.1), 2)
                ):
                    return
            except OSError as exc:
                why = f"{host}:{port}: {exc.strerror or exc}"
        if time.monotonic() >= deadline:
            raise SettingsError(
                f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f}s ({why}); "
                + BOOTSTRAP_FIX
            )
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
