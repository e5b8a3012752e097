"""The process table, read from /proc: the fault and cluster tests watch processes they start."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...) of each
    live process; one that ends while being read is skipped."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(stat.parent.name), fields
