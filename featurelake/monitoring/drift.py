"""Drift of a group's features between two slices of its offline table (see refs.py), or between
the rows of two training sets (window features included).

Numeric features: PSI over the reference's deciles and the Kolmogorov-Smirnov statistic;
categorical ones: PSI and the Jensen-Shannon distance over their categories. A missing value is
a bin of its own, so a burst of nulls is drift too. Everything heavy runs in Spark as two jobs
over both slices together: one aggregation (counts, min, max, 99 approximate percentiles per
numeric feature), then one grouped count of fine buckets (every percentile of either side is a
bucket edge) and of categories. PSI bins, the KS statistic and the plotted histograms are all
unions of those fine buckets, computed on the driver from a few hundred numbers per feature.
KS is therefore evaluated at the percentiles of both sides: exact up to about 1% of the mass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from featurelake.errors import ConfigError, UsageError
from featurelake.monitoring.refs import Ref, parse_ref, resolve, table_versions, training_set_rows
from featurelake.monitoring.report import MonitorReport
from featurelake.monitoring.stats import ACCURACY, CATEGORICAL, MASK, NUMERIC, feature_columns, numeric_value

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.config import Config
    from featurelake.store import FeatureStore

GRID = [k / 100 for k in range(1, 100)]
DECILES = [GRID.index(k / 10) for k in range(1, 10)]
PLOT_BINS = 20
MAX_CATEGORIES = 30
PLOT_CATEGORIES = 12
EPSILON = 1e-4
NULL, OTHERS = "(null)", "(other)"
METRICS = ("psi", "ks", "js")


@dataclass
class FeatureDrift:
    name: str
    kind: str
    dtype: str
    thresholds: dict
    psi: Optional[float] = None
    ks: Optional[float] = None
    ks_pvalue: Optional[float] = None
    js: Optional[float] = None
    reference_count: int = 0
    current_count: int = 0
    reference_null_fraction: float = 0.0
    current_null_fraction: float = 0.0
    plot: dict = field(default_factory=dict)
    note: Optional[str] = None

    @property
    def reasons(self) -> list[str]:
        return [f"{m.upper()} {getattr(self, m):.3f} > {self.thresholds[m]}" for m in METRICS
                if getattr(self, m) is not None and self.thresholds.get(m) is not None
                and getattr(self, m) > self.thresholds[m]]

    @property
    def alert(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "dtype": self.dtype, "psi": self.psi, "ks": self.ks,
                "ks_pvalue": self.ks_pvalue, "js": self.js, "thresholds": self.thresholds, "alert": self.alert,
                "reasons": self.reasons, "reference_count": self.reference_count,
                "current_count": self.current_count, "reference_null_fraction": self.reference_null_fraction,
                "current_null_fraction": self.current_null_fraction, "plot": self.plot, "note": self.note}


@dataclass
class GroupDrift:
    group: str
    reference: Ref
    current: Ref
    reference_rows: int
    current_rows: int
    features: list[FeatureDrift]

    @property
    def ok(self) -> bool:
        return not any(f.alert for f in self.features)

    @property
    def alerts(self) -> list[str]:
        return [f"{self.group}:{f.name} drifted ({', '.join(f.reasons)})" for f in self.features if f.alert]

    def feature(self, name: str) -> FeatureDrift:
        return next(f for f in self.features if f.name == name)

    def summary(self) -> str:
        head = (f"drift of {self.group}: reference {self.reference.describe()} ({self.reference_rows} rows) "
                f"vs current {self.current.describe()} ({self.current_rows} rows)")
        lines = [head, f"  {'feature':<28} {'kind':<12} {'PSI':>7} {'KS':>7} {'JS':>7}  status"]
        for f in self.features:
            cells = " ".join(f"{getattr(f, m):>7.3f}" if getattr(f, m) is not None else f"{'-':>7}" for m in METRICS)
            status = "ALERT " + "; ".join(f.reasons) if f.alert else (f.note or "ok")
            lines.append(f"  {f.name:<28} {f.kind:<12} {cells}  {status}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"group": self.group, "ok": self.ok, "reference": self.reference.to_dict(),
                "current": self.current.to_dict(), "reference_rows": self.reference_rows,
                "current_rows": self.current_rows, "features": [f.to_dict() for f in self.features]}


def drift(store: "FeatureStore", groups: Sequence[str] | str, reference: Optional[str] = None,
          current: Optional[str] = None, features: Optional[Sequence[str]] = None) -> MonitorReport:
    """Drift report of one or more groups; report.ok is False when any feature drifted.
    Without a reference, the newest training set that read the group is the reference."""
    names = [groups] if isinstance(groups, str) else list(groups)
    results = []
    for name in names:
        store.group(name)  # an unknown group is named as such before any reference is looked for
        ref_text = reference or default_reference(store, name)
        results.append(group_drift(store, name, parse_ref(ref_text, "--reference"),
                                   parse_ref(current, "--current"), features))
    return MonitorReport("drift", results, params={"groups": names, "reference": reference, "current": current})


def default_reference(store: "FeatureStore", group: str) -> str:
    from featurelake.records import TrainingSetManifest

    for manifest in sorted(store.catalog.records(TrainingSetManifest), key=lambda m: m.created_at, reverse=True):
        if group in table_versions(manifest):
            return manifest.id
    raise UsageError(f"monitor drift {group}: no --reference given and no training set has read {group!r} "
                     f"yet: pass --reference with a training set id, a Delta version (@3) or a time range "
                     f"(2026-01-01..2026-02-01)")


def thresholds(config: "Config", group: str, feature: str) -> Optional[dict]:
    """The config's thresholds with the feature's overrides; None when the feature is disabled."""
    m = config.monitoring
    out = {"psi": m.psi_threshold, "ks": m.ks_threshold, "js": m.js_threshold}
    override = m.features.get(f"{group}:{feature}") or {}
    if not isinstance(override, dict):
        raise ConfigError(f"{config.path}: monitoring.features.{group}:{feature} must be a mapping such as "
                          f"{{psi_threshold: 0.3}}")
    for key, value in override.items():
        if key == "enabled":
            if not value:
                return None
            continue
        metric = key[:-len("_threshold")] if key.endswith("_threshold") else None
        if metric not in METRICS:
            raise ConfigError(f"{config.path}: monitoring.features.{group}:{feature}: unknown key {key!r}: use "
                              f"psi_threshold, ks_threshold, js_threshold or enabled")
        out[metric] = value
    return out


def group_drift(store: "FeatureStore", group: str, ref: Ref, cur: Ref,
                only: Optional[Sequence[str]] = None) -> GroupDrift:
    """Compares the two slices of the offline table that the REFs name; two training sets by
    their rows (a spine of other entities or times is drift too, whatever the table holds)."""
    if ref.kind == cur.kind == "training_set":
        ref_df = training_set_rows(store, group, ref)
        cur_df = training_set_rows(store, group, cur)
    else:
        ref_df = resolve(store, group, ref, "--reference")
        cur_df = resolve(store, group, cur, "--current")
    return compare_frames(store, group, ref_df, cur_df, ref, cur, only)


def compare(store: "FeatureStore", group: str, reference: "DataFrame", current: "DataFrame",
            features: Optional[Sequence[str]] = None) -> MonitorReport:
    """Drift between any two DataFrames with the group's feature columns: a batch before it is
    written, a training set's rows, a what-if. Nothing is read from or written to the lake."""
    result = compare_frames(store, group, reference, current, Ref("reference DataFrame", "frame"),
                            Ref("current DataFrame", "frame"), features)
    return MonitorReport("drift", [result], params={"groups": [group], "reference": "DataFrame",
                                                    "current": "DataFrame"})


def compare_frames(store: "FeatureStore", group: str, ref_df: "DataFrame", cur_df: "DataFrame", ref: Ref,
                   cur: Ref, only: Optional[Sequence[str]] = None) -> GroupDrift:
    """Compares two frames feature by feature; see the module docstring for the jobs it runs."""
    from pyspark.sql import functions as F

    g = store.group(group)
    in_ref = set(ref_df.columns)
    cols, skipped = [], []
    for name, kind, dtype, pii in feature_columns(cur_df, g):
        if only and name not in only:
            continue
        limits = thresholds(store.config, group, name)
        if limits is None:
            continue
        if kind not in (NUMERIC, CATEGORICAL) or name not in in_ref:
            skipped.append(FeatureDrift(name, kind, dtype.simpleString(), limits,
                                        note="not in the reference" if name not in in_ref else "not compared"))
            continue
        cols.append((name, kind, dtype, pii, limits))
    values = []
    for i, (name, kind, dtype, _, _) in enumerate(cols):
        v = numeric_value(name, dtype) if kind == NUMERIC else F.col(f"`{name}`").cast("string")
        if kind == NUMERIC:
            v = F.when(F.abs(v) < F.lit(math.inf), v)  # NaN and infinities count as missing
        values.append(v.alias(f"x{i}"))
    both = (ref_df.select(F.lit(0).alias("_side"), *values)
            .unionByName(cur_df.select(F.lit(1).alias("_side"), *values)))
    sides = _first_pass(both, cols)
    for side, what, r in ((0, "--reference", ref), (1, "--current", cur)):
        if not sides[side]["rows"]:
            raise UsageError(f"{what} {r.text!r} ({r.describe()}) has no rows of feature group {group!r}: "
                             f"pick a version or time range with data")
    splits = {i: _splits(sides, i) for i, c in enumerate(cols) if c[1] == NUMERIC
              and sides[0][f"n{i}"] and sides[1][f"n{i}"]}
    counts = _second_pass(both, cols, splits) if cols else {}
    results = []
    for i, (name, kind, dtype, pii, limits) in enumerate(cols):
        fd = FeatureDrift(name, kind, dtype.simpleString(), limits)
        n_ref, n_cur = sides[0][f"n{i}"], sides[1][f"n{i}"]
        fd.reference_count, fd.current_count = n_ref, n_cur
        fd.reference_null_fraction = 1 - n_ref / sides[0]["rows"]
        fd.current_null_fraction = 1 - n_cur / sides[1]["rows"]
        nulls = (sides[0]["rows"] - n_ref, sides[1]["rows"] - n_cur)
        if kind == NUMERIC and i in splits:
            _numeric(fd, splits[i], counts.get(i, {}), sides, i, nulls)
        elif kind == CATEGORICAL:
            _categorical(fd, counts.get(i, {}), (n_ref, n_cur), nulls, pii)
        else:
            fd.psi = _psi([nulls[0], n_ref], [nulls[1], n_cur])
            fd.note = "only missing values compared: one side has no values"
        results.append(fd)
    return GroupDrift(group, ref, cur, sides[0]["rows"], sides[1]["rows"], results + skipped)


def _first_pass(both: Any, cols: list) -> dict[int, dict]:
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, (_, kind, *_rest) in enumerate(cols):
        x = F.col(f"x{i}")
        aggs.append(F.count(x).alias(f"n{i}"))
        if kind == NUMERIC:
            aggs += [F.min(x).alias(f"min{i}"), F.max(x).alias(f"max{i}"),
                     F.percentile_approx(x, GRID, ACCURACY).alias(f"q{i}")]
    found = {r["_side"]: r.asDict() for r in both.groupBy("_side").agg(*aggs).collect()}
    empty = {"rows": 0, **{f"n{i}": 0 for i in range(len(cols))}}
    return {0: found.get(0, empty), 1: found.get(1, empty)}


def _splits(sides: dict, i: int) -> dict:
    """Bucket edges of one numeric feature: both sides' percentiles and extremes, the reference's
    deciles (PSI bins) and equal-width plot edges over both ranges."""
    ref, cur = sides[0], sides[1]
    lo, hi = min(ref[f"min{i}"], cur[f"min{i}"]), max(ref[f"max{i}"], cur[f"max{i}"])
    plot = [lo + (hi - lo) * k / PLOT_BINS for k in range(PLOT_BINS + 1)] if hi > lo else [lo]
    deciles = sorted({float(ref[f"q{i}"][k]) for k in DECILES})
    edges = {float(v) for v in (*ref[f"q{i}"], *cur[f"q{i}"], lo, hi, ref[f"min{i}"], ref[f"max{i}"])}
    edges.update(plot)
    return {"splits": [-math.inf, *sorted(edges), math.inf], "deciles": deciles, "plot": plot}


def _second_pass(both: Any, cols: list, splits: dict) -> dict[int, dict[str, tuple[int, int]]]:
    """feature index -> bucket (numeric: index as text; categorical: the value) -> (ref, cur) counts."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import Window, functions as F

    numeric = sorted(splits)
    if numeric:
        both = Bucketizer(inputCols=[f"x{i}" for i in numeric], outputCols=[f"b{i}" for i in numeric],
                          splitsArray=[splits[i]["splits"] for i in numeric]).transform(both)
    parts = []
    for i, (_, kind, *_rest) in enumerate(cols):
        if kind == NUMERIC and i in splits:
            parts.append(F.struct(F.lit(i).alias("f"), F.col(f"b{i}").cast("int").cast("string").alias("b")))
        elif kind == CATEGORICAL:
            parts.append(F.struct(F.lit(i).alias("f"), F.col(f"x{i}").alias("b")))
    if not parts:
        return {}
    side = F.col("_side")
    grouped = (both.select("_side", F.explode(F.array(*parts)).alias("s")).select("_side", "s.*")
               .where("b IS NOT NULL").groupBy("f", "b")
               .agg(F.sum(F.when(side == 0, 1).otherwise(0)).alias("r"),
                    F.sum(F.when(side == 1, 1).otherwise(0)).alias("c")))
    rank = F.row_number().over(Window.partitionBy("f").orderBy((F.col("r") + F.col("c")).desc(), F.col("b")))
    keep = F.col("k") <= MAX_CATEGORIES
    if numeric:
        keep = keep | F.col("f").isin(numeric)
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for row in grouped.withColumn("k", rank).where(keep).collect():
        out.setdefault(row["f"], {})[row["b"]] = (int(row["r"]), int(row["c"]))
    return out


def _numeric(fd: FeatureDrift, sp: dict, counts: dict, sides: dict, i: int, nulls: tuple[int, int]) -> None:
    splits = sp["splits"]
    n = len(splits) - 1
    r = [counts.get(str(j), (0, 0))[0] for j in range(n)]
    c = [counts.get(str(j), (0, 0))[1] for j in range(n)]
    fd.ks, fd.ks_pvalue = _ks(r, c)
    deciles, plot = sp["deciles"], sp["plot"]
    psi_r, psi_c = [0] * (len(deciles) + 1), [0] * (len(deciles) + 1)
    plot_r, plot_c = [0] * max(len(plot) - 1, 1), [0] * max(len(plot) - 1, 1)
    for j in range(n):
        low = splits[j]
        k = sum(1 for e in deciles if e <= low)
        psi_r[k] += r[j]
        psi_c[k] += c[j]
        p = min(max(sum(1 for e in plot if e <= low) - 1, 0), len(plot_r) - 1)
        plot_r[p] += r[j]
        plot_c[p] += c[j]
    fd.psi = _psi(psi_r + [nulls[0]], psi_c + [nulls[1]])
    fd.plot = {"type": "histogram", "edges": plot if len(plot) > 1 else [plot[0], plot[0]],
               "reference": _fractions(plot_r), "current": _fractions(plot_c),
               "psi_bins": {"edges": deciles, "reference": _fractions(psi_r), "current": _fractions(psi_c)},
               "unit": "epoch_seconds" if fd.dtype.startswith(("timestamp", "date")) else None}


def _categorical(fd: FeatureDrift, counts: dict, n: tuple[int, int], nulls: tuple[int, int], pii: bool) -> None:
    cats = sorted(counts, key=lambda b: (-(counts[b][0] + counts[b][1]), b))
    r = [counts[b][0] for b in cats]
    c = [counts[b][1] for b in cats]
    labels = [f"{MASK} {k + 1}" if pii else b for k, b in enumerate(cats)]
    extra = [(OTHERS, n[0] - sum(r), n[1] - sum(c)), (NULL, nulls[0], nulls[1])]
    for label, a, b in extra:
        if a or b:
            labels.append(label)
            r.append(a)
            c.append(b)
    fd.psi, fd.js = _psi(r, c), _js(r, c)
    shown = min(len(labels), PLOT_CATEGORIES)
    fr, fc = _fractions(r), _fractions(c)
    fd.plot = {"type": "bars", "categories": labels[:shown], "reference": fr[:shown], "current": fc[:shown],
               "hidden_categories": len(labels) - shown}


def _fractions(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [x / total if total else 0.0 for x in counts]


def _psi(ref: list[int], cur: list[int]) -> float:
    """Population stability index; empty bins count as EPSILON so one side's new bin is finite."""
    p, q = _fractions(ref), _fractions(cur)
    return float(sum((b - a) * math.log(b / a) for a, b in
                     ((max(a, EPSILON), max(b, EPSILON)) for a, b in zip(p, q))))


def _js(ref: list[int], cur: list[int]) -> float:
    """Jensen-Shannon distance (square root of the divergence, log base 2): 0 same, 1 disjoint."""
    from scipy.spatial.distance import jensenshannon

    if not sum(ref) or not sum(cur):
        return 0.0 if sum(ref) == sum(cur) else 1.0
    return float(jensenshannon(ref, cur, base=2))


def _ks(ref: list[int], cur: list[int]) -> tuple[float, float]:
    """Largest gap between the two cumulative distributions at the bucket edges, and its
    asymptotic p-value (the Kolmogorov distribution with Stephens' small-sample correction)."""
    import numpy as np
    from scipy.special import kolmogorov

    nr, nc = sum(ref), sum(cur)
    if not nr or not nc:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(ref) / nr - np.cumsum(cur) / nc)))
    en = math.sqrt(nr * nc / (nr + nc))
    return d, float(kolmogorov((en + 0.12 + 0.11 / en) * d))
