"""source -> transform -> contract -> validate -> offline table, as one recorded run.

Every batch is persisted once after the transform, so the rows validated are the rows written.
A batch that fails its suite is handled by the policy (config validation.on_failure, or the
group's validation=): `fail` writes nothing and raises ValidationFailed; `quarantine` (the
default) appends the whole batch to <root>/quarantine/<group> and returns a result that is not
ok; `warn` writes it anyway. The incremental state (see sources.py) moves on after a batch that
was written or quarantined, never after a failure, so the next run reads a failed batch again.

Every attempt is a row in the catalogue's `runs` table, failures included. Errors are raised
after they are recorded; a quarantined batch is a result, not an exception.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from featurelake import quarantine
from featurelake.catalog import new_id, now
from featurelake.contract import conform
from featurelake.definitions import DeltaSource, HttpSource, JdbcSource, KafkaSource, S3Source, parse_duration
from featurelake.errors import FeaturelakeError, JobError, UsageError, ValidationFailed, root_message
from featurelake.logfiles import LINE_COLUMN
from featurelake.records import RunStatus
from featurelake.runs import IngestResult, RunClock, RunLog, describe_failure
from featurelake.spark import one_row
from featurelake.sources import (CORRUPT_COLUMN, FILE_COLUMN, SourceBatch, Window, copy_checkpoint, delete_path,
                                 in_window, max_text, read_delta, read_files, read_jdbc, scratch_path,
                                 stream_files, unreadable_file, utc)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from featurelake.definitions import FeatureGroup
    from featurelake.offline import OfflineTable
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.ingest")
DEFAULT_CHUNK = "7d"
"""A backfill over a longer range runs one chunk of this many days at a time."""


@dataclass
class _Context:
    store: "FeatureStore"
    group: "FeatureGroup"
    table: "OfflineTable"
    policy: str
    suite: Optional[Path]
    version: Optional[int]


def _context(store: "FeatureStore", name: str, registered: bool = True) -> _Context:
    group = store.group(name)
    version = store.catalog.version_of(group) if registered else None
    return _Context(store, group, store.offline(name), group.validation or store.config.validation.on_failure,
                    store.repo.expectations_path(group), version)


def ingest(store: "FeatureStore", group_name: str, *, start: Optional[datetime] = None,
           end: Optional[datetime] = None, from_quarantine: Optional[str] = None,
           chunk: Optional[str] = None) -> IngestResult:
    """New source data (or the window [start, end), in chunks) into the group's offline table."""
    ctx = _context(store, group_name)
    if from_quarantine:
        if start or end:
            raise UsageError("--from-quarantine re-ingests one quarantined batch: do not give --start/--end")
        return _from_quarantine(ctx, from_quarantine)
    if start is not None or end is not None:
        return _backfill(ctx, Window(start, end), chunk or DEFAULT_CHUNK)
    return _incremental(ctx)


def validate_only(store: "FeatureStore", group_name: str, *, start: Optional[datetime] = None,
                  end: Optional[datetime] = None) -> IngestResult:
    """Runs the suite on what the next ingest would read (or on the window), writing nothing."""
    ctx = _context(store, group_name, registered=False)
    clock = RunClock(ctx.group.name, "validate", new_id("validate"))
    window, spark, src = Window(start, end), store.spark, ctx.group.source
    if isinstance(src, S3Source) and not window:
        scratch = scratch_path(store.config, ctx.group.name)
        try:
            copy_checkpoint(spark, _checkpoint(ctx), scratch)
            stream_files(spark, store.config.resolve(src.path), src, scratch,
                         lambda df, batch_id, _, files: _process(ctx, clock, df, dry=True, files=files))
        finally:
            delete_path(spark, scratch)
        clock.result.window = "files not ingested yet"
    else:
        state = RunLog(store.catalog, ctx.group.name).last_state() if not window else (None, None)
        batch = _read(ctx, window, *state)
        clock.result.window = batch.window
        try:
            if batch.df is not None or batch.files:
                _process(ctx, clock, batch.df, window=window, guard=batch.guard, dry=True,
                         watermark_column=batch.watermark_column, files=batch.files)
        finally:
            batch.cleanup()
    failed = any(not v.get("success", True) for v in clock.validation)
    clock.result.status = RunStatus.INVALID if failed else RunStatus.VALID
    return clock.finish()


# ---- the three ways in ------------------------------------------------------------------------

def _incremental(ctx: _Context) -> IngestResult:
    clock = RunClock(ctx.group.name, "ingest")
    src = ctx.group.source

    def body() -> None:
        if isinstance(src, S3Source):
            clock.result.window = "files not ingested yet"
            stream_files(ctx.store.spark, ctx.store.config.resolve(src.path), src, _checkpoint(ctx),
                         lambda df, batch_id, query_id, files: _process(
                             ctx, clock, df, txn=(f"featurelake-{ctx.group.name}-{query_id}", batch_id),
                             files=files))
            return
        batch = _read(ctx, Window(), *RunLog(ctx.store.catalog, ctx.group.name).last_state())
        r = clock.result
        r.window, r.watermark, r.source_version = batch.window, batch.watermark, batch.source_version
        try:
            if batch.df is not None:
                _process(ctx, clock, batch.df, guard=batch.guard, watermark_column=batch.watermark_column)
        finally:
            batch.cleanup()

    return _run(ctx, clock, body)


def _backfill(ctx: _Context, window: Window, chunk: str) -> IngestResult:
    """[start, end) in chunks, each its own run. A rerun of the same backfill resumes: chunks it
    finished are skipped; once every chunk is done, the same backfill runs afresh."""
    if window.start is None:
        raise UsageError("--end needs --start: a backfill reads the event-time window [start, end)")
    start, end = utc(window.start), utc(window.end or now())
    if end <= start:
        raise UsageError(f"the window is empty: --start {start.isoformat()} is not before --end {end.isoformat()}")
    step = parse_duration(chunk, "--chunk")
    windows, s = [], start
    while s < end:
        windows.append(Window(s, min(s + step, end)))
        s = windows[-1].end  # type: ignore[assignment]
    # an open end (until now) keeps the same id, so a rerun catches up: done chunks are skipped
    key = hashlib.sha1(f"{ctx.version}|{start}|{window.end and end or 'open'}|{step}".encode()).hexdigest()[:10]
    prefix = f"backfill-{ctx.group.name}-{key}-"
    finished = RunLog(ctx.store.catalog, ctx.group.name).finished_windows(prefix)
    attempt = max((int(b.rsplit("-", 1)[1]) for b in finished), default=1)
    done = finished.get(f"{prefix}{attempt}", set())
    if done >= {w.text() for w in windows}:
        attempt, done = attempt + 1, set()
    total = IngestResult(group=ctx.group.name, run_id=f"{prefix}{attempt}", kind="backfill",
                         window=Window(start, end).text(), backfill_id=f"{prefix}{attempt}")
    for w in windows:
        if w.text() in done:
            total.chunks.append({"window": w.text(), "status": RunStatus.SKIPPED, "note": "done by an earlier attempt"})
            continue
        clock = RunClock(ctx.group.name, "backfill")
        clock.result.window, clock.result.backfill_id = w.text(), total.backfill_id
        try:
            part = _run(ctx, clock, partial(_window_body, ctx, clock, w))
        except FeaturelakeError:
            log.error("%s: backfill stopped at chunk %s; run the same command again to resume", ctx.group.name,
                      w.text())
            raise
        total.chunks.append({"window": w.text(), "run_id": part.run_id, "status": part.status,
                             "rows_read": part.rows_read, "rows_written": part.rows_written})
        for name in ("rows_read", "rows_written", "rows_quarantined"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.delta_version = part.delta_version if part.delta_version is not None else total.delta_version
        total.duration_s += part.duration_s
        if not part.ok:
            total.status, total.run_id, total.failures = part.status, part.run_id, part.failures
            break
        total.worsen(part.status)
    return total


def _window_body(ctx: _Context, clock: RunClock, window: Window) -> None:
    batch = _read(ctx, window)
    try:
        if batch.df is not None or batch.files:
            _process(ctx, clock, batch.df, window=window, guard=batch.guard, files=batch.files)
    finally:
        batch.cleanup()


def _from_quarantine(ctx: _Context, run_id: str) -> IngestResult:
    """A quarantined batch, validated again and merged: merging is idempotent, so re-ingesting
    the same batch twice writes it once."""
    clock = RunClock(ctx.group.name, "from_quarantine")
    clock.result.parent_run_id, clock.result.window = run_id, f"quarantined by {run_id}"
    path = quarantine.quarantine_path(ctx.store.config, ctx.group.name)
    rows = quarantine.take(ctx.store.spark, path, ctx.group.name, run_id)
    return _run(ctx, clock, lambda: _process(ctx, clock, rows, transformed=True))


# ---- one run, one batch -----------------------------------------------------------------------

def _run(ctx: _Context, clock: RunClock, body: Callable[[], None]) -> IngestResult:
    """Runs the body and records the run, whatever happens; errors are recorded, then raised."""
    r = clock.result
    log.info("%s: %s run %s started (%s)", r.group, r.kind, r.run_id, ctx.group.source.kind)
    error: Optional[BaseException] = None
    try:
        body()
    except FeaturelakeError as exc:
        error = exc
    except Exception as exc:  # Spark or Python errors from the read or the write
        reason = _unreadable_source_file(ctx, exc) or root_message(exc)
        error = JobError(f"feature group {r.group!r}: {r.kind} failed: {reason}")
        error.__cause__ = exc
    if error is not None:
        r.status, r.error = RunStatus.FAILED, str(error)
        if isinstance(error, ValidationFailed):
            error.run_id = r.run_id
    if r.delta_version is not None:
        r.rows_written = ctx.table.rows_written(r.run_id)
    clock.finish()
    ctx.store.catalog.add(clock.record(ctx.version))
    log.info("%s: run %s %s: %d read, %d written, %d quarantined, %.1fs", r.group, r.run_id, r.status,
             r.rows_read, r.rows_written, r.rows_quarantined, r.duration_s)
    if error is not None:
        raise error
    return r


def _process(ctx: _Context, clock: RunClock, raw: Optional["DataFrame"], *, window: Optional[Window] = None,
             guard: Callable[[Callable[[], Any]], Any] = lambda action: action(),
             txn: Optional[tuple[str, int]] = None, dry: bool = False, transformed: bool = False,
             watermark_column: Optional[str] = None, files: Sequence[dict] = ()) -> None:
    """One batch through the data contract (files, values, event times), transform, declared
    columns, suite and policy into the table or the quarantine. `files`: the batch's files that
    gave no rows (see sources.read_new_files); raw None when no file gave rows."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from featurelake.monitoring.stats import plain_aggregates

    r, g = clock.result, ctx.group
    bad_files = _bad_files(ctx, clock, files)
    if raw is None:
        _reject(ctx, clock, bad_files, None, txn, dry)
        return
    cached = raw.persist(StorageLevel.MEMORY_AND_DISK)
    batch = None
    try:
        n, files_n, high, corrupt = guard(lambda: _count(cached, watermark_column))
        r.rows_read += n
        if high is not None:
            r.window, r.watermark = f"{watermark_column} in ({r.watermark or '-inf'}, {high}]", high
        if files_n is not None:
            r.files_read = (r.files_read or 0) + files_n
        log.info("%s: read %d rows%s (%.1fs)", g.name, n, f" from {files_n} files" if files_n else "",
                 clock.elapsed())
        source = cached
        if corrupt:
            source = cached.where(F.col(CORRUPT_COLUMN).isNull())
            r.rows_rejected += corrupt
            log.warning("%s: %d source records %s set aside in %s (run %s)", g.name, corrupt,
                        "(log lines) that do not match the pattern" if getattr(g.source, "pattern", None) else
                        "whose values do not parse as their declared types",
                        quarantine.rejected_path(ctx.store.config, g.name), r.run_id)
        _reject(ctx, clock, bad_files, cached.where(F.col(CORRUPT_COLUMN).isNotNull()) if corrupt else None, txn, dry)
        if n == 0:
            return
        source = source.drop(FILE_COLUMN, CORRUPT_COLUMN, LINE_COLUMN)
        naive: list[str] = []
        out = conform(g, source if transformed else transform_batch(g, source, clock.params), naive=naive)
        for text in naive:
            if text not in r.notes:
                log.info("%s: %s", g.name, text)
                r.note(text)
        if window:
            out = in_window(out, g.timestamp_column, window)
        batch = out.persist(StorageLevel.MEMORY_AND_DISK)
        no_key = unaddressable(g)
        implausible = _implausible(ctx)
        keep = ~no_key & ~implausible
        # The row count, with the statistics' plain aggregates on this first pass (one job less)
        aggregates = plain_aggregates(batch, g) if ctx.store.config.monitoring.statistics else \
            [F.count(F.lit(1)).alias("rows")]
        totals = batch.agg(F.count(F.when(no_key, 1)).alias("_fl_unaddressable"),
                           F.count(F.when(implausible & ~no_key, 1)).alias("_fl_implausible"),
                           F.countDistinct(F.when(keep, F.struct(*[F.col(f"`{c}`") for c in
                                                                   [*g.keys, g.timestamp_column]]))
                                           ).alias("_fl_distinct"),
                           *aggregates)
        counts = one_row(totals).asDict()
        cached.unpersist()  # the batch is cached now: holding the raw rows too would double the memory
        rows = counts["rows"]
        log.info("%s: transformed into %d rows (%.1fs)", g.name, rows, clock.elapsed())
        if rows == 0:
            return
        passed = _validate(ctx, clock, _with_unmatched_lines(ctx, batch, corrupt), rows + (
            corrupt if getattr(g.source, "pattern", None) else 0))
        if dry:
            return
        if not passed and _handle_failure(ctx, clock, batch, rows, txn):
            return
        writable = batch
        if counts["_fl_unaddressable"] or counts["_fl_implausible"]:
            writable = batch.where(keep)
            _set_aside(ctx, clock, batch.where(~keep), counts["_fl_unaddressable"], counts["_fl_implausible"], txn)
        collapsed = rows - counts["_fl_unaddressable"] - counts["_fl_implausible"] - counts["_fl_distinct"]
        if collapsed:
            r.duplicates_collapsed += collapsed
            log.warning("%s: %d rows share their entity key and event time with another row of the batch: one row "
                        "per key and time is kept", g.name, collapsed)
        version = ctx.table.merge(writable, r.run_id, definition_version=ctx.version)
        if version is not None:
            r.delta_version = version
            _record_statistics(ctx, r.run_id, batch, counts)
        log.info("%s: merged into %s: %s (%.1fs)", g.name, ctx.table.table_name or ctx.table.path,
                 f"version {version}" if version is not None else "nothing new", clock.elapsed())
    finally:
        cached.unpersist()
        if batch is not None:
            batch.unpersist()


def _with_unmatched_lines(ctx: _Context, batch: "DataFrame", unmatched: int) -> "DataFrame":
    """What the suite sees of a log-file batch: every line of it, those the pattern did not match
    as rows of nulls (they are set aside, never written), so that a suite bounds their share
    with `mostly` (expect_column_values_to_not_be_null on a key, mostly: 0.99)."""
    from pyspark.sql import functions as F

    if not unmatched or not getattr(ctx.group.source, "pattern", None):
        return batch
    nulls = ctx.store.spark.range(unmatched).select(
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in batch.schema.fields])
    return batch.unionByName(nulls)


def unaddressable(group: "FeatureGroup") -> "Column":
    """Rows that no lookup can reach and no MERGE can match: a null entity key or event time."""
    from pyspark.sql import functions as F

    cond = F.col(f"`{group.timestamp_column}`").isNull()
    for key in group.keys:
        cond = cond | F.col(f"`{key}`").isNull()
    return cond


def _implausible(ctx: _Context) -> "Column":
    """Rows whose event time is outside the plausible range (config validation.event_time)."""
    from pyspark.sql import functions as F

    low, high = ctx.store.config.validation.event_time.bounds(now())
    ts = F.col(f"`{ctx.group.timestamp_column}`")
    return (ts < F.lit(low)) | (ts > F.lit(high))


def _set_aside(ctx: _Context, clock: RunClock, rows: "DataFrame", no_key: int, implausible: int,
               txn: Optional[tuple[str, int]]) -> None:
    """Null-key rows go to the quarantine, not the table (a rerun would add them again, as
    null never equals null in the MERGE), and so do rows with an implausible event time (a
    2099 or 1970 placeholder would make freshness lie); the rest of the batch is written."""
    from pyspark.sql import functions as F

    r, g = clock.result, ctx.group
    then = f"then `featurelake ingest {g.name} --from-quarantine {r.run_id}`"
    null = (f"null entity key {g.keys} or event timestamp {g.timestamp_column!r}: fix the source or "
            f"fill it in the transform, {then}")
    low, high = ctx.store.config.validation.event_time.bounds(now())
    out = (f"event time {g.timestamp_column!r} outside the plausible range {low:%Y-%m-%d} .. {high:%Y-%m-%d %H:%M} "
           f"UTC (config validation.event_time: min, max_ahead): fix the source's clock or the value, {then}")
    quarantine.put(ctx.store.spark, quarantine.quarantine_path(ctx.store.config, g.name), rows, r.run_id,
                   F.when(unaddressable(g), F.lit(null)).otherwise(F.lit(out)), txn, config=ctx.store.config)
    r.rows_quarantined += no_key + implausible
    r.rows_out_of_range += implausible
    r.worsen(RunStatus.WARNED)
    if no_key:
        log.warning("%s: %d rows with a null entity key or event timestamp set aside in the quarantine (run %s)",
                    g.name, no_key, r.run_id)
    if implausible:
        log.warning("%s: %d rows with an event time outside %s .. %s set aside in the quarantine (run %s)",
                    g.name, implausible, low, high, r.run_id)


def _bad_files(ctx: _Context, clock: RunClock, files: Sequence[dict]) -> list[dict]:
    """Counts the batch's empty files and returns those to set aside (unreadable, or missing a
    declared column); with on_bad_file='fail' any such file fails the batch, nothing written."""
    r, g = clock.result, ctx.group
    bad = [f for f in files if f["kind"] != "empty"]
    for f in files:
        if f["kind"] == "empty":
            r.files_empty += 1
            log.warning("%s: source file %s %s", g.name, f["file"], f["reason"])
    if bad and g.on_bad_file == "fail":
        raise JobError(f"feature group {g.name!r}: " + "; ".join(f"source file {f['file']} {f['reason']}" for f in bad)
                       + "; nothing was written (on_bad_file='fail'): replace it with a good file or remove it, "
                         "then run the ingest again (it reads the same batch of files)")
    return bad


def _reject(ctx: _Context, clock: RunClock, files: list[dict], rows: Optional["DataFrame"],
            txn: Optional[tuple[str, int]], dry: bool) -> None:
    """Bad files and source records that do not parse into <root>/rejected/<group>, in one write
    (one per batch, so a replayed batch is a no-op); the good files and rows go on."""
    from pyspark.sql import functions as F

    r, g = clock.result, ctx.group
    r.files_rejected += files
    if files:
        r.worsen(RunStatus.WARNED)
        for f in files:
            log.warning("%s: source file %s %s; set aside in %s, the other files go on", g.name, f["file"], f["reason"],
                        quarantine.rejected_path(ctx.store.config, g.name))
    if dry or (not files and rows is None):
        return
    spark = ctx.store.spark
    parts = []
    if files:
        parts.append(spark.createDataFrame([(f["file"], None, f"the file {f['reason']}: deliver a corrected file "
                                                                   f"under a new name") for f in files],
                                           "_file string, _record string, _reason string"))
    if rows is not None:
        r.worsen(RunStatus.WARNED)
        types = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in rows.schema.fields
                          if f.name not in (FILE_COLUMN, CORRUPT_COLUMN, LINE_COLUMN))
        why = F.lit(f"a value does not parse as its declared type ({types}): correct the record and deliver it "
                    f"again in a new file")
        if LINE_COLUMN in rows.columns:  # a log line the source's pattern does not match
            why = F.concat(F.lit("line "), F.col(LINE_COLUMN).cast("string"), F.lit(
                f" does not match the pattern of source {g.source.name!r} (columns {types}): correct the line or "
                f"the pattern, and deliver the lines again in a new file"))
        parts.append(rows.select(F.col(FILE_COLUMN).alias("_file"), F.col(CORRUPT_COLUMN).alias("_record"),
                                 why.alias("_reason")))
    out = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    quarantine.reject(spark, quarantine.rejected_path(ctx.store.config, g.name), out, r.run_id, txn,
                      config=ctx.store.config)


def _record_statistics(ctx: _Context, run_id: str, batch: "DataFrame", plain: dict) -> None:
    """The written batch's statistics into the catalogue (`plain`: their plain aggregates, from the
    batch's first pass). The rows are already committed, so a failure here is a warning, not a
    failed run."""
    if not ctx.store.config.monitoring.statistics:
        return
    from featurelake.monitoring import batch_statistics, record_statistics

    try:
        record_statistics(ctx.store, "run", run_id, ctx.group, batch_statistics(
            batch, ctx.group, sample_rows=ctx.store.config.monitoring.statistics_sample_rows, plain=plain))
    except Exception as exc:  # noqa: BLE001 - statistics must never fail a committed ingest
        log.warning("%s: statistics of run %s not recorded: %s", ctx.group.name, run_id, root_message(exc))


def _count(df: "DataFrame", watermark_column: Optional[str]) -> tuple[int, Optional[int], Optional[str], int]:
    """Rows, files (when the source says which file each row came from), the highest watermark
    read and the records that do not parse, in one job."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("n"),
            F.count(CORRUPT_COLUMN).alias("corrupt") if CORRUPT_COLUMN in df.columns else F.lit(0).alias("corrupt"),
            F.countDistinct(FILE_COLUMN).alias("files") if FILE_COLUMN in df.columns else F.lit(None).alias("files"),
            max_text(df, watermark_column).alias("high") if watermark_column else F.lit(None).alias("high")]
    row = one_row(df.agg(*aggs))
    return int(row["n"]), row["files"], row["high"], int(row["corrupt"])


def transform_batch(group: "FeatureGroup", df: "DataFrame", params: dict) -> "DataFrame":
    """The group's function, or its SQL over a temporary view named after the source. Parameters
    the transforms helpers fit on the batch (means, quantiles) are added to `params`."""
    from pyspark.sql import DataFrame

    from featurelake.transforms import recording

    t = group.transform
    if t is None:
        return df
    where = f"feature group {group.name!r}"
    try:
        if isinstance(t, str):
            view = group.source.name
            df.createOrReplaceTempView(view)
            try:
                out = df.sparkSession.sql(t)
            finally:
                df.sparkSession.catalog.dropTempView(view)
        else:
            with recording() as fitted:
                out = t(df)
            params.update(fitted)
    except FeaturelakeError:
        raise
    except Exception as exc:
        kind = "SQL transform" if isinstance(t, str) else f"transform {getattr(t, '__name__', t)!r}"
        raise JobError(f"{where}: its {kind} failed on the source's columns ({', '.join(df.columns)}): "
                       f"{root_message(exc)}") from None
    if not isinstance(out, DataFrame):
        raise JobError(f"{where}: the transform must return a DataFrame, it returned {type(out).__name__}")
    return out


def _validate(ctx: _Context, clock: RunClock, batch: "DataFrame", rows: int) -> bool:
    """The group's suite on the batch (already persisted, so validated rows are written rows);
    a group without a suite passes."""
    from featurelake.validation import validate_batch

    if ctx.suite is None:
        return True
    result = validate_batch(batch, str(ctx.suite), ctx.group.name)
    clock.validation.append(result.to_dict())
    failures = list(result.failures)
    clock.result.failures += failures
    log.info("%s: validated %d rows against %s: %s (%.1fs)", ctx.group.name, rows, ctx.suite.name,
             "passed" if result.success else f"{len(failures)} expectation(s) failed", clock.elapsed())
    return bool(result.success)


def _handle_failure(ctx: _Context, clock: RunClock, batch: "DataFrame", rows: int,
                    txn: Optional[tuple[str, int]]) -> bool:
    """Applies the policy to a failed batch; True when the batch must not be written."""
    r, g = clock.result, ctx.group
    lines = "; ".join(describe_failure(f) for f in r.failures)
    if ctx.policy == "warn":
        log.warning("%s: writing a batch that failed its suite (validation: warn): %s", g.name, lines)
        r.worsen(RunStatus.WARNED)
        return False
    if r.kind == "from_quarantine":
        r.status, r.error = RunStatus.FAILED, (f"the quarantined batch still fails {ctx.suite}: {lines}; it stays in "
                                       f"quarantine, nothing was written")
        return True
    if ctx.policy == "fail":
        raise ValidationFailed(f"feature group {g.name!r}: the batch of {rows} rows failed its suite {ctx.suite}; "
                               f"nothing was written (validation: fail)", r.failures, r.run_id)
    quarantine.put(ctx.store.spark, quarantine.quarantine_path(ctx.store.config, g.name), batch, r.run_id,
                   f"failed {ctx.suite}: {lines}", txn, config=ctx.store.config)
    r.rows_quarantined += rows
    r.worsen(RunStatus.QUARANTINED)
    log.warning("%s: %d rows quarantined by run %s: %s", g.name, rows, r.run_id, lines)
    return True


def _read(ctx: _Context, window: Window, watermark: Optional[str] = None,
          version: Optional[int] = None) -> SourceBatch:
    spark, src = ctx.store.spark, ctx.group.source
    if isinstance(src, S3Source):
        return read_files(spark, ctx.store.config.resolve(src.path), src, window)
    if isinstance(src, JdbcSource):
        return read_jdbc(spark, ctx.store, src, watermark, window)
    if isinstance(src, DeltaSource):
        return read_delta(spark, ctx.store, src, version, window)
    if isinstance(src, HttpSource):
        from featurelake.httpread import read_http

        return read_http(spark, ctx.store, src, watermark, window)
    if isinstance(src, KafkaSource):
        raise UsageError(f"feature group {ctx.group.name!r} reads the Kafka topic {src.topic!r}: run `featurelake "
                         f"stream {ctx.group.name}` (add --available-now for a scheduled run that stops when it has "
                         f"caught up); `ingest` reads files, tables and APIs")
    raise UsageError(f"feature group {ctx.group.name!r}: unknown source kind {type(src).__name__}")


def _unreadable_source_file(ctx: _Context, exc: BaseException) -> Optional[str]:
    src = ctx.group.source
    return unreadable_file(exc, ctx.store.config.resolve(src.path)) if isinstance(src, S3Source) else None


def _checkpoint(ctx: _Context) -> str:
    return ctx.store.config.lake("_checkpoints", ctx.group.name)
