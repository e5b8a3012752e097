"""Preparation helpers for a group's transform: each takes a DataFrame and returns a new one.

    from featurelake import transforms as T
    def prepare(df):
        df = T.deduplicate(df, ["customer_id"], "created_at")
        df = T.fill_nulls(df, strategy="median", columns=["amount"])
        return T.clip_outliers(df, ["amount"], 0.01, 0.99)

Helpers that FIT parameters on the batch (means, medians, quantiles, min/max) compute them in one
aggregation job per call and record them, so that a run can store what it used:

    with T.recording() as params:          # ingest wraps the transform in this
        out = group.transform(df)
    params  # {"fill_nulls:amount": {"strategy": "median", "value": 42.0}, "clip_outliers:amount": {...}}

Pass `params=` (as recorded) to apply earlier parameters instead of fitting new ones, so that a
training set and later batches are scaled alike. Quantiles and medians are Spark's
percentile_approx (exact on small batches, bounded memory on large ones).
"""
from __future__ import annotations

import contextvars
import decimal
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

from featurelake.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

Columns = Union[str, Sequence[str]]

_RECORDERS: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("featurelake_fitted", default=None)
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_UNIT_ALIASES = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@contextmanager
def recording() -> Iterator[dict]:
    """Collects the parameters fitted inside the block: {"helper:column": {...}}."""
    params: dict = {}
    token = _RECORDERS.set(params)
    try:
        yield params
    finally:
        _RECORDERS.reset(token)


def _record(helper: str, column: str, params: dict) -> None:
    book = _RECORDERS.get()
    if book is None:
        return
    key = f"{helper}:{column}"
    n = 2
    while key in book:  # the same helper twice on a column: keep both
        key = f"{helper}:{column}#{n}"
        n += 1
    book[key] = params


# ---- checks -------------------------------------------------------------------------------------

def _columns(df: "DataFrame", columns: Optional[Columns], helper: str, numeric: bool = False) -> list[str]:
    from pyspark.sql import types as T

    names = [columns] if isinstance(columns, str) else list(columns or [])
    for name in names:
        if name not in df.columns:
            raise UsageError(f"{helper}: column {name!r} is not in the DataFrame{did_you_mean(name, df.columns)}")
        if numeric and not isinstance(df.schema[name].dataType, T.NumericType):
            raise UsageError(f"{helper}: column {name!r} is {df.schema[name].dataType.simpleString()}, not a "
                             f"number: cast it first, e.g. F.col({name!r}).cast('double')")
    return names


def _numeric_columns(df: "DataFrame") -> list[str]:
    from pyspark.sql import types as T

    return [f.name for f in df.schema.fields if isinstance(f.dataType, T.NumericType)]


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, decimal.Decimal) else value


def _fit(df: "DataFrame", exprs: dict[str, "Column"]) -> dict[str, Any]:
    """Every statistic a helper call needs, in one aggregation job."""
    if not exprs:
        return {}
    row = df.agg(*[e.alias(f"_{i}") for i, e in enumerate(exprs.values())]).collect()[0]
    return {k: _plain(v) for k, v in zip(exprs, row)}


def _given(params: Optional[dict], helper: str, column: str, keys: Sequence[str]) -> Optional[dict]:
    """Earlier parameters for a column, keyed by column or by "helper:column" as recorded."""
    if params is None:
        return None
    p = params.get(column, params.get(f"{helper}:{column}"))
    if not isinstance(p, dict) or any(k not in p for k in keys):
        raise UsageError(f"{helper}: params has no {list(keys)} for column {column!r}: pass "
                         f"{{{column!r}: {{{', '.join(repr(k) + ': ...' for k in keys)}}}}} "
                         f"or what recording() returned")
    return p


# ---- null handling ------------------------------------------------------------------------------

def fill_nulls(df: "DataFrame", values: Optional[dict] = None, *, strategy: str = "constant",
               columns: Optional[Columns] = None, params: Optional[dict] = None) -> "DataFrame":
    """Replaces nulls: `values={"col": 0}` for constants, or `strategy="mean"|"median"` over
    `columns` (default: every numeric column), fitted on the batch.

    Fitted (or given) parameters are recorded inside recording()."""
    from pyspark.sql import functions as F

    if strategy == "constant":
        if not values:
            raise UsageError("fill_nulls: give values={'column': constant, ...} or strategy='mean' or 'median'")
        return df.withColumns({c: F.coalesce(F.col(c), F.lit(values[c]).cast(df.schema[c].dataType))
                               for c in _columns(df, list(values), "fill_nulls") if values[c] is not None})
    if strategy not in ("mean", "median"):
        raise UsageError(f"fill_nulls: unknown strategy {strategy!r}"
                         f"{did_you_mean(strategy, ['constant', 'mean', 'median'])}")
    names = _columns(df, columns if columns is not None else _numeric_columns(df), "fill_nulls", numeric=True)
    stat = F.avg if strategy == "mean" else (lambda c: F.percentile_approx(c, 0.5))
    fitted = _fit(df, {c: stat(F.col(c)) for c in names if _given(params, "fill_nulls", c, ["value"]) is None})
    new = {}
    for c in names:
        given = _given(params, "fill_nulls", c, ["value"])
        value = given["value"] if given else fitted[c]
        _record("fill_nulls", c, {"strategy": strategy, "value": value})
        if value is not None:  # an all-null column has no mean: it stays null
            new[c] = F.coalesce(F.col(c), F.lit(value).cast(df.schema[c].dataType))
    return df.withColumns(new)


def drop_nulls(df: "DataFrame", columns: Optional[Columns] = None) -> "DataFrame":
    """Drops rows with a null in any of `columns` (default: any column)."""
    names = _columns(df, columns, "drop_nulls") if columns is not None else None
    return df.dropna(how="any", subset=names)


# ---- scaling and outliers -----------------------------------------------------------------------

def clip_outliers(df: "DataFrame", columns: Columns, lower_q: float = 0.01, upper_q: float = 0.99, *,
                  params: Optional[dict] = None) -> "DataFrame":
    """Caps values outside the [lower_q, upper_q] quantiles of the batch (winsorizing); nulls stay."""
    from pyspark.sql import functions as F

    if not 0 <= lower_q < upper_q <= 1:
        raise UsageError(f"clip_outliers: need 0 <= lower_q < upper_q <= 1, got {lower_q} and {upper_q}")
    names = _columns(df, columns, "clip_outliers", numeric=True)
    keys = ["lower", "upper"]
    fitted = _fit(df, {c: F.percentile_approx(F.col(c), [lower_q, upper_q]) for c in names
                       if _given(params, "clip_outliers", c, keys) is None})
    new = {}
    for c in names:
        given = _given(params, "clip_outliers", c, keys)
        lo, hi = (given["lower"], given["upper"]) if given else (fitted[c] or [None, None])
        _record("clip_outliers", c, {"lower_q": lower_q, "upper_q": upper_q, "lower": _plain(lo),
                                     "upper": _plain(hi)})
        if lo is None:
            continue
        col = F.col(c)
        new[c] = F.when(col < F.lit(lo), F.lit(lo)).when(col > F.lit(hi), F.lit(hi)).otherwise(col) \
            .cast(df.schema[c].dataType)
    return df.withColumns(new)


def normalize(df: "DataFrame", columns: Columns, *, suffix: str = "", params: Optional[dict] = None) -> "DataFrame":
    """Min-max scaling to [0, 1] as double; a constant column becomes 0.0. With a suffix the
    scaled values go to new columns (`amount` -> `amount_norm`)."""
    from pyspark.sql import functions as F

    names = _columns(df, columns, "normalize", numeric=True)
    fit = {}
    for c in names:
        if _given(params, "normalize", c, ["min", "max"]) is None:
            fit[f"{c}.min"], fit[f"{c}.max"] = F.min(F.col(c)), F.max(F.col(c))
    fitted = _fit(df, fit)
    new = {}
    for c in names:
        given = _given(params, "normalize", c, ["min", "max"])
        lo, hi = (given["min"], given["max"]) if given else (fitted[f"{c}.min"], fitted[f"{c}.max"])
        _record("normalize", c, {"min": lo, "max": hi})
        new[c + suffix] = _scaled(F.col(c), lo, None if lo is None else hi - lo)
    return df.withColumns(new)


def standardize(df: "DataFrame", columns: Columns, *, suffix: str = "",
                params: Optional[dict] = None) -> "DataFrame":
    """Z-scores (x - mean) / stddev as double, with the population stddev (as scikit-learn's
    StandardScaler); a constant column becomes 0.0."""
    from pyspark.sql import functions as F

    names = _columns(df, columns, "standardize", numeric=True)
    fit = {}
    for c in names:
        if _given(params, "standardize", c, ["mean", "stddev"]) is None:
            fit[f"{c}.mean"], fit[f"{c}.stddev"] = F.avg(F.col(c)), F.stddev_pop(F.col(c))
    fitted = _fit(df, fit)
    new = {}
    for c in names:
        given = _given(params, "standardize", c, ["mean", "stddev"])
        mean, std = (given["mean"], given["stddev"]) if given else (fitted[f"{c}.mean"], fitted[f"{c}.stddev"])
        _record("standardize", c, {"mean": mean, "stddev": std})
        new[c + suffix] = _scaled(F.col(c), mean, std)
    return df.withColumns(new)


def _scaled(col: "Column", center: Any, spread: Any) -> "Column":
    """(x - center) / spread as double; 0.0 when spread is 0; null for nulls (and all-null columns)."""
    from pyspark.sql import functions as F

    x = col.cast("double")
    if center is None:
        return F.lit(None).cast("double")
    if not spread:
        return F.when(x.isNotNull(), F.lit(0.0))
    return (x - F.lit(float(center))) / F.lit(float(spread))


# ---- derived features ---------------------------------------------------------------------------

def time_since(df: "DataFrame", col: str, ref_col: str, unit: str = "days", *,
               output: Optional[str] = None) -> "DataFrame":
    """`ref_col - col` in `unit` (seconds, minutes, hours, days, weeks; or s/m/h/d/w) as double,
    to the microsecond: e.g. days since signup as of each event. Dates count from midnight UTC."""
    from pyspark.sql import functions as F

    _columns(df, [col, ref_col], "time_since")
    unit_name = _UNIT_ALIASES.get(unit, unit)
    if unit_name not in _UNIT_SECONDS:
        raise UsageError(f"time_since: unknown unit {unit!r}{did_you_mean(unit, _UNIT_SECONDS)}")
    micros = F.unix_micros(F.col(ref_col).cast("timestamp")) - F.unix_micros(F.col(col).cast("timestamp"))
    return df.withColumn(output or f"{unit_name}_since_{col}", micros / F.lit(_UNIT_SECONDS[unit_name] * 1e6))


def rate(df: "DataFrame", num: str, den: str, *, output: Optional[str] = None,
         default: Optional[float] = None) -> "DataFrame":
    """num / den as double; where den is 0 or null the result is `default` (null unless given)
    instead of Spark's divide-by-zero error."""
    from pyspark.sql import functions as F

    _columns(df, [num, den], "rate", numeric=True)
    value = F.when(F.col(den) != 0, F.col(num).cast("double") / F.col(den).cast("double"))
    if default is not None:
        value = value.otherwise(F.lit(float(default)))
    return df.withColumn(output or f"{num}_per_{den}", value)


def indicator(df: "DataFrame", name: str, condition: Union[str, "Column"], *, as_int: bool = False) -> "DataFrame":
    """A binary column from a condition (SQL text or Column); where the condition is null
    (a null input) the indicator is false, never null."""
    from pyspark.sql import functions as F

    cond = F.expr(condition) if isinstance(condition, str) else condition
    flag = F.coalesce(cond.cast("boolean"), F.lit(False))
    return df.withColumn(name, flag.cast("int") if as_int else flag)


def lag(df: "DataFrame", key_cols: Columns, ts_col: str, col: str, n: int = 1, *,
        output: Optional[str] = None) -> "DataFrame":
    """The value of `col` n rows earlier for the same key, by event time (null for the first n)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = _columns(df, key_cols, "lag")
    _columns(df, [ts_col, col], "lag")
    if not isinstance(n, int) or n < 1:
        raise UsageError(f"lag: n must be a positive whole number of rows, got {n!r}")
    window = Window.partitionBy(*keys).orderBy(F.col(ts_col))
    return df.withColumn(output or f"{col}_lag_{n}", F.lag(F.col(col), n).over(window))


def deduplicate(df: "DataFrame", key_cols: Columns, ts_col: Optional[str] = None,
                keep: str = "last") -> "DataFrame":
    """One row per key: the latest (keep="last") or earliest ("first") by ts_col; without ts_col,
    any one row. Rows tied on the timestamp are broken arbitrarily."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = _columns(df, key_cols, "deduplicate")
    if ts_col is None:
        return df.dropDuplicates(keys)
    _columns(df, [ts_col], "deduplicate")
    if keep not in ("last", "first"):
        raise UsageError(f"deduplicate: keep must be 'last' or 'first', not {keep!r}")
    order = F.col(ts_col).desc_nulls_last() if keep == "last" else F.col(ts_col).asc_nulls_last()
    rank = "_featurelake_rank"
    return (df.withColumn(rank, F.row_number().over(Window.partitionBy(*keys).orderBy(order)))
            .where(F.col(rank) == 1).drop(rank))
