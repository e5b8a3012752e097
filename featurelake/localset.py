"""Small training sets on the driver: the point-in-time engine's rows, without a Spark job.

Why: a Spark job costs a few tenths of a second whatever its size, and the Spark engine runs
several (the spine's copy and statistics, the shuffle and sort of the join, the write). When the
spine and the groups' tables together hold at most `training.driver_max_rows` rows, the set is
built here instead: each table is read at its Delta version (Arrow), the rows are sorted by
(key, time, ingest time) as the Spark engine sorts them, and each spine row finds its key's rows
at or before t and t - w by binary search. The spine copy is written by delta-rs (a new table of
one commit, which no other writer touches); the catalogue's commits stay on Spark.

The rules are the Spark engine's (pointintime.py): the newest row at or before t, the later
ingested on a tie, null when older than t - ttl or when the spine row's key or time is null;
windows over (t - w, t] from running sums added in the same order, so that floats come out the
same to the bit. Request-time features run the same pandas function, over all the rows at once.
What this engine does not cover falls back to Spark: approx_count_distinct, sums and min/max
over non-numbers, times given as text, keys of different kinds, storage delta-rs cannot reach,
and two rows of one key with the same time and ingest time (the Spark engine breaks that tie by a
hash of the row). A set records its engine; a replay uses the same one.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Sequence

from featurelake.errors import JobError
from featurelake.pointintime import ROW, GroupPlan, _date

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from featurelake.store import FeatureStore

ENGINE = "driver/1"
FINGERPRINT = 3  # sha256 of the spine copy's columns in row order (see fingerprint)
BYTES_PER_ROW = 64  # a spine whose plan is estimated above driver_max_rows x this is not collected


class NotLocal(Exception):
    """This set takes the Spark engine; the message says why (logged)."""


def covers(plans: Sequence[GroupPlan]) -> None:
    """Raises NotLocal for what this engine leaves to Spark, as far as the plans say."""
    for a in (a for p in plans for a in p.aggregations):
        if a.function not in FUNCTIONS:
            raise NotLocal(f"{a.function} windows")


def open_tables(store: "FeatureStore", plans: Sequence[GroupPlan], versions: dict[str, int]) -> dict[str, Any]:
    """Each group's delta-rs table at the version read, or NotLocal where delta-rs cannot read it."""
    from featurelake import lakeread

    tables = {}
    for plan in plans:
        path, why = lakeread.offline_reason(store.config, plan.group)
        if why:
            raise NotLocal(why)
        try:
            table = lakeread.open_table(path, store.config, versions[plan.group])
        except JobError as exc:
            raise NotLocal(str(exc)) from None
        if table is None:
            raise NotLocal(f"no Delta table at {path}")
        if table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
            raise NotLocal(f"{path} uses column mapping")
        tables[plan.group] = table
    return tables


def table_rows(tables: dict[str, Any]) -> int:
    """Rows in the tables' files, from the Delta log (no scan)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return sum(int(pc.sum(pa.table(t.get_add_actions(flatten=True)).column("num_records")).as_py() or 0)
               for t in tables.values())


def collect_spine(df: "DataFrame", most: int) -> "pa.Table":
    """The spine as Arrow (at UTC), or NotLocal when it holds more than `most` rows; Spark's
    size estimate turns a large one away before any job reads it (rows made in Python have none)."""
    from featurelake.spark import in_utc

    estimate = int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    if most * BYTES_PER_ROW < estimate < 2**63 - 1:
        raise NotLocal(f"the spine is about {estimate:,} bytes")
    with in_utc(df.sparkSession):
        table = df.limit(most + 1).toArrow()
    if table.num_rows > most:
        raise NotLocal(f"the spine has more than {most:,} rows")
    return table


def micros(column: "pa.ChunkedArray", what: str) -> "pa.ChunkedArray":
    """A timestamp or date column as int64 microseconds since the epoch (UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_timestamp(kind):
        return pc.cast(pc.cast(column, pa.timestamp("us", kind.tz)), pa.int64())
    if pa.types.is_date(kind):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32())  # Arrow casts a date to int32 only
        return pc.multiply(pc.cast(days, pa.int64()), 86_400_000_000)
    raise NotLocal(f"{what} is {kind}")


def spine_stats(spine: "pa.Table", plans: Sequence[GroupPlan], timestamp_column: str) -> dict:
    """What the manifest records of the spine (as training.spine_stats does in Spark)."""
    import pyarrow.compute as pc

    t = micros(spine.column(timestamp_column), f"spine column {timestamp_column!r}")
    bounds = pc.min_max(t).as_py()
    nulls = {}
    for plan in plans:
        bad = t.is_null()
        for k in plan.keys:
            bad = pc.or_(bad, spine.column(k).is_null())
        nulls[plan.group] = int(pc.sum(bad).as_py() or 0)
    return {"fingerprint": fingerprint(spine), "rows": spine.num_rows, "t_min": bounds["min"], "t_max": bounds["max"],
            "null_keys": nulls}


def fingerprint(spine: "pa.Table") -> str:
    """sha256 of the schema and of every column's values in row id order: what a replay checks."""
    import pyarrow as pa

    ordered = spine.sort_by(ROW) if ROW in spine.column_names else spine
    digest = hashlib.sha256(json.dumps([[f.name, str(f.type)] for f in ordered.schema]).encode())
    for column in ordered.columns:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind) \
                or pa.types.is_boolean(kind):
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            digest.update(valid.tobytes())
            digest.update(column.fill_null(False if pa.types.is_boolean(kind) else 0)
                          .to_numpy(zero_copy_only=False).tobytes())
        else:
            digest.update(json.dumps(column.to_pylist(), default=str, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def read_group(table: Any, plan: GroupPlan, bounds: tuple) -> "pa.Table":
    """The rows of the group's table that a spine row can see, pruned by _event_date partitions
    (the exact bound is the join's). Local files of a plain protocol are scanned by pyarrow
    itself: over a small table's one file per date, 0.2 s where delta-rs' reader took 0.45 s."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    need = list(dict.fromkeys([*plan.keys, plan.timestamp_column, "_ingested_at", *[c for c, _ in plan.features],
                               *[a.column for a in plan.aggregations]]))
    partitions = None
    if "_event_date" in table.metadata().partition_columns and bounds[0] is not None:
        partitions = [("_event_date", "<=", str(_date(bounds[1])))]
        if plan.horizon_us is not None:
            partitions.append(("_event_date", ">=", str(_date(bounds[0] - plan.horizon_us))))
    on_disk = table.table_uri.startswith("file:") or "://" not in table.table_uri
    if not on_disk or table.protocol().min_reader_version > 1:
        from featurelake.lakeread import arrow_rows

        return plain(arrow_rows(table, need, partitions or ()))
    schema = pa.schema(table.schema().to_arrow())
    # Spark writes instants as INT96 by default; a file older than a column lacks it (null)
    scan = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(coerce_int96_timestamp_unit="us"))
    files = table.file_uris(partitions)
    return plain(ds.dataset(files, schema=pa.schema([schema.field(c) for c in need]), format=scan).to_table())


def plain(table: "pa.Table") -> "pa.Table":
    """Text and bytes as Spark's Arrow gives them: delta-rs may hand them as views or large types."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_string_view(kind) or pa.types.is_large_string(kind):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
        elif pa.types.is_binary_view(kind) or pa.types.is_large_binary(kind):
            table = table.set_column(i, field.name, table.column(i).cast(pa.binary()))
    return table


def _codes(spine_keys: list, event_keys: list) -> tuple[Any, Any]:
    """Integer codes of the (multi-column) keys, shared by spine and events; -1 where a key is null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(spine_keys[0])
    code = np.zeros(n + len(event_keys[0]), dtype=np.int64)
    for s, e in zip(spine_keys, event_keys):
        if s.type != e.type:
            if pa.types.is_integer(s.type) and pa.types.is_integer(e.type):
                s, e = pc.cast(s, pa.int64()), pc.cast(e, pa.int64())
            else:
                raise NotLocal(f"spine key type {s.type} differs from the table's {e.type}")
        if pa.types.is_floating(s.type):
            raise NotLocal("floating-point keys")
        encoded = pa.chunked_array([*s.chunks, *e.chunks], type=s.type).dictionary_encode().combine_chunks()
        part = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        width = len(encoded.dictionary) + 1
        code = np.where((code < 0) | (part < 0), -1, code * width + part)
        if code.max(initial=0) > 2**40:  # keep the products in int64: renumber
            valid = code >= 0
            code[valid] = np.unique(code[valid], return_inverse=True)[1]
    return code[:n], code[n:]


class History:
    """A group's rows sorted by (key, time, ingest time), as the Spark engine orders them, and where
    each spine row's key and times fall in them."""

    def __init__(self, spine: "pa.Table", events: "pa.Table", plan: GroupPlan, spine_t: Any):
        import numpy as np

        et = micros(events.column(plan.timestamp_column), f"column {plan.timestamp_column!r}")
        ing = micros(events.column("_ingested_at"), "column '_ingested_at'")
        sk, ek = _codes([spine.column(k) for k in plan.keys], [events.column(k) for k in plan.keys])
        ok = (ek >= 0) & et.is_valid().to_numpy(zero_copy_only=False)
        e_t = et.fill_null(0).to_numpy(zero_copy_only=False)
        e_ing = ing.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)  # Spark sorts nulls first
        index = np.flatnonzero(ok)
        self.order = index[np.lexsort((e_ing[index], e_t[index], ek[index]))]
        k, t, i = ek[self.order], e_t[self.order], e_ing[self.order]
        if np.any((k[1:] == k[:-1]) & (t[1:] == t[:-1]) & (i[1:] == i[:-1])):
            raise NotLocal(f"group {plan.group!r} holds rows of one key with equal time and ingest time")
        self.events, self.k, self.t = events, k, t
        self.s_t = spine_t.fill_null(0).to_numpy(zero_copy_only=False)
        self.valid = (sk >= 0) & spine_t.is_valid().to_numpy(zero_copy_only=False)
        self.times = np.unique(np.concatenate([t, self.s_t[self.valid]]))
        self.width = len(self.times) + 1
        self.pos = k * self.width + np.searchsorted(self.times, t)
        self.base = np.where(self.valid, sk, 0) * self.width
        self.start = np.searchsorted(self.pos, self.base)  # the spine row's key's first row
        self.blocks = np.flatnonzero(np.diff(k)) + 1
        self.memo: dict = {}  # what several windows over one column share

    def once(self, key: tuple, make: Any) -> Any:
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def upto(self, at: Any) -> Any:
        """Per spine row, the index after its key's last row at or before `at` (µs)."""
        import numpy as np

        return np.searchsorted(self.pos, self.base + np.searchsorted(self.times, at, side="right"))

    def values(self, column: str) -> tuple[Any, Any]:
        """The column in sorted order (Arrow) and where it is set (numpy)."""
        def make() -> tuple[Any, Any]:
            col = self.events.column(column).take(self.order)
            return col, col.is_valid().to_numpy(zero_copy_only=False)
        return self.once(("values", column), make)

    def running(self, x: Any) -> Any:
        """Running sums of x within each key, added one by one in order as Spark adds them."""
        import numpy as np

        out = np.empty_like(x)
        for a, b in zip([0, *self.blocks], [*self.blocks, len(x)]):
            np.cumsum(x[a:b], out=out[a:b])
        return out

    def at(self, series: Any, end: Any, empty: Any) -> Any:
        """series[end - 1] where the spine row's key has a row before `end`, else `empty`."""
        import numpy as np

        return np.where(end > self.start, series[np.maximum(end - 1, 0)] if len(series) else empty, empty)


FUNCTIONS = ("count", "sum", "avg", "stddev", "min", "max", "last")


def as_of(spine: "pa.Table", events: "pa.Table", plan: GroupPlan, spine_t: Any) -> "pa.Table":
    """The plan's outputs for every spine row, in spine order."""
    import numpy as np
    import pyarrow as pa

    h = History(spine, events, plan, spine_t)
    out = {}
    if plan.features:
        newest = h.upto(h.s_t) - 1  # the later ingest of a (key, time) sorts last
        hit = h.valid & (newest >= h.start)
        if plan.ttl_us is not None and len(h.t):
            hit &= h.t[np.maximum(newest, 0)] >= h.s_t - plan.ttl_us
        take = pa.array(h.order[np.maximum(newest, 0)] if len(h.t) else np.zeros(len(hit), dtype=np.int64), mask=~hit)
        picked = events.select([c for c, _ in plan.features]).take(take)
        out.update({name: picked.column(c) for c, name in plan.features})
    for a in plan.aggregations:
        out[a.output] = _window(h, a)
    return pa.table(out)


def _window(h: History, a: Any) -> "pa.Array":
    """One aggregation over (t - w, t] per spine row (pointintime's definitions and float sums)."""
    import numpy as np
    import pyarrow as pa

    if a.function not in FUNCTIONS:
        raise NotLocal(f"{a.function} windows")
    column, present = h.values(a.column)
    hi, lo = h.once(("hi",), lambda: h.upto(h.s_t)), h.upto(h.s_t - a.window_us)
    counts = h.once(("counts", a.column), lambda: np.concatenate([[0], np.cumsum(present)]))
    n = counts[hi] - counts[lo]
    if a.function == "count":
        return pa.array(n, mask=~h.valid)
    if a.function == "last":
        newest = np.maximum.accumulate(np.where(present, np.arange(len(present)), -1)) if len(present) else present
        j = h.at(newest, hi, -1)
        hit = h.valid & (j >= h.start) & (h.t[np.maximum(j, 0)] > h.s_t - a.window_us if len(h.t) else False)
        return column.take(pa.array(np.maximum(j, 0), mask=~hit)) if len(h.t) else pa.nulls(len(hit), column.type)
    if a.function in ("min", "max"):
        return _extreme(h, a.column, lo, hi, n, a.function)
    shifted = a.function == "stddev"

    def values() -> Any:
        x = _doubles(column, present)
        if shifted:  # by the key's first value, as the Spark engine does
            first = np.full(len(x), np.nan)
            for s, e in zip([0, *h.blocks], [*h.blocks, len(x)]):
                found = np.flatnonzero(present[s:e])
                first[s:e] = x[s + found[0]] if len(found) else 0.0
            x = np.where(present, x - first, 0.0)
        return x
    x = h.once(("doubles", a.column, shifted), values)
    s1 = h.once(("sums", a.column, shifted), lambda: h.running(x))
    total = h.at(s1, hi, 0.0) - h.at(s1, lo, 0.0)
    if a.function == "sum":
        return pa.array(total, mask=~(h.valid & (n > 0)))
    if a.function == "avg":
        return pa.array(total / np.maximum(n, 1), mask=~(h.valid & (n > 0)))
    s2 = h.once(("squares", a.column), lambda: h.running(x * x))
    squares = h.at(s2, hi, 0.0) - h.at(s2, lo, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (squares - total * total / n) / (n - 1)
    return pa.array(np.sqrt(np.maximum(var, 0.0)), mask=~(h.valid & (n >= 2)))


def _doubles(column: "pa.ChunkedArray", present: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise NotLocal(f"windows over {column.type}")
    return np.where(present, column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False), 0.0)


def _extreme(h: History, name: str, lo: Any, hi: Any, n: Any, fn: str) -> "pa.Array":
    """min or max over rows [lo, hi) by a sparse table (O(1) a spine row): Spark's order, where NaN is
    above every number (a max with one is NaN, a min skips it unless nothing else is there)."""
    import numpy as np
    import pyarrow as pa

    column, present = h.values(name)
    kind = column.type
    op: Any
    if pa.types.is_integer(kind):
        info = np.iinfo(np.int64)
        x = np.where(present, column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False),
                     info.min if fn == "max" else info.max)
        op = np.maximum if fn == "max" else np.minimum
    elif pa.types.is_floating(kind):
        x = np.where(present, column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False),
                     -np.inf if fn == "max" else np.inf)
        op = np.maximum if fn == "max" else np.fmin
    else:
        raise NotLocal(f"{fn} windows over {kind}")

    def levels() -> list:
        table, span = [x], 1
        while span * 2 <= len(x):
            prev = table[-1]
            table.append(op(prev[:len(prev) - span], prev[span:]))
            span *= 2
        return table
    table = h.once(("extremes", name, fn), levels)
    best = np.zeros(len(lo), dtype=x.dtype)
    width = hi - lo
    has = h.valid & (n > 0)
    level = np.zeros(len(lo), dtype=np.int64)
    level[has] = np.floor(np.log2(width[has])).astype(np.int64)
    for j in np.unique(level[has]):
        rows = has & (level == j)
        best[rows] = op(table[j][lo[rows]], table[j][hi[rows] - (1 << int(j))])
    if fn == "min" and pa.types.is_floating(kind):  # a window of NaN alone
        numbers = present & ~np.isnan(x)
        seen = np.concatenate([[0], np.cumsum(numbers)])
        best = np.where(seen[hi] - seen[lo] == 0, np.nan, best)
    return pa.array(best, mask=~has).cast(kind)


def point_in_time(spine: "pa.Table", events: dict[str, "pa.Table"], plans: Sequence[GroupPlan],
                  timestamp_column: str) -> "pa.Table":
    """The spine with every plan's outputs, in the Spark engine's column order (groups sharing a
    key set together, in first-appearance order)."""
    spine_t = micros(spine.column(timestamp_column), f"spine column {timestamp_column!r}")
    passes: dict[tuple, list] = {}
    for plan in plans:
        passes.setdefault(tuple(plan.keys), []).append(plan)
    out = spine
    for members in passes.values():
        for plan in members:
            found = as_of(spine, events[plan.group], plan, spine_t)
            for name in found.column_names:
                out = out.append_column(name, found.column(name))
    return out


def write_copy(spine: "pa.Table", path: str, store: "FeatureStore") -> None:
    """The spine copy as a new Delta table: one commit by delta-rs, at a path no one else writes
    (so no lock is needed, on S3 either)."""
    from deltalake import write_deltalake

    from featurelake import lakeread

    options = lakeread.storage_options(store.config)
    if lakeread.uri(path).startswith("s3://"):
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"  # version 0 of a path this set owns
    write_deltalake(lakeread.uri(path), spine, mode="error", storage_options=options or None)


def read_copy(path: str, store: "FeatureStore") -> "pa.Table":
    from featurelake import lakeread

    table = lakeread.open_table(path, store.config)
    if table is None:
        raise JobError(f"no Delta table at {path}")
    return plain(lakeread.arrow_rows(table)).sort_by(ROW)
