"""The quarantine table of a group, <root>/quarantine/<group> (Delta): whole batches that failed
their suite, and rows with a null key or an implausible event time, as the transform produced
them, with the run that set them aside and why. Source records that broke the data contract
before any transform (a file that cannot be read or lacks a declared column, a value that does
not parse as its declared type) go to <root>/rejected/<group>, as text, with file and reason. Rows can
be corrected in place (it is a Delta table) and re-ingested with `--from-quarantine RUN_ID`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from featurelake.catalog import with_retry
from featurelake.commitlock import committing
from featurelake.errors import NotFoundError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from featurelake.config import Config

COLUMNS = ["_run_id", "_reason", "_quarantined_at"]
MESSAGE_COLUMNS = ["_topic", "_partition", "_offset"]
"""Where a streamed row came from: its Kafka message (quarantined and rejected rows keep them)."""


def quarantine_path(config: "Config", group: str) -> str:
    return config.lake("quarantine", group)


def put(spark: "SparkSession", path: str, batch: "DataFrame", run_id: str, reason: "Union[str, Column]",
        txn: Optional[tuple[str, int]] = None, config: Optional["Config"] = None) -> None:
    """Appends the batch; reason is a text, or a column when rows differ. txn (application id,
    batch id) makes a replayed streaming batch a no-op, so a batch has one put per table."""
    from pyspark.sql import functions as F

    why = F.lit(reason[:4000]) if isinstance(reason, str) else F.substring(reason, 1, 4000)
    rows = (batch.withColumn("_run_id", F.lit(run_id)).withColumn("_reason", why)
            .withColumn("_quarantined_at", F.current_timestamp()))
    writer = rows.write.format("delta").mode("append").option("mergeSchema", "true")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    with committing(config, path, f"quarantine of run {run_id}"):
        with_retry(lambda: writer.save(path), f"quarantine table {path}")


def rejected_path(config: "Config", group: str) -> str:
    return config.lake("rejected", group)


def reject(spark: "SparkSession", path: str, rows: "DataFrame", run_id: str,
           txn: Optional[tuple[str, int]] = None, config: Optional["Config"] = None) -> None:
    """Appends source records that broke the data contract (columns _file, _record, _reason) to
    <root>/rejected/<group>: they never reached the transform, so they are kept as text, to be
    corrected in their file and delivered again, not re-ingested from here. A Kafka message's
    record also keeps its place in the topic (columns _topic, _partition, _offset)."""
    from pyspark.sql import functions as F

    place = [F.col(c) for c in MESSAGE_COLUMNS if c in rows.columns]
    rows = (rows.select(F.col("_file").cast("string"), F.col("_record").cast("string"),
                        F.substring(F.col("_reason"), 1, 4000).alias("_reason"), *place)
            .withColumn("_run_id", F.lit(run_id)).withColumn("_rejected_at", F.current_timestamp()))
    writer = rows.write.format("delta").mode("append").option("mergeSchema", "true")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    with committing(config, path, f"rejected records of run {run_id}"):
        with_retry(lambda: writer.save(path), f"rejected-records table {path}")


def take(spark: "SparkSession", path: str, group: str, run_id: str) -> "DataFrame":
    """The rows a run quarantined, without the quarantine's own columns."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if not DeltaTable.isDeltaTable(spark, path):
        raise NotFoundError(f"feature group {group!r} has no quarantined rows (no table at {path})")
    table = spark.read.format("delta").load(path)
    rows = table.where(F.col("_run_id") == run_id)
    if rows.isEmpty():
        known = [r["_run_id"] for r in table.select("_run_id").distinct().limit(20).collect()]
        raise NotFoundError(f"no rows of run {run_id!r} in the quarantine of group {group!r} at {path}; "
                            f"runs with quarantined rows: {', '.join(sorted(known)) or 'none'}")
    return rows.drop(*COLUMNS, *MESSAGE_COLUMNS)
