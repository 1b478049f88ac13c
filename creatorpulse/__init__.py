"""creatorpulse: the composition root (CLI, settings, embedded runtime) over schemas, producers, streams and sinks."""
