"""``creatorpulse bench`` and ``python -m creatorpulse.bench``: flags in, table and JSON out.

Exit codes: 0 when every section ran, 1 if one failed, 2 on bad flags or setup, 130 when
interrupted (what was measured until then is still printed and written).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.console import Console

from creatorpulse.bench.options import BenchError, parse_args
from creatorpulse.bench.report import console, default_out_path, render_table, write_results
from creatorpulse.bench.sections import run_benchmark


def stop_on_sigterm() -> Any:
    """SIGTERM stops the run like Ctrl-C: workers and broker are stopped, results kept."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``creatorpulse bench``: 0 when every section ran, 1 if one failed, 2 on bad setup."""
    try:
        options = parse_args(argv)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except SystemExit as exc:  # --help, or a flag argparse refused (it printed why)
        return exc.code if isinstance(exc.code, int) else 2
    out = options.out or default_out_path()
    results: dict[str, Any] = {}
    code = 0
    previous = stop_on_sigterm()
    try:
        run_benchmark(replace(options, out=out), results)
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}")
        results.setdefault("errors", {})["setup"] = str(exc)
        code = 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the broker and workers are stopped[/]")
        results["interrupted"] = True
        code = 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if results.get("sections"):
        out_console = Console()
        if not out_console.is_terminal:  # a file or a pipe: do not wrap at 80 columns
            out_console = Console(width=170)
        out_console.print(render_table(results))
    if code == 0 and results.get("errors"):
        code = 1
    write_results(results, out)
    console.print(f"results: {out} ({results.get('duration_s', 0):.0f}s)")
    return code
