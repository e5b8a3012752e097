"""What a stream run reports: the result `featurelake stream` returns, summed over its
micro-batches, and the progress of the micro-batches since the last `runs` row, as that row's
params. Records only, apart from featurelake.streaming, which runs the micro-batches."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from featurelake.definitions import DEFAULT_LATENESS
from featurelake.records import RunStatus, worse

if TYPE_CHECKING:
    from featurelake.definitions import FeatureGroup


@dataclass
class StreamResult:
    """What one `stream` call did, summed over its micro-batches."""

    group: str
    topic: str
    checkpoint: str
    query_id: Optional[str] = None
    status: str = RunStatus.SUCCEEDED
    batches: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rows_quarantined: int = 0
    items_written: int = 0
    not_newer: int = 0
    late_rows: int = 0
    """Rows older than the group's newest event minus allowed_lateness: written offline, counted."""
    phase_seconds: dict = field(default_factory=dict)
    """Seconds spent in each phase of the micro-batches (read, validate, merge, online), summed."""
    delta_version: Optional[int] = None
    runs: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    error: Optional[str] = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.WARNED)

    def summary(self) -> str:
        version = f"Delta version @{self.delta_version}" if self.delta_version is not None else "no new version"
        lines = [f"{self.group}: {self.status}, topic {self.topic}: {self.batches} micro-batches, {self.rows_read} "
                 f"messages read, {self.rows_written} rows written ({version}), {self.rows_rejected} rejected "
                 f"(not parsable), {self.rows_quarantined} quarantined, {self.items_written} items online "
                 f"({self.not_newer} not newer than online), {self.late_rows} late, {self.duration_s:.1f}s"]
        lines += [f"  - {f}" for f in self.failures[:20]]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def worsen(self, status: str) -> None:
        """Keeps the worst status of the stream's progress records."""
        if worse(status, self.status):
            self.status = status


@dataclass
class Period:
    """The micro-batches since the last progress record: what its `runs` row's params say."""

    batches: int = 0
    late_rows: int = 0
    batch_s: float = 0.0
    batch_s_max: float = 0.0
    phases: dict = field(default_factory=dict)

    def add(self, seconds: float, marks: dict) -> None:
        self.batches += 1
        self.batch_s += seconds
        self.batch_s_max = max(self.batch_s_max, seconds)
        for phase, s in marks.items():
            self.phases[phase] = round(self.phases.get(phase, 0.0) + s, 2)

    def params(self, group: "FeatureGroup", newest_us: Optional[int]) -> dict:
        newest = None if newest_us is None else datetime.fromtimestamp(newest_us / 1e6, tz=timezone.utc).isoformat()
        return {"batches": self.batches, "late_rows": self.late_rows,
                "allowed_lateness": group.allowed_lateness_text or DEFAULT_LATENESS,
                "batch_seconds": round(self.batch_s, 3), "batch_seconds_max": round(self.batch_s_max, 3),
                "phase_seconds": self.phases, "newest_event": newest}


def query_params(progress: Optional[dict]) -> dict:
    """What a progress record says of the streaming query, from its lastProgress (None before
    the first micro-batch): the source's end offsets and lag, the input rate, the durations."""
    if not progress:
        return {}
    source = (progress.get("sources") or [{}])[0]
    return {"offsets": source.get("endOffset"), "lag": source.get("metrics"),
            "input_rows_per_second": progress.get("inputRowsPerSecond"), "durations_ms": progress.get("durationMs")}
