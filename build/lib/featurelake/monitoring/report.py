"""The report every monitor check returns: one result per group, ok only when all are ok. The CLI
prints summary() or to_dict() and maps ok to the exit code; html.py renders it as a page."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol


class GroupResult(Protocol):
    group: str

    @property
    def ok(self) -> bool: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict: ...


@dataclass
class MonitorReport:
    check: str  # drift | skew | freshness
    results: list = field(default_factory=list)
    generated_at: datetime = None  # type: ignore[assignment]
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.generated_at is None:
            from featurelake.catalog import now

            self.generated_at = now()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def alerts(self) -> list[str]:
        return [a for r in self.results for a in getattr(r, "alerts", [])]

    def summary(self) -> str:
        body = "\n\n".join(r.summary() for r in self.results) or f"{self.check}: nothing to check"
        verdict = "OK" if self.ok else f"ALERT ({len(self.alerts)}): " + "; ".join(self.alerts)
        return f"{body}\n\n{self.check}: {verdict}"

    def to_dict(self) -> dict:
        return jsonable({"check": self.check, "ok": self.ok, "alerts": self.alerts,
                         "generated_at": self.generated_at, "params": self.params,
                         "results": [r.to_dict() for r in self.results]})

    def __getitem__(self, group: str) -> Any:
        """The result of one group: report["customer_txn"]."""
        for r in self.results:
            if r.group == group:
                return r
        raise KeyError(f"no result for group {group!r} in this {self.check} report "
                       f"(it has {[r.group for r in self.results]})")


def jsonable(value: Any) -> Any:
    """Times as ISO text, durations as seconds, NaN as None: what json.dumps and JS accept."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):  # naive ones come from collect(), in the process's local time
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{sign}{s / size:.1f}{unit}"
    return f"{sign}{s:.0f}s"


def short_time(value: Any) -> str:
    """'2026-01-31 12:00' (UTC) from a datetime or its ISO text; '-' for nothing."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
