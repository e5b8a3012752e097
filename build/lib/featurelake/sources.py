"""Reads a group's source: what is new since the last successful run, or an event-time window.

Where the incremental state lives, by kind of source:
- S3 files: a Structured Streaming checkpoint per group (<root>/_checkpoints/<group>); each run
  is a Trigger.AvailableNow query whose foreachBatch does the whole ingest, so the checkpoint
  commits a batch only after it was written or quarantined (a crash replays it; MERGE makes the
  replay harmless).
- JDBC: the watermark a successful run recorded in the catalogue; a run reads (last, max].
- Delta: the last version a run read, from the catalogue; a run reads the change data feed after
  it (the first run reads the snapshot).
An explicit window [start, end) reads the source afresh and touches none of that state.
"""
from __future__ import annotations

import logging
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar, cast

from featurelake import logfiles
from featurelake.errors import FeaturelakeError, JobError, root_message
from featurelake.parquettime import as_declared, infer_with_nanos, is_nanos_error, nanos_columns
from featurelake.retry import retry
from featurelake.spark import jvm, one_row, session_setting

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.config import Config, ConnectionConfig
    from featurelake.definitions import DeltaSource, JdbcSource, S3Source
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.ingest")
T = TypeVar("T")
FILE_COLUMN = "_featurelake_file"
"""The input file of each row of a file source, counted for progress and dropped before the transform."""
CORRUPT_COLUMN = "_featurelake_corrupt"
"""The raw text of a CSV or JSON record whose values do not parse as their declared types."""
TIME_READS = ("timestamp", "timestamp_ntz", "long", "date", "string")
"""Declared types a nanosecond parquet column is read as (others are refused as Spark refuses them)."""
JDBC_DRIVERS = {"jdbc:postgresql:": "org.postgresql.Driver", "jdbc:sqlite:": "org.sqlite.JDBC"}
_CONNECT_ERRORS = ("connection", "connect to", "refused", "authentication", "password", "timed out", "timeout",
                   "08001", "08004", "08006", "28000", "28p01", "no route to host", "unknown host")


@dataclass
class Window:
    """An event-time window [start, end), UTC; both None means 'what is new'."""

    start: Optional[datetime] = None
    end: Optional[datetime] = None

    def __bool__(self) -> bool:
        return self.start is not None or self.end is not None

    def text(self) -> str:
        return f"{_iso(self.start) if self.start else '..'}/{_iso(self.end) if self.end else '..'}"


@dataclass
class SourceBatch:
    """What one read produced and how to record it; df None means nothing new."""

    df: Optional["DataFrame"]
    window: str
    watermark: Optional[str] = None
    """JDBC: the watermark the read starts after; the run records the maximum it read instead."""
    watermark_column: Optional[str] = None
    source_version: Optional[int] = None
    guard: Callable[[Callable[[], Any]], Any] = field(default=lambda action: action())
    """Runs an action that reads the source (JDBC: with the connection's bounded retry)."""
    files: list = field(default_factory=list)
    """Files of a file source that gave no rows: {"file", "kind" (empty, unreadable, columns), "reason"}."""
    cleanup: Callable[[], None] = field(default=lambda: None)
    """Deletes what the read staged (an HTTP source's JSON-lines file), once the batch is done."""


def utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return utc(t).strftime("%Y-%m-%dT%H:%M:%SZ") if utc(t).microsecond == 0 else utc(t).isoformat()


def _spark_ts(t: datetime) -> str:
    """A UTC timestamp literal Spark parses the same in every session (whose time zone is UTC)."""
    return utc(t).strftime("%Y-%m-%d %H:%M:%S.%f")


def in_window(df: "DataFrame", column: str, window: Window) -> "DataFrame":
    from pyspark.sql import functions as F

    if window.start is not None:
        df = df.where(F.col(column) >= F.lit(_spark_ts(window.start)).cast("timestamp"))
    if window.end is not None:
        df = df.where(F.col(column) < F.lit(_spark_ts(window.end)).cast("timestamp"))
    return df


def prefilter(df: "DataFrame", column: Optional[str], window: Window) -> "DataFrame":
    """The window on the source's own timestamp column, when it is a real timestamp (so that JDBC
    and Delta push it down); the transformed rows are filtered on the group's column anyway."""
    if not window or not column or column not in df.columns:
        return df
    if df.schema[column].dataType.typeName() not in ("timestamp", "timestamp_ntz", "date"):
        return df
    return in_window(df, column, window)


# ---- S3 and other file systems ----------------------------------------------------------------

_FAILED_READ = re.compile(r"\[FAILED_READ_FILE\.(\w+)\] Encountered error while reading file (\S+?)\.?\s")


def unreadable_file(exc: BaseException, source_path: str) -> Optional[str]:
    """When a file under the source's path could not be read (corrupt, or deleted after the run
    listed it): which file, and what to do. None for any other error."""
    found = _FAILED_READ.search(str(exc))
    if not found:
        return None
    kind, path = found.groups()
    bare = lambda p: re.sub(r"^file:(//)?", "", p)  # noqa: E731 - Spark names local files file:/...
    if not bare(path).startswith(bare(source_path).rstrip("/") + "/"):
        return None
    if kind == "FILE_NOT_EXIST":
        return (f"source file {path} was deleted after this run listed it; nothing was written: run the "
                f"ingest again (it lists the files afresh)")
    return (f"source file {path} cannot be read ({root_message(exc)}); nothing was written: replace it with a "
            f"good file or remove it, then run the ingest again (it reads the same batch of files)")


def _file_reader(spark: "SparkSession", source: "S3Source", streaming: bool) -> Any:
    reader = (spark.readStream if streaming else spark.read).format(source.format)
    return reader.options(**{k: str(v) for k, v in source.options.items()})


def file_schema(spark: "SparkSession", source: "S3Source", path: str) -> Optional[Any]:
    """The source's schema: declared, or inferred from the files; None when there are no files."""
    from pyspark.errors import AnalysisException

    if source.format == "delta":
        from delta.tables import DeltaTable

        return spark.read.format("delta").load(path).schema if DeltaTable.isDeltaTable(spark, path) else None
    if source.pattern:
        return logfiles.schema(source.pattern)
    if source.schema:
        from pyspark.sql.types import _parse_datatype_string

        return _parse_datatype_string(source.schema)
    reader = _file_reader(spark, source, streaming=False)
    try:
        return reader.load(path).schema
    except Exception as exc:
        if source.format == "parquet" and is_nanos_error(exc):
            return infer_with_nanos(spark, lambda: reader.load(path).schema, lambda: reader.load(path).inputFiles(),
                                    lambda file: _parquet_footer(spark, file)[1])
        if not isinstance(exc, AnalysisException):
            raise
        if any(s in str(exc) for s in ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA", "Path does not exist")):
            return None
        raise JobError(f"source {source.name!r}: cannot read {source.format} files at {path}: "
                       f"{root_message(exc)}") from None


def _has_header(source: "S3Source") -> bool:
    return source.format == "csv" and str(source.options.get("header", "false")).lower() == "true"


def _parquet_footer(spark: "SparkSession", path: str) -> tuple[list[str], dict[str, bool]]:
    """A parquet file's column names and its nanosecond timestamp columns, from its footer."""
    vm = jvm(spark)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    reader = vm.org.apache.parquet.hadoop.ParquetFileReader.open(
        vm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(vm.org.apache.hadoop.fs.Path(path), conf))
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
        return [f.getName() for f in schema.getFields()], nanos_columns(schema)
    finally:
        reader.close()


def _file_columns(spark: "SparkSession", source: "S3Source", path: str) -> tuple[Optional[list[str]], dict[str, bool]]:
    """The column names a file carries (a CSV header, a parquet footer), read on the driver
    without a Spark job; None for formats whose rows name their own fields (JSON) or have none.
    [] for a CSV file without a single line. Second: its nanosecond timestamp columns (parquet)."""
    vm = jvm(spark)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    p = vm.org.apache.hadoop.fs.Path(path)
    if _has_header(source):
        import csv

        stream = p.getFileSystem(conf).open(p)
        codec = vm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(p)
        reader = vm.java.io.BufferedReader(vm.java.io.InputStreamReader(
            codec.createInputStream(stream) if codec else stream, source.options.get("encoding", "UTF-8")))
        try:
            line = reader.readLine()
        finally:
            reader.close()
        if line is None or not line.strip():
            return [], {}
        sep = str(source.options.get("sep", source.options.get("delimiter", ",")))
        return [c.strip() for c in next(csv.reader([line.lstrip("\ufeff")], delimiter=sep,
                                                   quotechar=str(source.options.get("quote", '"'))))], {}
    if source.format == "parquet":
        return _parquet_footer(spark, path)
    return None, {}


def read_new_files(spark: "SparkSession", source: "S3Source", schema: Any,
                   files: list[tuple[str, int]]) -> tuple[Optional["DataFrame"], list[dict]]:
    """The rows of these files with the schema's columns matched BY NAME in each file (a CSV is
    read with its own header, never by position), and the files that gave no rows: empty ones,
    ones that cannot be read, ones missing a declared column; each is set aside alone so that
    the good files of the batch go on. CSV and JSON rows whose values do not parse as their
    declared types keep their raw text in CORRUPT_COLUMN (null for good rows)."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    problems: list[dict] = []
    declared = {f.name: f for f in schema.fields}
    by_columns: dict[tuple[Optional[tuple[str, ...]], tuple[str, ...]], list[str]] = {}
    for path, length in files:
        if length == 0:
            problems.append({"file": path, "kind": "empty", "reason": "is empty (0 bytes)"})
            continue
        try:
            columns, nanos = _file_columns(spark, source, path)
        except Exception as exc:  # noqa: BLE001 - any failure to read a file sets that file aside
            problems.append({"file": path, "kind": "unreadable", "reason": f"cannot be read ({root_message(exc)})"})
            continue
        if columns == []:
            problems.append({"file": path, "kind": "empty", "reason": "has no header line"})
            continue
        missing = [f.name for f in schema.fields if f.name not in columns] if columns is not None else []
        if columns is not None and missing:
            problems.append({"file": path, "kind": "columns", "reason": (
                f"has no column {', '.join(map(repr, missing))} (its columns: {', '.join(columns)})")})
            continue
        nanos = {c: utc for c, utc in nanos.items() if c in declared and declared[c].dataType.typeName() in TIME_READS}
        by_columns.setdefault((tuple(columns) if columns is not None else None, tuple(sorted(nanos))), []).append(path)
    frames = []
    checked = source.format in ("csv", "json")
    for (named, nanos_read), paths in by_columns.items():
        if source.pattern:
            frames.append(logfiles.parse_lines(spark, paths, source.pattern, source.options, FILE_COLUMN,
                                               CORRUPT_COLUMN))
            continue
        fields = [declared.get(c) or StructField(c, StringType()) for c in named] if named else schema.fields
        fields = [StructField(f.name, LongType(), f.nullable) if f.name in nanos_read else f for f in fields]
        reader = spark.read.format(source.format).options(**{k: str(v) for k, v in source.options.items()})
        if checked:
            fields = [*fields, StructField(CORRUPT_COLUMN, StringType())]
            reader = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
        df = reader.schema(StructType(list(fields))).load(paths)
        frames.append(df.select(*[as_declared(f.name, f.dataType) if f.name in nanos_read else F.col(f"`{f.name}`")
                                  for f in schema.fields],
                                F.col(CORRUPT_COLUMN) if checked else F.lit(None).cast("string").alias(CORRUPT_COLUMN),
                                F.col("_metadata.file_path").alias(FILE_COLUMN)))
    return (reduce(lambda a, b: a.unionByName(b), frames) if frames else None), problems


def _listing(spark: "SparkSession", source: "S3Source", streaming: bool) -> Any:
    """A reader of the file names and sizes only (binaryFile without its content column)."""
    reader = (spark.readStream if streaming else spark.read).format("binaryFile")
    return (reader.options(**{k: str(v) for k, v in source.options.items()})
            .schema("path string, modificationTime timestamp, length bigint, content binary"))


def read_files(spark: "SparkSession", path: str, source: "S3Source", window: Window) -> SourceBatch:
    """Every file under the path (batch), cut to the window: backfills and dry runs."""
    schema = file_schema(spark, source, path)
    if schema is None:
        return SourceBatch(None, window.text())
    if source.format == "delta":
        df = spark.read.format("delta").load(path)
        return SourceBatch(prefilter(df, source.timestamp_column, window), window.text())
    listing = _listing(spark, source, False).load(path)
    sizes = {_bare(r["path"]): (r["path"], r["length"]) for r in listing.select("path", "length").collect()}
    files = list(sizes.values()) + [(f, 0) for f in listing.inputFiles()  # the scan skips empty files
                                    if _bare(f) not in sizes]
    rows, problems = read_new_files(spark, source, schema, files)
    return SourceBatch(rows if rows is None else prefilter(rows, source.timestamp_column, window), window.text(),
                       files=problems)


def stream_files(spark: "SparkSession", path: str, source: "S3Source", checkpoint: str,
                 handle: Callable[[Optional["DataFrame"], int, str, list], None]) -> bool:
    """Runs handle(batch, batch_id, query_id, files) on every batch of files not seen by the
    checkpoint, then stops (Trigger.AvailableNow); `files` are the batch's files that gave no
    rows (see read_new_files), batch None when none gave rows. The stream lists the files (names
    and sizes), and each batch reads its files by name. An error in handle leaves the batch
    uncommitted and is raised here as itself. Returns False when there were no files at all."""
    schema = file_schema(spark, source, path)
    if schema is None:
        return False
    ready = threading.Event()
    state: dict[str, Any] = {}  # the query id, set once started; the error a batch raised

    def on_batch(df: "DataFrame", batch_id: int) -> None:
        ready.wait()  # start() has returned the query id
        try:
            if source.format == "delta":
                handle(df, batch_id, state["query_id"], [])
                return
            sizes = {_bare(r["path"]): (r["path"], r["length"]) for r in df.select("path", "length").collect()}
            files = list(sizes.values()) + [(f, 0) for f in _logged_files(spark, checkpoint, batch_id)
                                            if _bare(f) not in sizes]  # the scan skips empty files
            rows, problems = read_new_files(spark, source, schema, files)
            handle(rows, batch_id, state["query_id"], problems)
        except BaseException as exc:
            state["error"] = exc
            raise

    if source.format == "delta":
        stream = _file_reader(spark, source, streaming=True).load(path)
    else:
        stream = _listing(spark, source, streaming=True).load(path).select("path", "length")
    # A second run on the same checkpoint must fail, not stop the first one half-way (Spark's
    # default for a restart in the same application), which would then look like a finished run.
    try:
        with session_setting(spark, "spark.sql.streaming.stopActiveRunOnRestart", "false"):
            query = (stream.writeStream.foreachBatch(on_batch).trigger(availableNow=True)
                     .option("checkpointLocation", checkpoint).start())
            state["query_id"] = str(query.id)
            ready.set()
            query.awaitTermination()
    except Exception as exc:
        if "error" in state:
            raise state["error"] from None
        if _checkpoint_in_use(exc):
            raise JobError(f"source {source.name!r}: another ingest of these files is running (it holds the "
                           f"checkpoint {checkpoint}); this run wrote nothing: run it again once the other has "
                           f"finished") from None
        raise JobError(f"source {source.name!r}: reading new {source.format} files at {path} failed: "
                       f"{root_message(exc)}") from None
    return True


def _bare(path: str) -> str:
    return re.sub(r"^file:(//)?", "", path)  # Spark names local files file:/... or file:///...


def _read_text(spark: "SparkSession", path: str) -> Optional[str]:
    vm = jvm(spark)
    p = vm.org.apache.hadoop.fs.Path(path)
    fs = p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(p):
        return None
    stream = fs.open(p)
    try:
        return str(vm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _logged_files(spark: "SparkSession", checkpoint: str, batch_id: int) -> list[str]:
    """The files the stream assigned to a micro-batch, from its checkpoint: offsets/<id> ends with
    the file source's {"logOffset": n}; the source log (Spark's FileStreamSourceLog) holds, per
    log id, a 'v1' line then one JSON entry per file, every tenth id compacted into <id>.compact
    with the entries of all earlier ones."""
    import json

    def log_offset(batch: int) -> Optional[int]:
        text = _read_text(spark, f"{checkpoint.rstrip('/')}/offsets/{batch}") if batch >= 0 else None
        return json.loads(text.strip().splitlines()[-1])["logOffset"] if text else None

    end = log_offset(batch_id)
    if end is None:
        return []
    start = log_offset(batch_id - 1)
    ids = range((end - 1 if start is None else start) + 1, end + 1)
    paths = []
    for log_id in ids:
        text = _read_text(spark, f"{checkpoint.rstrip('/')}/sources/0/{log_id}") or _read_text(
            spark, f"{checkpoint.rstrip('/')}/sources/0/{(log_id // 10 + 1) * 10 - 1}.compact") or ""
        entries = [json.loads(line) for line in text.splitlines()[1:] if line.strip()]
        paths += [e["path"] for e in entries if e.get("batchId") == log_id]
    return paths


def _checkpoint_in_use(exc: BaseException) -> bool:
    """Spark's words for a checkpoint another query holds: in this application ("already
    active"), or in another process that wrote the same offset first ("concurrently using")."""
    text = f"{exc}"
    return "already active" in text or "concurrently using" in text


def copy_checkpoint(spark: "SparkSession", checkpoint: str, scratch: str) -> bool:
    """Copies a checkpoint so a dry run can see what is pending without moving the real one."""
    vm = jvm(spark)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    src = vm.org.apache.hadoop.fs.Path(checkpoint)
    dst = vm.org.apache.hadoop.fs.Path(scratch)
    fs = src.getFileSystem(conf)
    if not fs.exists(src):
        return False
    return bool(vm.org.apache.hadoop.fs.FileUtil.copy(fs, src, dst.getFileSystem(conf), dst, False, conf))


def delete_path(spark: "SparkSession", path: str) -> None:
    p = jvm(spark).org.apache.hadoop.fs.Path(path)
    p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(p, True)


# ---- JDBC -------------------------------------------------------------------------------------

def _redact(text: str, conn: "ConnectionConfig") -> str:
    return text.replace(conn.password, "***") if conn.password else text


def _retrying(name: str, conn: "ConnectionConfig", what: str) -> Callable[[Callable[[], T]], T]:
    """Runs an action that talks to the database; connection and login failures are retried
    conn.retries times with a short backoff, then become a JobError naming the connection."""
    attempts = max(1, int(conn.retries))

    def reason(exc: Exception) -> str:
        return _redact(root_message(exc), conn)

    def connecting(exc: Exception) -> bool:
        return not isinstance(exc, FeaturelakeError) and any(s in reason(exc).lower() for s in _CONNECT_ERRORS)

    def give_up(exc: Exception) -> Exception:
        return JobError(f"connection {name!r} ({_redact(conn.url, conn)}) failed after {attempts} attempt(s): "
                        f"{reason(exc)}. Check that the database is up and reachable and that the user and "
                        f"password (taken from the environment) are right")

    def guard(action: Callable[[], T]) -> T:
        try:
            return retry(action, attempts=attempts, retryable=connecting, give_up=give_up, base=0.5, cap=5.0,
                         on_retry=lambda exc, n: log.warning("connection %r: attempt %d of %d failed (%s); "
                                                             "retrying", name, n, attempts, reason(exc)))
        except FeaturelakeError as exc:
            if isinstance(exc.__cause__, Exception) and connecting(exc.__cause__):
                # give_up's error: the driver's trace it chains may hold the password
                exc.__cause__ = None
                exc.__suppress_context__ = True
            raise
        except Exception as exc:
            raise JobError(f"connection {name!r}: reading {what} failed: {reason(exc)}") from None
    return guard


@contextmanager
def _py4j_below_debug() -> Iterator[None]:
    """py4j logs every command it sends to the JVM at DEBUG, option values (the password)
    included: never let that happen while a secret crosses, whatever the application's level."""
    logger = logging.getLogger("py4j")
    old = logger.level
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(old)


def _jdbc_frame(spark: "SparkSession", conn: "ConnectionConfig", source: "JdbcSource") -> "DataFrame":
    with _py4j_below_debug():
        return _jdbc_reader(spark, conn, source).load()


def _jdbc_reader(spark: "SparkSession", conn: "ConnectionConfig", source: "JdbcSource") -> Any:
    table = source.table or f"({source.query.strip().rstrip(';')}) {source.name}_q"  # type: ignore[union-attr]
    reader = (spark.read.format("jdbc").option("url", conn.url).option("dbtable", table)
              .option("fetchsize", str(source.fetch_size)).option("pushDownAggregate", "true"))
    driver = conn.driver or next((d for p, d in JDBC_DRIVERS.items() if conn.url.startswith(p)), None)
    for key, value in {"driver": driver, "user": conn.user, "password": conn.password}.items():
        if value:
            reader = reader.option(key, value)
    for key, value in conn.properties.items():
        reader = reader.option(key, str(value))
    if source.partition_column:
        reader = (reader.option("partitionColumn", source.partition_column)
                  .option("lowerBound", str(source.lower_bound)).option("upperBound", str(source.upper_bound))
                  .option("numPartitions", str(source.num_partitions)))
    return reader


def max_text(df: "DataFrame", column: str) -> Any:
    """An aggregate: the column's maximum as text that casts back exactly (microseconds for
    timestamps), to record as the next run's watermark."""
    from pyspark.sql import functions as F

    top = F.max(column)
    if df.schema[column].dataType.typeName() in ("timestamp", "timestamp_ntz"):
        top = F.date_format(top, "yyyy-MM-dd HH:mm:ss.SSSSSS")
    return top.cast("string")


def read_jdbc(spark: "SparkSession", store: "FeatureStore", source: "JdbcSource", since: Optional[str],
              window: Window) -> SourceBatch:
    """Rows past the watermark `since`, or the window's rows. The lower bound is pushed down to
    the database; the new watermark is the maximum of the rows actually read (computed with the
    batch's count), so no row committed between two queries can fall between runs. A database
    that compares timestamps as text (SQLite) may return the boundary row again: the MERGE makes
    that harmless."""
    from pyspark.sql import functions as F

    conn = store.config.connection(source.connection)
    guard = _retrying(source.connection, conn, source.table or f"the query of source {source.name!r}")
    df = guard(lambda: _jdbc_frame(spark, conn, source))
    wm = source.watermark_column
    if window or not wm:
        return SourceBatch(prefilter(df, source.timestamp_column, window),
                           window.text() if window else "all rows", guard=guard)
    if wm not in df.columns:
        from featurelake.errors import DefinitionError

        raise DefinitionError(f"source {source.name!r}: watermark column {wm!r} is not in {source.table or 'the query'}"
                              f" (columns: {', '.join(df.columns)})")
    if since is not None:
        df = df.where(F.col(wm) > F.lit(since).cast(df.schema[wm].dataType.simpleString()))
    return SourceBatch(df, f"{wm} > {since or '-inf'}", watermark=since, watermark_column=wm, guard=guard)


# ---- Delta ------------------------------------------------------------------------------------

def _delta_target(store: "FeatureStore", source: "DeltaSource") -> tuple[str, bool]:
    """(where, whether it is a path rather than a table name) of the table to read; a group's
    offline table by its own location."""
    if source.group:
        table = store.offline(source.group)
        return (table.table_name, False) if table.table_name else (table.path, True)
    if source.path:
        return store.config.resolve(source.path), True
    return cast(str, source.table), False  # DeltaSource takes exactly one of path=, table=, group=


def read_delta(spark: "SparkSession", store: "FeatureStore", source: "DeltaSource", since: Optional[int],
               window: Window) -> SourceBatch:
    """The change data feed after version `since` (inserts and updated rows, in commit order);
    the snapshot on the first run or for a window."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from featurelake.offline import BOOKKEEPING

    where, by_path = _delta_target(store, source)
    exists = DeltaTable.isDeltaTable(spark, where) if by_path else spark.catalog.tableExists(where)
    if not exists:
        hint = f": ingest group {source.group!r} first" if source.group else ""
        raise JobError(f"source {source.name!r}: no Delta table at {where}{hint}")
    delta = DeltaTable.forPath(spark, where) if by_path else DeltaTable.forName(spark, where)
    latest = int(one_row(delta.history(1).select("version"))[0])

    def load(reader: Any) -> "DataFrame":
        return reader.load(where) if by_path else reader.table(where)

    if window or since is None:
        df = load(spark.read.format("delta").option("versionAsOf", latest))
        text = window.text() if window else f"snapshot at version {latest}"
    elif since >= latest:
        return SourceBatch(None, f"no versions after {since}", source_version=since)
    else:
        try:
            changes = load(spark.read.format("delta").option("readChangeFeed", "true")
                           .option("startingVersion", since + 1).option("endingVersion", latest))
            df = (changes.where(F.col("_change_type").isin("insert", "update_postimage"))
                  .orderBy("_commit_version").drop("_change_type", "_commit_version", "_commit_timestamp"))
            df.schema  # noqa: B018 - resolve now, so a table without change data feed fails here
        except Exception as exc:
            raise JobError(f"source {source.name!r}: cannot read the change data feed of {where} after version "
                           f"{since}: {root_message(exc)}. Enable it with ALTER TABLE ... SET TBLPROPERTIES "
                           f"('delta.enableChangeDataFeed' = 'true'), or read it by window (--start/--end)") from None
        text = f"versions {since + 1}..{latest}"
    if source.group:
        df = df.drop(*BOOKKEEPING)
    df = prefilter(df, source.timestamp_column, window)
    return SourceBatch(df, text, source_version=None if window else latest)


def scratch_path(config: "Config", group: str) -> str:
    return config.lake("_checkpoints", "_scratch", f"{group}-{uuid.uuid4().hex[:8]}")
