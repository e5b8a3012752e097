"""The records of the catalogue's append-only tables (runs, exports, training_sets, usage,
statistics), each a dataclass from which the table's Spark schema is derived, and the statuses
they hold: one spelling each, so that a writer and every reader (freshness, lineage, skew,
history) agree on what "it worked" means. Standard library only: the JVM-free read verbs import it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Mapping, Optional, TypeVar, Union, get_args, get_origin, get_type_hints


class RunStatus(StrEnum):
    """An ingest run (kind ingest) or a dry run (kind validate)."""

    SUCCEEDED = "succeeded"      # validated and written
    WARNED = "warned"            # written; the suite failed under validation.on_failure=warn
    QUARANTINED = "quarantined"  # the batch failed its suite and went to the quarantine table
    FAILED = "failed"            # nothing written: the error says why
    VALID = "valid"              # a dry run whose batch passes
    INVALID = "invalid"          # a dry run whose batch fails
    SKIPPED = "skipped"          # a backfill chunk an earlier attempt already did


WROTE = frozenset({RunStatus.SUCCEEDED, RunStatus.WARNED})


def worse(status: str, than: str) -> bool:
    """Whether `status` is worse than `than`: succeeded < warned < quarantined < failed. A run
    over many batches (an ingest's files, a stream's micro-batches) reports its worst."""
    rank: dict[str, int] = {RunStatus.SUCCEEDED: 0, RunStatus.WARNED: 1, RunStatus.QUARANTINED: 2, RunStatus.FAILED: 3}
    return rank.get(status, 0) > rank.get(than, 0)
"""Runs whose rows are in the offline table."""
ADVANCING = frozenset({RunStatus.SUCCEEDED, RunStatus.WARNED, RunStatus.QUARANTINED})
"""Runs after which the batch is dealt with (written, or set aside): the next run reads past it."""


class ExportStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"          # some items were refused (too large); the rest are online
    FAILED = "failed"
    SKIPPED = "skipped"          # nothing changed since the last export


ONLINE = frozenset({ExportStatus.OK, ExportStatus.PARTIAL})
"""Exports whose items are online, all or some."""


# ---- the records of the append-only catalogue tables ----------------------------------------
# Each dataclass is one table's row; its Spark schema is derived from it (`ddl`), so a column is
# declared once. Fields marked JSON are dicts in Python and JSON text in the table.

BigInt = Annotated[int, "bigint"]
_SQL = {str: "string", int: "int", float: "double", bool: "boolean", datetime: "timestamp"}


def json_field(default: Any = None) -> Any:
    """A dict (or list) in Python, JSON text in the table."""
    return field(default=default, metadata={"json": True})


def ddl(cls: type) -> str:
    """The Spark DDL of a record class: `name type, ...` in field order."""
    hints = get_type_hints(cls, include_extras=True)
    return ", ".join(f"{f.name} {'string' if f.metadata.get('json') else _sql(hints[f.name])}"
                     for f in fields(cls))


def _sql(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return str(args[1])
    if origin is Union:
        return _sql(next(a for a in args if a is not type(None)))
    if origin is list:
        return f"array<{_sql(args[0])}>"
    if origin is dict:
        return f"map<{_sql(args[0])},{_sql(args[1])}>"
    return next(sql for t, sql in _SQL.items() if isinstance(hint, type) and issubclass(hint, t))


class Record:
    """Shared by the record dataclasses: to and from the table's rows."""

    table: ClassVar[str]

    def to_row(self) -> dict:
        return {f.name: (json.dumps(v, default=str, sort_keys=True) if f.metadata.get("json") and v is not None
                         else v) for f in fields(self) for v in [getattr(self, f.name)]}  # type: ignore[arg-type]

    @classmethod
    def from_row(cls: type[R], row: Mapping[str, Any]) -> R:
        """A row as read (Spark or delta-rs); columns the class does not know are ignored, and
        columns an older table lacks take their defaults."""
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in row:
                continue
            v = row[f.name]
            values[f.name] = json.loads(v) if f.metadata.get("json") and isinstance(v, str) else v
        return cls(**values)


R = TypeVar("R", bound=Record)


@dataclass
class Run(Record):
    """An ingest, validate or backfill run (table `runs`)."""

    table: ClassVar[str] = "runs"
    run_id: str
    group: str
    group_version: Optional[int] = None
    kind: str = "ingest"
    status: str = RunStatus.FAILED
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    duration_s: Optional[float] = None
    window: Optional[str] = None
    rows_read: Optional[BigInt] = None
    rows_written: Optional[BigInt] = None
    rows_quarantined: Optional[BigInt] = None
    delta_version: Optional[BigInt] = None
    validation: Optional[Any] = json_field()  # the suite's results: a list of expectations
    params: Optional[dict] = json_field()
    error: Optional[str] = None
    user: Optional[str] = None
    watermark: Optional[str] = None
    source_version: Optional[BigInt] = None
    parent_run_id: Optional[str] = None
    backfill_id: Optional[str] = None
    files_read: Optional[BigInt] = None
    contract: Optional[dict] = json_field()


@dataclass
class Export(Record):
    """An export of a group to DynamoDB (table `exports`)."""

    table: ClassVar[str] = "exports"
    export_id: str
    group: str
    group_version: Optional[int] = None
    from_version: Optional[BigInt] = None
    to_version: Optional[BigInt] = None
    as_of: Optional[datetime] = None
    rows: Optional[BigInt] = None
    items_written: Optional[BigInt] = None
    bytes_written: Optional[BigInt] = None
    duration_s: Optional[float] = None
    status: str = ExportStatus.FAILED
    error: Optional[str] = None
    table_name: Optional[str] = None
    started_at: Optional[datetime] = None
    user: Optional[str] = None


@dataclass
class TrainingSetManifest(Record):
    """What a training set read and how (table `training_sets`): enough to replay it exactly."""

    table: ClassVar[str] = "training_sets"
    id: str
    created_at: datetime
    user: Optional[str] = None
    spine_fingerprint: Optional[str] = None
    spine_rows: Optional[BigInt] = None
    timestamp_column: Optional[str] = None
    features: list[str] = field(default_factory=list)
    group_versions: dict = json_field(None)
    table_versions: dict = json_field(None)
    options: dict = json_field(None)
    spine_path: Optional[str] = None


@dataclass
class Usage(Record):
    """One use of a group, feature, training set or table (table `usage`)."""

    table: ClassVar[str] = "usage"
    ts: datetime
    user: str
    action: str
    object: str
    detail: Optional[Any] = json_field()  # a dict, or any JSON value


@dataclass
class Statistic(Record):
    """One feature's statistics in a scope: a batch, a table version, a training set (table `statistics`)."""

    table: ClassVar[str] = "statistics"
    scope: str
    scope_id: str
    group: Optional[str]
    feature: str
    computed_at: datetime
    stats: dict = json_field(None)


RECORDS: dict[str, type[Record]] = {c.table: c for c in (Run, Export, TrainingSetManifest, Usage, Statistic)}
