#!/usr/bin/env python3
"""Fetch (Maven) and run a real Apache Kafka on 127.0.0.1: ``fetch`` or ``run [--port N]``.

The code lives in ``creatorpulse.brokers.apache`` (``python -m creatorpulse.brokers.apache``
does the same); this script puts the checkout first on ``sys.path`` so it also runs with an
interpreter that has no creatorpulse installed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from creatorpulse.brokers.apache import main

if __name__ == "__main__":
    sys.exit(main(prog="kafka_launcher.py"))
