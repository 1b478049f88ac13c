"""Facts about the machine and processes a benchmark runs on: CPU, memory, versions.

The parsers are pure (they take the text of a ``/proc`` file); :func:`machine_info` and
:func:`cpu_s` read the live system.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_s() -> float:
    """CPU seconds this process has used (user + system)."""
    return time.process_time()


def parse_cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return "unknown"


def parse_mem_total_gb(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return round(int(parts[1]) / 1024 / 1024, 1)
    return None


def _status_mb(status: str, field: str) -> float | None:
    for line in status.splitlines():
        if line.startswith(field):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) / 1024
    return None


def parse_vm_hwm_mb(status: str) -> float | None:
    """Peak resident memory (VmHWM) from ``/proc/<pid>/status``, in MiB."""
    return _status_mb(status, "VmHWM:")


def parse_vm_rss_mb(status: str) -> float | None:
    """Resident memory now (VmRSS) from ``/proc/<pid>/status``, in MiB."""
    return _status_mb(status, "VmRSS:")


def rss_mb(pid: int) -> float | None:
    """VmRSS of process ``pid`` in MB; None when it has none to read (it is gone)."""
    return parse_vm_rss_mb(read_proc(f"/proc/{pid}/status"))


def read_proc(path: str) -> str:
    """A ``/proc`` file's text, '' where there is none (not Linux, process gone)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0
    versions: dict[str, str | None] = {}
    for package in ("faust-streaming", "aiokafka", "kafka-python", "chdb", "orjson", "msgspec"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "nproc": nproc,
        "cpu_model": parse_cpu_model(read_proc("/proc/cpuinfo")),
        "ram_gb": parse_mem_total_gb(read_proc("/proc/meminfo")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews every figure; a high load at start says so.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "packages": versions,
    }
