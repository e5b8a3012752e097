"""Builds the SparkSession from the config, with Delta and the jars featurelake needs, or reuses
the session that already exists (Databricks, a notebook, spark-submit) as it is."""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Optional

from featurelake.errors import JobError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from featurelake.config import Config

KAFKA_CONNECTOR = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"
"""Structured Streaming from Kafka (featurelake.streaming). 4.0.0, not 4.0.1: the 4.0.1 connector's
spark-token-provider-kafka 4.0.1 is not served here; 4.0.0 runs on Spark 4.0.1. Always added:
measured here, a session starts in about 12 s with it or without it."""
AVRO_PACKAGE = "org.apache.spark:spark-avro_2.13:4.0.1"
"""Spark's Avro functions (from_avro: KafkaSource format="avro"); the same version as Spark."""
PACKAGES = [
    "io.delta:delta-spark_2.13:4.0.0",
    "org.apache.hadoop:hadoop-aws:3.4.1",
    "org.postgresql:postgresql:42.7.7",
    "org.xerial:sqlite-jdbc:3.50.3.0",
    KAFKA_CONNECTOR,
    AVRO_PACKAGE,
]
IVY_CACHE = os.environ.get("FEATURELAKE_IVY", str(Path.home() / ".cache" / "featurelake" / "ivy"))
# Where the JVM that get_spark starts writes its stdout and stderr (Ivy's resolution report,
# Spark's start-up lines, log4j output, Java traces); unset, the JVM shares this process's.
SPARK_LOG_ENV = "FEATURELAKE_SPARK_LOG"


TIME_ZONE = "spark.sql.session.timeZone"
_held_lock = threading.Lock()
_held: dict[tuple[int, str], tuple[int, Optional[str]]] = {}


def get_spark(config: Optional["Config"] = None) -> "SparkSession":
    """The active session if there is one, as the caller set it up (featurelake's calls run it
    at UTC and put the caller's time zone back: `in_utc`), else a new one built at UTC."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from featurelake.config import Config

    config = config or Config()
    if config.spark.master.startswith("local"):
        # Local executors run this interpreter, so they see the same packages (boto3 for exports).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Under spark-submit its --master and --packages rule: the JVM is already running.
        builder = builder.master(config.spark.master).appName(config.spark.app_name)
    settings = {
        "spark.jars.packages": ",".join(PACKAGES + list(config.spark.packages)),
        "spark.jars.ivy": IVY_CACHE,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -Divy.message.logger.level=1",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # JDBC drivers (SQLite) report varchar(0) columns that Delta would refuse to hold.
        "spark.sql.legacy.charVarcharAsString": "true",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
    }
    s3 = config.s3
    if s3.endpoint_url:
        settings["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        settings["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint_url.startswith("https")).lower()
    if s3.path_style:
        settings["spark.hadoop.fs.s3a.path.style.access"] = "true"
    region = s3.region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        settings["spark.hadoop.fs.s3a.endpoint.region"] = region
    settings.update({k: str(v) for k, v in config.spark.conf.items()})
    for key, value in settings.items():
        builder = builder.config(key, value)
    log_path = os.environ.get(SPARK_LOG_ENV)
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        spark = builder.getOrCreate()
    else:
        with resolving_jars(), (jvm_output_to(log_path) if log_path else nullcontext()):
            spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def in_utc(spark: "SparkSession") -> ContextManager[None]:
    """featurelake's calls run at UTC, as its time semantics need; the caller's zone comes back after."""
    return session_setting(spark, TIME_ZONE, "UTC")


@contextmanager
def session_setting(spark: "SparkSession", key: str, value: str) -> Iterator[None]:
    """One SQL setting of the caller's session held for the length of a block, and the caller's
    value (or its absence) put back when the last block holding it ends: calls from several
    threads overlap, and the first one out must not pull the setting from under the others."""
    slot = (id(spark), key)
    with _held_lock:
        count, before = _held.get(slot, (0, None))
        if count == 0:
            before = spark.conf.get(key, None)
            if before != value:
                spark.conf.set(key, value)
        _held[slot] = (count + 1, before)
    try:
        yield
    finally:
        with _held_lock:
            count, before = _held.pop(slot)
            if count > 1:
                _held[slot] = (count - 1, before)
            elif before is None:
                spark.conf.unset(key)
            elif before != value:
                spark.conf.set(key, before)


@contextmanager
def resolving_jars() -> Iterator[None]:
    """Holds a lock on the Ivy cache while a JVM starts: Ivy copies the jars into one shared folder,
    so two processes starting at once (two cron'd jobs, parallel tests) could read a half-copied
    jar. The lock is the kernel's, released when the process dies."""
    import fcntl

    Path(IVY_CACHE).mkdir(parents=True, exist_ok=True)
    with open(Path(IVY_CACHE, ".featurelake-start.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def jvm_output_to(path: str) -> Iterator[None]:
    """Points this process's file descriptors 1 and 2 at `path` while the block runs. pyspark
    starts the JVM with the descriptors it finds, so the JVM writes there for its whole life:
    spark-submit's launcher prints Ivy's report itself, before any log4j setting applies."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as target:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in ((1, saved[0]), (2, saved[1])):
            os.dup2(copy, fd)
            os.close(copy)


def one_row(df: "DataFrame") -> "Row":
    """The row of a frame that always has one (an aggregate without groupBy, a Delta table's last
    commit), where PySpark's first() allows for None."""
    row = df.first()
    if row is None:
        raise JobError("Spark returned no row for a query that always returns one: see the Spark log")
    return row


def jvm(spark: "SparkSession") -> Any:
    """The driver's JVM through py4j (Hadoop's file system, Java's regex), which PySpark types
    as optional: absent once the session's context has stopped."""
    view = spark.sparkContext._jvm
    if view is None:
        raise JobError("the SparkSession's context has stopped: no JVM to read files with; start a new session")
    return view


def shuffle_partitions(spark: "SparkSession") -> int:
    """spark.sql.shuffle.partitions as a number; where it is not one (Databricks' "auto"), the
    cores Spark schedules on."""
    value = str(spark.conf.get("spark.sql.shuffle.partitions", "200")).strip()
    return int(value) if value.isdigit() and int(value) > 0 else spark.sparkContext.defaultParallelism


def main(argv: Optional[list] = None) -> int:
    """`python -m featurelake.spark --prefetch`: resolve the jars into the cache once."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--prefetch"]:
        print("usage: python -m featurelake.spark --prefetch", file=sys.stderr)
        return 2
    spark = get_spark()
    print(f"Spark {spark.version} with Delta ready; jars cached in {IVY_CACHE}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
