"""The stream processors: decode, dedup, snapshot -> delta, event-time windows.

Pure rules live in ``windows`` and ``state``; ``app`` wires them to Faust.
"""
