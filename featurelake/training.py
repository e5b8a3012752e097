"""Training sets: point-in-time correct features for a spine of (keys, timestamp, labels), with a
manifest in the catalogue that rebuilds the same rows later by Delta time travel.

Building one: the spine is copied as Delta under <root>/training_sets/<id>/spine with a row id,
fingerprinted in Spark, and joined with each group's offline table read at its current Delta
version (pointintime.py does the join; its rows are computed when first used). A small set is
built on the driver instead, with the same rows and no Spark job (localset.py). The manifest
records the spine copy, its fingerprint, the versions read, the resolved plan and the engine, so a
replay needs neither today's tables nor today's definitions. The set handed back is trainingset.py's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from featurelake import localset
from featurelake.catalog import current_user, new_id, now
from featurelake.definitions import output_name
from featurelake.errors import JobError, NotFoundError, UsageError, did_you_mean
from featurelake.ondemand import HIDDEN
from featurelake.records import TrainingSetManifest
from featurelake.pointintime import INTERNAL, ROW, GroupPlan, WindowAgg, hashable, point_in_time, to_micros
from featurelake.spark import one_row, shuffle_partitions
from featurelake.trainingset import TrainingSet

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.training")
ENGINE = "pointintime/1"


class NullKeysWarning(UserWarning):
    """Spine rows with a null entity key or timestamp: they get null features."""


# ---- feature references ---------------------------------------------------------------------

def resolve(store: "FeatureStore", refs: Sequence[str], *, full_names: bool = False,
            spine_columns: Sequence[str] = (), hidden: Sequence[str] = ()) -> list[GroupPlan]:
    """`group:feature` / `group:*` / `service:NAME` references -> one plan per group, outputs named
    by feature, or `group__feature` when two groups (or a spine column) share the name, or always
    with full_names. `hidden`: features read for request-time features only, named
    ondemand.hidden_column(group, feature) unless also asked for."""
    from featurelake.ondemand import hidden_column
    from featurelake.services import expand

    if isinstance(refs, str):
        refs = [refs]
    refs = expand(store.repo, refs)[0]
    if not refs and not hidden:
        raise UsageError("no features asked for: pass references such as ['customer_txn:*', "
                         "'merchant_risk:chargeback_rate_30d']")
    repo = store.repo
    chosen: dict[str, list[str]] = {}
    visible: set = set()
    for ref in [*refs, *hidden]:
        if not isinstance(ref, str) or ref.count(":") != 1:
            every = [f"{g.name}:{f}" for g in repo.groups.values() for f in g.feature_names]
            raise UsageError(f"bad feature reference {ref!r}: write group:feature or group:* (or "
                             f"service:NAME for a feature service){did_you_mean(str(ref), every)}")
        group_name, feature = (part.strip() for part in ref.split(":"))
        if group_name not in repo.groups:
            raise NotFoundError(f"unknown feature group {group_name!r} in reference {ref!r}"
                                f"{did_you_mean(group_name, repo.groups)}")
        group = repo.groups[group_name]
        names = group.feature_names if feature == "*" else [feature]
        if feature != "*" and feature not in group.feature_names:
            raise NotFoundError(f"unknown feature {feature!r} in group {group_name!r}"
                                f"{did_you_mean(feature, group.feature_names)}")
        picked = chosen.setdefault(group_name, [])
        picked += [n for n in names if n not in picked]
        if ref in refs:
            visible.update((group_name, n) for n in names)
    owners: dict[str, set] = {}
    for group_name, names in chosen.items():
        for n in names:
            if (group_name, n) in visible:
                owners.setdefault(n, set()).add(group_name)
    taken = set(spine_columns)
    plans, seen = [], set()
    for group_name, names in chosen.items():
        group = repo.groups[group_name]
        aggs = {name: (fn, agg.column, text, span) for agg in group.aggregations
                for name, fn, text, span in agg.outputs()}
        plan = GroupPlan(group.name, list(group.keys), group.timestamp_column,
                         int(group.ttl.total_seconds() * 10**6) if group.ttl else None)
        for n in names:
            if (group_name, n) not in visible:
                out = hidden_column(group_name, n)
            else:
                out = output_name(group_name, n, full=full_names, shared=len(owners[n]) > 1 or n in taken)
            if out in seen or out in taken:
                raise UsageError(f"output column {out!r} clashes with a spine column: rename that spine column")
            seen.add(out)
            if n in aggs:
                fn, column, text, span = aggs[n]
                plan.aggregations.append(WindowAgg(out, fn, column, text, int(span.total_seconds() * 10**6)))
            else:
                plan.features.append((n, out))
        plans.append(plan)
    return plans


# ---- the spine ------------------------------------------------------------------------------

def read_spine(spark: "SparkSession", spine: Any) -> "DataFrame":
    """A Spark DataFrame as is, a pandas DataFrame (through Arrow), or a path to Delta, parquet
    or CSV (header, inferred types)."""
    from pyspark.sql import DataFrame

    if isinstance(spine, DataFrame):
        return spine
    if type(spine).__module__.startswith("pandas") and hasattr(spine, "columns"):
        from featurelake.spark import session_setting

        with session_setting(spark, "spark.sql.execution.arrow.pyspark.enabled", "true"):
            return spark.createDataFrame(spine)
    if isinstance(spine, (str, os.PathLike)):
        from delta.tables import DeltaTable

        path = os.fspath(spine)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", path) and not Path(path).exists():
            raise NotFoundError(f"spine {path!r} not found: give a parquet, CSV or Delta path")
        if DeltaTable.isDeltaTable(spark, path):
            return spark.read.format("delta").load(path)
        looks_csv = path.lower().endswith(".csv") or (Path(path).is_dir() and any(Path(path).glob("*.csv")))
        if looks_csv:
            return spark.read.option("header", True).option("inferSchema", True).csv(path)
        return spark.read.parquet(path)
    raise UsageError(f"spine must be a Spark DataFrame, a pandas DataFrame or a path; found {type(spine).__name__}")


def check_spine(df: "DataFrame", plans: Sequence[GroupPlan], timestamp_column: str) -> None:
    """The columns the plans need are there, and no column uses the engine's reserved prefix."""
    cols = df.columns
    if timestamp_column not in cols:
        raise UsageError(f"the spine has no timestamp column {timestamp_column!r}{did_you_mean(timestamp_column, cols)}"
                         f": pass timestamp_column= (--timestamp-column) naming the spine's time column")
    to_micros(df[timestamp_column], df.schema[timestamp_column].dataType, f"spine column {timestamp_column!r}")
    for plan in plans:
        missing = [k for k in plan.keys if k not in cols]
        if missing:
            raise UsageError(f"the spine lacks {missing}, the key of group {plan.group!r}: add "
                             f"{'that column' if len(missing) == 1 else 'those columns'} to the spine "
                             f"(it has {', '.join(cols)})")
    reserved = [c for c in cols if c.startswith(INTERNAL)]
    if reserved:
        raise UsageError(f"spine columns {reserved} start with {INTERNAL!r}, which featurelake reserves: rename them")


FINGERPRINT = 2  # 1: sums of the row hashes as decimals (sets built before 2026-11-28), 2: of their quarters


def _stat_columns(df: "DataFrame", plans: Sequence[GroupPlan], timestamp_column: str,
                  fingerprint: int = FINGERPRINT) -> list:
    """Aggregates over the spine: rows, a content fingerprint (order-free: sums of two 64-bit row
    hashes, each summed as four 16-bit quarters in longs, exact up to 2^47 rows: a decimal sum
    cost a third of the spine copy's time), rows with a null key or time per group, and the
    time range (for pruning)."""
    from pyspark.sql import functions as F

    hashed = [hashable(df, c) for c in df.columns if c != ROW]
    micros = to_micros(df[timestamp_column], df.schema[timestamp_column].dataType, timestamp_column)

    def total(h: "Column", name: str) -> list:
        if fingerprint == 1:
            return [F.sum(h.cast("decimal(20,0)")).cast("string").alias(name)]
        return [F.sum(F.shiftrightunsigned(h, 16 * q).bitwiseAND(F.lit(0xFFFF))).alias(f"{name}_{q}") for q in range(4)]

    aggs = [F.count(F.lit(1)).alias("rows"), *total(F.xxhash64(*hashed), "h1"),
            *total(F.xxhash64(F.lit("featurelake"), *hashed), "h2"),
            F.min(micros).alias("t_min"), F.max(micros).alias("t_max")]
    for i, plan in enumerate(plans):
        bad = reduce(lambda a, b: a | b, [F.col(k).isNull() for k in plan.keys], micros.isNull())
        aggs.append(F.count(F.when(bad, 1)).alias(f"null{i}"))
    return aggs


def _stats(df: "DataFrame", plans: Sequence[GroupPlan], row: Any) -> dict:
    schema = [(f.name, f.dataType.simpleString()) for f in df.schema.fields if f.name != ROW]
    sums = [row[h] if h in row else [row[f"{h}_{q}"] for q in range(4)] for h in ("h1", "h2")]
    digest = hashlib.sha256(json.dumps([schema, row["rows"], *sums]).encode()).hexdigest()
    return {"fingerprint": digest[:32], "rows": int(row["rows"]), "t_min": row["t_min"], "t_max": row["t_max"],
            "null_keys": {p.group: int(row[f"null{i}"]) for i, p in enumerate(plans)}}


def spine_stats(df: "DataFrame", plans: Sequence[GroupPlan], timestamp_column: str,
                fingerprint: int = FINGERPRINT) -> dict:
    """The spine's statistics (see _stat_columns) in one Spark job."""
    return _stats(df, plans, one_row(df.agg(*_stat_columns(df, plans, timestamp_column, fingerprint))).asDict())


def copy_spine(df: "DataFrame", path: str, plans: Sequence[GroupPlan], timestamp_column: str) -> dict:
    """Writes the spine with a row id as Delta at path, computing its statistics in the same job
    (an Observation), so the spine is read once."""
    from pyspark.sql import Observation, functions as F

    observation = Observation("featurelake_spine")
    with_id = df.withColumn(ROW, F.monotonically_increasing_id())
    with_id.observe(observation, *_stat_columns(with_id, plans, timestamp_column)) \
        .write.format("delta").mode("errorifexists").save(path)
    return _stats(with_id, plans, dict(observation.get))


def _fresh_copy(store: "FeatureStore", path: str, schema: "StructType") -> "DataFrame":
    """The spine copy just written, read from the files of its one commit (delta-rs lists them).
    Read as Delta, the new table's state is built first, in three Spark jobs: 0.3-0.5 s of a
    20,000-row set. A replay reads it as Delta."""
    from pyspark.sql.types import LongType, StructField, StructType

    from featurelake import lakeread

    try:
        files = lakeread.data_files(path, store.config, 0)
    except JobError as exc:  # storage or credentials delta-rs cannot use: Spark wrote it, Spark reads it
        lakeread.fallback(path, str(exc))
        files = None
    if not files:
        return store.spark.read.format("delta").load(path)
    return store.spark.read.schema(StructType([*schema.fields, StructField(ROW, LongType(), False)])).parquet(*files)


def _warn_null_keys(counts: dict, timestamp_column: str) -> None:
    bad = {g: n for g, n in counts.items() if n}
    if bad:
        detail = ", ".join(f"{n:,} for {g}" for g, n in bad.items())
        warnings.warn(f"spine rows with a null entity key or a null/unparseable {timestamp_column!r} get null "
                      f"features: {detail}", NullKeysWarning, stacklevel=4)  # the caller of store.training_set


def naive_columns(spine: Any) -> list[str]:
    """A pandas spine's naive datetime columns: to_pandas gives them back naive (Spark stores
    them as UTC instants)."""
    import pandas as pd

    if not isinstance(spine, pd.DataFrame):
        return []
    return [str(c) for c in spine.columns
            if pd.api.types.is_datetime64_dtype(spine[c].dtype) and getattr(spine[c].dtype, "tz", None) is None]


# ---- building and replaying -----------------------------------------------------------------

def build_training_set(store: "FeatureStore", spine: Any, features: Sequence[str], *,
                       timestamp_column: str = "event_ts", full_names: bool = False) -> "TrainingSet":
    """Point-in-time features for each spine row; see the module docstring."""
    from featurelake import ondemand, services

    spark = store.spark
    df = read_spine(spark, spine)
    refs, used = services.expand(store.repo, list(features))
    refs, chosen = ondemand.split_refs(store.repo, refs)
    plans = resolve(store, refs, full_names=full_names, spine_columns=df.columns,
                    hidden=ondemand.input_refs(store.repo, chosen))
    check_spine(df, plans, timestamp_column)
    on_demand = ondemand.offline_spec(store.catalog, store.repo, chosen, plans, df.columns, full_names)
    df = ondemand.conform_spine(df, store.repo, chosen)
    ts_id = new_id("ts")
    spine_path = store.config.lake("training_sets", ts_id, "spine")
    local = _build_local(store, df, plans, on_demand, timestamp_column, ts_id, used)
    if local is not None:
        service_versions, group_versions, table_versions, stats, copy = local
    else:
        with ThreadPoolExecutor(1) as pool:  # the copy's jobs run while the catalogue and the tables are read
            copying = pool.submit(copy_spine, df, spine_path, plans, timestamp_column)
            try:
                service_versions, group_versions, table_versions = _versions(store, plans, used)
            except Exception:
                _discard(store, ts_id, copying)
                raise
            stats = copying.result()
        copy = _fresh_copy(store, spine_path, df.schema)
    log.info("training set %s: %s spine rows copied to %s; reading %s", ts_id, f"{stats['rows']:,}", spine_path,
             ", ".join(f"{g} @{v}" for g, v in table_versions.items()))
    _warn_null_keys(stats["null_keys"], timestamp_column)
    partitions = shuffle_partitions(spark)
    columns = [c for c in df.columns] + [o for p in plans for o in p.outputs if not o.startswith(ondemand.HIDDEN)] \
        + [column for s in on_demand.values() for _, column, _ in s["outputs"]]
    manifest = {
        "id": ts_id, "created_at": now(), "user": current_user(), "spine_fingerprint": stats["fingerprint"],
        "spine_rows": stats["rows"], "timestamp_column": timestamp_column,
        "features": [f"{p.group}:{_feature_of(p, o)}" for p in plans for o in p.outputs],
        "group_versions": group_versions, "table_versions": table_versions, "spine_path": spine_path,
        "options": {"refs": list(features), "full_names": full_names, "partitions": partitions,
                    "time_bounds": [stats["t_min"], stats["t_max"]], "null_key_rows": stats["null_keys"],
                    "columns": columns, "plan": [p.to_dict() for p in plans],
                    "engine": ENGINE if local is None else localset.ENGINE,
                    "fingerprint": FINGERPRINT if local is None else localset.FINGERPRINT, "services": service_versions,
                    "naive_columns": naive_columns(spine), "on_demand": on_demand}}
    try:  # planned before the set is registered: a set that cannot be computed registers nothing
        frame = copy if local is not None else _compute(store, copy, manifest_plans(manifest), manifest)
    except Exception:
        _discard(store, ts_id)
        raise
    with ThreadPoolExecutor(2) as pool:  # two Delta tables: their commits never conflict
        for done in [pool.submit(store.catalog.add, TrainingSetManifest(**manifest)),
                     pool.submit(_audit, store, manifest, "training_set")]:
            done.result()
    return TrainingSet(store, manifest, frame)


def _versions(store: "FeatureStore", plans: Sequence[GroupPlan], used: Any) -> tuple[dict, dict, dict]:
    """The versions a set reads: of the feature services, the groups' definitions, their tables."""
    from featurelake import services

    return services.versions(store.catalog, used), _servable(store, plans), _table_versions(store, plans)


def _build_local(store: "FeatureStore", df: "DataFrame", plans: list[GroupPlan], on_demand: dict,
                 timestamp_column: str, ts_id: str, used: Any) -> Optional[tuple]:
    """A small set's rows computed on the driver (localset), its spine copy written: (service,
    group and table versions, spine stats, the rows with ROW); None when the Spark engine takes it."""
    import pyarrow as pa

    from featurelake.spark import TIME_ZONE

    most = store.config.training.driver_max_rows
    if most <= 0:
        return None
    try:
        localset.covers(plans)
        if store.spark.conf.get(TIME_ZONE) != "UTC":  # zone-less times would read differently
            raise localset.NotLocal("the session's time zone is not UTC")
        versions = _versions(store, plans, used)
        tables = localset.open_tables(store, plans, versions[2])
        held = localset.table_rows(tables)
        if held >= most:
            raise localset.NotLocal(f"the tables hold {held:,} rows")
        spine = localset.plain(localset.collect_spine(df, most - held))
        spine = spine.append_column(ROW, pa.array(range(spine.num_rows), type=pa.int64()))
        stats = localset.spine_stats(spine, plans, timestamp_column)
        bounds = (stats["t_min"], stats["t_max"])
        events = {p.group: localset.read_group(tables[p.group], p, bounds) for p in plans}
        rows = localset.point_in_time(spine, events, plans, timestamp_column)
    except localset.NotLocal as why:
        log.info("training set %s: the Spark engine builds it (%s)", ts_id, why)
        return None
    except pa.ArrowException as exc:  # a type the driver engine does not handle: Spark's rows are the same
        log.warning("training set %s: the Spark engine builds it, the driver's failed: %s", ts_id, exc)
        return None
    rows = _with_on_demand(store, rows, plans, on_demand, timestamp_column, ts_id)
    localset.write_copy(spine, store.config.lake("training_sets", ts_id, "spine"), store)
    return (*versions, stats, rows)


def _table_versions(store: "FeatureStore", plans: Sequence[GroupPlan]) -> dict[str, int]:
    """Each group's current offline table version, which holds every column the plan reads."""
    versions = {}
    for plan in plans:
        latest = store.offline(plan.group).latest()
        if latest is None:
            raise NotFoundError(f"feature group {plan.group!r} has no offline table yet at "
                                f"{store.offline(plan.group).path}: run `featurelake ingest {plan.group}`")
        versions[plan.group] = latest[0]
        _check_columns(plan, latest[1].names)
    return versions


def _discard(store: "FeatureStore", ts_id: str, copying: Optional["Future"] = None) -> None:
    """Deletes a set that will not be registered: its spine copy, once the copy has stopped."""
    from featurelake.sources import delete_path

    if copying is not None:
        try:
            copying.result()
        except Exception:  # the reason the set is refused is raised, not the copy's
            log.debug("spine copy of refused training set %s failed too", ts_id, exc_info=True)
    delete_path(store.spark, store.config.lake("training_sets", ts_id))


def _servable(store: "FeatureStore", plans: Sequence[GroupPlan]) -> dict[str, int]:
    """Each group's current registered version; refused for stale code, a deprecated group, or
    features that wait for a backfill (see lifecycle)."""
    from featurelake.lifecycle import check_served

    states = store.catalog.current([store.group(p.group) for p in plans])
    for plan in plans:
        check_served(plan.group, states[plan.group], [c for c, _ in plan.features] +
                     [a.column for a in plan.aggregations])
    return {name: state["version"] for name, state in states.items()}


def _check_columns(plan: GroupPlan, columns: Sequence[str]) -> None:
    """The offline table holds every column asked for (a feature registered but never written,
    e.g. added before any row was stored, is not there yet)."""
    present = set(columns)
    missing = [c for c in dict.fromkeys([c for c, _ in plan.features] + [a.column for a in plan.aggregations])
               if c not in present]
    if missing:
        raise UsageError(f"feature group {plan.group!r}: the offline table holds no column {', '.join(missing)} "
                         f"yet: run `featurelake backfill {plan.group}` (or `featurelake ingest {plan.group}`) to "
                         f"write it, then build the training set")


def load_training_set(store: "FeatureStore", training_set_id: str) -> "TrainingSet":
    """The training set's rows again: its spine copy and each table at the recorded version, by
    the engine that built it."""
    manifest = read_manifest(store, training_set_id)
    plans, column = manifest_plans(manifest), manifest["timestamp_column"]
    local = manifest["options"].get("engine") == localset.ENGINE
    try:
        copy = localset.read_copy(manifest["spine_path"], store) if local else \
            store.spark.read.format("delta").load(manifest["spine_path"])
    except Exception as exc:
        raise JobError(f"training set {training_set_id}: its spine copy at {manifest['spine_path']} cannot be read "
                       f"({str(exc).splitlines()[0][:200]}): it was deleted, so the set cannot be replayed") from None
    stats = localset.spine_stats(copy, plans, column) if local else \
        spine_stats(copy, plans, column, manifest["options"].get("fingerprint", 1))
    if stats["fingerprint"] != manifest["spine_fingerprint"]:
        raise JobError(f"training set {training_set_id}: the spine copy at {manifest['spine_path']} changed since the "
                       f"set was built (fingerprint {stats['fingerprint']} != {manifest['spine_fingerprint']}): "
                       f"it cannot be replayed exactly")
    _warn_null_keys(stats["null_keys"], column)
    frame = _compute_local(store, copy, plans, manifest) if local else \
        _compute(store, copy, plans, manifest)  # a refused replay (changed code) is no use
    _audit(store, manifest, "training_set_replay")
    return TrainingSet(store, manifest, frame)


def _compute_local(store: "FeatureStore", copy: Any, plans: list[GroupPlan], manifest: dict) -> Any:
    """A driver-built set's rows again, from each table at its recorded version."""
    try:
        tables = localset.open_tables(store, plans, manifest["table_versions"])
        bounds = tuple(manifest["options"]["time_bounds"])
        events = {p.group: localset.read_group(tables[p.group], p, bounds) for p in plans}
        rows = localset.point_in_time(copy, events, plans, manifest["timestamp_column"])
    except (localset.NotLocal, OSError) as exc:
        raise JobError(f"training set {manifest['id']}: the tables it read ({manifest['table_versions']}) cannot be "
                       f"read again on the driver ({str(exc).splitlines()[0][:200]}): a version was probably vacuumed "
                       f"or its log expired; keep delta.logRetentionDuration and delta.deletedFileRetentionDuration "
                       f"longer than the time you need replays for") from None
    return _with_on_demand(store, rows, plans, manifest["options"].get("on_demand") or {},
                            manifest["timestamp_column"], manifest["id"])


def _with_on_demand(store: "FeatureStore", rows: Any, plans: list[GroupPlan], spec: dict, timestamp_column: str,
                    ts_id: str) -> Any:
    """The set's rows (a Spark frame, or Arrow rows on the driver) with its request-time features."""
    if not spec:
        return rows
    from pyspark.sql import DataFrame

    from featurelake import ondemand

    features = ondemand.check_replayable(store.repo, spec, ts_id)
    labels = [timestamp_column, *dict.fromkeys(k for p in plans for k in p.keys)]
    apply = ondemand.apply_offline if isinstance(rows, DataFrame) else ondemand.apply_local
    return apply(rows, features, spec, labels, ts_id)


def read_manifest(store: "FeatureStore", training_set_id: str) -> dict:
    every = store.catalog.records(TrainingSetManifest)
    found = [m for m in every if m.id == training_set_id]
    if not found:
        known = [m.id for m in every]
        raise NotFoundError(f"no training set {training_set_id!r} in the catalogue at "
                            f"{store.catalog.path('training_sets')}{did_you_mean(training_set_id, known)}")
    return vars(found[0])


def manifest_plans(manifest: dict) -> list[GroupPlan]:
    return [GroupPlan.from_dict(p) for p in manifest["options"]["plan"]]



def _feature_of(plan: GroupPlan, output: str) -> str:
    for column, out in plan.features:
        if out == output:
            return column
    prefix = f"{HIDDEN}{plan.group}__" if output.startswith(HIDDEN) else f"{plan.group}__"
    return output[len(prefix):] if output.startswith(prefix) else output


def _compute(store: "FeatureStore", copy: "DataFrame", plans: list[GroupPlan], manifest: dict) -> "DataFrame":
    tables = {}
    for plan in plans:
        version = manifest["table_versions"][plan.group]
        offline = store.offline_by_name(plan.group)  # the recorded table, whatever the repository says now
        try:
            tables[plan.group] = offline.read(version=version)
        except NotFoundError:
            raise
        except Exception as exc:
            raise JobError(f"training set {manifest['id']}: version {version} of {plan.group!r}'s offline table "
                           f"({offline.table_name or offline.path}) cannot be read "
                           f"({str(exc).splitlines()[0][:200]}): it was probably vacuumed or its log expired; "
                           f"keep delta.logRetentionDuration and delta.deletedFileRetentionDuration longer than the "
                           f"time you need replays for") from None
    options = manifest["options"]
    bounds = tuple(options.get("time_bounds") or (None, None))
    frame = point_in_time(copy, tables, plans, timestamp_column=manifest["timestamp_column"],
                          partitions=int(options["partitions"]), time_bounds=bounds)
    return _with_on_demand(store, frame, plans, options.get("on_demand") or {}, manifest["timestamp_column"],
                           manifest["id"])


def _audit(store: "FeatureStore", manifest: dict, action: str) -> None:
    """One usage row per group read (who, which training set, which features, which version) and
    per request-time feature computed (its outputs and version)."""
    per_group: dict[str, list] = {}
    for ref in manifest["features"]:
        group, feature = ref.split(":", 1)
        per_group.setdefault(group, []).append(feature)
    on_demand = manifest["options"].get("on_demand") or {}
    store.catalog.audit_many(action, [
        (group, {"training_set": manifest["id"], "features": feats,
                 "group_version": manifest["group_versions"][group],
                 "delta_version": manifest["table_versions"][group]})
        for group, feats in per_group.items()] + [
        (name, {"training_set": manifest["id"], "features": [o for o, _, _ in spec["outputs"]],
                "on_demand_version": spec["version"]})
        for name, spec in on_demand.items()])
