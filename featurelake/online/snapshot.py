"""What an export writes, computed by Spark (a small increment on the driver): per entity key, the
offline as-of row at the export's end (featurelake.offline.as_of, the one rule), with window
features as of that end; for an incremental export, only the keys whose online row may differ
from what the last export wrote.

A key's online row can change between the last export (Delta version v, end t0) and this one
(version v', end t1) only if
  - a commit after v touched one of its rows (the change data feed from v+1 to v'), or
  - one of its events became current: event time in (t0, t1] (late-arriving or future-dated rows
    that were already in the table), or
  - an event left an aggregation window w: event time in (t0 - w, t1 - w].
A row that aged past the ttl needs no write: the client hides it (exact to the microsecond).
Each event-time range is its own scan, pruned to its `_event_date` partitions.

Two ways to compute an increment:
- `increment_frame`, when the group has no window features and the commits since v only added
  or updated rows (no DELETE, overwrite or RESTORE): the candidates are the changed rows
  themselves (change data feed) and the rows that became current (skipped when the last export
  recorded no row ahead of its end: `rows_ahead`); the newest candidate per key is written only
  where it is newer than the key's item online (the writer reads the items'
  `_event_ts`/`_ingested_ts` first, strongly consistent, under the export's lease). Its cost
  follows the change, not the table. When only the change data feed is read and its commits
  wrote at most DRIVER_ROWS rows, `driver_increment` computes the same rows on the driver from
  the feed as delta-rs reads it, and the driver writes them: no Spark job at all.
- otherwise `export_frame` with `since`: the offline rule over every row of the changed keys
  (a scan of the table within the ttl), and the window features of those keys.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING, Optional

from featurelake.online import codec

log = logging.getLogger("featurelake.online")

if TYPE_CHECKING:
    import deltalake
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

    from featurelake.definitions import FeatureGroup
    from featurelake.offline import OfflineTable


@dataclass
class Since:
    """The last export this one continues from."""
    version: int
    as_of: datetime


@dataclass
class OnlineFeature:
    name: str
    dtype: str
    kind: str  # feature | aggregation


def online_features(group: "FeatureGroup") -> tuple[list[OnlineFeature], list[str]]:
    """The group's features that go online, and the PII ones held back (tags pii=true on the feature,
    on the group, or on an aggregation's column) unless the group sets allow_online_pii."""
    from featurelake.catalog import feature_rows

    pii = group.pii_features
    keep, held = [], []
    for row in feature_rows(group, 0):
        if row["name"] in pii and not group.allow_online_pii:
            held.append(row["name"])
        else:
            keep.append(OnlineFeature(row["name"], row["dtype"], row["kind"]))
    return keep, held


def _ts_lit(value: datetime) -> "Column":
    from pyspark.sql import functions as F

    return F.lit(value).cast("timestamp")


def _day(value: datetime) -> date:
    return value.astimezone(timezone.utc).date()


def _window(df: "DataFrame", ts: str, lo: Optional[datetime], hi: Optional[datetime]) -> "DataFrame":
    """Rows with lo < ts <= hi (either bound None: open), scanning only the partitions of those days."""
    from pyspark.sql import functions as F

    if hi is not None:
        df = df.where((F.col("_event_date") <= F.lit(_day(hi))) & (F.col(ts) <= _ts_lit(hi)))
    if lo is not None:
        df = df.where((F.col("_event_date") >= F.lit(_day(lo))) & (F.col(ts) > _ts_lit(lo)))
    return df


def changed_keys(offline: "OfflineTable", group: "FeatureGroup", table: "DataFrame", *, since: Since,
                 version: int, end: datetime) -> "DataFrame":
    """The keys whose online row may have changed since `since` (see the module's docstring)."""
    keys, ts = group.keys, group.timestamp_column
    parts = []
    if version > since.version:
        parts.append(_change_feed(offline, since, version).select(*keys))
    ranges = [(since.as_of, end)]
    for agg in group.aggregations:
        ranges += [(since.as_of - w, end - w) for w in agg.windows.values()]
    for lo, hi in dict.fromkeys(ranges):
        if hi > lo:
            parts.append(_window(table, ts, lo, hi).select(*keys))
    if not parts:
        return offline.spark.createDataFrame([], table.select(*keys).schema)
    return reduce(lambda a, b: a.unionByName(b), parts).distinct()


def _aggregates(group: "FeatureGroup", table: "DataFrame", end: datetime, wanted: dict) -> "DataFrame":
    """Window features per key as of `end`: events in (end - w, end], with the training sets'
    semantics (featurelake.pointintime): nulls ignored, an empty window gives null except for count
    and approx_count_distinct (0), stddev needs two values. Computed directly, not as a difference
    of running totals, so a sum can differ from a training set's in the last bit."""
    from pyspark.sql import functions as F

    ts = group.timestamp_column
    widest = max(w for agg in group.aggregations for w in agg.windows.values())
    rows = _window(table, ts, end - widest, end)
    exprs = []
    for agg in group.aggregations:
        for name, fn, _, width in agg.outputs():
            if name not in wanted:
                continue
            inside = F.col(ts) > _ts_lit(end - width)
            value = F.when(inside, F.col(agg.column))
            if fn == "last":  # the newest non-null value in the window; the later ingested on a tie
                newest = F.max(F.when(inside & F.col(agg.column).isNotNull(), F.struct(
                    F.col(ts).alias("t"), F.col("_ingested_at").alias("i"), F.col(agg.column).alias("v"))))
                out = newest.getField("v")
            elif fn == "stddev":
                out = F.stddev_samp(value)
            elif fn == "approx_count_distinct":  # exact, as the training sets count it
                out = F.count_distinct(value)
            else:
                out = getattr(F, fn)(value)
            exprs.append(out.cast(wanted[name]).alias(name))
    return rows.groupBy(*group.keys).agg(*exprs)


def export_frame(offline: "OfflineTable", group: "FeatureGroup", features: list[OnlineFeature], *,
                 version: int, end: datetime, since: Optional[Since],
                 partitions: Optional[int] = None) -> "DataFrame":
    """Columns, in this order (the writer reads them by position): the keys, `_event_us`, `_ing_us`,
    then the features prepared by codec.export_sql. With `partitions`, the rows are hash-partitioned
    by key into that many before the newest row is picked: picking it and writing the items then
    share one shuffle and one stage."""
    from pyspark.sql import functions as F

    from featurelake.offline import as_of

    keys, ts = group.keys, group.timestamp_column
    table = offline.read(version=version).where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    if partitions:
        table = table.repartition(partitions, *keys)
    candidates = _window(table, ts, None, end)
    if group.ttl is not None:  # as_of applies the ttl too; this only prunes partitions early
        candidates = candidates.where((F.col("_event_date") >= F.lit(_day(end - group.ttl)))
                                      & (F.col(ts) >= _ts_lit(end - group.ttl)))
    agg_source = table
    if since is not None:
        changed = changed_keys(offline, group, table, since=since, version=version, end=end)
        candidates = candidates.join(changed, keys, "left_semi")
        agg_source = table.join(changed, keys, "left_semi")
    current = as_of(candidates, group, end)
    aggregated = {f.name: f.dtype for f in features if f.kind == "aggregation"}
    if aggregated:
        current = current.join(_aggregates(group, agg_source, end, aggregated), keys, "left")
        counts = [n for a in group.aggregations for n, fn, _, _ in a.outputs()
                  if n in aggregated and fn in ("count", "approx_count_distinct")]
        current = current.select(*[F.coalesce(F.col(c), F.lit(0)).cast(aggregated[c]).alias(c) if c in counts
                                   else F.col(c) for c in current.columns])
    return _select(current, group, features)


def batch_frame(rows: "DataFrame", group: "FeatureGroup", features: list[OnlineFeature], *,
                end: datetime) -> "DataFrame":
    """The newest of a batch's rows per key as of `end` (within the ttl; a later one of equal event
    time wins, as in the MERGE), stamped as ingested at `end`: what a stream writes online after
    merging the batch, where newer than the key's item. The same columns as export_frame."""
    from pyspark.sql import Window, functions as F

    ts = F.col(f"`{group.timestamp_column}`")
    rows = rows.where(ts <= _ts_lit(end))
    if group.ttl is not None:
        rows = rows.where(ts >= _ts_lit(end - group.ttl))
    order = Window.partitionBy(*group.keys).orderBy(ts.desc(), F.col("_fl_order").desc())
    newest = (rows.withColumn("_fl_order", F.monotonically_increasing_id())
              .withColumn("_fl_rank", F.row_number().over(order)).where("_fl_rank = 1")
              .drop("_fl_rank", "_fl_order").withColumn("_ingested_at", _ts_lit(end)))
    return _select(newest, group, features)


def _select(current: "DataFrame", group: "FeatureGroup", features: list[OnlineFeature]) -> "DataFrame":
    """The writer's columns, by position: keys, `_event_us`, `_ing_us`, features (codec.export_sql)."""
    from pyspark.sql import functions as F

    present = set(current.columns)
    cols = [F.col(k) for k in group.keys]
    cols += [F.expr(f"unix_micros(`{group.timestamp_column}`)").alias("_event_us"),
             F.expr("unix_micros(`_ingested_at`)").alias("_ing_us")]
    for f in features:
        if f.name in present:
            dtype = current.schema[f.name].dataType.simpleString()
            cols.append(F.expr(codec.export_sql(f.name, dtype)).alias(f.name))
        else:  # declared, not yet in the offline table: null until an ingest fills it
            cols.append(F.lit(None).cast(f.dtype).alias(f.name))
    return current.select(*cols)


def column_dtypes(offline_schema: "StructType", group: "FeatureGroup",
                  features: list[OnlineFeature]) -> tuple[list, list]:
    """(keys, features) as [{"name", "dtype"}] from the offline table's schema (the truth), falling
    back to the declared dtype for a feature the table does not have yet."""
    schema = {f.name: f.dataType.simpleString() for f in offline_schema.fields}
    keys = [{"name": k, "dtype": schema[k]} for k in group.keys]
    out = []
    for f in features:
        dtype = f.dtype if f.kind == "aggregation" else schema.get(f.name, f.dtype)
        out.append({"name": f.name, "dtype": dtype, "kind": f.kind})
    return keys, out



WRITES = ("WRITE", "MERGE", "STREAMING UPDATE")
"""The operations that write rows (and say how many in operationMetrics.numOutputRows)."""
NO_ROWS = ("SET TBLPROPERTIES", "UNSET TBLPROPERTIES", "ADD COLUMNS", "CHANGE COLUMN", "VACUUM START", "VACUUM END")
"""Those that write none (OPTIMIZE rewrites rows, which a change data feed reader may count)."""
APPEND_ONLY_OPERATIONS = {"WRITE", "MERGE", "STREAMING UPDATE", "OPTIMIZE", "VACUUM START", "VACUUM END",
                          "SET TBLPROPERTIES", "UNSET TBLPROPERTIES", "ADD COLUMNS", "CHANGE COLUMN", "CREATE TABLE"}


def only_additions(commits: list[dict]) -> bool:
    """True when the commits (OfflineTable.commits, the Delta log's history) only added or updated
    rows: no DELETE, no overwrite, no MERGE that deleted, no RESTORE."""
    for c in commits:
        params, metrics = c["operationParameters"], c["operationMetrics"]
        if c["operation"] not in APPEND_ONLY_OPERATIONS:
            return False
        if c["operation"] == "WRITE" and str(params.get("mode", "Append")).lower() != "append":
            return False
        if c["operation"] == "MERGE" and int(metrics.get("numTargetRowsDeleted", 0) or 0) > 0:
            return False
    return True


# What Delta says when the change data feed of a range of versions cannot be read: the range
# starts after the table's latest version, the feed was off for a version (the table rewritten
# without it), or VACUUM removed its `_change_data` files.
_FEED_GONE = ("for reading change data is invalid", "DELTA_MISSING_CHANGE_DATA", "change data was not recorded",
              "DELTA_INVALID_CDC_RANGE", "_change_data")


def change_feed_gone(exc: BaseException, since: Since, version: int) -> Optional[str]:
    """Delta's error about reading the change data feed after `since`, said in words; None for
    any other error."""
    text = str(exc)
    if not any(marker in text for marker in _FEED_GONE):
        return None
    return (f"the change data feed of Delta versions @{since.version + 1}..@{version} cannot be read (the "
            f"table was rewritten or restored, or had the feed off, or VACUUM removed its change files)")


def _change_feed(offline: "OfflineTable", since: Since, version: int) -> "DataFrame":
    """Delta's change data feed of the commits after since.version up to `version`."""
    reader = (offline.spark.read.format("delta").option("readChangeFeed", "true")
              .option("startingVersion", since.version + 1).option("endingVersion", version))
    return reader.table(offline.table_name) if offline.table_name else reader.load(offline.path)


def _changed_rows(offline: "OfflineTable", since: Since, version: int, columns: list) -> "DataFrame":
    """The rows the commits after `since` added, or updated to (their post-images)."""
    from pyspark.sql import functions as F

    cdf = _change_feed(offline, since, version)
    return cdf.where(F.col("_change_type").isin("insert", "update_postimage")).select(*columns)


def increment_frame(offline: "OfflineTable", group: "FeatureGroup", features: list[OnlineFeature], *,
                    version: int, end: datetime, since: Since, window: bool = True) -> "DataFrame":
    """The newest candidate row per key (see the module's docstring); the same columns as
    export_frame. The writer keeps only those newer than what is online. `window` False skips the
    rows that became current (event time in (since.as_of, end]) because the last export recorded
    none ahead of its end (rows_ahead): then every such row came with a commit after it, and the
    change data feed holds it; that spares Delta building the new version's file list."""
    from pyspark.sql import functions as F

    from featurelake.offline import as_of

    keys, ts = group.keys, group.timestamp_column
    table = offline.read(version=version)
    columns = table.columns
    parts = [_window(table, ts, since.as_of, end)] if window else []
    if version > since.version:
        parts.append(_changed_rows(offline, since, version, columns))
    if not parts:
        return _select(as_of(table.limit(0), group, end), group, features)
    # a row in both parts, or updated twice, appears more than once: as_of ranks the copies
    candidates = reduce(lambda a, b: a.unionByName(b), parts).where(
        reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
    return _select(as_of(candidates, group, end), group, features)


DRIVER_ROWS = 20_000
"""An increment whose commits wrote at most this many rows is computed and written on the driver
(driver_increment): a Spark job's planning and stages cost more than the rows."""


def driver_increment(offline: "OfflineTable", group: "FeatureGroup", features: list[OnlineFeature],
                     schema: "StructType", commits: list[dict], *, version: int, end: datetime,
                     since: Since) -> Optional[tuple[list[tuple], bool]]:
    """increment_frame(window=False)'s rows as tuples, and whether a changed row lies after `end`
    (rows_ahead), from the change data feed read by delta-rs on the driver: no Spark job. None where
    Spark must compute them: a metastore table, storage, a protocol or a feed delta-rs cannot read,
    more than DRIVER_ROWS rows written by the commits (or a commit that does not say how many, as
    an OPTIMIZE), a timestamp_ntz column (Spark reads it in the session's time zone). `schema`: the
    table's at `version`; `commits`: those after since.version up to `version` (OfflineTable.commits)."""
    if version <= since.version:  # no commit since the last export
        return [], False
    counts = [int(c["operationMetrics"]["numOutputRows"]) if c["operation"] in WRITES
              and "numOutputRows" in c["operationMetrics"] else 0 if c["operation"] in NO_ROWS else None
              for c in commits]
    if None in counts or sum(n for n in counts if n is not None) > DRIVER_ROWS:
        return None
    ts, present = group.timestamp_column, set(schema.names)
    wanted = [f.name for f in features if f.name in present]
    columns = list(dict.fromkeys([*group.keys, ts, "_ingested_at", *wanted]))
    if any("timestamp_ntz" in schema[c].dataType.simpleString() for c in columns):
        return None
    for name in wanted:  # what Spark's path refuses (timestamps inside maps or structs), refused alike
        codec.export_sql(name, schema[name].dataType.simpleString())
    table = offline.delta_rs()
    if table is None or table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        return None
    try:
        changed = _arrow_change_feed(table, since.version + 1, version, columns)
    except Exception as exc:  # noqa: BLE001 - a feed delta-rs cannot read (gone, a newer protocol): Spark's
        log.info("reading the change data feed of %s with Spark: %s", offline.path, exc)
        return None
    event_us, ingested_us = _micros(changed[ts]), _micros(changed["_ingested_at"])
    end_us = codec.datetime_to_micros(end)
    ahead = any(t is not None and t > end_us for t in event_us)
    low = end_us - int(group.ttl.total_seconds()) * 1_000_000 if group.ttl is not None else None
    keys = list(zip(*(changed[k].to_pylist() for k in group.keys)))
    newest: dict[tuple, tuple] = {}  # key -> ((event µs, ingested µs), row): offline.as_of's order
    for i, (key, t, ing) in enumerate(zip(keys, event_us, ingested_us)):
        if t is None or t > end_us or (low is not None and t < low) or None in key:
            continue
        rank = (t, -1 if ing is None else ing)
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, i)
    chosen = sorted(i for _, i in newest.values())
    values = {name: _values(changed[name], chosen) for name in wanted}
    rows = [(*keys[i], event_us[i], ingested_us[i],
             *[values[f.name][n] if f.name in values else None for f in features]) for n, i in enumerate(chosen)]
    return rows, ahead


def _arrow_change_feed(table: "deltalake.DeltaTable", first: int, last: int, columns: list[str]) -> "pa.Table":
    """The rows commits first..last added, or updated to (their post-images), as a pyarrow Table."""
    import pyarrow as pa

    reader = table.load_cdf(starting_version=first, ending_version=last, columns=[*columns, "_change_type"],
                            predicate="_change_type IN ('insert', 'update_postimage')")
    return pa.RecordBatchReader.from_stream(reader).read_all()


def _micros(column: "pa.ChunkedArray") -> list:
    """A timestamp column (or a list of them) as µs since the epoch, exact, as Spark's unix_micros."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    return column.cast(pa.list_(pa.timestamp("us", tz="UTC"))).cast(pa.list_(pa.int64())).to_pylist()


def _values(column: "pa.ChunkedArray", rows: list[int]) -> list:
    """The chosen rows' values as the writer reads them from Spark's Arrow batches (codec.export_sql:
    timestamps, and arrays of them, as µs)."""
    import pyarrow as pa

    kind = column.type.value_type if pa.types.is_list(column.type) else column.type
    values = _micros(column) if pa.types.is_timestamp(kind) else column.to_pylist()
    return [values[i] for i in rows]


def rows_ahead(offline: "OfflineTable", group: "FeatureGroup", *, version: int, end: datetime,
               since: Optional[Since] = None) -> bool:
    """Whether the offline table at `version` holds rows with event time after `end` (future-dated,
    they become current later: the next increment must look for them). With `since`, whose export
    recorded none, only the rows changed after it can be: they are read from the change data feed
    instead of the whole table's file list. A small job: run it beside the export's write."""
    ts = group.timestamp_column
    if since is not None and since.version >= version:  # no commit since an export that found none
        return False
    rows = (_changed_rows(offline, since, version, [ts, "_event_date"]) if since is not None
            else offline.read(version=version))
    return not _window(rows, ts, end, None).isEmpty()
