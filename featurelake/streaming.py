"""`featurelake stream GROUP`: a Kafka topic -> the group's offline Delta table and its DynamoDB
table, exactly once, by Spark Structured Streaming.

Each micro-batch, in order: messages that do not parse (bad JSON, a value not of its declared
type, an empty message) go to <root>/rejected/<group> with their topic, partition and offset;
the rest through the group's transform and its declared columns; rows with a null key or an
implausible event time, and rows breaking a critical row expectation of the suite (not null,
between, in set, regex), go to <root>/quarantine/<group> with their offsets, in one append; a
batch-level critical failure (row count, mean, uniqueness, ...) applies the group's policy to
the whole micro-batch (quarantine, warn, or fail: the stream stops); the rest is MERGEd into the
offline table; then the batch's newest row of every key is written to DynamoDB where it is
newer than the item there.

Exactly once, through crashes (`kill -9` at any moment, then a restart on the same checkpoint):
- Spark writes a micro-batch's offset range to the checkpoint before running it, and marks it
  done only after foreachBatch returns: a restart runs the unfinished batch again with the same
  offsets, so with the same messages.
- The MERGE on (keys, event time) leaves identical rows alone: the replayed batch finds its rows
  already there and commits nothing. Rows of one key and time within a batch collapse to one.
- The rejected and quarantine appends carry Delta's idempotent-writer marks (txnAppId: the
  query's id, kept in the checkpoint; txnVersion: the batch id): a replayed append is skipped.
- Online, each key's newest row of the batch is written where it is newer, by (event time,
  ingestion time), than the key's item (featurelake.online.writer, compare mode), under the
  group's export lease so that no other writer interleaves: an older event never replaces a
  newer item, and a batch that died between the MERGE and DynamoDB writes, when replayed, what
  it had not. Without windows the DynamoDB write runs beside the MERGE (it needs only the batch's
  rows): a batch that dies after it, before the MERGE, leaves the items one batch ahead of the
  table until its replay merges the same rows. Every batch ends with each key's item equal to
  the offline table's newest row, so after the next batch the newer of the item and the batch's
  row is again the offline table's newest: DynamoDB follows the offline table without reading it
  back.

Progress is a `runs` row (kind "stream") at most every `record_every` seconds and at the end,
summing the micro-batches since the last one (the records: featurelake.streamrun); a crash loses
at most that many seconds of progress records, never data.

Window features: after the MERGE, the items of the batch's keys are recomputed from the offline
table as of each key's newest event by the training sets' engine (featurelake.streamwindows),
then written with the same compare. Late events (older than the group's newest event minus
allowed_lateness) are merged like any other and counted in the run (params.late_rows); online
they only ever refresh a key's item as of its newest event, never move it back.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from featurelake import quarantine
from featurelake.catalog import new_id, now
from featurelake.definitions import DEFAULT_LATENESS, KafkaSource
from featurelake.errors import ConfigError, FeaturelakeError, JobError, UsageError, ValidationFailed, root_message
from featurelake.kafkaread import CORRUPT, MESSAGE, VALUE, check_topic, describe, topic_frame
from featurelake.records import RunStatus
from featurelake.runs import RunClock
from featurelake.streamrun import Period, StreamResult, query_params

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from featurelake.definitions import FeatureGroup
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.streaming")
_REASON = "_reason"
_TRIGGER = re.compile(r"^(\d+)(ms|s|m|h)$")
DRIVER_ITEMS = 20_000
"""Micro-batches of up to this many messages write their items from the driver, not the executors."""
_FOREVER_US = 253_402_300_799_999_999
"""9999-12-31 23:59:59.999999 UTC in µs: no event time is after it."""


def trigger_seconds(text: str) -> float:
    """'500ms', '1s', '2m', '1h' -> seconds."""
    m = _TRIGGER.match(text.strip()) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"--trigger {text!r}: write a positive interval such as 500ms, 1s or 1m")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# ---- the stream -------------------------------------------------------------------------------

class _Stream:
    """One running stream of a group: what every micro-batch needs, and the progress since the
    last run row."""

    def __init__(self, store: "FeatureStore", group: "FeatureGroup", record_every: float):
        from featurelake.validation import load_suite

        self.store, self.group = store, group
        self.source: KafkaSource = group.source  # type: ignore[assignment]
        self.spark = store.spark
        self.table = store.offline(group.name)
        self.version = store.catalog.version_of(group)
        self.policy = group.validation or store.config.validation.on_failure
        self.suite_path = store.repo.expectations_path(group)
        self.suite = load_suite(self.suite_path) if self.suite_path else []
        self.checkpoint = store.config.lake("_checkpoints", group.name, f"kafka_{self.source.topic}")
        self.record_every = record_every
        self.query_id = ""
        self.query: Any = None
        self.result = StreamResult(group.name, self.source.topic, self.checkpoint)
        self.clock = RunClock(group.name, "stream", new_id("stream"))
        self.first_batch: Optional[int] = None
        self.last_record = time.monotonic()
        self.online_spec: Optional[dict] = None
        self.lock = threading.Lock()
        self.newest_us: Optional[int] = None
        """The group's newest event time seen (offline, not after now), µs: lateness is against it."""
        self.table_max_us: Optional[int] = None
        """The offline table's newest event time, future-dated ones included: a micro-batch all newer
        than it is appended without comparing (OfflineTable.merge(newer=True))."""
        self.period = Period()

    # -- one micro-batch --------------------------------------------------------------------------

    def batch(self, df: "DataFrame", batch_id: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        t0 = time.monotonic()
        marks: dict[str, float] = {}

        def mark(phase: str) -> None:
            marks[phase] = round(time.monotonic() - t0 - sum(marks.values()), 2)

        g, r, txn = self.group, self.clock.result, (f"featurelake-{self.group.name}-{self.query_id}", batch_id)
        self.first_batch = batch_id if self.first_batch is None else self.first_batch
        raw = df.persist(StorageLevel.MEMORY_AND_DISK)
        out = None
        try:
            malformed = self._malformed(raw)
            counts = raw.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(malformed, 1)).alias("bad")).first()
            n, bad = int(counts["n"]), int(counts["bad"])  # type: ignore[index]
            mark("read")
            r.rows_read += n
            self.result.rows_read += n
            self.result.batches += 1
            if n == 0:
                return
            if bad:
                self._reject(raw.where(malformed), batch_id, txn)
                r.rows_rejected += bad
                self.result.rows_rejected += bad
                r.worsen(RunStatus.WARNED)
            good = raw.where(~malformed).drop(CORRUPT, VALUE)
            out = self._transformed(good).persist(StorageLevel.MEMORY_AND_DISK)
            gated = self._gate(out, batch_id, txn)
            mark("validate")
            version = None
            if gated is not None:
                writable, times = gated
                rows = writable.drop(MESSAGE)
                newer = self.table_max_us is not None and times.first_us > self.table_max_us
                with ThreadPoolExecutor(1) as pool:
                    # Without windows a key's item needs only the batch's rows: written beside the MERGE
                    # (once the table exists: the online table's spec reads its schema)
                    beside = pool.submit(self._online, rows, now(), times.first_us, n) \
                        if g.online and not g.aggregations and self.table_max_us else None
                    version = self.table.merge(rows, r.run_id, definition_version=self.version, dates=times.dates,
                                               span=(times.first_us, times.max_us), txn=txn, newer=newer, rows=n)
                    self.table_max_us = max(self.table_max_us or 0, times.max_us)
                    if version is not None:
                        r.delta_version = self.result.delta_version = version
                    mark("merge")
                    merged_at = now()
                    late = self._late(writable, times)
                    self.period.late_rows += late
                    self.result.late_rows += late
                    mark("late")
                if beside is not None:
                    beside.result()
                    mark("online")
                elif g.online:
                    self._online(rows, merged_at, times.first_us, n)
                    mark("online")
            log.info("%s: micro-batch %d: %d messages, %d rejected, %s (%.1fs: %s)", g.name, batch_id, n, bad,
                     f"Delta version {version}" if version is not None else "nothing new offline",
                     time.monotonic() - t0, ", ".join(f"{k} {v:.1f}s" for k, v in marks.items()))
        finally:
            raw.unpersist()
            if out is not None:
                out.unpersist()
            self.period.add(time.monotonic() - t0, marks)
            for phase, seconds in marks.items():
                self.result.phase_seconds[phase] = round(self.result.phase_seconds.get(phase, 0.0) + seconds, 2)
        if time.monotonic() - self.last_record >= self.record_every:
            self.record(batch_id)

    def _late(self, rows: "DataFrame", times: "_Times") -> int:
        """The batch's late rows: older than the group's newest event (the offline table's and this
        batch's, future-dated ones aside) minus allowed_lateness. They stay offline like any row;
        online they refresh their key's item as of its newest event, never move it back. Counted
        by _tally against the newest event before the batch; again here only when the batch
        moved that newest event past some of its own rows."""
        from pyspark.sql import functions as F

        g = self.group
        lateness = int(g.allowed_lateness.total_seconds() * 1_000_000)
        before = self.newest_us or 0
        newest = max(before, times.newest_us if times.newest_us is not None else 0)
        late = times.late
        if newest > before and times.first_us < newest - lateness:
            us = F.unix_micros(F.col(f"`{g.timestamp_column}`"))
            late = rows.where(us < F.lit(newest - lateness)).count()
        self.newest_us = newest or None
        if late:
            log.warning("%s: %d late rows (older than the newest event minus allowed_lateness %s): written offline, "
                        "online items never move back", g.name, late, g.allowed_lateness_text or DEFAULT_LATENESS)
        return late

    def _tally(self, marked: "DataFrame") -> tuple[int, "_Times"]:
        """In one job: the rows set aside, and the event dates and times of those to write."""
        from pyspark.sql import functions as F

        g = self.group
        end_us = int(now().timestamp() * 1_000_000)
        if self.table_max_us is None:  # the offline table's newest, once per stream
            exists = self.table.exists()
            self.newest_us = self.table.newest_micros(g.timestamp_column, end_us) if exists else None
            self.table_max_us = self.table.newest_micros(g.timestamp_column, _FOREVER_US) if exists else 0
        lateness = int(g.allowed_lateness.total_seconds() * 1_000_000)
        us = F.unix_micros(F.col(f"`{g.timestamp_column}`"))
        ok = F.col(_REASON).isNull()
        row = marked.agg(
            F.count(F.when(~ok, 1)).alias("set_aside"),
            F.collect_set(F.when(ok, F.date_from_unix_date(F.floor(us / 86_400_000_000).cast("int")))).alias("dates"),
            F.min(F.when(ok, us)).alias("first"),
            F.max(F.when(ok & (us <= F.lit(end_us)), us)).alias("newest"),  # future-dated ones aside
            F.max(F.when(ok, us)).alias("last"),
            F.count(F.when(ok & (us < F.lit((self.newest_us or 0) - lateness)), 1)).alias("late")).first()
        assert row is not None
        return int(row["set_aside"]), _Times(sorted(row["dates"]), int(row["first"] or 0), row["newest"],
                                             int(row["last"] or 0), int(row["late"]))

    def _malformed(self, raw: "DataFrame") -> "Column":
        from pyspark.sql import functions as F

        if self.source.format == "raw":
            return F.col(VALUE).isNull()
        return F.col(CORRUPT).isNotNull() | F.col(VALUE).isNull() | (F.trim(F.col(VALUE)) == "")

    def _reject(self, rows: "DataFrame", batch_id: int, txn: tuple[str, int]) -> None:
        """Messages that do not parse, as text with their place in the topic, in one append."""
        from pyspark.sql import functions as F

        fields = self.source.schema or "key string, value string"
        place = F.concat(F.lit("kafka:"), F.col(f"{MESSAGE}.topic"), F.lit("/"),  # kafka:TOPIC/PARTITION/OFFSET
                         F.col(f"{MESSAGE}.partition").cast("string"), F.lit("/"),
                         F.col(f"{MESSAGE}.offset").cast("string"))
        why = F.lit(f"the message is not a JSON object whose values parse as the declared schema ({fields}): "
                    f"produce it again, corrected (micro-batch {batch_id})")
        if self.source.format == "avro":  # _record: the value in base64; _fl_corrupt: why it is set aside
            why = F.concat(F.coalesce(F.col(CORRUPT), F.lit("the message is empty")),
                           F.lit(f": produce it again, corrected (micro-batch {batch_id}; the value in base64)"))
        out = rows.select(place.alias("_file"), F.col(VALUE).alias("_record"), why.alias("_reason"),
                          F.col(f"{MESSAGE}.topic").alias("_topic"), F.col(f"{MESSAGE}.partition").alias("_partition"),
                          F.col(f"{MESSAGE}.offset").alias("_offset"))
        quarantine.reject(self.spark, quarantine.rejected_path(self.store.config, self.group.name), out,
                          self.clock.result.run_id, txn, config=self.store.config)
        log.warning("%s: messages that do not parse set aside in %s", self.group.name,
                    quarantine.rejected_path(self.store.config, self.group.name))

    def _transformed(self, good: "DataFrame") -> "DataFrame":
        from featurelake.contract import conform
        from featurelake.ingest import transform_batch

        out = transform_batch(self.group, good, self.clock.params)
        return conform(self.group, out, keep=[MESSAGE])

    def _gate(self, out: "DataFrame", batch_id: int,
              txn: tuple[str, int]) -> Optional[tuple["DataFrame", "_Times"]]:
        """The contract's and the suite's verdict on the transformed rows: the rows to write with
        their times (None: none), the others quarantined in one append with their reasons."""
        from pyspark.sql import functions as F

        from featurelake.ingest import unaddressable
        from featurelake.validation import describe_failure, validate_batch

        g, r, config = self.group, self.clock.result, self.store.config
        ts = F.col(f"`{g.timestamp_column}`")
        low, high = config.validation.event_time.bounds(now())
        no_key = unaddressable(g)
        reasons: list[tuple["Column", str]] = [
            (no_key, f"null entity key {g.keys} or event timestamp {g.timestamp_column!r}: fix the producer or fill "
                     f"it in the transform"),
            ((ts < F.lit(low)) | (ts > F.lit(high)),
             f"event time {g.timestamp_column!r} outside the plausible range {low:%Y-%m-%d} .. "
             f"{high:%Y-%m-%d %H:%M} UTC (config validation.event_time)")]
        whole: Optional[str] = None
        if self.suite:
            checked = out.where(~no_key)
            result = validate_batch(checked, self.suite, g.name, persist=False)
            self.clock.validation = (self.clock.validation + [result.to_dict()])[-10:]
            row_level, batch_level = self._failures(result, checked)
            for cond, text in row_level:
                reasons.append((cond, f"failed {self.suite_path}: {text}"))
            new = [describe_failure(f) for f in result.failures]
            r.failures = (r.failures + list(result.failures))[-20:]
            self.result.failures = (self.result.failures + new)[-20:]
            if batch_level:
                lines = "; ".join(batch_level)
                if self.policy == "fail":
                    raise ValidationFailed(f"feature group {g.name!r}: micro-batch {batch_id} failed its suite "
                                           f"{self.suite_path}: {lines}; nothing of it was written, and the stream "
                                           f"stopped (validation: fail)", result.failures, r.run_id)
                if self.policy == "quarantine":
                    whole = f"micro-batch {batch_id} failed {self.suite_path}: {lines}"
                else:
                    log.warning("%s: writing micro-batch %d, which failed its suite (validation: warn): %s", g.name,
                                batch_id, lines)
                    r.worsen(RunStatus.WARNED)
            if row_level and self.policy == "warn":
                reasons = reasons[:2]
                r.worsen(RunStatus.WARNED)
        reason = F.lit(whole) if whole else None
        if reason is None:
            for cond, text in reversed(reasons):
                reason = F.when(cond, F.lit(text)).otherwise(reason if reason is not None else F.lit(None))
        marked = out.withColumn(_REASON, reason)  # type: ignore[arg-type]
        set_aside = marked.where(F.col(_REASON).isNotNull())
        n, times = self._tally(marked)
        if n:
            rows = set_aside.select(*[c for c in out.columns if c != MESSAGE], F.col(_REASON),
                                    *([F.col(f"{MESSAGE}.topic").alias("_topic"),
                                       F.col(f"{MESSAGE}.partition").alias("_partition"),
                                       F.col(f"{MESSAGE}.offset").alias("_offset")] if MESSAGE in out.columns else []))
            quarantine.put(self.spark, quarantine.quarantine_path(config, g.name), rows, r.run_id, F.col(_REASON),
                           txn, config=config)
            r.rows_quarantined += n
            self.result.rows_quarantined += n
            r.worsen(RunStatus.QUARANTINED if whole else RunStatus.WARNED)
            log.warning("%s: micro-batch %d: %d rows quarantined in %s", g.name, batch_id, n,
                        quarantine.quarantine_path(config, g.name))
        if whole or not times.dates:
            return None
        return marked.where(F.col(_REASON).isNull()).drop(_REASON), times

    def _failures(self, result: Any, checked: "DataFrame") -> tuple[list[tuple["Column", str]], list[str]]:
        """The failed critical expectations: those judged row by row (with the rows breaking
        them), and those judged on the whole batch."""
        from featurelake.onepass import compile_expectation
        from featurelake.validation import describe_failure

        schema = {f.name: f.dataType for f in checked.schema.fields}
        row_level, batch_level = [], []
        for entry, res in zip(self.suite, result.results):
            if res["success"] or res["severity"] != "critical":
                continue
            plan = compile_expectation(entry, schema, checked) if not res.get("error") else None
            if plan is not None and plan.unexpected is not None and not plan.unique:
                row_level.append((plan.unexpected, describe_failure(res)))
            else:
                batch_level.append(describe_failure(res))
        return row_level, batch_level

    def _online(self, rows: "DataFrame", merged_at: "datetime", first_us: int, messages: int) -> None:
        """The batch's newest row per key -> DynamoDB, where newer than the key's item. The items
        held, per key, the offline table's newest row before the batch (every batch ends so), so
        after it the newer of the two is the offline table's newest row: no read of the table.
        With window features, the touched keys' items recomputed from the table instead
        (featurelake.streamwindows), as of each key's newest event. A micro-batch of at most
        DRIVER_ITEMS messages is written from the driver: Python workers for a few hundred items
        cost more than the writes."""
        from featurelake.online.export import driver_client, online_spec, same_shape
        from featurelake.online.snapshot import batch_frame, online_features
        from featurelake.online.table import Lease, ensure_table, read_meta, write_meta
        from featurelake.online.writer import COUNTERS_SCHEMA, merged, write_batches, write_partition

        g, dyn = self.group, self.store.config.online.dynamodb
        table_name = f"{dyn.table_prefix}{g.name}"
        client = driver_client(dyn.region, dyn.endpoint_url, self.store.config.ca_bundle())
        features, _ = online_features(g)
        if self.online_spec is None:
            spec = online_spec(g, self.version, self.table.read().schema, features)
            ensure_table(client, table_name, ttl=g.ttl is not None)
            meta = read_meta(client, table_name)
            if meta is None or not same_shape(meta["spec"], spec):
                write_meta(client, table_name, spec, None, g.fingerprint)
            self.online_spec = spec
        spec = self.online_spec
        local = (self.spark.sparkContext.master or "").startswith("local")
        with Lease(client, table_name, f"stream {self.clock.result.run_id}", lease_s=dyn.lease_s,
                   wait_s=dyn.lock_wait_s, local_mode=local) as lease:
            history = None
            if g.aggregations:
                from featurelake.streamwindows import window_frame

                frame, history = window_frame(self.table, g, features, rows, end=merged_at, first_us=first_us)
            else:
                frame = batch_frame(rows, g, features, end=merged_at)
            writer_spec = {"group": g.name, "table": table_name, "region": dyn.region,
                           "endpoint_url": dyn.endpoint_url, "ca_bundle": self.store.config.ca_bundle(),
                           "keys": spec["keys"], "features": spec["features"], "ttl_s": spec["ttl_s"],
                           "lease_token": lease.token, "check_every": 5.0, "as_of_ms": None,
                           "concurrency": dyn.write_concurrency, "max_rounds": 10, "items_per_s": None,
                           "compare": True}
            try:
                if messages <= DRIVER_ITEMS:  # at most one item a message
                    value = merged([write_partition(iter(frame.collect()), writer_spec)])
                else:
                    value = merged(frame.mapInArrow(lambda batches: write_batches(batches, writer_spec),
                                                    COUNTERS_SCHEMA).collect())
            finally:
                if history is not None:
                    history.unpersist()
            if lease.lost:
                raise JobError(f"stream of {g.name!r}: the online table's lease passed to another writer during a "
                               f"write; restart the stream (it carries on from its checkpoint)")
        self.result.items_written += value["items"]
        self.result.not_newer += value["not_newer"]
        if value["too_large"]:
            self.result.failures = (self.result.failures + value["messages"])[-20:]

    # -- progress -----------------------------------------------------------------------------

    def record(self, batch_id: Optional[int] = None, error: Optional[BaseException] = None,
               final: bool = False) -> None:
        """The batches since the last record, as one `runs` row; a new run id for the next ones.
        Nothing read, nothing to say, except once per stream at its end."""
        with self.lock:
            r = self.clock.result
            if r.rows_read == 0 and error is None and not (final and not self.result.runs):
                self.last_record = time.monotonic()
                return
            if error is not None:
                r.status, r.error = RunStatus.FAILED, str(error)[:4000]
                self.result.error = r.error
            if self.first_batch is not None:
                r.window = f"micro-batches {self.first_batch}..{batch_id if batch_id is not None else '?'}"
            if r.delta_version is not None:
                r.rows_written = self.table.rows_written(r.run_id, last=200)
                self.result.rows_written += r.rows_written
            progress = self.query.lastProgress if self.query is not None else None
            self.clock.params = {**self.clock.params, "query_id": self.query_id, "topic": self.source.topic,
                                 "checkpoint": self.checkpoint, **query_params(progress),
                                 **self.period.params(self.group, self.newest_us)}
            self.clock.finish()
            try:
                self.store.catalog.add(self.clock.record(self.version))
            except Exception as exc:  # progress, not data: the stream goes on
                log.warning("%s: the stream's progress could not be recorded: %s", self.group.name, root_message(exc))
            self.result.runs.append(r.run_id)
            self.result.worsen(r.status)
            self.clock = RunClock(self.group.name, "stream", new_id("stream"))
            self.first_batch = None
            self.period = Period()
            self.last_record = time.monotonic()


@dataclass
class _Times:
    """The event times of a micro-batch's rows to write, from _tally."""

    dates: list
    """Their UTC event dates: the offline table's partitions the MERGE reads."""
    first_us: int
    """Their oldest event time, in µs (0: no rows)."""
    newest_us: Optional[int]
    """Their newest event time not after the tally, in µs."""
    max_us: int
    """Their newest event time, future-dated ones included."""
    late: int
    """Those older than the group's newest event before the batch minus allowed_lateness."""


def stream(store: "FeatureStore", group_name: str, *, trigger: str = "1s", available_now: bool = False,
           timeout: Optional[float] = None, until: Optional[threading.Event] = None,
           record_every: float = 30.0) -> StreamResult:
    """Runs the group's stream: until stopped (Ctrl-C, or `until` set by another thread), for
    `timeout` seconds, or with `available_now` until the topic's messages present at the start
    are processed."""
    t0 = time.monotonic()
    group = store.group(group_name)
    source = group.source
    if not isinstance(source, KafkaSource):
        raise UsageError(f"feature group {group.name!r} reads a {source.kind} source, not a Kafka topic: run "
                         f"`featurelake ingest {group.name}`; `stream` is for groups over a KafkaSource")
    conn = store.config.connection(source.connection)
    if not conn.bootstrap_servers:
        raise ConfigError(f"connection {source.connection!r} in {store.config.path} has no bootstrap_servers: "
                          f"source {source.name!r} reads Kafka through it (bootstrap_servers: host:9092)")
    seconds = trigger_seconds(trigger)
    run = _Stream(store, group, record_every)
    check_topic(run.spark, conn, source)
    reader = topic_frame(run.spark, conn, source)
    ready, state = threading.Event(), {}
    busy, stopping = threading.Lock(), threading.Event()

    def on_batch(df: "DataFrame", batch_id: int) -> None:
        ready.wait()
        with busy:
            if stopping.is_set():  # not marked done: the next run reads this batch again
                raise JobError(f"micro-batch {batch_id} not started: the stream is stopping")
            try:
                run.batch(df, batch_id)
            except BaseException as exc:
                state["error"] = exc
                raise

    def stop(query: Any) -> None:
        """Stops between micro-batches: the one running finishes, a later one does not start."""
        stopping.set()
        with busy:
            pass
        query.stop()

    from featurelake.spark import session_setting

    query = None
    error: Optional[BaseException] = None
    try:
        with session_setting(run.spark, "spark.sql.streaming.stopActiveRunOnRestart", "false"):
            writer = reader.writeStream.foreachBatch(on_batch).option("checkpointLocation", run.checkpoint)
            writer = writer.trigger(availableNow=True) if available_now else \
                writer.trigger(processingTime=f"{int(seconds * 1000)} milliseconds")
            writer = writer.queryName(f"featurelake_stream_{group.name}")
            query = writer.start()
            run.query, run.query_id = query, str(query.id)
            run.result.query_id = run.query_id
            ready.set()
            log.info("%s: streaming topic %s from %s (checkpoint %s)", group.name, source.topic,
                     describe(conn), run.checkpoint)
            if available_now:
                query.awaitTermination()
            else:
                end = None if timeout is None else time.monotonic() + timeout
                while not query.awaitTermination(1):
                    if (until is not None and until.is_set()) or (end is not None and time.monotonic() >= end):
                        stop(query)
                        break
    except KeyboardInterrupt:
        if query is not None:
            stop(query)
    except Exception as exc:
        error = state.get("error") or (None if stopping.is_set() else exc)
    finally:
        ready.set()
    if error is not None and not isinstance(error, FeaturelakeError):
        text = f"{error}"
        if "already active" in text or "concurrently using" in text:
            error = JobError(f"feature group {group.name!r}: another stream of it is running (it holds the checkpoint "
                             f"{run.checkpoint}); stop it first")
        else:
            error = JobError(f"feature group {group.name!r}: the stream failed: {root_message(error)}")
    run.record(error=error, final=True)
    run.result.duration_s = round(time.monotonic() - t0, 3)
    if error is not None:
        raise error
    return run.result
