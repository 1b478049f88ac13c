"""What the worker writes besides its changelog: records for Kafka, rows for a sink.

- :mod:`streams.outputs.topic`: records for the rekey, dead-letter and window-rows topics,
  each kept under the changelog's size bound;
- :mod:`streams.outputs.writer`: the sink writer, which hands rows to a blocking
  ``sinks.base.RowSink`` from the worker's event loop.
"""
