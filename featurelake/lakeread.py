"""Reads Delta tables without a JVM, through delta-rs (the `deltalake` package): the catalogue,
the offline tables' history, versions and newest event time. A read verb (`catalog list`,
`monitor freshness`) then costs a fraction of a second instead of a SparkSession's start.

Writes stay on Spark and Delta: delta-rs only reads here, so the two never race as writers (on
S3 mixing them would not be safe, as they lock differently). localset's spine copy, a new table
no one else writes, is the one exception. Rows come back as Spark's
collect() gives them (naive local datetimes, maps as dicts), so callers see the same values
whichever reader ran. FEATURELAKE_READER=spark forces the Spark path; storage delta-rs cannot
reach (not a local path or S3) falls back to it too."""
from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence
from urllib.parse import urlparse

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from featurelake.config import Config

log = logging.getLogger(__name__)

SCHEMES = ("", "file", "s3", "s3a")
"""Where delta-rs reads here: a local path or S3 (s3a:// is Hadoop's name for the same)."""


def spark_reason(path: str) -> Optional[str]:
    """Why the path must be read with Spark, or None when delta-rs can read it."""
    if os.environ.get("FEATURELAKE_READER", "").lower() == "spark":
        return "FEATURELAKE_READER=spark"
    scheme = urlparse(path).scheme
    if scheme not in SCHEMES and len(scheme) != 1:  # one letter: a Windows drive
        return f"delta-rs reads local paths and S3 here, not {scheme}://"
    return None


def fallback(path: str, why: str) -> None:
    log.info("reading %s with Spark: %s", path, why)


def offline_path(config: "Config", group: str) -> str:
    """Where OfflineTable keeps a group's table."""
    return config.lake("offline", group)


def offline_reason(config: "Config", group: str) -> tuple[str, Optional[str]]:
    """(the group's offline table path, why it must be read with Spark or None); metastore
    tables (storage.database) are Spark's."""
    path = offline_path(config, group)
    why = "storage.database names metastore tables" if config.storage.database else spark_reason(path)
    if why:
        fallback(path, why)
    return path, why


def uri(path: str) -> str:
    return "s3://" + path[len("s3a://"):] if path.startswith("s3a://") else path


def storage_options(config: Optional["Config"]) -> dict[str, str]:
    """The config's S3 settings for delta-rs; credentials come from the environment as for boto3."""
    opts: dict[str, str] = {}
    s3 = config.s3 if config is not None else None
    if s3 is not None and s3.endpoint_url:
        opts["AWS_ENDPOINT_URL"] = s3.endpoint_url
        if s3.endpoint_url.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    if s3 is not None and s3.path_style:
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    region = (s3.region if s3 is not None else None) or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["AWS_REGION"] = region
    return opts


def open_table(path: str, config: Optional["Config"], version: Optional[int] = None,
               files: bool = True) -> Optional["DeltaTable"]:
    """The Delta table at path (as of version), or None when there is none yet. files=False skips
    loading its file list (enough for its history, version and schema)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from featurelake.errors import JobError

    try:
        return DeltaTable(uri(path), version=version, storage_options=storage_options(config) or None,
                          without_files=not files)
    except TableNotFoundError:
        return None
    except Exception as exc:  # unreachable storage, credentials, a protocol delta-rs cannot read
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m|↳", " ", str(exc)).split())[:400]
        raise JobError(f"cannot read the Delta table at {path} with delta-rs ({text}): check storage.root, "
                       f"the s3: settings and the AWS credentials, "
                       f"or set FEATURELAKE_READER=spark to read it with Spark") from exc


def rows(path: str, config: Optional["Config"], where: Optional[Callable[[dict], bool]] = None) -> list[dict]:
    """The table's rows as Spark's collect() gives them ([] when there is no table yet)."""
    table = open_table(path, config)
    if table is None:
        return []
    data = _query(table, "SELECT * FROM t")
    out = [dict(zip(data.column_names, values)) for values in zip(*[_column(col) for col in data.columns])]
    return [r for r in out if where(r)] if where else out




def data_files(path: str, config: Optional["Config"], version: int) -> Optional[list[str]]:
    """The data files of a Delta table at a version as Spark paths, when delta-rs can list them and
    they hold the columns under their own names (no column mapping); None otherwise."""
    if spark_reason(path):
        return None
    table = open_table(path, config, version)
    if table is None or table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        return None
    return ["s3a://" + f[len("s3://"):] if f.startswith("s3://") else f for f in table.file_uris()]


def history(path: str, config: Optional["Config"]) -> list[dict]:
    """Like DeltaTable.history() in Spark: version, timestamp, operation, operationMetrics,
    userMetadata. The timestamp is the writer's commit time (Spark shows the log file's)."""
    table = open_table(path, config)
    if table is None:
        return []
    return [{"version": c["version"], "operation": c.get("operation"), "userMetadata": c.get("userMetadata"),
             "operationMetrics": {k: str(v) for k, v in (c.get("operationMetrics") or {}).items()},
             "timestamp": _spark_time(c["timestamp"] * 1000)}
            for c in table.history()]


def newest(path: str, config: Optional["Config"], column: str) -> tuple[Optional[int], Any]:
    """(the table's version, the greatest value of one column), scanning that column only;
    (None, None) when there is no table yet."""
    table = open_table(path, config)
    if table is None:
        return None, None
    data = _query(table, f"SELECT max({_name(column)}) AS newest FROM t")
    return int(table.version()), _column(data.column(0))[0]


def newest_micros(path: str, config: Optional["Config"], column: str, at_most_us: int) -> Optional[int]:
    """The greatest value of a timestamp column not after at_most_us, as µs since the epoch (None:
    no such row, or no table yet): a stream's first lateness reference, read in milliseconds where a
    Spark scan of the table took seconds."""
    from datetime import timezone

    table = open_table(path, config)
    if table is None:
        return None
    data = _query(table, f"SELECT max({_name(column)}) AS newest FROM t "
                         f"WHERE {_name(column)} <= to_timestamp_micros({int(at_most_us)})")
    value = data.column(0).to_pylist()[0]
    if value is None:
        return None
    value = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return (value - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _MICROSECOND


_MICROSECOND = timedelta(microseconds=1)


def _query(table: "DeltaTable", sql: str) -> Any:
    """SQL over the table as `t`, run by delta-rs' DataFusion engine, as an arro3 Table. Not
    to_pyarrow_table(): its Arrow C++ scan threads outlive the call and abort the process at exit
    now and then ("terminate called without an active exception", 2-6 runs in 30); and arro3,
    delta-rs' own Arrow binding, imports in milliseconds where pyarrow (with numpy) takes 0.5 s."""
    from deltalake import QueryBuilder

    return QueryBuilder().register("t", table).execute(sql).read_all()


def arrow_rows(table: "DeltaTable", columns: Optional[Sequence[str]] = None,
               dates: Sequence[tuple[str, str, str]] = ()) -> Any:
    """The table's rows as a pyarrow Table, read by delta-rs' query engine (not to_pyarrow_table:
    see _query; it aborted 3 of 10 processes at exit here). `dates`: (column, op, 'YYYY-MM-DD')
    filters on date columns, as delta-rs' partition filters."""
    import pyarrow as pa

    where = " AND ".join(f"{_name(c)} {op} DATE '{v}'" for c, op, v in dates)
    select = ", ".join(_name(c) for c in columns) if columns else "*"
    return pa.table(_query(table, f"SELECT {select} FROM t" + (f" WHERE {where}" if where else "")))


def _name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _column(column: Any) -> list:
    """A column's values as PySpark's collect() returns them: maps as dicts, zoned timestamps
    as naive local times."""
    from arro3.core import DataType

    if DataType.is_map(column.type):
        return [None if v is None else {k: _python(x) for k, x in v} for v in column.to_pylist()]
    return [_python(v) for v in column.to_pylist()]


def _python(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    if isinstance(value, list):
        return [_python(v) for v in value]
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    return value


def _spark_time(micros: int) -> datetime:
    """Microseconds since the epoch as PySpark's collect() gives a timestamp: naive, local time."""
    return datetime.fromtimestamp(micros // 1_000_000).replace(microsecond=micros % 1_000_000)
