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
JAVA_OPTIONS = "-Duser.timezone=UTC -Divy.message.logger.level=1"
# HotSpot's messages about the class archive (one it cannot use is ignored: no archive, no harm).
QUIET_ARCHIVE = "-Xlog:cds=off,cds+dynamic=off"


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
        "spark.driver.extraJavaOptions": " ".join([JAVA_OPTIONS, *_archive_options()]),
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


def class_archive() -> Path:
    """The driver JVM's class-data archive, kept in this Python environment (one per pyspark
    install): the Spark, Delta and Hadoop classes a session loads, already parsed and verified.
    Measured here, it takes a process that starts a session and runs a first job from 11.4 s to
    7.8 s. `python -m featurelake.spark --prefetch` (make setup) records it."""
    import pyspark

    return Path(sys.prefix, "share", "featurelake", f"spark-{pyspark.__version__}.jsa")


def _archive_options(archive: Optional[Path] = None, *, required: bool = False) -> list[str]:
    """The JVM flags that map the class archive when there is one. HotSpot checks that it fits
    this JVM and class path and, unless `required`, starts without it otherwise."""
    archive = archive or class_archive()
    if os.environ.get("FEATURELAKE_CLASS_ARCHIVE") == "off" or " " in str(archive) or not archive.is_file():
        return []
    return [f"-XX:SharedArchiveFile={archive}", "-Xshare:on" if required else QUIET_ARCHIVE]


def record_class_archive() -> Optional[Path]:
    """Records the class archive in two child processes. The first starts a session with
    -XX:ArchiveClassesAtExit and runs the kinds of job featurelake runs; HotSpot writes the
    archive as its JVM exits. The second starts a session that must map it (-Xshare:on). Only
    then is it renamed over the old one: HotSpot crashes on a truncated archive, so a JVM must
    never find a partial one. None when either child fails (Spark starts without an archive)."""
    import subprocess
    import tempfile

    archive = class_archive()
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}")
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        for step in ("--record-classes", "--use-classes"):
            with tempfile.TemporaryDirectory() as scratch:  # where a crashing JVM leaves its hs_err file
                done = subprocess.run([sys.executable, "-m", "featurelake.spark", step, str(tmp)],
                                      capture_output=True, text=True, timeout=900, cwd=scratch,
                                      env={**os.environ, "FEATURELAKE_CLASS_ARCHIVE": "on"})
            if done.returncode != 0 or not tmp.is_file():
                print(f"no class archive (Spark starts without one): {step} failed:\n{done.stderr[-2000:]}",
                      file=sys.stderr)
                return None
        os.replace(tmp, archive)
        return archive
    except OSError as exc:
        print(f"no class archive (Spark starts without one): {exc}", file=sys.stderr)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _child_session(options: list[str]) -> None:
    """A session whose driver JVM runs with `options`, typical jobs, then a clean JVM exit (the
    moment HotSpot writes an archive it records)."""
    import tempfile

    from pyspark import SparkContext

    from featurelake.config import Config

    config = Config()
    config.spark.conf["spark.driver.extraJavaOptions"] = " ".join([JAVA_OPTIONS, *options])
    spark = get_spark(config)
    with tempfile.TemporaryDirectory() as work:
        _typical_jobs(spark, work)
    spark.stop()
    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is not None:  # the JVM exits when its stdin closes
        proc.stdin.close()
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"the JVM exited with {proc.returncode}")


def _typical_jobs(spark: "SparkSession", work: str) -> None:
    """Jobs like featurelake's, for the classes they load to be recorded: classes no recorded job
    loaded are read from their jars as before."""
    import pandas as pd
    from delta.tables import DeltaTable
    from pyspark.sql import Window, functions as F

    path = f"{work}/t"
    rows = spark.range(2_000).select((F.col("id") % 50).alias("k"), F.col("id").cast("double").alias("v"),
                                     F.timestamp_micros(F.col("id") * 60_000_000).alias("ts"))
    rows.withColumn("d", F.to_date("ts")).write.format("delta").partitionBy("d") \
        .option("delta.enableChangeDataFeed", "true").save(path)
    table = DeltaTable.forPath(spark, path)
    table.alias("t").merge(rows.withColumn("d", F.to_date("ts")).alias("s"), "t.k = s.k AND t.ts = s.ts") \
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    table.history().collect()
    read = spark.read.format("delta").load(path)
    spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path).count()
    order = Window.partitionBy("k").orderBy("ts")
    read.withColumn("s", F.sum("v").over(order.rangeBetween(Window.unboundedPreceding, 0))) \
        .join(read.groupBy("k").agg(F.max("ts").alias("m")), "k").toArrow()
    spark.createDataFrame(pd.DataFrame({"k": [1, 2], "x": ["a", "b"]})).join(read, "k").toPandas()
    spark.read.parquet(str(next(Path(path).rglob("*.parquet")))).count()


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
    """`python -m featurelake.spark --prefetch`: resolve the jars into the cache once, then record
    the class archive."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] in ("--record-classes", "--use-classes"):
        recording = argv[0] == "--record-classes"
        _child_session([f"-XX:ArchiveClassesAtExit={argv[1]}", QUIET_ARCHIVE] if recording
                       else _archive_options(Path(argv[1]), required=True))
        return 0
    if argv != ["--prefetch"]:
        print("usage: python -m featurelake.spark --prefetch", file=sys.stderr)
        return 2
    spark = get_spark()
    print(f"Spark {spark.version} with Delta ready; jars cached in {IVY_CACHE}")
    spark.stop()
    archive = record_class_archive()
    if archive is not None:
        print(f"class archive recorded in {archive} ({archive.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
