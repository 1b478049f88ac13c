"""A TCP proxy in front of a Kafka listener that can lose the broker's answers to Produce.

Kafka frames are a 4-byte big-endian size and a body. A request body starts with
``api_key`` (int16), ``api_version`` (int16) and ``correlation_id`` (int32); a response
body starts with the ``correlation_id`` it answers. While :attr:`KafkaProxy.lose_produce_answers`
is set, the proxy forwards every request (the broker writes the records) but drops the
answers to Produce requests (api key 0): what a client sees when an acknowledgement is
lost on the way, the one case a long client request timeout turns into a stuck send.
Everything else passes: fetches, heartbeats, commits, metadata.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

PRODUCE_API_KEY = 0


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _frames(sock: socket.socket) -> Callable[[], bytes | None]:
    def next_frame() -> bytes | None:
        head = _read_exactly(sock, 4)
        if head is None:
            return None
        body = _read_exactly(sock, struct.unpack(">i", head)[0])
        return None if body is None else head + body

    return next_frame


class KafkaProxy:
    """Listens on 127.0.0.1:``port`` and forwards each connection to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_produce_answers = threading.Event()
        self.lost = 0  # answers dropped so far
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> KafkaProxy:
        accept = threading.Thread(target=self._accept, name="kafka-proxy", daemon=True)
        self._threads.append(accept)
        accept.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every connection and wait for the threads. A close() from
        another thread does not wake a blocked accept() or recv() on Linux; a shutdown()
        does."""
        self._closed.set()
        with self._lock:
            sockets, self._sockets = [self._server, *self._sockets], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            requests, answers = self._filters()
            pair = [
                threading.Thread(target=_relay, args=(client, broker, requests), daemon=True),
                threading.Thread(target=_relay, args=(broker, client, answers), daemon=True),
            ]
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    broker.close()
                    return
                self._sockets += [client, broker]
                self._threads += pair
            for thread in pair:
                thread.start()

    def _filters(self) -> tuple[Callable[[bytes], bool], Callable[[bytes], bool]]:
        """One connection's two filters, requests and answers: whether to pass a frame.
        Every request passes; the Produce requests' correlation ids are noted, and their
        answers are dropped while :attr:`lose_produce_answers` is set."""
        produce_ids: set[int] = set()
        ids_lock = threading.Lock()

        def requests(frame: bytes) -> bool:
            api_key, _, correlation_id = struct.unpack(">hhi", frame[4:12])
            if api_key == PRODUCE_API_KEY:
                with ids_lock:
                    produce_ids.add(correlation_id)
            return True

        def answers(frame: bytes) -> bool:
            (correlation_id,) = struct.unpack(">i", frame[4:8])
            with ids_lock:
                produce = correlation_id in produce_ids
                produce_ids.discard(correlation_id)
            if produce and self.lose_produce_answers.is_set():
                with self._lock:
                    self.lost += 1
                return False
            return True

        return requests, answers


def _relay(source: socket.socket, target: socket.socket, passes: Callable[[bytes], bool]) -> None:
    """Frames from ``source`` to ``target``, those ``passes`` lets through, until either
    side closes; then both are closed."""
    next_frame = _frames(source)
    try:
        while (frame := next_frame()) is not None:
            if passes(frame):
                target.sendall(frame)
    except OSError:
        pass
    finally:
        source.close()
        target.close()
