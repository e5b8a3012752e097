"""Training sets: the point-in-time engine against a brute-force oracle (hypothesis), replay after
later merges, a hot key, and the user-facing errors and names."""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta, timezone
from unittest import mock

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import write_config
from featurelake.errors import FeaturelakeError, JobError, NotFoundError, UsageError
from featurelake import localset, pointintime, training
from featurelake.pointintime import ROW, TIME, point_in_time
from featurelake.training import NullKeysWarning, manifest_plans, resolve, spine_stats

GROUPS = '''
from featurelake import Aggregation, DeltaSource, Entity, Feature, FeatureGroup

customer = Entity("customer", join_keys=["customer_id"])
pair = Entity("pair", join_keys=["customer_id", "merchant_id"])
nowhere = DeltaSource("nowhere", path="/nonexistent/source", timestamp_column="ts")

cust = FeatureGroup(
    "cust", entity=customer, source=nowhere, timestamp_column="ts", ttl="3h",
    features=[Feature("amount", "double"), Feature("tag", "string")],
    aggregations=[Aggregation("amount", ["sum", "count", "avg", "min", "max", "stddev", "last",
                                         "approx_count_distinct"], windows=["1h", "3h"]),
                  Aggregation("tag", ["min", "max", "last", "approx_count_distinct"], windows=["2h"])])
profile = FeatureGroup(
    "profile", entity=customer, source=nowhere, timestamp_column="updated_at",
    features=[Feature("level", "bigint")])
pair_stats = FeatureGroup(
    "pair_stats", entity=pair, source=nowhere, timestamp_column="ts", ttl="2h",
    features=[Feature("amount", "double"), Feature("score", "bigint")],
    aggregations=[Aggregation("score", ["sum", "max"], windows=["1h"])])
'''
SCHEMAS = {
    "cust": ("customer_id bigint, ts timestamp, amount double, tag string", ["customer_id"], "ts"),
    "profile": ("customer_id bigint, updated_at timestamp, level bigint", ["customer_id"], "updated_at"),
    "pair_stats": ("customer_id bigint, merchant_id bigint, ts timestamp, amount double, score bigint",
                   ["customer_id", "merchant_id"], "ts"),
}
BOOKKEEPING = ", _ingested_at timestamp, _run_id string, _event_date date"
REFS = ["cust:*", "profile:*", "pair_stats:*"]
BASE = datetime(2024, 3, 1, tzinfo=timezone.utc)
STEP = timedelta(minutes=30)
US = timedelta(microseconds=1)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark):
    """A store over a fresh lake with the three test groups applied."""
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("training")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(GROUPS)
    store = FeatureStore.from_config(write_config(tmp), repo=tmp / "features", spark=spark)
    store.apply()
    return store


# ---- the oracle -------------------------------------------------------------------------------

def micros(t: datetime | None) -> int | None:
    """Spark hands back naive datetimes: the session and the tests run in UTC."""
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return None if t is None else round((t - datetime(1970, 1, 1, tzinfo=timezone.utc)) / US)


def oracle(spine: list[dict], tables: dict[str, list[dict]], plans: list) -> list[dict]:
    """Every output of every spine row by brute force, straight from the architecture's rules."""
    out = []
    for s in spine:
        row: dict = {}
        t = micros(s["event_ts"])
        for plan in plans:
            keys = tuple(s[k] for k in plan.keys)
            ok = None not in keys and t is not None
            ts_col = plan.timestamp_column
            mine = [e for e in tables[plan.group] if ok and tuple(e[k] for k in plan.keys) == keys]
            past = [e for e in mine if micros(e[ts_col]) <= t] if ok else []
            newest = max(past, key=lambda e: (e[ts_col], e["_ingested_at"]), default=None)
            if newest is not None and plan.ttl_us is not None and micros(newest[ts_col]) < t - plan.ttl_us:
                newest = None
            for column, name in plan.features:
                row[name] = newest[column] if newest is not None else None
            for a in plan.aggregations:
                if not ok:
                    row[a.output] = None
                    continue
                win = sorted((e for e in mine if t - a.window_us < micros(e[ts_col]) <= t and e[a.column] is not None),
                             key=lambda e: (e[ts_col], e["_ingested_at"]))
                row[a.output] = _aggregate(a.function, [e[a.column] for e in win])
        out.append(row)
    return out



def _aggregate(function: str, vals: list):
    """What each window function gives over the window's values (oldest first)."""
    if function == "count":
        return len(vals)
    if function == "approx_count_distinct":
        return len(set(vals))
    if function == "stddev":
        return statistics.stdev(vals) if len(vals) > 1 else None
    if not vals:
        return None
    return {"sum": lambda: float(sum(vals)), "avg": lambda: sum(vals) / len(vals), "min": lambda: min(vals),
            "max": lambda: max(vals), "last": lambda: vals[-1]}[function]()

def assert_rows_match(got: list[dict], want: list[dict], spine: list[dict]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for name, expected in w.items():
            actual = g[name]
            if isinstance(actual, float) and math.isnan(actual):
                actual = None
            same = (actual is None and expected is None) or (
                actual is not None and expected is not None and (
                    math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-7)
                    if isinstance(expected, float) else actual == expected))
            assert same, f"spine row {i} {spine[i]}: {name} = {actual!r}, expected {expected!r}"


# ---- random small data ------------------------------------------------------------------------

def at(step: int, offset_us: int = 0) -> datetime:
    return BASE + step * STEP + offset_us * US


def table_rows(group: str, raw: list[tuple]) -> list[dict]:
    """(keys..., step, ingest rank, values...) -> offline rows; one row per (key, time, rank)."""
    names = [c.split()[0] for c in SCHEMAS[group][0].split(", ")]
    keys, ts_col = SCHEMAS[group][1], SCHEMAS[group][2]
    rows, seen = [], set()
    for r in raw:
        k, (step, rank), values = r[:len(keys)], r[len(keys):len(keys) + 2], r[len(keys) + 2:]
        if (k, step, rank) in seen:
            continue
        seen.add((k, step, rank))
        row = dict(zip(keys, k))
        row[ts_col] = at(step)
        row.update(zip([n for n in names if n not in keys and n != ts_col], values))
        row.update(_ingested_at=BASE + timedelta(days=30, seconds=rank), _run_id=f"r{rank}",
                   _event_date=at(step).date())
        rows.append(row)
    return rows


def frame(spark, group: str, rows: list[dict]):
    schema = SCHEMAS[group][0] + BOOKKEEPING
    names = [c.split()[0] for c in schema.split(", ")]
    return spark.createDataFrame([tuple(r[n] for n in names) for r in rows], schema)


AMOUNTS = st.sampled_from([None, 1.0, 2.5, -3.0, 10.0, 0.0])
STEPS = st.integers(0, 10)
RANKS = st.integers(0, 2)
cust_rows = st.lists(st.tuples(st.sampled_from([1, 2, 3]), STEPS, RANKS, AMOUNTS,
                               st.sampled_from([None, "a", "b", "c"])), max_size=14)
profile_rows = st.lists(st.tuples(st.sampled_from([1, 2, 3]), STEPS, RANKS, st.sampled_from([None, 1, 2, 3])),
                        max_size=6)
pair_rows = st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2]), STEPS, RANKS, AMOUNTS,
                               st.sampled_from([None, 1, 5, -2])), max_size=10)
spine_rows = st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, None]), st.sampled_from([1, 2, None]),
                                st.integers(0, 12), st.sampled_from([0, 0, 0, 1, -1]), st.integers(0, 1)),
                      min_size=1, max_size=10)
# Ties (same time, later ingest wins), a row exactly at t - ttl and one a microsecond older, a
# spine row before any feature row, null keys, a duplicate spine row, a composite key.
TRICKY = dict(
    cust=[(1, 2, 0, 1.0, "a"), (1, 2, 1, 2.5, "b"), (1, 4, 0, None, "c"), (2, 0, 0, 10.0, "a"), (2, 6, 2, 0.0, None)],
    profile=[(1, 3, 1, 2), (1, 3, 0, 1), (3, 0, 0, None)],
    pair=[(1, 1, 2, 0, 1.0, 5), (1, 2, 2, 0, 2.5, -2), (1, 1, 3, 1, None, 1)],
    spine=[(1, 1, 2, 0, 1), (1, 1, 8, 0, 0), (1, 1, 8, 1, 0), (1, 1, 8, 0, 0), (2, None, 6, 0, 1),
           (None, 1, 5, 0, 0), (3, 2, 0, -1, 1), (2, 2, 12, 0, 0), (1, 2, 6, -1, 1)])


@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(**TRICKY, sliding=True)
@example(**TRICKY, sliding=False)
@given(cust=cust_rows, profile=profile_rows, pair=pair_rows, spine=spine_rows, sliding=st.booleans())
def test_point_in_time_matches_brute_force(lake, cust, profile, pair, spine, sliding):
    """Both ways to compute min/max (sliding frames, or two blocks and a descending sort) are
    forced in turn, whatever the engine's estimate would pick."""
    spark = lake.spark
    tables = {"cust": table_rows("cust", cust), "profile": table_rows("profile", profile),
              "pair_stats": table_rows("pair_stats", pair)}
    spine_dicts = [{"customer_id": c, "merchant_id": m, "event_ts": at(step, off), "label": y, ROW: i}
                   for i, (c, m, step, off, y) in enumerate(spine)]
    schema = f"customer_id int, merchant_id bigint, event_ts timestamp, label int, {ROW} bigint"
    spine_df = spark.createDataFrame([tuple(r.values()) for r in spine_dicts], schema)
    plans = resolve(lake, REFS, spine_columns=spine_df.columns)
    with mock.patch.object(pointintime, "SLIDING_ROWS", 10**9 if sliding else -1):
        result = point_in_time(spine_df, {g: frame(spark, g, rows) for g, rows in tables.items()}, plans,
                               timestamp_column="event_ts", partitions=3)
    blocks = not sliding and bool(cust or pair)  # no rows to hold: nothing to sort twice
    assert ("DESC" in result._jdf.queryExecution().executedPlan().toString()) == blocks
    got = sorted((r.asDict() for r in result.collect()), key=lambda r: r[ROW])
    assert [r["label"] for r in got] == [r["label"] for r in spine_dicts]  # every spine row, once
    assert_rows_match(got, oracle(spine_dicts, tables, plans), spine_dicts)


ARROW_TYPES = {"bigint": "int64", "int": "int32", "double": "float64", "string": "string", "date": "date32"}


def arrow(rows: list[dict], schema: str):
    """Rows -> an Arrow table with the Spark schema's types (timestamps as Spark's Arrow gives them)."""
    import pyarrow as pa

    fields = [c.split() for c in schema.split(", ")]
    types = {n: pa.timestamp("us", "UTC") if t == "timestamp" else pa.type_for_alias(ARROW_TYPES[t]) for n, t in fields}
    return pa.table({n: pa.array([r[n] for r in rows], type=types[n]) for n, _ in fields})


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(**TRICKY)
@given(cust=cust_rows, profile=profile_rows, pair=pair_rows, spine=spine_rows)
def test_driver_engine_matches_brute_force(lake, cust, profile, pair, spine):
    """The driver engine (localset) on the same data: every as-of feature, ttl, tie and window it
    computes as the oracle says; a spine key of another integer width (int against bigint) joins
    all the same."""
    tables = {"cust": table_rows("cust", cust), "profile": table_rows("profile", profile),
              "pair_stats": table_rows("pair_stats", pair)}
    spine_dicts = [{"customer_id": c, "merchant_id": m, "event_ts": at(step, off), "label": y, ROW: i}
                   for i, (c, m, step, off, y) in enumerate(spine)]
    spine_table = arrow(spine_dicts, f"customer_id int, merchant_id bigint, event_ts timestamp, label int, "
                                     f"{ROW} bigint")
    plans = [pointintime.GroupPlan(p.group, p.keys, p.timestamp_column, p.ttl_us, p.features,
                                   [a for a in p.aggregations if a.function in localset.FUNCTIONS
                                    and (a.column, a.function) not in (("tag", "min"), ("tag", "max"))])
             for p in resolve(lake, REFS, spine_columns=spine_table.column_names)]
    events = {g: arrow(rows, SCHEMAS[g][0] + BOOKKEEPING) for g, rows in tables.items()}
    got = localset.point_in_time(spine_table, events, plans, "event_ts").to_pylist()
    assert [r["label"] for r in got] == [r["label"] for r in spine_dicts]
    assert_rows_match(got, oracle(spine_dicts, tables, plans), spine_dicts)


def test_the_driver_engine_leaves_to_spark_what_it_cannot_match():
    """Rows of one key tied on time and ingest time (Spark breaks the tie by a row hash), keys of
    different kinds, text times and approx_count_distinct: NotLocal, so the Spark engine builds
    the set."""
    plan = pointintime.GroupPlan("cust", ["customer_id"], "ts", None, [("amount", "amount")])
    spine = arrow([{"customer_id": 1, "event_ts": at(3), ROW: 0}],
                  f"customer_id bigint, event_ts timestamp, {ROW} bigint")
    tied = arrow([{"customer_id": 1, "ts": at(1), "amount": a, "tag": None, "_ingested_at": at(0), "_run_id": "r",
                   "_event_date": at(1).date()} for a in (1.0, 2.0)], SCHEMAS["cust"][0] + BOOKKEEPING)
    with pytest.raises(localset.NotLocal, match="equal time and ingest time"):
        localset.point_in_time(spine, {"cust": tied}, [plan], "event_ts")
    text_keys = spine.set_column(0, "customer_id", spine.column("customer_id").cast("string"))
    with pytest.raises(localset.NotLocal, match="spine key type string differs"):
        localset.point_in_time(text_keys, {"cust": tied.slice(0, 1)}, [plan], "event_ts")
    text_times = spine.set_column(1, "event_ts", spine.column("event_ts").cast("string"))
    with pytest.raises(localset.NotLocal, match="spine column 'event_ts' is string"):
        localset.point_in_time(text_times, {"cust": tied.slice(0, 1)}, [plan], "event_ts")
    distinct = pointintime.WindowAgg("n", "approx_count_distinct", "tag", "1h", 3_600_000_000)
    with pytest.raises(localset.NotLocal, match="approx_count_distinct"):
        localset.covers([pointintime.GroupPlan("cust", ["customer_id"], "ts", None, [], [distinct])])


def test_the_driver_engine_reads_a_date_as_its_midnight_utc():
    """A spine time of type date is the instant its day starts (UTC), as Spark casts it."""
    from datetime import date

    plan = pointintime.GroupPlan("cust", ["customer_id"], "ts", None, [("amount", "amount")])
    rows = arrow([{"customer_id": 1, "ts": at(s), "amount": float(s), "tag": None, "_ingested_at": at(0),
                   "_run_id": "r", "_event_date": at(s).date()} for s in (0, 47, 48)], SCHEMAS["cust"][0] + BOOKKEEPING)
    spine = arrow([{"customer_id": 1, "event_ts": date(2024, 3, 2), ROW: 0}],
                  f"customer_id bigint, event_ts date, {ROW} bigint")
    assert localset.point_in_time(spine, {"cust": rows}, [plan], "event_ts").column("amount").to_pylist() == [48.0]


def test_min_and_max_slide_unless_a_key_holds_many_rows_in_a_window(lake):
    """The estimate: 100 keys of 50 rows over a year -> sliding frames, even over 30 days; one key
    with 10k rows in a day -> the blocks, for a 1-day window (10k x 10k rows held), not for 1 minute."""
    from pyspark.sql import functions as F

    day, year = 86_400_000_000, 365 * 86_400_000_000
    spread = lake.spark.range(5_000).select((F.col("id") % 100).alias("_fl_k0"),
                                            (F.col("id") * (year // 5_000)).alias(TIME))
    hot = lake.spark.range(10_000).select(F.lit(1_000).cast("bigint").alias("_fl_k0"),
                                          (F.col("id") * (day // 10_000)).alias(TIME))
    agg = pointintime.WindowAgg("m", "max", "x", "?", 30 * day)
    assert pointintime._short_windows({0: spread}, ["_fl_k0"], [(0, agg)]) == {0}
    assert pointintime._short_windows({0: hot.unionByName(spread)}, ["_fl_k0"],
                                      [(0, pointintime.WindowAgg("m", "max", "x", "?", day))]) == set()
    assert pointintime._short_windows({0: hot}, ["_fl_k0"],
                                      [(0, pointintime.WindowAgg("m", "max", "x", "?", day // 1440))]) == {0}


# ---- through the store: Delta, manifest, replay -------------------------------------------------

def merge(store, group: str, rows: list[tuple], run_id: str) -> None:
    store.offline(group).merge(store.spark.createDataFrame(rows, SCHEMAS[group][0]), run_id)


def first_rows(store):
    """A few rows in each group (run r1), and a spine over them with a null key: the spine."""
    merge(store, "cust", [(1, at(0), 1.0, "a"), (1, at(2), 2.5, "b"), (2, at(1), 10.0, "c"), (1, at(4), None, "a")],
          "r1")
    merge(store, "profile", [(1, at(0), 1), (2, at(3), 2)], "r1")
    merge(store, "pair_stats", [(1, 1, at(1), 3.0, 5), (1, 2, at(2), 4.0, 7)], "r1")
    return pd.DataFrame({"customer_id": pd.array([1, 1, 2, None, 3, 1], dtype="Int64"),
                         "merchant_id": pd.array([1, 2, 1, 1, 1, 1], dtype="Int64"),
                         "event_ts": [at(s) for s in (1, 4, 5, 2, 3, 4)], "label": [0, 1, 0, 1, 0, 1]})


def test_replay_after_later_merges_returns_identical_rows(lake, tmp_path, monkeypatch):
    store = lake
    spine = first_rows(store)
    spine["event_ts"] = spine["event_ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    with pytest.warns(NullKeysWarning, match="1 for cust"):
        ts = store.training_set(spine, REFS)
    before = ts.to_pandas()
    versions = {g: store.offline(g).version() for g in ("cust", "profile", "pair_stats")}
    assert ts.manifest["table_versions"] == versions
    assert ts.manifest["spine_rows"] == 6 and len(before) == 6
    assert list(before["label"]) == [0, 1, 0, 1, 0, 1]  # to_pandas keeps the spine's order
    tables = {g: [r.asDict() for r in store.read_offline(g).collect()] for g in versions}
    spine_dicts = [{"customer_id": None if pd.isna(c) else int(c), "merchant_id": int(m),
                    "event_ts": t.to_pydatetime().replace(tzinfo=timezone.utc), "label": y}
                   for c, m, t, y in spine.itertuples(index=False)]
    want = oracle(spine_dicts, tables, resolve(store, REFS))
    assert_rows_match(before.to_dict("records"), want, spine_dicts)
    ts.write(tmp_path / "first")

    # Later ingests change a row the set read, and add newer ones.
    merge(store, "cust", [(1, at(2), 99.0, "z"), (1, at(3), 7.0, "y")], "r2")
    merge(store, "pair_stats", [(1, 1, at(1), 30.0, 50)], "r2")
    fresh = store.training_set(spine, REFS).to_pandas()
    assert not fresh.equals(before)  # the data did change

    with pytest.warns(NullKeysWarning):
        again = store.load_training_set(ts.id)
    assert again.id == ts.id and again.manifest["table_versions"] == versions
    pd.testing.assert_frame_equal(again.to_pandas(), before, check_exact=True)
    again.write(tmp_path / "replay")
    first, replay = (pd.read_parquet(tmp_path / d) for d in ("first", "replay"))
    pd.testing.assert_frame_equal(replay, first, check_exact=True)  # same rows in the same order

    row = store.catalog.rows("training_sets", f"id = '{ts.id}'")[0]
    assert row["spine_rows"] == 6 and row["spine_path"].endswith(f"{ts.id}/spine")
    assert "cust:amount_sum_1h" in row["features"]
    usage = store.catalog.rows("usage", f"detail LIKE '%{ts.id}%'")
    assert {(u["action"], u["object"]) for u in usage} == {
        (a, g) for a in ("training_set", "training_set_replay") for g in ("cust", "profile", "pair_stats")}

    # A set built before the fingerprint's second form (none named in its options) is checked the old way.
    copy = store.spark.read.format("delta").load(ts.manifest["spine_path"])
    old = spine_stats(copy, manifest_plans(ts.manifest), "event_ts", 1)["fingerprint"]
    assert old != ts.manifest["spine_fingerprint"]
    legacy = {**ts.manifest, "spine_fingerprint": old,
              "options": {k: v for k, v in ts.manifest["options"].items() if k != "fingerprint"}}
    monkeypatch.setattr(training, "read_manifest", lambda *_: legacy)
    with pytest.warns(NullKeysWarning):
        pd.testing.assert_frame_equal(store.load_training_set(ts.id).to_pandas(), before, check_exact=True)
    monkeypatch.undo()
    copy.limit(1).write.format("delta").mode("append").save(ts.manifest["spine_path"])
    with pytest.raises(JobError, match="changed since the set was built"):
        store.load_training_set(ts.id)


PLAIN = ["cust:amount", "cust:tag", "profile:*", "pair_stats:amount", "pair_stats:score"]
WINDOWED = [f"cust:amount_{fn}_{w}" for fn in localset.FUNCTIONS for w in ("1h", "3h")] + [
    "cust:tag_last_2h", "pair_stats:score_sum_1h", "pair_stats:score_max_1h"]


def test_a_small_set_is_built_on_the_driver_with_the_spark_engines_rows(make_store, tmp_path, monkeypatch):
    """Features and windows over small tables: the driver engine builds the set (recorded in its
    manifest), with the Spark engine's rows to the last bit, its statistics and written values;
    Spark reads its spine copy; a replay after later merges gives the same rows; a changed copy is
    refused."""
    from featurelake.monitoring import read_statistics

    store = make_store({"groups.py": GROUPS}, monitoring="monitoring:\n  statistics: true")
    store.apply()
    spine = first_rows(store)
    with pytest.warns(NullKeysWarning, match="1 for cust"):
        local = store.training_set(spine, PLAIN)
    monkeypatch.setattr(store.config.training, "driver_max_rows", 0)
    with pytest.warns(NullKeysWarning):
        spark_built = store.training_set(spine, PLAIN)
        spark_windows = store.training_set(spine, WINDOWED).to_pandas()
    monkeypatch.undo()
    with pytest.warns(NullKeysWarning):
        windows = store.training_set(spine, WINDOWED)
    assert windows.manifest["options"]["engine"] == localset.ENGINE
    pd.testing.assert_frame_equal(windows.to_pandas(), spark_windows, check_exact=True)  # the same float sums
    assert local.manifest["options"]["engine"] == localset.ENGINE
    assert spark_built.manifest["options"]["engine"] == training.ENGINE
    rows = local.to_pandas()
    pd.testing.assert_frame_equal(rows, spark_built.to_pandas(), check_exact=True)
    assert local.columns == spark_built.columns
    assert local.to_spark().schema == spark_built.to_spark().schema
    assert {k: local.manifest[k] for k in ("spine_rows", "table_versions", "features")} == \
        {k: spark_built.manifest[k] for k in ("spine_rows", "table_versions", "features")}
    assert local.manifest["options"]["time_bounds"] == spark_built.manifest["options"]["time_bounds"]
    assert store.spark.read.format("delta").load(local.manifest["spine_path"]).count() == 6

    local.write(tmp_path / "local")
    spark_built.write(tmp_path / "spark")
    assert len(list((tmp_path / "local").glob("*.parquet"))) == 1
    assert (tmp_path / "local" / "_SUCCESS").exists()
    written = store.spark.read.parquet(str(tmp_path / "local"))
    assert written.schema == store.spark.read.parquet(str(tmp_path / "spark")).schema
    def by_row(folder):
        return pd.read_parquet(folder).sort_values(["event_ts", "customer_id", "merchant_id", "label"]) \
            .reset_index(drop=True)
    pd.testing.assert_frame_equal(by_row(tmp_path / "local"), by_row(tmp_path / "spark"), check_exact=True)
    with pytest.raises(UsageError, match="already exists: write with mode='overwrite'"):
        local.write(tmp_path / "local", mode="error")

    def stats(ts):
        return {(r["group"], r["feature"]): r["stats"]
                for r in read_statistics(store, scope="training_set", scope_id=ts.id)}
    assert stats(local) == stats(spark_built)
    assert set(stats(local)) == {("cust", "amount"), ("cust", "tag"), ("profile", "level"), ("pair_stats", "amount"),
                                 ("pair_stats", "score")}

    merge(store, "cust", [(1, at(4), 5.0, "q"), (1, at(3), 7.0, "y")], "r2")
    with pytest.warns(NullKeysWarning):
        again = store.load_training_set(local.id)
    pd.testing.assert_frame_equal(again.to_pandas(), rows, check_exact=True)
    with pytest.warns(NullKeysWarning):
        assert not store.training_set(spine, PLAIN).to_pandas().equals(rows)  # the data did change

    store.spark.read.format("delta").load(local.manifest["spine_path"]).limit(1).write.format("delta") \
        .mode("append").save(local.manifest["spine_path"])
    with pytest.raises(JobError, match="changed since the set was built"):
        store.load_training_set(local.id)


def test_a_hot_key_with_half_the_rows(make_store, tmp_path):
    """One customer holds half of 200k rows (events and spine): no memory error in the Spark
    engine with the test session's ordinary settings, and its values are right (checked on a
    sample). The driver engine would take a set this small: driver_max_rows 0 keeps it on Spark."""
    from pyspark.sql import functions as F

    store = make_store({"groups.py": GROUPS}, training="training:\n  driver_max_rows: 0")
    store.apply()
    spark = store.spark
    key = F.when(F.rand(1) < 0.5, F.lit(7)).otherwise((F.rand(2) * 5000).cast("bigint") + 100)

    def within_a_year(seed: int):
        return F.timestamp_seconds(F.lit(1_700_000_000) + (F.rand(seed) * 365 * 86400).cast("bigint"))

    events = spark.range(150_000).select(key.alias("customer_id"), within_a_year(3).alias("ts"),
                                         F.round(F.rand(4) * 100, 2).alias("amount"), F.lit("h").alias("tag"))
    store.offline("cust").merge(events, "hot")
    spine = spark.range(50_000).select(key.alias("customer_id"), within_a_year(5).alias("event_ts"),
                                       F.col("id").alias("n"))
    refs = ["cust:amount", "cust:amount_sum_3h", "cust:amount_count_3h", "cust:amount_max_3h", "cust:amount_last_1h"]
    ts = store.training_set(spine, refs)
    assert ts.manifest["options"]["engine"] == training.ENGINE
    ts.write(tmp_path / "hot")
    out = spark.read.parquet(str(tmp_path / "hot"))
    assert out.count() == 50_000
    assert out.where("customer_id = 7").count() > 20_000

    sample = out.where("customer_id = 7").orderBy("n").limit(25)
    rows = store.read_offline("cust").where("customer_id = 7").select("ts", "amount")
    check = sample.alias("s").join(rows.alias("e"), (F.col("e.ts") <= F.col("s.event_ts"))
                                    & (F.col("e.ts") >= F.col("s.event_ts") - F.expr("INTERVAL 3 HOURS")), "left")
    inside = F.col("e.ts") > F.col("s.event_ts") - F.expr("INTERVAL 3 HOURS")
    expected = check.groupBy("s.n").agg(
        F.sum(F.when(inside, F.col("e.amount"))).alias("sum"),
        F.count(F.when(inside, F.col("e.amount"))).alias("count"),
        F.max(F.when(inside, F.col("e.amount"))).alias("max"), F.max_by("e.amount", "e.ts").alias("asof")).collect()
    got = {r["n"]: r for r in sample.collect()}
    assert len(expected) == 25
    for e in expected:
        g = got[e["n"]]
        assert g["amount_count_3h"] == e["count"] and g["amount_max_3h"] == e["max"] and g["amount"] == e["asof"]
        assert (g["amount_sum_3h"] is None and e["sum"] is None) or math.isclose(g["amount_sum_3h"], e["sum"],
                                                                                 rel_tol=1e-9)


# ---- what users see ------------------------------------------------------------------------------

def test_unknown_references_name_the_nearest(lake):
    with pytest.raises(NotFoundError, match=r"unknown feature 'amount_sum_1' in group 'cust' \(did you mean "
                                            r"'amount_sum_1h'"):
        resolve(lake, ["cust:amount_sum_1"])
    with pytest.raises(NotFoundError, match=r"unknown feature group 'custs'.*did you mean 'cust'"):
        resolve(lake, ["custs:*"])
    with pytest.raises(UsageError, match=r"bad feature reference 'amount_sum_1h': write group:feature or "
                                         r"group:\*.*'cust:amount_sum_1h'"):
        resolve(lake, ["amount_sum_1h"])


def test_output_names_and_spine_inputs(lake, tmp_path):
    """Shared names get group__feature, full_names forces it, a spine column keeps its name; a CSV
    path with text timestamps is a spine too; a missing time or key column is a clear error."""
    names = [o for p in resolve(lake, ["cust:amount", "cust:tag", "pair_stats:amount"]) for o in p.outputs]
    assert names == ["cust__amount", "tag", "pair_stats__amount"]
    names = [o for p in resolve(lake, ["profile:level", "cust:tag"], full_names=True) for o in p.outputs]
    assert names == ["profile__level", "cust__tag"]

    merge(lake, "profile", [(5, at(0), 3)], "names")
    csv = tmp_path / "spine.csv"
    csv.write_text("customer_id,when,tag\n5,2024-03-01T01:00:00Z,x\n6,2024-03-01T01:00:00Z,y\n")
    ts = lake.training_set(str(csv), ["profile:level", "cust:tag"], timestamp_column="when")
    assert ts.columns == ["customer_id", "when", "tag", "level", "cust__tag"]
    assert ts.to_pandas()["level"].tolist()[0] == 3

    with pytest.raises(UsageError, match=r"no timestamp column 'event_ts'.*timestamp_column="):
        lake.training_set(str(csv), ["profile:level"])
    with pytest.raises(UsageError, match=r"lacks \['merchant_id'\], the key of group 'pair_stats'"):
        lake.training_set(str(csv), ["pair_stats:score"], timestamp_column="when")


def test_to_pandas_refuses_large_sets_and_mlflow_is_optional(make_store, tmp_path):
    store = make_store({"groups.py": GROUPS}, training="training:\n  max_pandas_rows: 2")
    store.apply()
    merge(store, "profile", [(1, at(0), 1)], "r1")
    spine = pd.DataFrame({"customer_id": [1, 1, 2], "event_ts": [at(1).replace(tzinfo=None)] * 3})
    ts = store.training_set(spine, ["profile:level"])
    with pytest.raises(UsageError, match=r"has 3 rows, more than training.max_pandas_rows \(2\).*to_spark\(\).*"
                                         r"write\(path\)"):
        ts.to_pandas()
    assert ts.to_spark().count() == 3
    ts.write(tmp_path / "out.csv", format="csv")
    assert sum(len(pd.read_csv(part)) for part in (tmp_path / "out.csv").glob("*.csv")) == 3
    with pytest.raises(UsageError, match="unknown format 'orc'"):
        ts.write(tmp_path / "x", format="orc")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(FeaturelakeError, match=r"pip install 'featurelake\[mlflow\]'"):
            ts.log_to_mlflow()
