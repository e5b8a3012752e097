"""Freshness: is each group's newest data recent enough for its `freshness_sla`?

The lag is now minus the newest event time in the offline table: what a model reading the
group sees. The last successful ingest and export come from the catalogue, to tell "the source
stopped sending" (ingest runs, no new events) from "the job stopped running" (no runs). A partial
export (some items written, some refused) counts as the last export, with a note: its items are
online.

A group over a Kafka topic is kept online by its stream, not by exports: its line shows the
stream's last progress record instead (kind "stream" in `runs`, written at most every
`record_every` seconds): micro-batches, messages, late rows, and how far behind the topic's end
Spark's last micro-batch was (offsets)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Collection, Optional, Sequence

from featurelake.records import ONLINE, WROTE, Export, ExportStatus, Run

from featurelake.monitoring.report import MonitorReport, human_duration
from featurelake.spark import one_row

if TYPE_CHECKING:
    from featurelake.definitions import FeatureGroup
    from featurelake.store import FeatureStore

@dataclass
class GroupFreshness:
    group: str
    sla: Optional[timedelta]
    sla_text: Optional[str]
    online: bool
    newest_event: Optional[datetime] = None
    lag: Optional[timedelta] = None
    offline_version: Optional[int] = None
    last_ingest: Optional[dict] = None
    last_ingest_attempt: Optional[dict] = None
    last_export: Optional[dict] = None
    last_export_attempt: Optional[dict] = None
    stream: Optional[dict] = None
    """A stream group's last progress record: ended_at, status, batches, rows_read, late_rows,
    offsets_behind, batch_seconds_max, newest_event. None for a scheduled group."""
    notes: list = field(default_factory=list)

    @property
    def late(self) -> bool:
        return self.sla is not None and (self.lag is None or self.lag > self.sla)

    @property
    def ok(self) -> bool:
        return not self.late

    @property
    def alerts(self) -> list[str]:
        if not self.late:
            return []
        if self.lag is None:
            return [f"{self.group} has no data (SLA {self.sla_text})"]
        return [f"{self.group} is late: newest event {human_duration(self.lag.total_seconds())} old "
                f"> SLA {self.sla_text}"]

    @property
    def status(self) -> str:
        return "late" if self.late else "no SLA" if self.sla is None else "fresh"

    def summary(self) -> str:
        ingest = self.last_ingest or {}
        export = self.last_export or {}
        line = (f"{self.group:<24} {self.status.upper():<6} lag {human_duration(_s(self.lag)):>7} "
                f"/ SLA {self.sla_text or '-':<4} newest event {_t(self.newest_event)}  ")
        if self.stream is not None:
            s = self.stream
            behind = s.get("offsets_behind")
            line += (f"stream {s.get('status')} at {_t(s.get('ended_at'))}: {s.get('batches')} micro-batches, "
                     f"{s.get('rows_read')} messages, {s.get('late_rows')} late, "
                     f"{'?' if behind is None else behind} offsets behind, slowest batch {s.get('batch_seconds_max')}s")
        else:
            line += (f"last ingest {_t(ingest.get('ended_at'))}  "
                     f"last export {_t(export.get('as_of')) if self.online else 'n/a (offline only)'}")
        return "\n".join([line] + [f"    note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return {"group": self.group, "ok": self.ok, "status": self.status, "late": self.late,
                "sla": self.sla_text, "sla_seconds": _s(self.sla), "lag_seconds": _s(self.lag),
                "newest_event": self.newest_event, "offline_version": self.offline_version, "online": self.online,
                "last_ingest": self.last_ingest, "last_ingest_attempt": self.last_ingest_attempt,
                "last_export": self.last_export, "last_export_attempt": self.last_export_attempt,
                "stream": self.stream, "notes": self.notes}


def freshness(store: "FeatureStore", groups: Optional[Sequence[str]] = None,
              now: Optional[datetime] = None) -> MonitorReport:
    """One result per group (all of the repository's when groups is None); report.ok is False
    when a group with a freshness_sla is late or has no data."""
    from featurelake.catalog import now as utcnow

    now = now or utcnow()
    names = [g.name for g in store.repo.ordered(list(groups) if groups else None)]
    runs = _latest(store, Run, names, ("ended_at", "started_at"),
                   ["run_id", "status", "started_at", "ended_at", "rows_written", "delta_version", "kind"],
                   written=WROTE)
    exports = _latest(store, Export, names, ("as_of", "started_at"),
                      ["export_id", "status", "as_of", "started_at", "to_version", "items_written", "table_name",
                       "error"], written=ONLINE)
    streams = _streams(store, [n for n in names if store.group(n).streamed])
    results = []
    for name in names:
        g = store.group(name)
        r = GroupFreshness(name, g.freshness_sla, g.freshness_sla_text, bool(g.online))
        if g.streamed:
            r.stream = streams.get(name)
        r.offline_version, newest = _newest_event(store, g)
        if r.offline_version is not None:
            r.newest_event = _utc(newest)
            if r.newest_event is not None:
                r.lag = now - r.newest_event
                if r.lag < timedelta(0):  # a lag is never negative: say what is wrong instead
                    r.notes.append(f"event times ahead of now: the newest event {_t(r.newest_event)} is "
                                   f"{human_duration(-r.lag.total_seconds())} in the future (a source clock or a "
                                   f"placeholder date); lag shown as 0")
                    r.lag = timedelta(0)
        r.last_ingest = runs.get((name, True))
        r.last_ingest_attempt = runs.get((name, False)) or r.last_ingest
        if r.last_ingest and r.last_ingest_attempt and r.last_ingest_attempt["run_id"] != r.last_ingest["run_id"] \
                and _key(r.last_ingest_attempt) > _key(r.last_ingest):
            r.notes.append(f"the last ingest attempt {r.last_ingest_attempt['run_id']} "
                           f"ended {r.last_ingest_attempt['status']}")
        if r.offline_version is None:
            r.notes.append(f"no offline table: run `featurelake ingest {name}`")
        elif r.last_ingest is None and not g.streamed:
            r.notes.append("no successful ingest run recorded in the catalogue")
        if g.streamed:
            if r.stream is None:
                r.notes.append(f"no stream progress recorded: run `featurelake stream {name}`")
        elif r.online:
            r.last_export = exports.get((name, True))
            r.last_export_attempt = exports.get((name, False)) or r.last_export
            r.notes += _export_notes(name, r.last_export, r.last_export_attempt)
            if r.last_export is None and r.last_export_attempt is None and r.offline_version is not None:
                r.notes.append(f"never exported: run `featurelake export {name}`")
            elif r.last_export and r.last_export.get("to_version") is not None and r.offline_version is not None \
                    and r.last_export["to_version"] < r.offline_version:
                r.notes.append(f"online store behind: exported up to version {r.last_export['to_version']}, "
                               f"offline is at {r.offline_version}")
        ended = _utc(r.last_ingest.get("ended_at")) if r.last_ingest else None
        if r.late and r.lag is not None and ended is not None and r.sla is not None and now - ended <= r.sla:
            r.notes.append("ingest runs on time but brings no newer events: check the source")
        results.append(r)
    return MonitorReport("freshness", results, generated_at=now, params={"groups": names})


def _streams(store: "FeatureStore", names: list[str]) -> dict:
    """group -> its newest stream progress record (runs of kind stream), in the report's words."""
    if not names:
        return {}
    newest: dict = {}
    for run in store.catalog.records(Run, lambda r: r.group in names and r.kind == "stream"):
        when = run.ended_at or run.started_at
        if when is not None and (run.group not in newest or when >= newest[run.group][0]):
            newest[run.group] = (when, run)
    out = {}
    for name, (when, run) in newest.items():
        params = run.params or {}
        lag = params.get("lag") or {}
        behind = lag.get("maxOffsetsBehindLatest") if isinstance(lag, dict) else None
        out[name] = {"run_id": run.run_id, "ended_at": when, "status": run.status, "rows_read": run.rows_read,
                     "rows_written": run.rows_written, "batches": params.get("batches"),
                     "late_rows": params.get("late_rows"),
                     "offsets_behind": None if behind is None else int(float(behind)),
                     "batch_seconds_max": params.get("batch_seconds_max"), "newest_event": params.get("newest_event"),
                     "error": run.error}
    return out


def _export_notes(group: str, last: Optional[dict], attempt: Optional[dict]) -> list[str]:
    """What the newest exports say beyond their time: a partial one, a failed attempt after it."""
    notes = []
    if last and last.get("status") == ExportStatus.PARTIAL:
        first = (last.get("error") or "").splitlines()[:1]
        notes.append(f"the last export {last['export_id']} was partial: {last.get('items_written') or 0:,} items "
                     f"written, some refused "
                     f"({first[0] if first else 'see `featurelake catalog lineage ' + group + '`'}"
                     f"); fix them and rerun `featurelake export {group}`")
    if attempt and attempt["export_id"] != (last or {}).get("export_id") and \
            (last is None or _export_key(attempt) > _export_key(last)):
        notes.append(f"the last export attempt {attempt['export_id']} ended {attempt['status']}"
                     + (" and no export has completed" if last is None else "")
                     + f": rerun `featurelake export {group}`")
    return notes


def _export_key(row: dict) -> datetime:
    from datetime import timezone

    return _utc(row.get("as_of") or row.get("started_at")) or datetime.min.replace(tzinfo=timezone.utc)


def _newest_event(store: "FeatureStore", group: "FeatureGroup") -> tuple[Optional[int], Optional[datetime]]:
    """(the offline table's version, its newest event time), through delta-rs where it can."""
    from featurelake import lakeread

    path, why = lakeread.offline_reason(store.config, group.name)
    if not why:
        return lakeread.newest(path, store.config, group.timestamp_column)
    from pyspark.sql import functions as F

    table = store.offline(group.name)
    version = table.version()
    return version, None if version is None else one_row(table.read().agg(F.max(group.timestamp_column)))[0]


def _latest(store: "FeatureStore", kind: type[Run] | type[Export], names: list[str], order: tuple[str, ...],
            cols: list[str], written: Collection[str]) -> dict:
    """(group, True) -> newest row whose status is in `written`, by the first non-null of the
    `order` columns, and (group, False) -> newest row of any status."""
    if not names:
        return {}
    out: dict = {}
    for record in store.catalog.records(kind, lambda r: r.group in names):
        row = vars(record)
        when = next((row[c] for c in order if row[c] is not None), None)
        if when is None:
            continue
        for key in ((record.group, True), (record.group, False)) if record.status in written \
                else ((record.group, False),):
            if key not in out or when >= out[key][0]:  # a tie goes to the later row, as Spark's max_by
                out[key] = (when, {c: row[c] for c in cols})
    return {key: row for key, (_, row) in out.items()}


def _key(row: dict) -> datetime:
    from datetime import timezone

    return _utc(row.get("ended_at") or row.get("started_at")) or datetime.min.replace(tzinfo=timezone.utc)


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    """PySpark's collect() gives naive datetimes in the Python process's local time; astimezone
    reads a naive value exactly so."""
    from datetime import timezone

    return None if value is None else value.astimezone(timezone.utc)


def _s(value: Optional[timedelta]) -> Optional[float]:
    return None if value is None else value.total_seconds()


def _t(value: Optional[datetime]) -> str:
    utc = _utc(value)
    return "-" if utc is None else utc.strftime("%Y-%m-%d %H:%M")
