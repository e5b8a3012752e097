"""The one-pass engine of the validation gate: the common expectations (not null, between, in
set, match regex, unique, row count, column exists, type, column min/max/mean/sum) compiled into
ONE aggregation over the batch, plus one shuffle per `unique` and one short `limit` job per failed
expectation for its examples, with Great Expectations' semantics (`mostly`, nulls ignored except
by the null checks, strict bounds). What it cannot compile exactly is left to GE (validation.py).
"""
from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Optional

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

PARTIAL_UNEXPECTED = 20
RESULT_KEYS = ("expectation", "column", "kwargs", "severity", "success", "observed_value", "element_count",
               "unexpected_count", "unexpected_percent", "missing_count", "partial_unexpected_list", "error",
               "engine")


def result_row(entry: dict, engine: str, **values: Any) -> dict:
    """One expectation's result, the same keys whichever engine computed it."""
    out: dict[str, Any] = {k: None for k in RESULT_KEYS}
    out.update(expectation=entry["type"], column=entry["kwargs"].get("column"), kwargs=entry["kwargs"],
               severity=entry.get("severity", "critical"), engine=engine)
    out.update(values)
    return out


@dataclass
class _Plan:
    """A compiled expectation: aggregates for the shared pass, and how to turn them into a result."""

    aggs: list
    finish: Callable[[list, int], dict]
    unexpected: Optional["Column"] = None  # rows that break it, for examples when it fails
    unique: bool = False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounds_ok(kw: dict) -> bool:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    return (lo is None or _is_number(lo)) and (hi is None or _is_number(hi)) and \
        (lo is not None or hi is not None) and (lo is None or hi is None or lo <= hi)


def _within(value: Any, kw: dict) -> bool:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if value is None:
        return False
    if lo is not None and (value <= lo if kw.get("strict_min") else value < lo):
        return False
    if hi is not None and (value >= hi if kw.get("strict_max") else value > hi):
        return False
    return True


def _mapresult_row(kind: str, mostly: float) -> Callable[[list, int], dict]:
    """GE's ColumnMapExpectation rules: nulls are not judged (except by the null checks), the
    share of good rows must reach `mostly`, and an empty column passes."""
    def finish(values: list, rows: int) -> dict:
        if kind == "not_null":
            bad = int(values[0])
            ok = rows == 0 or (rows - bad) / rows >= mostly
            return {"success": ok, "element_count": rows, "unexpected_count": bad,
                    "unexpected_percent": 100.0 * bad / rows if rows else None,
                    "partial_unexpected_list": [None] * min(bad, PARTIAL_UNEXPECTED)}
        nonnull, bad = int(values[0]), int(values[1])
        ok = rows == 0 or nonnull == 0 or (nonnull - bad) / nonnull >= mostly
        return {"success": ok, "element_count": rows, "unexpected_count": bad,
                "unexpected_percent": 100.0 * bad / nonnull if nonnull else None,
                "missing_count": rows - nonnull, "partial_unexpected_list": []}
    return finish


def compile_expectation(entry: dict, schema: dict, df: "DataFrame") -> Optional[_Plan]:
    """A plan for the one-pass engine, or None to leave the expectation to GE. Only arguments
    that cannot fail at run time are compiled (numbers against numeric columns, sets of the
    column's type, valid Java regexes), so that the shared pass never fails for one of them."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    etype, kw = entry["type"], entry["kwargs"]
    allowed = _COMPILABLE.get(etype)
    if allowed is None or not set(kw) <= allowed:
        return None
    name = kw.get("column")
    col = F.col(f"`{name}`") if name else None
    dtype = schema.get(name) if name else None
    numeric = isinstance(dtype, T.NumericType)
    mostly = 1.0 if kw.get("mostly") is None else kw["mostly"]
    if etype in ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"):
        kw2 = {"min_value": kw["value"], "max_value": kw["value"]} if "value" in kw else kw
        if "value" in kw and not _is_number(kw["value"]) or "value" not in kw and not _bounds_ok(kw):
            return None
        return _Plan([], lambda v, rows: {"success": _within(rows, kw2), "observed_value": rows})
    if etype == "expect_column_to_exist":
        cols, index = list(schema), kw.get("column_index")
        ok = (index < len(cols) and cols[index] == name) if isinstance(index, int) and index else name in schema
        return _Plan([], lambda v, rows: {"success": ok, "observed_value": cols if not ok else None})
    if etype == "expect_column_values_to_be_of_type":
        wanted = kw.get("type_")
        cls = getattr(T, wanted, None) if isinstance(wanted, str) else None
        if wanted is not None and not (isinstance(cls, type) and issubclass(cls, T.DataType)):
            return None
        observed = type(dtype).__name__
        ok = cls is None or isinstance(dtype, cls)  # cls is None exactly when no type_ was given
        return _Plan([], lambda v, rows: {"success": ok, "observed_value": observed})
    if col is None:  # a column expectation without its column: GE reports that on it alone
        return None
    if etype == "expect_column_values_to_not_be_null":
        return _Plan([F.count(F.when(col.isNull(), 1))], _mapresult_row("not_null", mostly), col.isNull())
    if etype == "expect_column_values_to_be_between":
        if not numeric or not _bounds_ok(kw):
            return None
        lo, hi = kw.get("min_value"), kw.get("max_value")
        good = F.lit(True)
        if lo is not None:
            good = good & ((col > F.lit(lo)) if kw.get("strict_min") else (col >= F.lit(lo)))
        if hi is not None:
            good = good & ((col < F.lit(hi)) if kw.get("strict_max") else (col <= F.lit(hi)))
        bad = col.isNotNull() & ~good
        return _Plan([F.count(col), F.count(F.when(bad, 1))], _mapresult_row("map", mostly), bad)
    if etype == "expect_column_values_to_be_in_set":
        values = kw.get("value_set")
        if not isinstance(values, (list, tuple, set)) or not _same_family(dtype, values):
            return None
        bad = col.isNotNull() & ~col.isin(list(values)) if values else col.isNotNull()
        return _Plan([F.count(col), F.count(F.when(bad, 1))], _mapresult_row("map", mostly), bad)
    if etype == "expect_column_values_to_match_regex":
        if not isinstance(dtype, T.StringType) or not _java_regex_ok(df, kw.get("regex")):
            return None
        bad = col.isNotNull() & ~col.rlike(kw["regex"])
        return _Plan([F.count(col), F.count(F.when(bad, 1))], _mapresult_row("map", mostly), bad)
    if etype == "expect_column_values_to_be_unique":
        if isinstance(dtype, (T.ArrayType, T.MapType, T.StructType)):
            return None
        return _Plan([F.count(col)], _mapresult_row("map", mostly), unique=True)
    if etype in _AGGREGATES:
        if not numeric or not _bounds_ok(kw):
            return None
        agg = getattr(F, _AGGREGATES[etype])(col)

        def finish(v: list, rows: int) -> dict:
            value = float(v[0]) if isinstance(v[0], decimal.Decimal) else v[0]
            return {"success": _within(value, kw), "observed_value": value}
        return _Plan([agg], finish)
    return None


_MAP_ARGS = {"column", "mostly"}
_BETWEEN_ARGS = {"min_value", "max_value", "strict_min", "strict_max"}
_COMPILABLE: dict[str, set] = {
    "expect_column_values_to_not_be_null": _MAP_ARGS,
    "expect_column_values_to_be_between": _MAP_ARGS | _BETWEEN_ARGS,
    "expect_column_values_to_be_in_set": _MAP_ARGS | {"value_set"},
    "expect_column_values_to_match_regex": _MAP_ARGS | {"regex"},
    "expect_column_values_to_be_unique": _MAP_ARGS,
    "expect_table_row_count_to_be_between": _BETWEEN_ARGS,
    "expect_table_row_count_to_equal": {"value"},
    "expect_column_to_exist": {"column", "column_index"},
    "expect_column_values_to_be_of_type": {"column", "type_"},
    "expect_column_min_to_be_between": {"column"} | _BETWEEN_ARGS,
    "expect_column_max_to_be_between": {"column"} | _BETWEEN_ARGS,
    "expect_column_mean_to_be_between": {"column"} | _BETWEEN_ARGS,
    "expect_column_sum_to_be_between": {"column"} | _BETWEEN_ARGS,
}


_AGGREGATES = {"expect_column_min_to_be_between": "min", "expect_column_max_to_be_between": "max",
               "expect_column_mean_to_be_between": "avg",
               "expect_column_sum_to_be_between": "try_sum"}  # an overflow observes null, not an error


def _java_regex_ok(df: "DataFrame", regex: Any) -> bool:
    """Spark's rlike is Java's regex; an invalid one goes to GE, which reports it on its own."""
    if not isinstance(regex, str):
        return False
    java = getattr(df.sparkSession, "_jvm", None)
    if java is None:  # Spark Connect: no JVM at hand, and Python's re is close enough
        try:
            re.compile(regex)
            return True
        except re.error:
            return False
    try:
        java.java.util.regex.Pattern.compile(regex)
        return True
    except Exception:  # py4j: PatternSyntaxException
        return False


def _same_family(dtype: Any, values: Collection) -> bool:
    """IN between a column and literals of another family makes ANSI Spark cast (and fail) at run
    time; such sets go to GE, which reports the problem on that expectation alone."""
    from pyspark.sql import types as T

    if isinstance(dtype, T.StringType):
        return all(isinstance(v, str) for v in values)
    if isinstance(dtype, T.BooleanType):
        return all(isinstance(v, bool) for v in values)
    if isinstance(dtype, T.NumericType):
        return all(_is_number(v) for v in values)
    return False


def run_compiled(df: "DataFrame", plans: dict[int, tuple[dict, _Plan]]) -> tuple[int, dict[int, dict]]:
    """One aggregation job for every plan; a shuffle per `unique`; a `limit` job per failure."""
    from pyspark.sql import functions as F

    aggs: list = [F.count(F.lit(1))]
    slots: dict[int, slice] = {}
    for i, (_, plan) in plans.items():
        slots[i] = slice(len(aggs), len(aggs) + len(plan.aggs))
        aggs += plan.aggs
    values = list(df.agg(*aggs).collect()[0])
    rows = int(values[0])
    out: dict[int, dict] = {}
    for i, (entry, plan) in plans.items():
        got = values[slots[i]]
        if plan.unique:
            got = got + [_duplicate_rows(df, entry["kwargs"]["column"])]
        res = result_row(entry, "spark", **plan.finish(got, rows))
        if not res["success"] and plan.unexpected is not None and not res.get("partial_unexpected_list"):
            name = entry["kwargs"]["column"]
            res["partial_unexpected_list"] = [r[0] for r in df.where(plan.unexpected).select(F.col(f"`{name}`"))
                                              .limit(PARTIAL_UNEXPECTED).collect()]
        if plan.unique and not res["success"]:
            res["partial_unexpected_list"] = _duplicate_examples(df, entry["kwargs"]["column"])
        out[i] = res
    return rows, out


def _duplicates(df: "DataFrame", name: str) -> "DataFrame":
    from pyspark.sql import functions as F

    col = F.col(f"`{name}`")
    return df.where(col.isNotNull()).groupBy(col.alias("v")).count().where("count > 1")


def _duplicate_rows(df: "DataFrame", name: str) -> int:
    """GE counts every row whose value repeats (both of a pair), not the extra copies."""
    from pyspark.sql import functions as F

    total = _duplicates(df, name).agg(F.sum("count")).collect()[0][0]
    return int(total or 0)


def _duplicate_examples(df: "DataFrame", name: str) -> list:
    out: list = []
    for r in _duplicates(df, name).limit(PARTIAL_UNEXPECTED).collect():
        out += [r["v"]] * min(int(r["count"]), PARTIAL_UNEXPECTED - len(out))
        if len(out) >= PARTIAL_UNEXPECTED:
            break
    return out
