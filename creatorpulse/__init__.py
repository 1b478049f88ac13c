"""creatorpulse: the composition root over schemas, producers, streams and sinks.

The CLI (``cli``), its settings (``settings``), the glue that starts the pieces
(``runtime``), the brokers it starts (``brokers``: embedded tansu, real Apache Kafka) and
the benchmark (``bench``) live here.
"""
