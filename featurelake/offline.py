"""Offline feature tables: one Delta table per group, written by MERGE on (keys, event time) so a
rerun writes nothing twice, change data feed on, every version reachable by time travel.

Bookkeeping columns beside the group's own: `_ingested_at` (the later ingested row wins a tie),
`_run_id` (which run wrote the row), `_event_date` (the partition column) and
`_definition_version` (the group's registered version whose logic computed the row: after a
change of transform, the rows of each logic can be told apart, and a backfill rewrites them).
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from functools import reduce
from typing import TYPE_CHECKING, Any, Optional, Union

from featurelake.catalog import with_retry
from featurelake.commitlock import committing
from featurelake.errors import NotFoundError, UsageError
from featurelake.spark import in_utc, one_row, session_setting, shuffle_partitions

if TYPE_CHECKING:
    import deltalake
    from delta.tables import DeltaTable
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from featurelake.config import Config
    from featurelake.definitions import FeatureGroup

BOOKKEEPING = ["_ingested_at", "_run_id", "_event_date", "_definition_version"]
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
MAX_FILE_ROWS = 5_000_000
"""A first write splits an event date's rows into files of at most this many."""
MAX_PRUNING_DATES = 1000
"""A MERGE names the batch's event dates (up to this many) so that Delta reads only their partitions."""
SMALL_BATCH_ROWS = 100_000
"""A batch of at most this many rows (a stream's micro-batch) is deduplicated and written as one
partition: a streaming batch runs without adaptive execution, so each of the shuffle's partitions
is a task (a 500-row append 0.68 -> 0.40 s)."""
_COMMIT_LOCKS: dict = {}
_COMMIT_LOCKS_GUARD = threading.Lock()


def _commit_lock(spark: "SparkSession") -> Any:
    """One lock per Spark session. Delta takes a MERGE's label (userMetadata: the run that wrote
    the commit, which rows_written and the history read) from a session-wide setting, so two
    threads merging at once in one session would label each other's commits: they take turns.
    Other sessions and processes are left to Delta's optimistic concurrency (see merge)."""
    jsession = getattr(spark, "_jsparkSession", None)
    key = jsession.hashCode() if jsession is not None else id(spark)  # the JVM session, whatever wraps it
    with _COMMIT_LOCKS_GUARD:
        return _COMMIT_LOCKS.setdefault(key, threading.Lock())


def _already_exists(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("DELTA_PATH_EXISTS", "TABLE_OR_VIEW_ALREADY_EXISTS", "already exist"))



def sql_string(value: str) -> str:
    """The body of a Spark SQL string literal: Spark escapes with backslashes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")

class OfflineTable:
    """The Delta table behind one feature group."""

    def __init__(self, spark: "SparkSession", config: "Config", group: "FeatureGroup"):
        self.spark, self.config, self.group = spark, config, group
        self.path = config.lake("offline", group.name)
        self.table_name = f"{config.storage.database}.{group.name}" if config.storage.database else None

    @classmethod
    def for_name(cls, spark: "SparkSession", config: "Config", name: str) -> "OfflineTable":
        """A group's table found by its name alone, for reading: a replay's group may be gone from
        the repository (or changed there) and reads the table it recorded."""
        from types import SimpleNamespace

        return cls(spark, config, SimpleNamespace(name=name))  # type: ignore[arg-type]

    def _delta(self) -> DeltaTable:
        from delta.tables import DeltaTable

        if self.table_name:
            return DeltaTable.forName(self.spark, self.table_name)
        return DeltaTable.forPath(self.spark, self.path)

    def exists(self) -> bool:
        from delta.tables import DeltaTable

        if self.table_name:
            return bool(self.spark.catalog.tableExists(self.table_name))
        return DeltaTable.isDeltaTable(self.spark, self.path)

    def version(self) -> Optional[int]:
        """The latest Delta version, or None before the first write."""
        if not self.exists():
            return None
        return int(one_row(self._delta().history(1).select("version"))[0])

    def latest(self) -> Optional[tuple[int, "StructType"]]:
        """The latest Delta version and its schema (None before the first write), through delta-rs
        where it can read the table (a few ms; Spark's history and a time-travel schema took
        0.2-0.3 s a group of a training set's build), else with Spark."""
        from pyspark.sql.types import StructType

        table = self.delta_rs(files=False)
        if table is not None:
            return table.version(), StructType.fromJson(json.loads(table.schema().to_json()))
        version = self.version()
        return None if version is None else (version, self.read(version=version).schema)

    def commits(self, after: int, upto: int) -> list[dict]:
        """The commits after version `after` up to `upto`, newest first (see recent)."""
        if upto <= after:
            return []
        table = self.delta_rs(files=False)
        last = max((table.version() if table is not None else upto) - after, 0)
        return [c for c in self.recent(last, table) if after < c["version"] <= upto]

    def recent(self, last: int, table: Optional["deltalake.DeltaTable"] = None) -> list[dict]:
        """The last `last` commits, newest first, as Spark's history() rows: version, operation,
        userMetadata, operationParameters and operationMetrics (dicts of text); read by delta-rs
        (`table`, or opened here) where it can read the log, in milliseconds."""
        table = table or self.delta_rs(files=False)
        if table is not None:
            found = table.history(last)
        else:
            cols = ["version", "operation", "userMetadata", "operationParameters", "operationMetrics"]
            found = [r.asDict() for r in self._delta().history(last).select(*cols).collect()]
        return [{**c, "operationParameters": c.get("operationParameters") or {},
                 "operationMetrics": c.get("operationMetrics") or {}} for c in found]

    def delta_rs(self, files: bool = True) -> Optional["deltalake.DeltaTable"]:
        """The table's latest version through delta-rs (files=False: without its file list); None
        where Spark must read it (metastore tables, storage or a protocol delta-rs cannot read) or
        before the first write."""
        from featurelake import lakeread
        from featurelake.errors import JobError

        why = "storage.database names metastore tables" if self.table_name else lakeread.spark_reason(self.path)
        if why is not None:
            return None
        try:
            return lakeread.open_table(self.path, self.config, files=files)
        except JobError as exc:  # a protocol or storage delta-rs cannot read: Spark can
            lakeread.fallback(self.path, str(exc))
            return None

    def size_bytes(self) -> int:
        """The latest version's data files, in bytes (from the Delta log, no scan)."""
        return int(one_row(self._delta().detail().select("sizeInBytes"))[0])

    def read(self, version: Optional[int] = None, timestamp: Union[str, datetime, None] = None) -> "DataFrame":
        """The table now, or as of a Delta version or a timestamp (time travel)."""
        if not self.exists():
            raise NotFoundError(f"feature group {self.group.name!r} has no offline table yet at "
                                f"{self.table_name or self.path}: run `featurelake ingest {self.group.name}`")
        if version is not None and timestamp is not None:
            raise UsageError("read_offline: give version= or timestamp=, not both")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        if timestamp is not None:
            reader = reader.option("timestampAsOf", str(timestamp))
        return reader.table(self.table_name) if self.table_name else reader.load(self.path)

    def newest_micros(self, column: str, at_most_us: int) -> Optional[int]:
        """The greatest value of a timestamp column not after at_most_us, in µs (None: no such row),
        through delta-rs where it can read the table, else with Spark."""
        from pyspark.sql import functions as F

        from featurelake import lakeread
        from featurelake.errors import JobError

        why = "storage.database names metastore tables" if self.table_name else lakeread.spark_reason(self.path)
        if why is None:
            try:
                return lakeread.newest_micros(self.path, self.config, column, at_most_us)
            except JobError as exc:  # a protocol or storage delta-rs cannot read: Spark can
                lakeread.fallback(self.path, str(exc))

        us = F.unix_micros(F.col(f"`{column}`"))
        newest = self.read().where(us <= F.lit(at_most_us)).agg(F.max(us)).first()[0]  # type: ignore[index]
        return None if newest is None else int(newest)

    def history(self) -> list[dict]:
        if not self.exists():
            return []
        cols = ["version", "timestamp", "operation", "operationMetrics", "userMetadata"]
        return [r.asDict(recursive=True) for r in self._delta().history().select(*cols).collect()]

    def check_schema(self, df: "DataFrame") -> None:
        """A new column is fine (the schema evolves); a changed type is not."""
        if not self.exists():
            return
        current = {f.name: f.dataType for f in self.read().schema.fields}
        for f in df.schema.fields:
            if f.name in current and current[f.name] != f.dataType:
                raise UsageError(
                    f"feature group {self.group.name!r}: column {f.name!r} changes type from "
                    f"{current[f.name].simpleString()} to {f.dataType.simpleString()}, which the offline table "
                    f"cannot hold: either name the changed feature differently (a new column), or create a new "
                    f"group (e.g. '{self.group.name}_v2') and backfill it")

    def merge(self, batch: "DataFrame", run_id: str, definition_version: Optional[int] = None,
              dates: Optional[list] = None, *, span: Optional[tuple[int, int]] = None,
              txn: Optional[tuple[str, int]] = None, newer: bool = False,
              rows: Optional[int] = None) -> Optional[int]:
        """Upserts a batch on (keys, event time). Identical rows are left alone, so a rerun commits
        nothing; a changed row for an existing (key, time) replaces it (the old stays in history).
        Returns the Delta version written, or None when nothing changed.

        Another job may write the table at the same moment (overlapping schedules, a rerun started
        early). A write that loses the race (a Delta conflict, or a table that another run created
        between the check and the write) is worked out again against the table as the winner left
        it, so every row lands once and the loser writes only what is still new.

        definition_version, when given, is stored in `_definition_version` and compared like a
        value: a backfill by a newer definition rewrites the rows an older one computed.

        dates and span, when the caller knows them, are the batch's UTC event dates and its first
        and last event times in µs (saves a job). The comparison and the MERGE read only the table's
        files of those dates whose event times overlap the span (Delta's file statistics): a
        stream's micro-batch reads the last few files, not the whole day.

        txn, a Delta transaction id (application, version) of an idempotent writer (a stream's
        micro-batch): a batch whose every (key, time) is new to the table is appended under it
        rather than MERGEd, and with `newer` (every row of the batch is newer than every row of
        the table, so none can be there yet) without comparing. Delta skips a replayed id, and
        fails one of two writers racing with the same id. Such an append is blind: it suits a
        writer that owns the table's new rows, as a stream owns its group's table (another job
        adding the same pair at the same moment would not fail it, as it fails a MERGE).

        rows, when the caller knows it, is the batch's size: at most SMALL_BATCH_ROWS and the batch
        is worked as one partition.

        Runs at UTC whatever the caller's session zone: Spark binds a DataFrame's time zone when
        the plan is built, and `_event_date` is the event's UTC date."""
        if rows is not None and rows <= SMALL_BATCH_ROWS:
            batch = batch.coalesce(1)
        with in_utc(self.spark):
            return self._merge(batch, run_id, definition_version, dates, span, txn if newer else None,
                               txn)

    def _merge(self, batch: "DataFrame", run_id: str, definition_version: Optional[int], dates: Optional[list],
               span: Optional[tuple[int, int]], newer: Optional[tuple[str, int]],
               txn: Optional[tuple[str, int]]) -> Optional[int]:
        from pyspark.sql import Window, functions as F

        g = self.group
        if definition_version is not None:
            batch = batch.withColumn("_definition_version", F.lit(int(definition_version)))
        key_cols = [*g.keys, g.timestamp_column]
        value_cols = [c for c in batch.columns if c not in key_cols]
        order = F.col("_source_order").desc()
        batch = (batch.withColumn("_source_order", F.monotonically_increasing_id())
                 .withColumn("_n", F.row_number().over(Window.partitionBy(*key_cols).orderBy(order)))
                 .where("_n = 1").drop("_n", "_source_order")
                 .withColumn("_ingested_at", F.current_timestamp())
                 .withColumn("_run_id", F.lit(run_id))
                 .withColumn("_event_date", F.to_date(g.timestamp_column)))
        self.check_schema(batch)
        meta = f"run_id={run_id}"
        # Every attempt reads the batch several times (its dates, the comparison, the MERGE): the
        # window above is worked out once.
        batch = batch.persist()
        try:
            # One commit at a time per session carries this run's id in its commit info.
            with _commit_lock(self.spark), session_setting(self.spark, USER_METADATA, meta), \
                    committing(self.config, self.path, f"feature group {g.name} run {run_id}"):
                return with_retry(lambda: self._merge_once(batch, meta, key_cols, value_cols, dates, span, newer, txn),
                                  f"feature group {g.name!r}: writing {self.table_name or self.path}", attempts=6)
        finally:
            batch.unpersist()

    def _merge_once(self, batch: "DataFrame", meta: str, key_cols: list, value_cols: list,
                    dates: Optional[list], span: Optional[tuple[int, int]], newer: Optional[tuple[str, int]],
                    txn: Optional[tuple[str, int]]) -> Optional[int]:
        """One attempt, against the table as it is now: what another run wrote since the last
        attempt is already there, and _changes leaves it out.

        Most batches only add (key, time) pairs, as a stream's micro-batch or a day's ingest do:
        those are appended under the writer's transaction id, or take Delta's insert-only MERGE,
        one join and a write, where a MERGE that may update first finds the files it touches,
        then rewrites them. Both read the table, so a concurrent commit to the same dates still
        fails the later writer, which tries again."""
        from pyspark.sql import functions as F

        if not self.exists() and self._create(batch, meta):
            return self._committed(meta)
        if newer is not None:
            self._append(batch, meta, newer)
            return self._committed(meta)
        if dates is None or span is None:
            ts = F.unix_micros(F.col(self.group.timestamp_column))
            found = batch.agg(F.collect_set("_event_date"), F.min(ts), F.max(ts)).first()
            assert found is not None
            dates, span = list(found[0]), (found[1], found[2])
        # The batch's event dates and times, as literals: Delta then reads only those partitions of
        # the table, and in them only the files whose event times overlap the batch's (a stream's
        # micro-batch holds a few seconds of a table of years), where a join condition alone makes
        # MERGE and the comparison below read every file.
        pruned = (len(dates) <= MAX_PRUNING_DATES, span[0] is not None)
        target = self.read().where(self._near(F.col, dates, span, pruned))
        present = set(target.columns)  # a new column (schema evolution) is not in the table yet
        new, changed, rows = _compare(batch, target, [*key_cols, "_event_date"], value_cols)
        if not new and not changed:  # Delta commits a version even for a MERGE that changes nothing
            return None
        cond = reduce(lambda a, b: a & b, [_same(c, batch) for c in key_cols]
                      + [F.col("t._event_date") == F.col("s._event_date"),
                         self._near(lambda c: F.col(f"t.{c}"), dates, span, pruned)])
        if not changed:
            if txn is not None and new == rows:
                self._append(batch, meta, txn)
            else:
                (self._delta().alias("t").merge(batch.alias("s"), cond).withSchemaEvolution()
                 .whenNotMatchedInsertAll().execute())
            return self._committed(meta)
        source = _changes(batch, target, [*key_cols, "_event_date"], value_cols)
        differs = reduce(lambda a, b: a | b, [~_same(c, batch) if c in present else F.col(f"s.`{c}`").isNotNull()
                                              for c in value_cols], F.lit(False))
        (self._delta().alias("t").merge(source.alias("s"), cond).withSchemaEvolution()
         .whenMatchedUpdateAll(condition=differs).whenNotMatchedInsertAll().execute())
        return self._committed(meta)

    def _near(self, col: Any, dates: list, span: tuple, pruned: tuple[bool, bool]) -> "Column":
        """The table's rows (col: a column of it by name) on the batch's dates and within its span."""
        from pyspark.sql import functions as F

        out = F.lit(True)
        if pruned[0]:
            out = out & col("_event_date").isin(dates)
        if pruned[1]:
            ts = col(f"`{self.group.timestamp_column}`")
            out = out & (ts >= F.lit(_instant(span[0]))) & (ts <= F.lit(_instant(span[1])))
        return out

    def _append(self, batch: "DataFrame", meta: str, txn: tuple[str, int]) -> None:
        """The batch appended under a Delta transaction id: a replay of the same id writes nothing."""
        if batch.rdd.getNumPartitions() > 1:  # one file per event date
            batch = batch.repartition(shuffle_partitions(self.spark), "_event_date")
        writer = (batch.write.format("delta")
                  .mode("append").option("mergeSchema", "true").option("userMetadata", meta)
                  .option("txnAppId", txn[0]).option("txnVersion", str(txn[1])))
        writer.saveAsTable(self.table_name) if self.table_name else writer.save(self.path)

    def _create(self, batch: "DataFrame", meta: str) -> bool:
        """Writes the batch as the table's first version. False when another run created the table
        since exists() said it was missing: an append would then add every row a second time, so
        the write insists on a new table and the caller merges instead."""
        # One file per event date (more where a date holds over MAX_FILE_ROWS): each date goes
        # to one task. A `rebalance` hint does that only under adaptive execution, which a
        # streaming batch (every S3 ingest) runs without: there it left a file per date and
        # shuffle partition, 2,928 files for a year of 200k rows and four times the write time.
        writer = (batch.repartition(shuffle_partitions(self.spark), "_event_date").write.format("delta")
                  .mode("errorifexists").partitionBy("_event_date").option("maxRecordsPerFile", MAX_FILE_ROWS)
                  .option("delta.enableChangeDataFeed", "true").option("userMetadata", meta))
        try:
            writer.saveAsTable(self.table_name) if self.table_name else writer.save(self.path)
        except Exception as exc:  # Spark and Delta errors arrive as Py4J/Spark exceptions
            if not _already_exists(exc):
                raise
            return False
        self._describe()
        return True

    def _committed(self, meta: str) -> Optional[int]:
        """This run's newest version, found by its label rather than as the table's latest version
        (another job may have committed since); None when that commit changed no row."""
        found = None
        for last in (1, 50):  # mostly the newest commit: reading one is quicker than fifty
            found = next((c for c in self.recent(last) if c.get("userMetadata") == meta), None)
            if found is not None:
                break
        if found is None or (found["operation"] == "MERGE" and not commit_rows("MERGE", found["operationMetrics"])):
            return None
        return int(found["version"])

    def rows_written(self, run_id: str, last: int = 50) -> int:
        """Rows the run's commits (among the last few) inserted or updated, from Delta's metrics."""
        if not self.exists():
            return 0
        total = 0
        commits = self._delta().history(last).select("operation", "operationMetrics", "userMetadata")
        for commit in commits.collect():
            if commit["userMetadata"] == f"run_id={run_id}":
                total += commit_rows(commit["operation"], commit["operationMetrics"] or {})
        return total

    def _describe(self) -> None:
        g = self.group
        props = {"delta.enableChangeDataFeed": "true", "featurelake.group": g.name,
                 "featurelake.owner": g.owner or "", "comment": g.description or ""}
        target = self.table_name or f"delta.`{self.path}`"
        sets = ", ".join(f"'{k}' = '{sql_string(v)}'" for k, v in props.items())
        self.spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ({sets})")


def _changes(batch: "DataFrame", target: "DataFrame", key_cols: list, value_cols: list) -> "DataFrame":
    """The batch's rows that are new or differ from the table (a column the table lacks yet
    differs when not null), so that a rerun finds nothing to do."""
    return batch.alias("s").join(target.alias("t"), _identical(batch, target, key_cols, value_cols), "left_anti")


def _compare(batch: "DataFrame", target: "DataFrame", key_cols: list,
             value_cols: list) -> tuple[int, int, int]:
    """(the batch's rows whose keys the table lacks, those whose keys it holds with other values,
    all the batch's rows), in one job."""
    from pyspark.sql import functions as F

    keys = reduce(lambda a, b: a & b, [_same(c, batch) for c in key_cols])
    held = target.select(*key_cols, *[c for c in value_cols if c in target.columns], F.lit(True).alias("_held"))
    joined = batch.alias("s").join(held.alias("t"), keys, "left")
    same = _identical(batch, target, key_cols, value_cols)
    row = joined.agg(F.count(F.when(F.col("t._held").isNull(), 1)).alias("new"),
                     F.count(F.when(F.col("t._held") & ~same, 1)).alias("changed"),
                     F.count(F.lit(1)).alias("rows")).first()
    return int(row["new"]), int(row["changed"]), int(row["rows"])  # type: ignore[index]


def _identical(batch: "DataFrame", target: "DataFrame", key_cols: list, value_cols: list) -> "Column":
    """s and t hold the same row (a column the table lacks yet: the same when null)."""
    from pyspark.sql import functions as F

    present = set(target.columns)
    same = [_same(c, batch) for c in key_cols]
    same += [_same(c, batch) if c in present else F.col(f"s.`{c}`").isNull() for c in value_cols]
    return reduce(lambda a, b: a & b, same)


def _instant(micros: int) -> datetime:
    """µs since the epoch as an aware datetime: a timestamp literal Delta's data skipping reads."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)


def _same(column: str, batch: "DataFrame") -> "Column":
    """t.column <=> s.column, maps (which Spark cannot compare) by their JSON text."""
    from pyspark.sql import functions as F

    from featurelake.pointintime import comparable

    dtype = batch.schema[column].dataType
    return comparable(F.col(f"t.`{column}`"), dtype).eqNullSafe(comparable(F.col(f"s.`{column}`"), dtype))


def commit_rows(operation: str, metrics: dict) -> int:
    """Rows a Delta commit wrote: inserted plus updated for a MERGE, output rows for a write."""
    if operation == "MERGE":
        return int(metrics.get("numTargetRowsInserted", 0)) + int(metrics.get("numTargetRowsUpdated", 0))
    return int(metrics.get("numOutputRows", 0)) if operation in ("WRITE", "CREATE TABLE AS SELECT") else 0


def as_of(df: "DataFrame", group: "FeatureGroup", at: Union[datetime, str],
          columns: Optional[list] = None) -> "DataFrame":
    """Per key, the row with the greatest event time <= at, within the ttl; ties to the later
    ingested row. The offline rule that online serving must match."""
    from pyspark.sql import Window, functions as F

    ts = F.col(group.timestamp_column)
    at_col = F.lit(at).cast("timestamp")
    df = df.where(ts <= at_col)
    if group.ttl is not None:
        df = df.where(ts >= at_col - F.expr(f"INTERVAL {int(group.ttl.total_seconds())} SECONDS"))
    w = Window.partitionBy(*group.keys).orderBy(ts.desc(), F.col("_ingested_at").desc())
    out = df.withColumn("_rank", F.row_number().over(w)).where("_rank = 1").drop("_rank")
    return out.select(*(columns or out.columns))
