"""``python -m creatorpulse.bench``: the benchmark without the CLI (``make bench`` uses it)."""

import sys

from creatorpulse.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
