"""``creatorpulse bench``: the worker against the ceiling and the textbook baseline, in one run.

One broker is started for the run (real Apache Kafka by default, the embedded tansu
broker with ``--broker embedded``). Data is published once per shape (single-event
records, and batch records of up to 100 events) to a fresh 4-partition topic, then every
consumer reads that same topic with its own consumer group, one at a time (the machine's
cores are shared by broker, producer and consumer, so nothing else runs meanwhile):

1. **ceiling**: raw aiokafka consume + ``orjson.loads`` of every value, in this process;
2. **baseline**: a textbook Faust agent, one table update per event and window
   (:mod:`creatorpulse.bench.baseline`), as a subprocess, on a prefix of the topic;
3. **worker**: ``python -m creatorpulse worker`` until every window is in ClickHouse
   (chDB in a temporary directory), read through the worker's ``/stats`` page;
4. **producers**: the simulator (generation + kafka-python publish) and a JSONL replay;
5. **latency**: a steady rate of live events, publish -> row written, p50/p95/p99;
6. **memory**: worker peak RSS with 10k creators x 3 campaigns of open windows;
7. **scaling**: cost per event as creators and events per creator grow;
8. **alerts**: batch throughput with the alert stage on and off;
9. **soak**: a steady live load for 10 minutes, the worker's RSS slope after its grace.

Ceiling, bare loop, worker and alerts figures are medians of ``--passes`` passes (3).

The table goes to stdout, progress to stderr, and the same numbers to a JSON file
(``--help`` lists the flags; ``python -m creatorpulse.bench`` runs it without the CLI).

The modules, by concern: ``options`` (flags and the fixed run settings), ``workload``
(data sets and publishing), ``brokers`` (the run's broker and topics, over
:mod:`creatorpulse.brokers`), ``processes`` (worker and baseline subprocesses, waits),
``sections`` (the measurements), ``baseline`` (the textbook Faust agent, a program of its
own), ``figures`` and ``machine`` (pure numbers, machine facts), ``report`` (the table and
the JSON) and ``command`` (the entry point). The pure parts are unit-tested in
``tests/unit/test_bench.py``.

This file imports nothing: ``python -m creatorpulse.bench.baseline`` loads the package
first, and the baseline's start-up should not pay for the rest.
"""
