"""The results: one table on the console, bench/results/<scale>-<timestamp>.json, and the
generated section of bench/RESULTS.md for the scale (between its markers; the hand-written
notes around it are kept)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from bench.common import Row, machine_line

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"
HEADER = ["workload", "case", "against", "featurelake", "other", "ratio", "target", "result"]


def cell(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "B":
        return f"{value:.0f} B"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.3g} {unit}"


def cells(r: Row) -> list[str]:
    ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
    return [r.workload, r.case, r.against, cell(r.featurelake, r.unit), cell(r.other, r.unit), ratio, r.target,
            r.verdict]


def console_table(rows: Sequence[Row]) -> str:
    table = [HEADER] + [cells(r) for r in rows]
    widths = [min(max(len(line[i]) for line in table), 48) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(c[:widths[i]].ljust(widths[i]) for i, c in enumerate(line)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        c = cells(r)
        c[-1] = f"**{c[-1]}**" if c[-1] in ("miss", "FAIL (wrong)", "ERROR") else c[-1]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str))


def update_results_md(scale: str, rows: Sequence[Row], machine: dict, meta: dict, json_name: str) -> None:
    """Replaces, for each workload that ran, its generated section of RESULTS.md for this scale
    (appended the first time), so that a partial run (--workloads 3) leaves the others alone."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n\n"
    by_workload: dict[str, list] = {}
    for r in rows:
        by_workload.setdefault(r.workload.split()[0], []).append(r)
    for w, wrows in sorted(by_workload.items()):
        start, end = f"<!-- bench:{scale}:w{w}:start -->", f"<!-- bench:{scale}:w{w}:end -->"
        notes: list[str] = []
        for r in wrows:
            for n in r.notes:  # a case's checks are on each of its rows: list them once
                line = f"- {r.case}: {n}"
                if n and line not in notes:
                    notes.append(line)
            if r.error:
                notes.append(f"- {r.case}: ERROR {r.error}")
        body = "\n".join([
            start,
            f"#### Workload {wrows[0].workload} at scale `{scale}` ({meta['finished']})",
            "",
            f"{meta['runs']} runs per measurement (median), sides alternating; Spark local[2], 8 shuffle partitions, "
            f"driver memory {meta['driver_memory']} on both sides. Machine: {machine_line(machine)}; load average "
            f"{machine['load_avg_end'][0]:.1f} at the end. Raw numbers: `bench/results/{json_name}`.",
            "",
            markdown_table(wrows),
            "",
            "<details><summary>checks and notes</summary>",
            "",
            *notes,
            "",
            "</details>",
            end,
        ])
        if start in text and end in text:
            text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _, body=body: body, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + body + "\n"
    RESULTS_MD.write_text(text)
