"""`featurelake export`: the newest row of every entity (offline as-of rule, at the export's end) ->
one DynamoDB item per key, written from the executors (a small increment from the driver).

Newer wins, and how. DynamoDB's BatchWriteItem cannot be conditional, so the one per-item guard
is PutItem (or UpdateItem) with `ConditionExpression: attribute_not_exists(pk) OR _event_ts <=
:ts`. Measured on this 2-core machine against dynalite (10k items of 10 doubles):
    BatchWriteItem, 25 items a request, 8 threads:        ~3,050 items/s (the floor of issue 7)
    conditional PutItem through boto3, 8-32 threads:      ~400-620 items/s
    conditional PutItem, raw http.client, 2 processes:    ~900 items/s
Per-item requests are 3.5-5x slower, far outside the 1.3x target (and on AWS each is one more
round trip). So the export writes with BatchWriteItem, and exports of a group take turns under a
lease (featurelake.online.table): an export takes the lease before it fixes its end time and
reads the offline table's newest version, so it writes data at least as new as every export
before it; an export still running makes the next one wait; a task whose export lost its lease
stops at its next check.

Incremental by default: the table's metadata item records the last export (Delta version and
end time) next to the items it describes; a table deleted or recreated has none, so its next
export is full by itself. See featurelake.online.snapshot for which keys an increment rewrites,
and when it compares the changed rows with the items online instead of scanning the table (its
cost then follows the change, not the table: issue 7 wants an increment of 1% in 5% of the time).
The catalogue's `exports` table records every export, and `usage` the table's creation.
"""
from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from featurelake.catalog import current_user, new_id, now
from featurelake.errors import FeaturelakeError, JobError, NotFoundError, UsageError, root_message
from featurelake.online import codec
from featurelake.online.snapshot import (Since, change_feed_gone, column_dtypes, driver_increment, export_frame,
                                         increment_frame, online_features, only_additions, rows_ahead)
from featurelake.online.table import Lease, ensure_table, read_meta, refusal, write_meta
from featurelake.online.writer import COUNTERS_SCHEMA, make_client, merged, write_batches, write_partition
from featurelake.records import Export, ExportStatus
from featurelake.services import publish as publish_services

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from featurelake.definitions import FeatureGroup
    from featurelake.offline import OfflineTable
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.online")


@dataclass
class ExportResult:
    group: str
    export_id: str
    table_name: str
    status: str = ExportStatus.RUNNING
    mode: str = ""                   # full | incremental
    from_version: Optional[int] = None
    to_version: Optional[int] = None
    as_of: Optional[datetime] = None
    rows: int = 0                    # entity rows the export considered
    items_written: int = 0
    bytes_written: int = 0           # DynamoDB's item-size accounting (what write units bill)
    too_large: int = 0
    not_newer: int = 0               # increments: rows older than (or equal to) the item online
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    created_table: bool = False
    waited_s: float = 0.0            # waiting for another export's lease
    duration_s: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds per phase, for benchmarks

    @property
    def ok(self) -> bool:
        return self.status in (ExportStatus.OK, ExportStatus.SKIPPED)

    def summary(self) -> str:
        if self.status == ExportStatus.SKIPPED:
            return f"{self.group}: skipped ({'; '.join(self.notes)})"
        head = f"{self.group}: {self.status}"
        if self.as_of and self.from_version is not None and self.to_version is not None:
            versions = (f"Delta versions @{self.from_version}..@{self.to_version}"
                        if self.from_version <= self.to_version
                        else f"Delta version @{self.to_version} (no commit since the last export)")
            head += (f": {self.mode} export of {versions} as of {self.as_of:%Y-%m-%d %H:%M:%S} UTC: "
                     f"{self.items_written:,} items ({self.bytes_written:,} bytes) to {self.table_name} in "
                     f"{self.duration_s:.1f}s" + (f"; {self.not_newer:,} rows not newer than online" if self.not_newer
                                                  else ""))
        return "\n".join([head] + [f"  error: {e}" for e in self.errors] + [f"  note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        return out


class _Marks:
    """Seconds spent per phase, from one mark to the next."""

    def __init__(self) -> None:
        self.times: dict = {}
        self.last = time.monotonic()

    def __call__(self, phase: str) -> None:
        t = time.monotonic()
        self.times[phase] = round(t - self.last, 3)
        self.last = t


def export(store: "FeatureStore", group_name: str, *, full: bool = False,
           items_per_s: Optional[float] = None) -> ExportResult:
    """Writes the group's online table. Incremental unless `full` (or nothing was exported yet, or
    the group's online shape changed). `items_per_s` caps each Spark task's write rate (for a
    provisioned table)."""
    started, t0, mark = now(), time.monotonic(), _Marks()
    group = store.group(group_name)
    dyn = store.config.online.dynamodb
    result = ExportResult(group=group.name, export_id=new_id("export"), table_name=f"{dyn.table_prefix}{group.name}")
    if not group.online:
        result.status = ExportStatus.SKIPPED
        result.notes.append("the group sets online=False")
        return result
    offline = store.offline(group.name)
    if not offline.exists():
        verb = "stream" if group.streamed else "ingest"
        raise NotFoundError(f"feature group {group.name!r} has no offline table yet: run "
                            f"`featurelake {verb} {group.name}` before exporting it")
    features, held = online_features(group)
    if held:
        result.notes.append(f"PII features kept offline: {', '.join(held)} (set allow_online_pii=True to export)")
    client = driver_client(dyn.region, dyn.endpoint_url, store.config.ca_bundle())
    group_version: Optional[int] = None
    try:
        result.created_table = ensure_table(client, result.table_name, ttl=group.ttl is not None)
        mark("table")
        group_version = _group_version(store, group, None if result.created_table else
                                       read_meta(client, result.table_name))
        mark("catalog_read")
        if result.created_table:
            store.catalog.audit("create_online_table", result.table_name, {
                "group": group.name, "group_version": group_version, "billing": "PAY_PER_REQUEST",
                "partition_key": "pk (S)", "ttl_attribute": codec.EXPIRES_AT if group.ttl else None,
                "region": dyn.region, "endpoint_url": dyn.endpoint_url})
        local = (store.spark.sparkContext.master or "").startswith("local")
        with Lease(client, result.table_name, result.export_id, lease_s=dyn.lease_s, wait_s=dyn.lock_wait_s,
                   local_mode=local) as lease:
            result.waited_s = lease.waited_s
            mark("lease")
            notes = list(result.notes)
            try:
                _export_locked(store, group, group_version, features, client, lease, result, full=full,
                               items_per_s=items_per_s, mark=mark)
            except Exception as exc:  # an increment whose change data feed is gone: do a full one
                gone = _increment_feed_gone(exc, result)
                if gone is None:
                    raise
                log.warning("export %s of %s: %s: exporting in full instead", result.export_id, group.name, gone)
                result.notes = notes + [f"{gone}: a full export instead"]
                _export_locked(store, group, group_version, features, client, lease, result, full=True,
                               items_per_s=items_per_s, mark=mark)
        result.notes += publish_services(store, group, client)
    except Exception as exc:
        result.status = ExportStatus.FAILED
        result.errors.append(str(exc))
        result.duration_s = time.monotonic() - t0
        _record(store, result, group_version, started)
        result.timings = mark.times
        if isinstance(exc, FeaturelakeError):
            raise
        raise JobError(f"export of {group.name!r} to {result.table_name} failed: {root_message(exc)}"
                       f"{refusal(client, exc)}") from exc
    mark("release")
    result.duration_s = time.monotonic() - t0
    _record(store, result, group_version, started)
    mark("catalog_record")
    result.timings = mark.times
    return result


@functools.lru_cache(maxsize=8)
def driver_client(region: str, endpoint_url: Optional[str], ca_bundle: Optional[str] = None) -> Any:
    """The driver's boto3 client for an endpoint, built once per process: building one parses its
    service model, ~0.2 s, 7% of an incremental export of 1,000 keys. boto3 clients are thread-safe,
    and refresh expiring credentials (roles, SSO) themselves."""
    return make_client(region, endpoint_url, verify=ca_bundle)


def _group_version(store: "FeatureStore", group: "FeatureGroup", meta: Optional[dict]) -> int:
    """The registered version of the group's code, which must be the current one (after a rollback
    the repository's code may be another), of a group not deprecated, whose online features all
    hold values (none waits for a backfill: the export would serve it empty)."""
    from featurelake.lifecycle import check_served

    state = store.catalog.current([group])[group.name]
    features, _ = online_features(group)
    aggs = {n: a.column for a in group.aggregations for n in a.feature_names()}
    columns = list(dict.fromkeys(aggs.get(f.name, f.name) for f in features))
    check_served(group.name, state, columns)
    latest = store.offline(group.name).latest()
    missing = [c for c in columns if c not in set(latest[1].names if latest else [])]
    if missing:
        raise UsageError(f"feature group {group.name!r}: the offline table holds no column {', '.join(missing)} "
                         f"yet, and the export would serve it empty: run `featurelake backfill {group.name}` first")
    return int(state["version"])


def _increment_feed_gone(exc: BaseException, result: ExportResult) -> Optional[str]:
    """For an incremental export, Delta's error that the change data feed it reads is gone, said in
    words; None for a full export or any other error."""
    if result.mode != "incremental" or result.from_version is None or result.to_version is None \
            or result.as_of is None:
        return None
    return change_feed_gone(exc, Since(result.from_version - 1, result.as_of), result.to_version)


def _export_locked(store: "FeatureStore", group: "FeatureGroup", group_version: int, features: list, client: Any,
                   lease: Lease, result: ExportResult, *, full: bool, items_per_s: Optional[float],
                   mark: Callable[[str], None]) -> None:
    """Under the lease: fix the end time and the Delta version, decide full or incremental, write."""
    dyn = store.config.online.dynamodb
    offline = store.offline(group.name)
    end = datetime.now(timezone.utc)
    meta = read_meta(client, result.table_name)
    last = (meta or {}).get("last")
    if last:
        last_end = datetime.fromisoformat(last["as_of"])
        if last_end > end:  # this clock is behind the last exporter's: never go back in time
            result.notes.append(f"clock behind the last export's end {last_end}: exporting as of that instead")
            end = last_end
    latest = offline.latest()
    if latest is None:  # there was one when the export began: deleted since
        raise JobError(f"feature group {group.name!r}: its offline table is gone: run `featurelake ingest "
                       f"{group.name}`, then export again")
    version, schema = latest
    spec = online_spec(group, group_version, schema, features)
    keys, feats = spec["keys"], spec["features"]
    mark("snapshot")
    since = None
    if meta is not None and last and not full:
        if last["to_version"] > version:
            raise JobError(f"online table {result.table_name} was last exported from Delta version "
                           f"{last['to_version']}, newer than the offline table's {version}: does another lake "
                           f"write to the same table_prefix? Fix the config, or pass --full to rewrite it")
        if same_shape(meta["spec"], spec):
            since = Since(int(last["to_version"]), datetime.fromisoformat(last["as_of"]))
        else:
            result.notes.append("the group's online shape changed since the last export: full export")
    result.mode = "incremental" if since else "full"
    result.from_version = since.version + 1 if since else 0
    result.to_version, result.as_of = version, end
    # a full export forgets the last one first: if it fails half-way, the next export is full too
    write_meta(client, result.table_name, spec, last if since else None, group.fingerprint,
               filling=meta is None or meta["filling"])
    commits = offline.commits(since.version, version) if since is not None and not spec["aggregations"] else None
    compare = (since is not None and commits is not None and len(commits) == version - since.version
               and only_additions(commits))
    # unknown (not recorded by the last export) counts as ahead: the increment then looks for them
    window = not compare or (last or {}).get("rows_ahead") is not False
    on_driver = (driver_increment(offline, group, features, schema, commits or [], version=version, end=end,
                                  since=since) if since is not None and compare and not window else None)
    mark("plan")
    writer_spec = {"group": group.name, "table": result.table_name, "region": dyn.region,
                   "endpoint_url": dyn.endpoint_url, "ca_bundle": store.config.ca_bundle(), "keys": keys,
                   "features": feats,
                   "ttl_s": spec["ttl_s"], "lease_token": lease.token, "check_every": 5.0,
                   "as_of_ms": codec.micros_to_ms_text(codec.datetime_to_micros(end)) if spec["aggregations"] else None,
                   "concurrency": dyn.write_concurrency, "max_rounds": 10, "items_per_s": items_per_s,
                   "compare": compare}
    any_ahead: Optional[bool]
    if on_driver is not None:
        result.notes.append("increment: the changed rows, read on the driver, each written only where newer than "
                            "its item online")
        rows, any_ahead = on_driver
        value = merged([write_partition(iter(rows), writer_spec)])
    else:
        value, any_ahead = _spark_write(store, group, features, offline, result, writer_spec, version=version,
                                        end=end, since=since, compare=compare, window=window,
                                        aggregations=spec["aggregations"])
    mark("write")
    if lease.lost:
        raise JobError(f"export to {result.table_name}: the lease passed to another export during the write; "
                       f"rerun the export")
    result.rows, result.items_written, result.bytes_written = value["rows"], value["items"], value["bytes"]
    result.too_large, result.not_newer = value["too_large"], value["not_newer"]
    result.errors += value["messages"]
    if result.too_large > len(value["messages"]):
        result.errors.append(f"... {result.too_large} items over 400 KB in all")
    result.status = ExportStatus.PARTIAL if result.too_large else ExportStatus.OK
    write_meta(client, result.table_name, spec, {"export_id": result.export_id, "to_version": version,
                                                "as_of": end.isoformat(), "mode": result.mode,
                                                "rows_ahead": any_ahead}, group.fingerprint)


def _spark_write(store: "FeatureStore", group: "FeatureGroup", features: list, offline: "OfflineTable",
                 result: ExportResult, writer_spec: dict, *, version: int, end: datetime, since: Optional[Since],
                 compare: bool, window: bool, aggregations: bool) -> tuple[dict, Optional[bool]]:
    """The export's rows computed by Spark and written from its tasks: (the counters, whether rows
    lie ahead of `end`, None when unknown or not asked)."""
    sc = store.spark.sparkContext
    if since is not None and compare:
        result.notes.append("increment: the changed rows, each written only where newer than its item online")
        frame = increment_frame(offline, group, features, version=version, end=end, since=since, window=window)
    else:
        # a full export writes with write_tasks tasks; an increment's rows are few, and adaptive
        # execution sizes them
        frame = export_frame(offline, group, features, version=version, end=end, since=since,
                             partitions=None if since else write_tasks(sc, offline))
    sc.setJobDescription(f"featurelake export {group.name} ({result.mode}, @{version})")
    with ThreadPoolExecutor(1) as pool:  # a small job, run beside the write, which mostly waits on DynamoDB
        # only increments without window features use it (increment_frame)
        ahead = None if aggregations else pool.submit(rows_ahead, offline, group, version=version, end=end,
                                                      since=None if window else since)
        try:
            value = merged(frame.mapInArrow(lambda batches: write_batches(batches, writer_spec), COUNTERS_SCHEMA)
                           .collect())
        finally:
            sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it; PySpark annotates str
        try:
            any_ahead = ahead.result() if ahead else None
        except Exception as exc:  # unknown: the next increment looks for them, as if there were some
            why = (change_feed_gone(exc, since, version) if since else None) or root_message(exc)
            log.warning("export %s: could not tell whether rows lie ahead of its end (%s); the next export "
                        "looks for them anyway", result.export_id, why)
            any_ahead = None
    return value, any_ahead


WRITE_TASK_BYTES = 4 << 20


def write_tasks(sc: Any, offline: "OfflineTable") -> int:
    """How many Spark tasks write the items. The write is the export's cost by far (each row a
    DynamoDB item): one task per core, of even sizes, keeps every core writing to the end, where
    the partitions adaptive execution leaves (3 for 100k keys on 2 cores) end with one task
    writing alone. A small table (under WRITE_TASK_BYTES a task, about 40k rows of 10 doubles)
    takes fewer, and leaves the other cores to other jobs."""
    return max(1, min(sc.defaultParallelism, -(-offline.size_bytes() // WRITE_TASK_BYTES)))


def online_spec(group: "FeatureGroup", group_version: int, offline_schema: "StructType", features: list) -> dict:
    """The online table's layout, as its metadata item records it for OnlineClient: keys and
    features with their dtypes (from the offline table's schema), the event-time column, the ttl."""
    keys, feats = column_dtypes(offline_schema, group, features)
    return {"format": codec.FORMAT, "group": group.name, "group_version": group_version, "keys": keys,
            "features": feats, "timestamp_column": group.timestamp_column,
            "ttl_s": int(group.ttl.total_seconds()) if group.ttl else None,
            "aggregations": any(f.kind == "aggregation" for f in features)}


def same_shape(a: dict, b: dict) -> bool:
    """Two specs lay items out alike: the group's version number aside (a new description makes a
    new version, and must not force a full export)."""
    return {k: v for k, v in a.items() if k != "group_version"} == {k: v for k, v in b.items()
                                                                   if k != "group_version"}


def _record(store: "FeatureStore", result: ExportResult, group_version: Optional[int], started: datetime) -> None:
    """The export's row in the catalogue (`exports`) and its line in `usage`: two Delta appends to
    different tables, run side by side (they never conflict)."""
    def exports() -> None:
        store.catalog.add(Export(export_id=result.export_id, group=result.group, group_version=group_version,
                                 from_version=result.from_version, to_version=result.to_version, as_of=result.as_of,
                                 rows=result.rows, items_written=result.items_written,
                                 bytes_written=result.bytes_written, duration_s=result.duration_s,
                                 status=result.status, error="\n".join(result.errors)[:4000] or None,
                                 table_name=result.table_name, started_at=started, user=current_user()))

    def usage() -> None:
        store.catalog.audit("export", result.group, {"export_id": result.export_id, "table": result.table_name,
                                                     "mode": result.mode, "status": result.status,
                                                     "items": result.items_written})

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(exports), pool.submit(usage)]:
            try:
                future.result()
            except Exception as exc:  # the export itself is done; say so rather than fail it
                log.error("export %s of %s: could not record it in the catalogue: %s", result.export_id,
                          result.group, exc)
                result.notes.append(f"not recorded in the catalogue: {exc}")
