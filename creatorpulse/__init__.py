"""creatorpulse: the composition root over schemas, producers, streams and sinks.

The CLI (``cli``), its settings (``settings``), the glue that starts the pieces
(``runtime``) and the embedded broker (``embedded``) live here.
"""
