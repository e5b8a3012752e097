"""The process table, read from /proc: the fault and cluster tests watch processes they start."""
from __future__ import annotations

import os
from typing import Iterator


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...) of each
    live process; one that ends while being read is skipped (not Path.glob, which raises when a
    process ends between listing /proc and looking into its folder)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(name), fields
