"""Train/serve skew: do the online items hold what the offline rule says they should?

For a sample of keys, the offline as-of row (offline.as_of) at the last successful export's
as_of time, read at the Delta version that export reached, is compared with the DynamoDB item
read through OnlineClient.get_many, feature by feature. Without a recorded export it compares
the latest version as of now. PII features' example values are masked in the report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional

from featurelake.errors import UsageError
from featurelake.monitoring.report import MonitorReport
from featurelake.monitoring.stats import MASK

if TYPE_CHECKING:
    from featurelake.store import FeatureStore

EXAMPLES = 5
EVENT_TIME = "(event time)"
SEED = 17


@dataclass
class FeatureSkew:
    name: str
    compared: int = 0
    mismatches: int = 0
    examples: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

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
        head = (f"skew of {self.group}: {self.sampled} keys sampled from offline version {self.offline_version} "
                f"as of {self.as_of:%Y-%m-%d %H:%M:%S} (export {self.export_id or 'none recorded'}); "
                f"{self.missing_online} missing online")
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


def skew(store: "FeatureStore", group: str, sample: Optional[int] = None, client: Any = None) -> MonitorReport:
    """Skew report of one online group; report.ok is False when a feature's mismatch rate (or the
    share of sampled keys missing online) exceeds monitoring.skew_threshold (default 0)."""
    return MonitorReport("skew", [group_skew(store, group, sample, client)],
                         params={"group": group, "sample": sample or store.config.monitoring.skew_sample})


def last_export(store: "FeatureStore", group: str) -> Optional[dict]:
    """The newest successful export (by as_of, then started_at; a missing time sorts last)."""
    from featurelake.records import ExportStatus

    rows = store.catalog.rows("exports", lambda r: r["group"] == group and r["status"] == ExportStatus.OK)
    return max(rows, key=lambda r: [(r[c] is not None, r[c] or 0) for c in ("as_of", "started_at")], default=None)


def group_skew(store: "FeatureStore", group: str, sample: Optional[int] = None, client: Any = None) -> GroupSkew:
    from pyspark.sql import functions as F

    from featurelake.catalog import now
    from featurelake.offline import as_of
    from featurelake.online.snapshot import online_features

    g = store.group(group)
    if not g.online:
        raise UsageError(f"feature group {group!r} is offline only (online=False): there is no online copy "
                         f"to compare; set online=True and export it first")
    n = int(sample or store.config.monitoring.skew_sample)
    if n <= 0:
        raise UsageError(f"--sample must be a positive number of keys, not {n}")
    export = last_export(store, group)
    table = store.offline(group)
    version = export.get("to_version") if export else None
    version = table.version() if version is None else int(version)
    at = _utc(export["as_of"]) if export and export.get("as_of") else now()
    df = table.read(version=version)
    online, held = online_features(g)
    plain = [f.name for f in online if f.kind == "feature" and f.name in df.columns]
    windows = [f.name for f in online if f.kind == "aggregation"]
    current = as_of(df, g, at)
    if g.ttl is not None:  # the client hides what has aged past the ttl since the export
        current = current.where(F.col(g.timestamp_column) >= F.lit(now() - g.ttl).cast("timestamp"))
    rows = [r.asDict() for r in current.select(*g.keys, g.timestamp_column, *plain)
            .orderBy(F.rand(SEED)).limit(n).collect()]
    keys = [{k: r[k] for k in g.keys} for r in rows]
    if windows and rows:
        found = window_values(store, df, g, at, keys, windows)
        for r in rows:
            r.update(found.get(tuple(r[k] for k in g.keys), {}))
    if client is None:
        from featurelake.online.client import OnlineClient

        dyn = store.config.online.dynamodb
        client = OnlineClient(table_prefix=dyn.table_prefix, region=dyn.region, endpoint_url=dyn.endpoint_url)
    items = _get_many(client, group, keys)
    result = GroupSkew(group, at, version, export.get("export_id") if export else None, len(rows), 0,
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
            offline_value, online_value = row.get(fs.name), item.get(fs.name)
            if not same(offline_value, online_value):
                fs.mismatches += 1
                if len(fs.examples) < EXAMPLES:
                    masked = fs.name in pii
                    fs.examples.append({"key": key, "offline": MASK if masked else _show(offline_value),
                                        "online": MASK if masked else _show(online_value)})
        online_ts = item.get(g.timestamp_column)
        if online_ts is not None:
            event_time.compared += 1
            if not same(row[g.timestamp_column], online_ts):
                event_time.mismatches += 1
                if len(event_time.examples) < EXAMPLES:
                    event_time.examples.append({"key": key, "offline": _show(row[g.timestamp_column]),
                                                "online": _show(online_ts)})
    if event_time.compared:
        result.features.append(event_time)
    return result


def window_values(store: "FeatureStore", df: Any, g: Any, at: datetime, keys: list[dict],
                  wanted: list[str]) -> dict[tuple, dict]:
    """Window features of the sampled keys as of `at`, computed here from the offline rows by the
    rule of the architecture (events in (at - w, at]; a count over no events is 0), independently
    of the export's code, so that a bug there shows as skew."""
    from pyspark.sql import functions as F

    ts = F.col(g.timestamp_column)
    at_col = F.lit(at).cast("timestamp")
    sampled = store.spark.createDataFrame(keys, df.select(*g.keys).schema)
    rows = df.join(F.broadcast(sampled), g.keys, "left_semi").where(ts <= at_col)
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
    if not exprs:
        return {}
    found = {tuple(r[k] for k in g.keys): r.asDict() for r in rows.groupBy(*g.keys).agg(*exprs).collect()}
    counts = [n for a in g.aggregations for n, fn, _, _ in a.outputs() if fn in ("count", "approx_count_distinct")]
    for key in keys:  # keys without events in any window: counts are 0, the rest null
        found.setdefault(tuple(key.values()), {n: 0 for n in counts if n in wanted})
    return found


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
