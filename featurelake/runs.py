"""Ingest runs: the result a caller gets, the row the catalogue keeps, and the incremental state
(JDBC watermark, Delta version, finished backfill chunks) read back from earlier runs."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from featurelake.catalog import current_user, new_id, now
from featurelake.records import ADVANCING, WROTE, Run, RunStatus, worse

if TYPE_CHECKING:
    from featurelake.catalog import Catalog

@dataclass
class IngestResult:
    """The outcome of one ingest (or dry run) of one group; ok is False for a quarantined or failed
    batch, and the CLI exits 1 then."""

    group: str
    run_id: str
    status: str = RunStatus.SUCCEEDED
    kind: str = "ingest"
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    files_read: Optional[int] = None
    delta_version: Optional[int] = None
    window: Optional[str] = None
    watermark: Optional[str] = None
    source_version: Optional[int] = None
    failures: list = field(default_factory=list)
    error: Optional[str] = None
    duration_s: float = 0.0
    parent_run_id: Optional[str] = None
    backfill_id: Optional[str] = None
    chunks: list = field(default_factory=list)
    rows_rejected: int = 0
    """Source records whose values do not parse as their declared types (in the rejected table)."""
    rows_out_of_range: int = 0
    """Rows quarantined because their event time is outside the plausible range (in rows_quarantined)."""
    duplicates_collapsed: int = 0
    """Rows that shared their entity key and event time with another row of the batch: one is kept."""
    files_rejected: list = field(default_factory=list)
    """Files set aside whole (unreadable, or missing a declared column): {"file", "kind", "reason"}."""
    files_empty: int = 0
    notes: list = field(default_factory=list)
    """Things said once per run, e.g. that naive timestamps were taken as UTC."""

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def contract(self) -> dict:
        """What the data contract at the door set aside or noticed, for the run's catalogue row."""
        return {k: v for k, v in (("rows_rejected", self.rows_rejected), ("rows_out_of_range", self.rows_out_of_range),
                                  ("duplicates_collapsed", self.duplicates_collapsed),
                                  ("files_rejected", self.files_rejected), ("files_empty", self.files_empty),
                                  ("notes", self.notes)) if v}

    def _contract_text(self) -> str:
        parts = [f"{self.rows_rejected} rejected (values not of their declared type, or log lines not matching "
                 f"the pattern)" if self.rows_rejected else "",
                 f"{self.rows_out_of_range} out of the event-time range" if self.rows_out_of_range else "",
                 f"{self.duplicates_collapsed} duplicates collapsed" if self.duplicates_collapsed else "",
                 f"{len(self.files_rejected)} file(s) rejected" if self.files_rejected else "",
                 f"{self.files_empty} empty file(s)" if self.files_empty else ""]
        return "".join(f", {p}" for p in parts if p)

    @property
    def ok(self) -> bool:
        return self.status in WROTE or self.status == RunStatus.VALID

    def worsen(self, status: str) -> None:
        """Keeps the worst status seen over the batches of a run."""
        if worse(status, self.status):
            self.status = status

    def summary(self) -> str:
        """One line, then one per failed expectation with its observed value."""
        if self.kind == "validate":
            head = (f"{self.group}: {self.status}, {self.rows_read} rows checked ({self.window or 'pending'}), "
                    f"{len(self.failures)} failed expectation(s)")
        else:
            version = f"Delta version @{self.delta_version}" if self.delta_version is not None else "no new version"
            head = (f"{self.group}: {self.status}, {self.rows_read} read, {self.rows_written} written ({version}), "
                    f"{self.rows_quarantined} quarantined{self._contract_text()}, {self.duration_s:.1f}s, "
                    f"run {self.run_id}")
            if self.status == RunStatus.QUARANTINED:
                head += (f"; fix the data or the suite, then `featurelake ingest {self.group} --from-quarantine "
                         f"{self.run_id}`")
        lines = [head] + [f"  - {describe_failure(f)}" for f in self.failures]
        lines += [f"  - file {f['file']} {f['reason']}: set aside" for f in self.files_rejected]
        lines += [f"  note: {n}" for n in self.notes]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def describe_failure(failure: Any) -> str:
    """'expect_column_values_to_be_between(amount): 3 unexpected of 10 rows, e.g. [-1.0]'."""
    if not isinstance(failure, dict):
        return str(failure)
    if "expectation" in failure and "kwargs" in failure:
        from featurelake.validation import describe_failure as describe

        return describe(failure)
    kind = failure.get("expectation_type") or failure.get("expectation") or failure.get("type") or "expectation"
    column = failure.get("column") or (failure.get("kwargs") or {}).get("column")
    observed = next((failure[k] for k in ("observed", "observed_value", "result") if k in failure), None)
    text = f"{kind}({column})" if column else str(kind)
    return f"{text}: observed {observed}" if observed is not None else text


class RunClock:
    """Start time and id of a run, and the catalogue row it becomes."""

    def __init__(self, group: str, kind: str, run_id: Optional[str] = None):
        self.started_at, self._t0 = now(), time.monotonic()
        self.result = IngestResult(group=group, run_id=run_id or new_id("run"), kind=kind)
        self.validation: list[dict] = []
        """Each batch's validation result, as validate_batch(...).to_dict() gives it."""
        self.params: dict = {}
        """Parameters the transform fitted (means, quantiles), recorded with the run."""

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def finish(self) -> IngestResult:
        self.result.duration_s = round(self.elapsed(), 3)
        return self.result

    def record(self, group_version: Optional[int]) -> Run:
        r = self.result
        return Run(run_id=r.run_id, group=r.group, group_version=group_version, kind=r.kind, status=r.status,
                   started_at=self.started_at, ended_at=now(), duration_s=r.duration_s, window=r.window,
                   rows_read=r.rows_read, rows_written=r.rows_written, rows_quarantined=r.rows_quarantined,
                   delta_version=r.delta_version, validation=self.validation or None, params=self.params or None,
                   error=r.error, user=current_user(), watermark=r.watermark, source_version=r.source_version,
                   parent_run_id=r.parent_run_id, backfill_id=r.backfill_id, files_read=r.files_read,
                   contract=r.contract() or None)


class RunLog:
    """The runs of one group in the catalogue."""

    def __init__(self, catalog: "Catalog", group: str):
        self.catalog, self.group = catalog, group

    def _runs(self) -> Any:
        from pyspark.sql import functions as F

        return self.catalog.read("runs").where(F.col("group") == self.group)

    def last_state(self) -> tuple[Optional[str], Optional[int]]:
        """(watermark, source version) of the latest incremental run that dealt with its batch."""
        from pyspark.sql import functions as F

        row = (self._runs().where((F.col("kind") == "ingest") & F.col("status").isin(*map(str, ADVANCING))
                                  & (F.col("watermark").isNotNull() | F.col("source_version").isNotNull()))
               .orderBy(F.col("ended_at").desc()).select("watermark", "source_version").first())
        return (row["watermark"], row["source_version"]) if row else (None, None)

    def finished_windows(self, backfill_prefix: str) -> dict[str, set[str]]:
        """backfill id -> windows it finished, for the backfills whose id starts with the prefix."""
        from pyspark.sql import functions as F

        rows = (self._runs().where(F.col("backfill_id").startswith(backfill_prefix)
                                   & F.col("status").isin(*map(str, WROTE)))
                .select("backfill_id", "window").collect())
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["backfill_id"], set()).add(r["window"])
        return out

    def get(self, run_id: str) -> Optional[dict]:
        from pyspark.sql import functions as F

        row = self._runs().where(F.col("run_id") == run_id).first()
        return row.asDict() if row else None

    def by_id(self) -> dict[str, dict]:
        return {r["run_id"]: r for r in (x.asDict() for x in self._runs().collect())}
