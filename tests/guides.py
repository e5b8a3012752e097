"""Reading the guides' fenced code blocks, for the tests that check and follow them."""
from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(doc: Path) -> list[tuple[str, str, int]]:
    """(info string, code, line number) of every fenced code block."""
    text = doc.read_text()
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def language(info: str) -> str:
    return info.split()[0].lower() if info else ""


def title(info: str) -> str | None:
    m = re.search(r"\btitle=(\S+)", info)
    return m.group(1) if m else None
