"""Train/serve skew: do the online items hold what the offline rule says they should?

For a sample of keys, the offline as-of row (offline.as_of) at the last successful export's
as_of time, read at the Delta version that export reached, is compared with the DynamoDB item
read through OnlineClient.get_many, feature by feature. Without a recorded export it compares
the latest version as of now. PII features' example values are masked in the report."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional

from featurelake.definitions import output_name
from featurelake.errors import UsageError
from featurelake.monitoring.report import MonitorReport
from featurelake.monitoring.stats import MASK
from featurelake.records import Export, ExportStatus, TrainingSetManifest

if TYPE_CHECKING:
    from featurelake.store import FeatureStore

EXAMPLES = 5
EVENT_TIME = "(event time)"
SEED = 17
PRESENT = "_fl_skew_has_"  # per input group: the request's key has an offline row as of the export


@dataclass
class FeatureSkew:
    name: str
    compared: int = 0
    mismatches: int = 0
    examples: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def add(self, key: dict, offline: Any, online: Any, masked: bool = False) -> None:
        """Counts a mismatch of one compared key and keeps the first few as examples."""
        if same(offline, online):
            return
        self.mismatches += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"key": key, "offline": MASK if masked else _show(offline),
                                  "online": MASK if masked else _show(online)})

    def to_dict(self) -> dict:
        return {"name": self.name, "compared": self.compared, "mismatches": self.mismatches,
                "mismatch_rate": self.rate, "examples": self.examples}


@dataclass
class GroupSkew:
    group: str
    as_of: datetime
    offline_version: Optional[int]
    export_id: Optional[str]
    sampled: int
    missing_online: int
    threshold: float
    features: list[FeatureSkew]
    missing_examples: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def alerts(self) -> list[str]:
        out = [f"{self.group}:{f.name} differs online for {f.mismatches}/{f.compared} keys "
               f"({f.rate:.1%})" for f in self.features if f.rate > self.threshold]
        if self.sampled and self.missing_online / self.sampled > self.threshold:
            out.append(f"{self.group}: {self.missing_online}/{self.sampled} sampled keys are missing online")
        return out

    @property
    def ok(self) -> bool:
        return not self.alerts

    def feature(self, name: str) -> FeatureSkew:
        return next(f for f in self.features if f.name == name)

    def summary(self) -> str:
        source = ("" if self.offline_version is None else f" from offline version {self.offline_version} as of "
                  f"{self.as_of:%Y-%m-%d %H:%M:%S} (export {self.export_id or 'none recorded'})")
        head = f"skew of {self.group}: {self.sampled} keys sampled{source}; {self.missing_online} missing online"
        lines = [head, f"  {'feature':<28} {'compared':>8} {'differ':>7} {'rate':>7}"]
        for f in self.features:
            lines.append(f"  {f.name:<28} {f.compared:>8} {f.mismatches:>7} {f.rate:>7.1%}"
                         + ("  ALERT" if f.rate > self.threshold else ""))
            for e in f.examples[:3]:
                lines.append(f"      key {e['key']}: offline {e['offline']!r} online {e['online']!r}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return {"group": self.group, "ok": self.ok, "as_of": self.as_of, "offline_version": self.offline_version,
                "export_id": self.export_id, "sampled": self.sampled, "missing_online": self.missing_online,
                "missing_examples": self.missing_examples, "threshold": self.threshold,
                "features": [f.to_dict() for f in self.features], "notes": self.notes}


def skew(store: "FeatureStore", group: str, sample: Optional[int] = None, client: Any = None,
         requests: Any = None) -> MonitorReport:
    """Skew report of one online group or request-time feature; report.ok is False when a feature's
    mismatch rate (or the share of sampled keys missing online) exceeds monitoring.skew_threshold
    (default 0). `requests` (request-time features only): a path or DataFrame of keys and request
    fields to compute them for, instead of the newest training set's spine."""
    params = {"group": group, "sample": sample or store.config.monitoring.skew_sample}
    if group in store.repo.on_demand:
        return MonitorReport("skew", [on_demand_skew(store, group, sample, client, requests)], params=params)
    if requests is not None:
        raise UsageError(f"--requests is for request-time features; {group!r} is a feature group, whose skew is "
                         f"checked on keys sampled from its offline table")
    return MonitorReport("skew", [group_skew(store, group, sample, client)], params=params)


def last_export(store: "FeatureStore", group: str) -> Optional[Export]:
    """The newest successful export (by as_of, then started_at; a missing time sorts last)."""
    done = store.catalog.records(Export, lambda e: e.group == group and e.status == ExportStatus.OK)
    return max(done, key=lambda e: [(t is not None, t.timestamp() if t else 0.0) for t in (e.as_of, e.started_at)],
               default=None)


@dataclass
class Exported:
    """What a group's online items should hold: the offline table at the version its last
    successful export reached, as of that export's time (the latest version, now, without one)."""
    df: Any
    version: Optional[int]
    at: datetime
    export_id: Optional[str]


def exported(store: "FeatureStore", g: Any) -> Exported:
    from featurelake.catalog import now

    if not g.online:
        raise UsageError(f"feature group {g.name!r} is offline only (online=False): there is no online copy "
                         f"to compare; set online=True and export it first")
    export = last_export(store, g.name)
    table = store.offline(g.name)
    version = export.to_version if export and export.to_version is not None else table.version()
    at = _utc(export.as_of) if export and export.as_of else now()
    return Exported(table.read(version=version), version, at, export.export_id if export else None)


def current_rows(snap: Exported, g: Any) -> Any:
    """The offline rule per key at the export (as_of), less what the client hides past the ttl now."""
    from pyspark.sql import functions as F

    from featurelake.catalog import now
    from featurelake.offline import as_of

    current = as_of(snap.df, g, snap.at)
    if g.ttl is not None:
        current = current.where(F.col(g.timestamp_column) >= F.lit(now() - g.ttl).cast("timestamp"))
    return current


def _sample_size(store: "FeatureStore", sample: Optional[int]) -> int:
    n = int(sample or store.config.monitoring.skew_sample)
    if n <= 0:
        raise UsageError(f"--sample must be a positive number of keys, not {n}")
    return n


def _client(store: "FeatureStore", on_demand: Any = ()) -> Any:
    from featurelake.online.client import OnlineClient

    dyn = store.config.online.dynamodb
    return OnlineClient(table_prefix=dyn.table_prefix, region=dyn.region, endpoint_url=dyn.endpoint_url,
                        on_demand=on_demand)


def group_skew(store: "FeatureStore", group: str, sample: Optional[int] = None, client: Any = None) -> GroupSkew:
    from pyspark.sql import functions as F

    from featurelake.online.snapshot import online_features

    g = store.group(group)
    snap = exported(store, g)
    n = _sample_size(store, sample)
    online, held = online_features(g)
    plain = [f.name for f in online if f.kind == "feature" and f.name in snap.df.columns]
    windows = [f.name for f in online if f.kind == "aggregation"]
    rows = [r.asDict() for r in current_rows(snap, g).select(*g.keys, g.timestamp_column, *plain)
            .orderBy(F.rand(SEED)).limit(n).collect()]
    keys = [{k: r[k] for k in g.keys} for r in rows]
    if windows and rows:
        found = window_values(store, snap.df, g, snap.at, keys, windows)
        for r in rows:
            r.update(found.get(tuple(r[k] for k in g.keys), {}))
    items = _get_many(client or _client(store), group, keys)
    result = GroupSkew(group, snap.at, snap.version, snap.export_id, len(rows), 0,
                       store.config.monitoring.skew_threshold, [FeatureSkew(f) for f in plain + windows])
    if held:
        result.notes.append(f"not compared (PII kept offline): {', '.join(held)}")
    pii = g.pii_features
    event_time = FeatureSkew(EVENT_TIME)
    for key, row, item in zip(keys, rows, items):
        if item is None:
            result.missing_online += 1
            if len(result.missing_examples) < EXAMPLES:
                result.missing_examples.append(key)
            continue
        for fs in result.features:
            fs.compared += 1
            fs.add(key, row.get(fs.name), item.get(fs.name), fs.name in pii)
        online_ts = item.get(g.timestamp_column)
        if online_ts is not None:
            event_time.compared += 1
            event_time.add(key, row[g.timestamp_column], online_ts)
    if event_time.compared:
        result.features.append(event_time)
    return result


def window_frame(store: "FeatureStore", df: Any, g: Any, at: datetime, keys: Any, wanted: list[str]) -> Any:
    """Window features as of `at` of the keys (a DataFrame of them) that have events, computed here
    from the offline rows by the rule of the architecture (events in (at - w, at]; a count over no
    events is 0), independently of the export's code, so that a bug there shows as skew. None
    when no aggregation output is wanted."""
    from pyspark.sql import functions as F

    ts = F.col(g.timestamp_column)
    at_col = F.lit(at).cast("timestamp")
    rows = df.join(F.broadcast(keys), g.keys, "left_semi").where(ts <= at_col)
    exprs = []
    for agg in g.aggregations:
        for name, fn, _, width in agg.outputs():
            if name not in wanted:
                continue
            inside = ts > at_col - F.expr(f"INTERVAL {int(width.total_seconds())} SECONDS")
            value = F.when(inside, F.col(agg.column))
            if fn == "last":
                out = F.max(F.when(inside, F.struct(ts.alias("t"), F.col("_ingested_at").alias("i"),
                                                    F.col(agg.column).alias("v")))).getField("v")
            elif fn in ("count", "approx_count_distinct"):
                out = F.coalesce(getattr(F, fn)(value), F.lit(0))
            elif fn == "stddev":
                out = F.stddev_samp(value)
            else:
                out = getattr(F, fn)(value)
            exprs.append(out.alias(name))
    return rows.groupBy(*g.keys).agg(*exprs) if exprs else None


def counts_of(g: Any) -> list[str]:
    """Window outputs that count: 0, not null, for a key without events."""
    return [n for a in g.aggregations for n, fn, _, _ in a.outputs() if fn in ("count", "approx_count_distinct")]


def window_values(store: "FeatureStore", df: Any, g: Any, at: datetime, keys: list[dict],
                  wanted: list[str]) -> dict[tuple, dict]:
    """window_frame of the sampled keys, by key; keys without events get counts of 0."""
    frame = window_frame(store, df, g, at, store.spark.createDataFrame(keys, df.select(*g.keys).schema), wanted)
    if frame is None:
        return {}
    found = {tuple(r[k] for k in g.keys): r.asDict() for r in frame.collect()}
    for key in keys:
        found.setdefault(tuple(key.values()), {n: 0 for n in counts_of(g) if n in wanted})
    return found


# ---- request-time features --------------------------------------------------------------------

def on_demand_skew(store: "FeatureStore", name: str, sample: Optional[int] = None, client: Any = None,
                   requests: Any = None) -> GroupSkew:
    """Skew of a request-time feature: for a sample of requests (the newest training set's spine
    rows that computed it, or `requests`: a path or DataFrame of keys and request fields), its
    outputs computed the training-set way (Spark, mapInArrow, from the offline rows each input
    group's last export reached) against the outputs OnlineClient.get_features computes from the
    DynamoDB items and the same request. A difference comes from the inputs online (a stale or
    wrong export), from how fetched items become the function's columns, or from request types."""
    from pyspark.sql import functions as F

    from featurelake.ondemand import apply_offline, hidden_column

    feature = store.repo.on_demand[name]
    groups = {group: store.group(group) for group in feature.groups}
    keys = list(dict.fromkeys(k for g in groups.values() for k in g.keys))
    source, spine = _requests(store, feature, requests)
    missing = [c for c in [*keys, *feature.request] if c not in spine.columns]
    if missing:
        raise UsageError(f"skew of on-demand feature {name!r}: the requests ({source}) lack {missing}: give the keys "
                         f"{keys} and the request fields {list(feature.request)}")
    snaps = {group: exported(store, g) for group, g in groups.items()}
    typed = [spine[c].cast(dtype).alias(c) for c, dtype in feature.request.items()]
    key_types: dict[str, Any] = {}  # keys typed as the offline tables hold them
    for group, g in groups.items():
        for k in g.keys:
            key_types.setdefault(k, snaps[group].df.schema[k].dataType)
    chosen = spine.select(*[spine[k].cast(t).alias(k) for k, t in key_types.items()], *typed)
    rows = chosen.orderBy(F.rand(SEED)).limit(_sample_size(store, sample)).collect()
    frame = store.spark.createDataFrame(rows, chosen.schema)
    notes = [f"requests: {len(rows)} sampled from {source}"]
    for group, g in groups.items():
        snap = snaps[group]
        wanted = [ref.split(":")[1] for ref in feature.inputs if ref.split(":")[0] == group]
        aggregated = {n for a in g.aggregations for n, *_ in a.outputs()}
        plain = [f for f in wanted if f not in aggregated]
        group_keys = frame.select(*g.keys).distinct()
        found = current_rows(snap, g).select(*g.keys, F.lit(True).alias(PRESENT + group),
                                             *[F.col(f).alias(hidden_column(group, f)) for f in plain])
        frame = frame.join(found, g.keys, "left")
        windowed = window_frame(store, snap.df, g, snap.at, group_keys, [f for f in wanted if f in aggregated])
        if windowed is not None:
            windowed = windowed.select(*g.keys, *[F.col(c).alias(hidden_column(group, c))
                                                  for c in windowed.columns if c not in g.keys])
            frame = frame.join(windowed, g.keys, "left")
            for c in counts_of(g):
                if c in wanted:
                    frame = frame.withColumn(hidden_column(group, c), F.coalesce(hidden_column(group, c), F.lit(0)))
        notes.append(f"{group}: offline version {snap.version} as of {snap.at:%Y-%m-%d %H:%M:%S} "
                     f"(export {snap.export_id or 'none recorded'})")
    spec = {name: {"columns": [[r, r] for r in feature.request] +
                   [[c, hidden_column(*ref.split(":"))] for ref, c in feature.input_columns.items()],
                   "outputs": [[o, o, feature.feature_dtype(o)] for o in feature.output_names]}}
    offline = [r.asDict() for r in apply_offline(frame, {name: feature}, spec, keys, f"skew check of {name}").collect()]
    client = client or _client(store, [feature])
    entity_rows = [{k: r[k] for k in keys} for r in offline]
    online = client.get_features(entity_rows, [f"{name}:*"], full_names=True,
                                 request=[{c: r[c] for c in feature.request} for r in offline])
    absent = {}  # keys with an offline row as of the export and no item online
    for group, g in groups.items():
        items = _get_many(client, group, [{k: e[k] for k in g.keys} for e in entity_rows])
        absent[group] = sum(bool(r[PRESENT + group]) and item is None for r, item in zip(offline, items))
    at = min(s.at for s in snaps.values())
    result = GroupSkew(name, at, None, None, len(offline), max(absent.values(), default=0),
                       store.config.monitoring.skew_threshold, [FeatureSkew(o) for o in feature.output_names],
                       notes=notes)
    for group, count in absent.items():
        if count:
            notes.append(f"{group}: {count}/{len(offline)} sampled keys missing online (outputs compared too)")
    for key, off, on in zip(entity_rows, offline, online):
        for fs in result.features:
            fs.compared += 1
            fs.add(key, off[fs.name], on[output_name(name, fs.name, full=True)])
    return result


def _requests(store: "FeatureStore", feature: Any, requests: Any) -> tuple[str, Any]:
    """(where the requests come from, a DataFrame of them)."""
    from featurelake.training import read_spine

    if requests is not None:
        return (str(requests) if isinstance(requests, (str, os.PathLike)) else "the requests given",
                read_spine(store.spark, requests))
    sets = store.catalog.records(TrainingSetManifest,
                                 lambda m: feature.name in ((m.options or {}).get("on_demand") or {}))
    if not sets:
        raise UsageError(f"no training set has computed on-demand feature {feature.name!r} yet, so there are no "
                         f"requests to replay: pass --requests FILE (parquet, CSV or Delta) with the keys and the "
                         f"request fields {list(feature.request)}")
    newest = max(sets, key=lambda m: m.created_at)
    return f"training set {newest.id}", store.spark.read.format("delta").load(newest.spine_path)


def _get_many(client: Any, group: str, keys: list[dict]) -> list[Optional[dict]]:
    """Items in the order of keys (None where missing or past the ttl), with the event time."""
    return list(client.get_many(group, keys, with_event_time=True)) if keys else []


def same(offline: Any, online: Any) -> bool:
    """Equal up to representation: DynamoDB numbers are Decimals, times may be epoch ms or text."""
    if offline is None or online is None:
        return offline is None and online is None
    if isinstance(offline, (datetime, date)):
        a, b = _epoch_ms(offline), _epoch_ms(online)
        return a is not None and b is not None and abs(a - b) < 1.0
    if isinstance(offline, bool) or isinstance(online, bool):
        if isinstance(online, (bool, int, Decimal)):
            return bool(offline) == bool(online)
        return str(offline).lower() == str(online).lower()
    if isinstance(offline, (int, float, Decimal)):
        try:
            a, b = float(offline), float(online)
        except (TypeError, ValueError):
            return False
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(offline, (list, tuple)):
        return isinstance(online, (list, tuple)) and len(offline) == len(online) and \
            all(same(a, b) for a, b in zip(offline, online))
    if isinstance(offline, dict):
        return (isinstance(online, dict) and set(offline) == set(online)
                and all(same(offline[k], online[k]) for k in offline))
    return str(offline) == str(online)


def _epoch_ms(value: Any) -> Optional[float]:
    if isinstance(value, datetime):
        return _utc(value).timestamp() * 1000
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp() * 1000
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return _epoch_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _show(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value
