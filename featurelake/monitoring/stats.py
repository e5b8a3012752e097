"""Per-feature statistics of a batch (an ingest run, a training set), stored in the catalogue.

A small batch (at most DRIVER_VALUES values, and no more rows than sample_rows) is read once, its
values collected as Arrow, and described on the driver: a Spark job costs a few tenths of a second
whatever its size, so for the 20,000-row training set of workload 1 the three jobs below took
1.0-1.4 s where the collection takes ~0.2 s. Its distinct counts and quantiles are exact.

A larger batch takes three Spark jobs whatever the number of features: one aggregation of every
plain statistic of every feature (count, nulls, min, max, mean, stddev), one of every sketch
(quantiles, approximate distinct), and one grouped count of all histograms and top values, whose
numeric bins need the min and max of the first. The sketches are apart because Spark compiles an aggregation to code
only when none of its functions is a sketch: on 1M rows x 12 columns the split took 2.6 s where
one aggregation took 3.3 s. Only these aggregates reach the driver. An ingest saves the first
job: it computes the plain aggregates with its row count (plain_aggregates). (Gathering them while
a training set is written, with an Observation, was tried and not kept: the observed aggregates
are evaluated row by row, and on 1M rows x 12 features the write grew more than the two jobs cost.)

Counts, nulls, min, max, mean, stddev, distinct counts and top values are over every row.
Quantiles and histograms of a batch larger than `sample_rows` are over a seeded sample of about
that many rows (each feature's stats then say so under "sample"): their cost is per value
inserted (GK's quantile summary is most of the statistics' time), and 100k rows place a
quantile within about 0.3% of the ranks, more than a description needs.
"""
from __future__ import annotations

import math
from decimal import Decimal
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from featurelake.errors import NotFoundError
from featurelake.records import Statistic
from featurelake.spark import one_row

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from featurelake.definitions import FeatureGroup
    from featurelake.store import FeatureStore

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 10
ACCURACY = 10_000
SAMPLE_ROWS = 100_000
SEED = 17
DRIVER_VALUES = 2_000_000  # a batch of at most this many values (rows x features) is described on the driver
MASK = "<masked>"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "other"
_NUMERIC_TYPES = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")
_TIME_TYPES = ("TimestampType", "TimestampNTZType", "DateType")
_CATEGORICAL_TYPES = ("StringType", "BooleanType", "VarcharType", "CharType")


def kind_of(data_type: Any) -> str:
    """numeric (numbers, and times as epoch seconds), categorical (strings, booleans) or other
    (arrays, maps, structs, binary: only counted)."""
    name = type(data_type).__name__
    if name in _NUMERIC_TYPES or name in _TIME_TYPES:
        return NUMERIC
    if name in _CATEGORICAL_TYPES:
        return CATEGORICAL
    return OTHER


def numeric_value(name: str, data_type: Any) -> "Column":
    """The column as a double; times as epoch seconds (a plain cast is refused under ANSI SQL)."""
    from pyspark.sql import functions as F

    col = F.col(f"`{name}`")
    kind = type(data_type).__name__
    if kind == "DateType":
        return (F.unix_date(col) * F.lit(86400)).cast("double")
    if kind in ("TimestampType", "TimestampNTZType"):
        return F.unix_micros(col.cast("timestamp")).cast("double") / F.lit(1e6)
    return col.cast("double")


def feature_columns(df: "DataFrame", group: Optional["FeatureGroup"] = None,
                    columns: Optional[Sequence[str]] = None,
                    pii: Optional[Iterable[str]] = None) -> list[tuple[str, str, Any, bool]]:
    """(name, kind, Spark type, pii) of the columns to describe: the given ones, else the group's
    declared features (and window features) present in df, else every column. PII: the group's
    PII features, or `pii`."""
    types = {f.name: f.dataType for f in df.schema.fields}
    if columns is not None:
        missing = [c for c in columns if c not in types]
        if missing:
            raise NotFoundError(f"statistics: columns {missing} are not in the DataFrame (it has {sorted(types)})")
        names = list(columns)
    elif group is not None:  # window features too: a training set's rows hold them
        names = [n for n in group.feature_names if n in types]
    else:
        names = list(types)
    masked = set(pii or ()) | (group.pii_features if group is not None else set())
    return [(n, kind_of(types[n]), types[n], n in masked) for n in names]


def batch_statistics(df: "DataFrame", group: Optional["FeatureGroup"] = None, *,
                     columns: Optional[Sequence[str]] = None, pii: Optional[Iterable[str]] = None,
                     bins: int = HISTOGRAM_BINS, top: int = TOP_VALUES,
                     sample_rows: Optional[int] = SAMPLE_ROWS, plain: Optional[dict] = None,
                     rows: Optional[int] = None) -> dict[str, dict]:
    """feature -> {kind, dtype, count, non_null, null_fraction, approx_distinct, and for numeric
    ones min, max, mean, stddev, quantiles, histogram; for categorical ones top_values}.

    Reads df three times (see the module docstring), twice when the caller passes `plain`: the row
    of plain_aggregates(df, ...), computed in a pass of its own. Cache df first when it is expensive
    to recompute. Quantiles and histograms are over a sample when df has more than sample_rows rows
    (0 or None: every row). Top values of PII features (Feature tags {"pii": "true"}) are masked.
    `rows`, df's row count when the caller knows it (a training set's spine rows), lets the first
    two jobs run side by side (when it proves wrong, the second runs again with the true count)."""
    from pyspark.sql import functions as F

    cols = feature_columns(df, group, columns, pii)
    known = rows if rows is not None else (int(plain["rows"]) if plain is not None else None)
    small = _small_enough(known, len(cols), sample_rows)
    if small is not None:
        table = _collect(df if known is not None else df.limit(small + 1), cols)
        if table.num_rows <= small:
            return _described(table, cols, bins, top)
    guessed, early = None, {}
    if plain is None and rows is not None:  # the count known: the two aggregations run side by side
        guessed = _fraction(rows, sample_rows)
        with ThreadPoolExecutor(2) as pool:
            counted, sketched = pool.submit(lambda: one_row(df.agg(*_plain(cols))).asDict()), \
                pool.submit(_sketches, df, cols, guessed)
            row, early = counted.result(), sketched.result()
    else:
        row = dict(plain) if plain is not None else one_row(df.agg(*_plain(cols))).asDict()
    rows = int(row["rows"])
    fraction = _fraction(rows, sample_rows)
    row.update(early if fraction == guessed else _sketches(df, cols, fraction))
    sampled = F.rand(SEED) < F.lit(fraction) if fraction < 1 else F.lit(True)
    stats: dict[str, dict] = {}
    for i, (name, kind, dtype, masked) in enumerate(cols):
        non_null = int(row[f"n{i}"])
        s: dict[str, Any] = {"kind": kind, "dtype": dtype.simpleString(), "count": rows, "non_null": non_null,
                             "null_fraction": _ratio(rows - non_null, rows)}
        if kind != OTHER:
            s["approx_distinct"] = int(row[f"d{i}"])
        if kind == NUMERIC:
            s.update(min=_num(row[f"min{i}"]), max=_num(row[f"max{i}"]), mean=_num(row[f"mean{i}"]),
                     stddev=_num(row[f"sd{i}"]),
                     quantiles={_qname(q): _num(v) for q, v in zip(QUANTILES, row[f"q{i}"] or [])})
            if type(dtype).__name__ in _TIME_TYPES:
                s["unit"] = "epoch_seconds"
            if fraction < 1:
                s["sample"] = {"of": "quantiles, histogram", "fraction": fraction, "seed": SEED}
        if masked:
            s["pii"] = True
        stats[name] = s
    _add_distributions(df, cols, stats, bins, top, sampled)
    return stats


def _small_enough(rows: Optional[int], columns: int, sample_rows: Optional[int]) -> Optional[int]:
    """The most rows to describe on the driver (None: not this batch): every row taken, whatever
    sample_rows says, and at most DRIVER_VALUES values."""
    most = DRIVER_VALUES // max(columns, 1)
    if sample_rows:
        most = min(most, sample_rows)
    return most if most and (rows is None or rows <= most) else None


def _collect(df: "DataFrame", cols: list) -> Any:
    """One job: each column as the value its statistics read (a double for numbers and times, text
    for categories, whether it is set for other types), as Arrow on the driver."""
    from pyspark.sql import functions as F

    return df.select(*[(numeric_value(name, dtype) if kind == NUMERIC else
                        F.col(f"`{name}`").cast("string") if kind == CATEGORICAL else
                        F.col(f"`{name}`").isNotNull()).alias(f"c{i}")
                       for i, (name, kind, dtype, _) in enumerate(cols)]).toArrow()


def _described(table: Any, cols: list, bins: int, top: int) -> dict[str, dict]:
    """batch_statistics of a small batch from its values on the driver, with Spark's definitions
    (NaN above every number, stddev of two values or more, top values by count then value), where
    distinct counts and quantiles are exact: the value at rank ceil(q x n), which is also what
    percentile_approx gives below 10,000 values."""
    import numpy as np

    rows, stats = table.num_rows, {}
    for i, (name, kind, dtype, masked) in enumerate(cols):
        column = table.column(f"c{i}")
        non_null = rows - column.null_count if kind != OTHER else int(np.sum(column.to_numpy(zero_copy_only=False)))
        s: dict[str, Any] = {"kind": kind, "dtype": dtype.simpleString(), "count": rows, "non_null": non_null,
                             "null_fraction": _ratio(rows - non_null, rows)}
        values = column.drop_null().to_numpy(zero_copy_only=False)
        if kind != OTHER:
            s["approx_distinct"] = int(len(set(values.tolist())) if kind == CATEGORICAL else len(np.unique(values)))
        if kind == NUMERIC:
            s.update(_numeric(np.sort(values), bins))
            if type(dtype).__name__ in _TIME_TYPES:
                s["unit"] = "epoch_seconds"
        elif kind == CATEGORICAL and non_null:
            counted: dict = {}
            for value in values.tolist():
                counted[value] = counted.get(value, 0) + 1
            best = sorted(counted.items(), key=lambda vc: (-vc[1], vc[0]))[:top]
            s["top_values"] = [{"value": MASK if masked else v, "count": c} for v, c in best]
        if masked:
            s["pii"] = True
        stats[name] = s
    return stats


def table_statistics(table: Any, columns: Sequence[str], pii: Iterable[str] = (), *,
                     bins: int = HISTOGRAM_BINS, top: int = TOP_VALUES) -> dict[str, dict]:
    """batch_statistics of rows already on the driver as Arrow (a training set the driver built),
    over every row, with Spark's type names and definitions."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql.pandas.types import from_arrow_type

    from featurelake.localset import micros

    masked, cols, values = set(pii), [], {}
    for i, name in enumerate(columns):
        column = table.column(name)
        dtype = from_arrow_type(column.type)
        kind = kind_of(dtype)
        cols.append((name, kind, dtype, name in masked))
        if kind == OTHER:
            values[f"c{i}"] = column.is_valid()
        elif kind == CATEGORICAL:
            values[f"c{i}"] = pc.cast(column, pa.string())
        elif type(dtype).__name__ in _TIME_TYPES:
            values[f"c{i}"] = pc.divide(pc.cast(micros(column, name), pa.float64()), 1e6)
        else:
            values[f"c{i}"] = pc.cast(column, pa.float64())
    return _described(pa.table(values) if values else pa.table({}), cols, bins, top)


def _numeric(ordered: Any, bins: int) -> dict:
    """min, max, mean, stddev, quantiles and histogram of sorted doubles (NaN last, as Spark orders it)."""
    import numpy as np

    n = len(ordered)
    if not n:
        return {"min": None, "max": None, "mean": None, "stddev": None, "quantiles": {}}
    lo, hi = _num(ordered[0]), _num(ordered[-1])
    out: dict[str, Any] = {
        "min": lo, "max": hi, "mean": _num(float(np.mean(ordered))),
        "stddev": _num(float(np.std(ordered, ddof=1))) if n > 1 else None,
        "quantiles": {_qname(q): _num(float(ordered[max(math.ceil(q * n) - 1, 0)])) for q in QUANTILES}}
    if lo is not None and hi is not None:
        width = (hi - lo) / bins if hi > lo else 1.0
        slots = np.minimum(np.floor((ordered - lo) / width), bins - 1).astype(np.int64)
        counts = np.bincount(slots, minlength=bins if hi > lo else 1)
        out["histogram"] = {"edges": [lo + width * k for k in range(bins + 1)] if hi > lo else [lo, hi],
                            "counts": [int(c) for c in counts]}
    return out


def plain_aggregates(df: "DataFrame", group: Optional["FeatureGroup"] = None, *,
                     columns: Optional[Sequence[str]] = None) -> list["Column"]:
    """The aggregates of batch_statistics' first job (the row count as "rows", then per feature),
    for a caller to add to a pass it makes anyway and hand back as `plain`."""
    return _plain(feature_columns(df, group, columns))


def _plain(cols: list) -> list["Column"]:
    from pyspark.sql import functions as F

    plain = [F.count(F.lit(1)).alias("rows")]
    for i, (name, kind, dtype, _) in enumerate(cols):
        plain += [F.count(F.col(f"`{name}`")).alias(f"n{i}")]
        if kind == NUMERIC:
            v = numeric_value(name, dtype)
            plain += [F.min(v).alias(f"min{i}"), F.max(v).alias(f"max{i}"), F.avg(v).alias(f"mean{i}"),
                      F.stddev_samp(v).alias(f"sd{i}")]
    return plain


def _fraction(rows: int, sample_rows: Optional[int]) -> float:
    return sample_rows / rows if sample_rows and rows > sample_rows else 1.0


def _sketches(df: "DataFrame", cols: list, fraction: float) -> dict:
    """The second job: distinct counts, and quantiles of the sampled rows."""
    from pyspark.sql import functions as F

    sampled = F.rand(SEED) < F.lit(fraction) if fraction < 1 else F.lit(True)
    sketches = []
    for i, (name, kind, dtype, _) in enumerate(cols):
        if kind != OTHER:
            sketches += [F.approx_count_distinct(F.col(f"`{name}`")).alias(f"d{i}")]
        if kind == NUMERIC:  # percentile_approx skips nulls: only the sample's values are inserted
            value = F.when(F.col("_fl_sampled"), numeric_value(name, dtype))
            sketches += [F.percentile_approx(value, list(QUANTILES), ACCURACY).alias(f"q{i}")]
    if not sketches:
        return {}
    return one_row(df.select("*", sampled.alias("_fl_sampled")).agg(*sketches)).asDict()


def _add_distributions(df: "DataFrame", cols: list, stats: dict, bins: int, top: int, sampled: "Column") -> None:
    """The third job: equal-width histograms (numeric, of the sampled rows) and top values
    (categorical, of every row), together. A numeric column without finite bounds (infinities,
    NaN) gets no histogram."""
    from pyspark.sql import Window, functions as F

    parts, numeric_ids = [], []
    for i, (name, kind, dtype, _) in enumerate(cols):
        s = stats[name]
        if kind == NUMERIC and s["non_null"] and s["min"] is not None and s["max"] is not None:
            lo, hi = s["min"], s["max"]
            width = (hi - lo) / bins if hi > lo else 1.0
            v = numeric_value(name, dtype)
            # A bin number, not text (grouping by it took 0.76 s where text took 1.17 s, 1M x 12);
            # least() skips nulls (least(null, 19) is 19), hence the when.
            bin_ = F.when(v.isNotNull() & F.col("_fl_sampled"),
                          F.least(F.floor((v - F.lit(lo)) / F.lit(width)), F.lit(bins - 1)))
            value = F.lit(None)
            s["histogram"] = {"edges": [lo + width * k for k in range(bins + 1)] if hi > lo else [lo, hi],
                              "counts": [0] * (bins if hi > lo else 1)}
            numeric_ids.append(i)
        elif kind == CATEGORICAL and s["non_null"]:
            bin_, value = F.lit(None), F.col(f"`{name}`").cast("string")
        else:
            continue
        parts.append(F.struct(F.lit(i).alias("f"), bin_.cast("int").alias("n"), value.cast("string").alias("b")))
    if not parts:
        return
    source = df.select("*", sampled.alias("_fl_sampled"))
    if len(numeric_ids) == len(parts):  # histograms only: the sample alone
        source = source.where("_fl_sampled")
    counts = (source.select(F.explode(F.array(*parts)).alias("s")).select("s.*")
              .where("n IS NOT NULL OR b IS NOT NULL").groupBy("f", "n", "b").count())
    rank = F.row_number().over(Window.partitionBy("f").orderBy(F.col("count").desc(), F.col("b")))
    keep = (F.col("r") <= top) | F.col("f").isin(numeric_ids) if numeric_ids else F.col("r") <= top
    for r in counts.withColumn("r", rank).where(keep).collect():
        name, _, _, pii = cols[r["f"]]
        s = stats[name]
        if s["kind"] == NUMERIC:
            s["histogram"]["counts"][r["n"]] += int(r["count"])
        else:
            s.setdefault("top_values", []).append({"value": MASK if pii else r["b"], "count": int(r["count"])})
    for name, *_ in cols:
        if "top_values" in stats[name]:
            stats[name]["top_values"].sort(key=lambda t: -t["count"])


def record_statistics(store: "FeatureStore", scope: str, scope_id: str,
                      group: Union[str, "FeatureGroup", None], stats: dict[str, dict]) -> None:
    """One row per feature into the catalogue table `statistics`, in one commit.
    scope is "run" (scope_id a run id) or "training_set" (a training set id)."""
    from featurelake.catalog import now

    name = group if isinstance(group, str) or group is None else group.name
    stamp = now()
    store.catalog.add(*[Statistic(scope, scope_id, name, feature, stamp, s) for feature, s in stats.items()])


def record_training_set_statistics(store: "FeatureStore", training_set: Any,
                                   rows: Optional["DataFrame"] = None) -> dict[str, dict]:
    """Statistics of every feature column of a training set, recorded with scope "training_set"
    in one commit; returns "group:feature" -> stats. `rows` is the set as written (cheap to read
    back); without it the point-in-time rows are computed again."""
    from featurelake.catalog import now

    from featurelake.ondemand import HIDDEN

    m = training_set.manifest
    planned = [o for p in m["options"]["plan"] for o in _outputs(p)]
    # output column -> group:feature, in build order; inputs read only for request-time features
    # are not columns of the set, and those features' outputs are (name:output)
    refs = {o: ref for o, ref in zip(planned, m["features"]) if not o.startswith(HIDDEN)}
    refs.update({column: f"{name}:{o}" for name, spec in (m["options"].get("on_demand") or {}).items()
                 for o, column, _ in spec["outputs"]})
    outputs = list(refs)
    pii = [o for o, ref in refs.items() if _is_pii(store, ref)]
    local = training_set.local_rows()
    if local is not None:
        stats = table_statistics(local, outputs, pii)
    else:
        stats = batch_statistics(training_set.to_spark() if rows is None else rows, columns=outputs, pii=pii,
                                 rows=int(m["spine_rows"]), sample_rows=store.config.monitoring.statistics_sample_rows)
    stamp = now()
    store.catalog.add(*[Statistic("training_set", training_set.id, group, feature, stamp, {**s, "column": o})
                        for o, s in stats.items() for group, feature in [refs[o].split(":", 1)]])
    return {refs[o]: s for o, s in stats.items()}


def _outputs(plan: dict) -> list[str]:
    return [f[1] for f in plan["features"]] + [a["output"] for a in plan["aggregations"]]


def _is_pii(store: "FeatureStore", ref: str) -> bool:
    group, feature = ref.split(":", 1)
    try:
        g = store.group(group)
    except Exception:  # a group since removed from the repository: nothing known, nothing masked
        return False
    return feature in g.pii_features


def read_statistics(store: "FeatureStore", *, scope: Optional[str] = None, scope_id: Optional[str] = None,
                    group: Optional[str] = None) -> list[dict]:
    """Recorded statistics, newest first, each with its stats parsed back into a dict."""
    wanted = {k: v for k, v in (("scope", scope), ("scope_id", scope_id), ("group", group)) if v}
    rows = [vars(s) for s in store.catalog.records(Statistic, lambda s: all(getattr(s, k) == v
                                                                            for k, v in wanted.items()))]
    return sorted(rows, key=lambda r: (r["computed_at"], r["feature"]), reverse=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _qname(q: float) -> str:
    return f"p{round(q * 100):02d}"


def _num(value: Any) -> Optional[float]:
    """JSON-safe number: Decimal to float, NaN and infinities to None."""
    if value is None:
        return None
    value = float(value) if isinstance(value, (Decimal, int, float)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value
