"""The point-in-time engine: each spine row gets every group's value and window aggregates as of
its own timestamp, with one shuffle per entity key set and no join that multiplies a key's spine
rows by its history.

How: the spine rows and the groups' rows are unioned, hash-partitioned by the entity key and
sorted by (key, event time). Every output is then a window function over that order whose frame
starts at the key's first row; Spark evaluates such frames incrementally (O(1) per row), so a
key costs time linear in its rows, and a hot key is one long sorted run that Spark spills to disk
rather than holds in memory. Sliding frames (`rangeBetween(-w, 0)`) are avoided on purpose: Spark
recomputes them from scratch at every row, O(rows x rows in the window), which took minutes for one
hot key of 150k rows.

- as-of value: the last non-null row struct up to the spine row in the sort order (key, time,
  spine rows after events, then _ingested_at): the newest row at or before t, the later ingested
  on a tie; null when that row is older than t - ttl;
- count, sum, avg, stddev over (t - w, t]: running totals at t minus running totals at t - w (a
  frame that ends w before the current row); stddev on values shifted by the key's first value.
  count is exact; sum, avg and stddev round like any float sum, relative to the key's running
  total rather than to the window's own sum;
- last: the newest non-null value at or before t, when newer than t - w;
- min, max: a sliding frame when the keys' windows hold few rows (estimated first, in one
  aggregation over the keys); otherwise (t - w, t] lies in two aligned blocks of width w: [jw, t]
  and (t - w, jw). The first is the best value of block j so far (max of struct(block, value)
  over rows <= t); the second the best value of block j - 1 after t - w, from a frame over
  descending time (one more sort). Both give the same values;
- approx_count_distinct: counted exactly (within any approximation's bound): a value enters at an
  occurrence with none in the w before it and leaves w after an occurrence with none in the w
  after it; both marks come from lag/lead over (key, value), then two running counts.

Empty windows give null, except count and approx_count_distinct (0). A spine row with a null key
or time gets nulls everywhere, and sits in a partition of its own (no hot null key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from featurelake.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

ROW = "_fl_row"        # the spine row id, stored with the spine copy
TIME = "_fl_t"         # event or spine time in microseconds since the epoch (UTC)
NULL_KEY = "_fl_null"  # the row id of a spine row with a null key or time; null otherwise
EVENT = "_fl_ev"       # index of the group an event row comes from; null for spine rows
INGESTED, TIE = "_fl_ing", "_fl_tie"  # _ingested_at; a hash of the row, the last tie-break
INTERNAL = "_fl_"


@dataclass(frozen=True)
class WindowAgg:
    """One aggregation output: function of a column over (t - window, t]."""

    output: str
    function: str
    column: str
    window: str
    window_us: int


@dataclass
class GroupPlan:
    """What one group contributes: its keys and time, and the outputs read from it. Plain data,
    stored in the training set's manifest, so a replay does not depend on today's definitions."""

    group: str
    keys: list
    timestamp_column: str
    ttl_us: Optional[int]
    features: list = field(default_factory=list)       # [(table column, output column)]
    aggregations: list = field(default_factory=list)   # [WindowAgg]

    def to_dict(self) -> dict:
        return {"group": self.group, "keys": list(self.keys), "timestamp_column": self.timestamp_column,
                "ttl_us": self.ttl_us, "features": [list(f) for f in self.features],
                "aggregations": [vars(a) for a in self.aggregations]}

    @classmethod
    def from_dict(cls, d: dict) -> "GroupPlan":
        return cls(d["group"], list(d["keys"]), d["timestamp_column"], d["ttl_us"],
                   [tuple(f) for f in d["features"]], [WindowAgg(**a) for a in d["aggregations"]])

    @property
    def outputs(self) -> list:
        return [o for _, o in self.features] + [a.output for a in self.aggregations]

    @property
    def horizon_us(self) -> Optional[int]:
        """How far before a spine time a row can matter; None when any row can (no ttl)."""
        spans = [a.window_us for a in self.aggregations]
        if self.features:
            if self.ttl_us is None:
                return None
            spans.append(self.ttl_us)
        return max(spans) if spans else 0


def to_micros(col: "Column", dtype: "DataType", what: str) -> "Column":
    """A timestamp-like column as microseconds since the epoch (UTC); unparseable text -> null."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

    if isinstance(dtype, TimestampType):
        return F.unix_micros(col)
    if isinstance(dtype, (TimestampNTZType, DateType)):
        return F.unix_micros(col.cast("timestamp"))
    if isinstance(dtype, StringType):
        return F.unix_micros(col.try_cast("timestamp"))
    raise UsageError(f"{what} is {dtype.simpleString()}: it must be a timestamp, a date or ISO 8601 text "
                     f"(epoch numbers are ambiguous: convert them with to_timestamp or timestamp_millis first)")


def point_in_time(spine: "DataFrame", tables: Mapping[str, "DataFrame"], plans: Sequence[GroupPlan], *,
                  timestamp_column: str, partitions: int,
                  time_bounds: Optional[tuple] = None) -> "DataFrame":
    """The spine (which must carry ROW, a unique row id) with every plan's outputs appended.

    `time_bounds` (min, max spine time in µs) lets each group skip rows no spine row can see.
    The result is hash-partitioned by the last key set into `partitions` partitions; sorting each
    partition by ROW gives the same file contents for the same inputs."""
    if ROW not in spine.columns:
        raise UsageError(f"the spine must carry a {ROW} column of unique row ids")
    spine = spine.withColumn(TIME, to_micros(spine[timestamp_column], spine.schema[timestamp_column].dataType,
                                             f"spine column {timestamp_column!r}"))
    passes: dict[tuple, list] = {}
    for index, plan in enumerate(plans):
        passes.setdefault(tuple(plan.keys), []).append((index, plan))
    for keys, members in passes.items():
        spine = _one_pass(spine, list(keys), [(i, p, _bounded(tables[p.group], p, time_bounds)) for i, p in members],
                          partitions)
    return spine.drop(TIME)


def _bounded(table: "DataFrame", plan: GroupPlan, bounds: Optional[tuple]) -> "DataFrame":
    """Only rows some spine row can see: not after the last spine time, not before the first minus
    the group's horizon. Filters on _event_date too, so Delta skips whole partitions."""
    from pyspark.sql import functions as F

    if bounds is None or bounds[0] is None:
        return table
    from pyspark.sql.types import TimestampType

    lo_us, hi_us = bounds
    dtype = table.schema[plan.timestamp_column].dataType
    if isinstance(dtype, TimestampType):  # compared with a literal: Delta skips files by their stats
        ts, hi, lo = F.col(plan.timestamp_column), F.timestamp_micros(F.lit(hi_us)), F.timestamp_micros
    else:
        ts, hi, lo = to_micros(F.col(plan.timestamp_column), dtype, plan.timestamp_column), F.lit(hi_us), F.lit
    cond = ts <= hi
    dates = "_event_date" in table.columns
    if dates:
        cond = cond & (F.col("_event_date") <= F.lit(_date(hi_us)))
    horizon = plan.horizon_us
    if horizon is not None:
        cond = cond & (ts >= lo(F.lit(lo_us - horizon)))
        if dates:
            cond = cond & (F.col("_event_date") >= F.lit(_date(lo_us - horizon)))
    return table.where(cond)


def _date(us: int) -> Any:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).date()


def hashable(df: "DataFrame", column: str) -> "Column":
    from pyspark.sql import functions as F

    return comparable(F.col(column), df.schema[column].dataType)


def comparable(col: "Column", dtype: "DataType") -> "Column":
    """Spark neither hashes nor compares maps, nor types holding one: their JSON text (entries in
    stored order) stands in."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    def has_map(t: "DataType") -> bool:
        if isinstance(t, MapType):
            return True
        if isinstance(t, ArrayType):
            return has_map(t.elementType)
        return isinstance(t, StructType) and any(has_map(f.dataType) for f in t.fields)
    return F.to_json(col) if has_map(dtype) else col


def _as_key(col: "Column", have: "DataType", want: "DataType") -> "Column":
    return col if have == want else col.try_cast(want)


def _one_pass(spine: "DataFrame", keys: list, members: list, partitions: int) -> "DataFrame":
    """Adds the outputs of groups sharing one key set: one shuffle, one or two sorts."""
    from pyspark.sql import Window, functions as F

    first = members[0][2]
    key_types = [first.schema[k].dataType for k in keys]
    ik = [f"_fl_k{i}" for i in range(len(keys))]
    valid = reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in ik] + [F.col(TIME).isNotNull()])
    out_cols = list(spine.columns)
    left = spine.select("*", *[_as_key(F.col(k), spine.schema[k].dataType, t).alias(c)
                               for k, t, c in zip(keys, key_types, ik)])
    left = left.withColumn(NULL_KEY, F.when(~valid, F.col(ROW)))

    union = left
    columns: dict = {}   # (group index, table column) -> internal column name
    projected: dict = {}  # group index -> its rows as keys, TIME, EVENT, ...
    for gi, plan, table in members:
        need = list(dict.fromkeys([c for c, _ in plan.features] + [a.column for a in plan.aggregations]))
        for j, c in enumerate(need):
            columns[(gi, c)] = f"_fl_c{gi}_{j}"
        ts_type = table.schema[plan.timestamp_column].dataType
        events = table.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]
                                    + [F.col(plan.timestamp_column).isNotNull()]))
        events = events.select(
            *[F.col(k).cast(t).alias(c) for k, t, c in zip(keys, key_types, ik)],
            to_micros(F.col(plan.timestamp_column), ts_type, f"column {plan.timestamp_column!r}").alias(TIME),
            F.lit(gi).alias(EVENT), F.col("_ingested_at").alias(INGESTED),
            *[F.col(c).alias(columns[(gi, c)]) for c in need],
            # After the renames, not before: Spark's constraint propagation rewrites every constraint
            # holding a renamed column once per rename, so a hash of n columns placed first became
            # 2^n constraints (a 1 GB driver ran out of heap planning a group of 20 features).
            F.xxhash64(*[hashable(table, c) for c in need] or [F.lit(0)]).alias(TIE))
        projected[gi] = events
        union = union.unionByName(events, allowMissingColumns=True)
    part = [*ik, NULL_KEY]
    union = union.repartition(partitions, *part)

    def x(gi: int, column: str) -> "Column":
        return F.col(columns[(gi, column)])

    def block(w: int) -> "Column":
        return F.expr(f"({TIME} - pmod({TIME}, {w}L)) div {w}L")

    aggs = [(gi, a) for gi, plan, _ in members for a in plan.aggregations]

    # Distinct counts: previous and next occurrence of the same value, per width the enter and
    # leave marks. One sort per column, by (key, value, time).
    acd_cols = list(dict.fromkeys((gi, a.column) for gi, a in aggs if a.function == "approx_count_distinct"))
    for gi, column in acd_cols:
        by_value = Window.partitionBy(*part, x(gi, column)).orderBy(TIME)
        prev, nxt = F.lag(TIME).over(by_value), F.lead(TIME).over(by_value)
        widths = sorted({a.window_us for g, a in aggs if (g, a.column) == (gi, column)
                         and a.function == "approx_count_distinct"})
        present = x(gi, column).isNotNull() & (F.col(EVENT) == gi)
        marks = {}
        for w in widths:
            marks[_name("in", gi, column, w, columns)] = present & (prev.isNull() | (prev < F.col(TIME) - w))
            marks[_name("out", gi, column, w, columns)] = present & (nxt.isNull() | (nxt > F.col(TIME) + w))
        union = union.select("*", *[c.alias(n) for n, c in marks.items()])

    # min/max: sliding frames when every key's windows hold few rows; else the two blocks, whose
    # second half is the best value of block j - 1 after t - w, in descending time (one more sort).
    sliding = _short_windows(projected, ik, [(gi, a) for gi, a in aggs if a.function in ("min", "max")])
    desc = Window.partitionBy(*part).orderBy(F.col(TIME).desc())
    suffix = {}
    for gi, a in aggs:
        if a.function in ("min", "max") and gi not in sliding:
            frame = desc.rangeBetween(Window.unboundedPreceding, a.window_us - 1)
            value = x(gi, a.column)
            present = value.isNotNull() & (F.col(EVENT) == gi)
            if a.function == "max":
                best = F.max(F.when(present, F.struct((-block(a.window_us)).alias("b"), value.alias("v"))))
            else:
                best = F.min(F.when(present, F.struct(block(a.window_us).alias("b"), value.alias("v"))))
            suffix[_name("sfx_" + a.function, gi, a.column, a.window_us, columns)] = best.over(frame)
    if suffix:
        union = union.select("*", *[c.alias(n) for n, c in suffix.items()])

    # The one sort every running frame reads, made total so that a replay adds floats in the same
    # order and picks the same row: at equal times, events before spine rows, older ingests first.
    union = union.sortWithinPartitions(*part, TIME, ROW, EVENT, INGESTED, TIE)

    asc = Window.partitionBy(*part).orderBy(TIME)
    upto = asc.rangeBetween(Window.unboundedPreceding, 0)
    # Row frames follow the full order, ties included (stated, so Spark never reorders them).
    newest = Window.partitionBy(*part).orderBy(TIME, ROW, EVENT, INGESTED, TIE) \
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)

    def before(w: int) -> Any:
        return asc.rangeBetween(Window.unboundedPreceding, -w)

    shifts = {}
    for gi, a in aggs:
        if a.function == "stddev" and (gi, a.column) not in shifts:
            name = _name("c", gi, a.column, 0, columns)
            whole = asc.rangeBetween(Window.unboundedPreceding, Window.unboundedFollowing)
            shifts[(gi, a.column)] = name
            union = union.withColumn(name, F.first(F.when(F.col(EVENT) == gi, x(gi, a.column).cast("double")),
                                                   ignorenulls=True).over(whole))

    win: dict[str, "Column"] = {}

    def running(name: str, expr: "Column") -> "Column":
        win.setdefault(name, expr.alias(name))
        return F.col(name)

    outputs = []
    for gi, plan, _ in members:
        if plan.features:
            mine = F.col(EVENT) == gi
            row = F.struct(F.col(TIME).alias("t"), *[x(gi, c).alias(f"f{j}") for j, (c, _) in enumerate(plan.features)])
            latest = running(f"_fl_asof{gi}", F.last(F.when(mine, row), ignorenulls=True).over(newest))
            fresh = latest.isNotNull()
            if plan.ttl_us is not None:
                fresh = fresh & (latest["t"] >= F.col(TIME) - plan.ttl_us)
            outputs += [F.when(valid & fresh, latest[f"f{j}"]).alias(o) for j, (_, o) in enumerate(plan.features)]
        for a in plan.aggregations:
            if a.function in ("min", "max") and gi in sliding:
                frame = asc.rangeBetween(1 - a.window_us, 0)  # (t - w, t]: times are whole microseconds
                best = getattr(F, a.function)(F.when(F.col(EVENT) == gi, x(gi, a.column))).over(frame)
                outputs.append(F.when(valid, running(_name(a.function, gi, a.column, a.window_us, columns), best))
                               .alias(a.output))
                continue
            outputs.append(_aggregate(gi, a, x(gi, a.column), running, upto, newest, before(a.window_us), block,
                                      valid, columns, shifts).alias(a.output))
    union = union.select("*", *win.values())
    result = union.where(F.col(ROW).isNotNull()).select(*out_cols, *outputs)
    return result


SLIDING_ROWS = 64             # mean rows a sliding min/max frame may hold, per row
SLIDING_KEY_ROWS = 50_000_000  # and rows one key's frames may hold in all (one task does them)


def _short_windows(projected: dict, ik: list, extremes: list) -> set:
    """The groups whose min/max take sliding frames. Spark recomputes a sliding frame at every
    row, so its cost is the rows its frames hold: cheap when each key has few rows in a window
    (1M spine x 5M events of 100k keys: 7.5 s of 16.7 s went to the second sort the blocks need),
    minutes for one hot key of 150k rows. One aggregation over the keys estimates those rows, per
    key, as rows^2 x min(1, w / the key's time span), a uniform spread of its rows in time."""
    from pyspark.sql import functions as F

    widest: dict = {}
    for gi, a in extremes:
        widest[gi] = max(widest.get(gi, 0), a.window_us)
    out = set()
    for gi, width in widest.items():
        per_key = projected[gi].groupBy(*ik).agg(F.count(F.lit(1)).cast("double").alias("n"),
                                                 (F.max(TIME) - F.min(TIME)).alias("span"))
        load = F.col("n") * F.col("n") * F.least(F.lit(1.0), F.lit(float(width)) / F.greatest("span", F.lit(1)))
        row = per_key.agg(F.sum("n").alias("rows"), F.sum(load).alias("held"), F.max(load).alias("hot")).first()
        if not row["rows"] or (row["held"] <= SLIDING_ROWS * row["rows"] and row["hot"] <= SLIDING_KEY_ROWS):
            out.add(gi)
    return out


def _name(kind: str, gi: int, column: str, w: int, columns: dict) -> str:
    return f"{columns[(gi, column)]}_{kind}_{w}"


def _aggregate(gi: int, a: WindowAgg, value: "Column", running: Any, upto: Any, newest: Any, before: Any,
               block: Any, valid: "Column", columns: dict, shifts: dict) -> "Column":
    """One aggregation output for spine rows, from running frames (see the module docstring)."""
    from pyspark.sql import functions as F

    mine = F.col(EVENT) == gi
    present = mine & value.isNotNull()
    w, fn, t = a.window_us, a.function, F.col(TIME)
    tag = f"{columns[(gi, a.column)]}"

    def count() -> "Column":
        now = running(f"{tag}_n", F.count(F.when(present, 1)).over(upto))
        then = running(f"{tag}_n_{w}", F.count(F.when(present, 1)).over(before))
        return now - then

    def total(expr: "Column", kind: str) -> "Column":
        now = running(f"{tag}_{kind}", F.sum(F.when(present, expr)).over(upto))
        then = running(f"{tag}_{kind}_{w}", F.sum(F.when(present, expr)).over(before))
        return now - F.coalesce(then, F.lit(0.0))

    if fn == "count":
        return F.when(valid, count())
    if fn in ("sum", "avg"):
        n, s = count(), total(value.cast("double"), "s")
        return F.when(valid & (n > 0), s if fn == "sum" else s / n)
    if fn == "stddev":
        d = value.cast("double") - F.col(shifts[(gi, a.column)])
        n, s1, s2 = count(), total(d, "d1"), total(d * d, "d2")
        var = (s2 - s1 * s1 / n) / (n - 1)
        return F.when(valid & (n >= 2), F.sqrt(F.greatest(var, F.lit(0.0))))
    if fn == "last":
        last = running(f"{tag}_last", F.last(F.when(present, F.struct(t.alias("t"), value.alias("v"))),
                                             ignorenulls=True).over(newest))
        return F.when(valid & (last["t"] > t - w), last["v"])
    if fn in ("min", "max"):
        here = block(w)
        sfx = F.col(f"{tag}_sfx_{fn}_{w}")
        if fn == "max":
            pre = running(f"{tag}_pre_max_{w}", F.max(F.when(present, F.struct(here.alias("b"), value.alias("v"))))
                          .over(upto))
            head, tail = F.when(pre["b"] == here, pre["v"]), F.when(-sfx["b"] == here - 1, sfx["v"])
            return F.when(valid, F.greatest(head, tail))
        pre = running(f"{tag}_pre_min_{w}", F.min(F.when(present, F.struct((-here).alias("b"), value.alias("v"))))
                      .over(upto))
        head, tail = F.when(-pre["b"] == here, pre["v"]), F.when(sfx["b"] == here - 1, sfx["v"])
        return F.when(valid, F.least(head, tail))
    if fn == "approx_count_distinct":
        entered = running(f"{tag}_in_{w}_n", F.count(F.when(F.col(f"{tag}_in_{w}"), 1)).over(upto))
        left = running(f"{tag}_out_{w}_n", F.count(F.when(F.col(f"{tag}_out_{w}"), 1)).over(before))
        return F.when(valid, entered - left)
    raise UsageError(f"unknown aggregation function {fn!r} for {a.output!r}")
