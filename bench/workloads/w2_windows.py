"""Workload 2: window aggregations as of each spine row.

featurelake   store.training_set(spine, features=["txn:amount_sum_1d", ... 12 features]).write(out)
baseline      the plain Spark range join: spine JOIN events ON key AND t - 30d < event time <= t,
              then GROUP BY spine row with one conditional aggregate per (function, window);
              written to parquet like featurelake's output
Target: at least 2x faster than the range join (issue 23), and near-linear growth when the history per key
doubles (txn2x: the same keys and spine, twice the events).
Correctness: featurelake's values equal the range join's (and at small scale the brute-force
oracle's: numpy over each key's sorted events). Amounts are quarters, so sums are exact whatever
the order; count over no events is taken as 0 on both sides (null and 0 compare equal).
"""
from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import Context, Row, alternate, compare_pandas, compare_spark, describe_check, median
from bench.data import Data
from bench.flside import AGG_FEATURES, AGG_FUNCTIONS, WINDOWS

NAME = "2 window aggregations"
TARGET = 0.5           # at least 2x faster than the range join (issue 23)
TARGET_GROWTH = 2.3    # "near-linear": twice the history costs at most ~2.3x
WINDOW_LENGTHS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
COUNTS = [f for f in AGG_FEATURES if "_count_" in f]


def featurelake_side(store: Any, spine_path: Path, group: str, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    spine = store.spark.read.parquet(str(spine_path))
    refs = [f"{group}:{f}" for f in AGG_FEATURES]
    store.training_set(spine, features=refs, timestamp_column="event_ts").write(str(out))
    return time.perf_counter() - t0


def range_join(spark: Any, spine_path: Path, events_path: Path) -> Any:
    """The textbook answer: a range join, then a group by."""
    from pyspark.sql import functions as F

    s = spark.read.parquet(str(spine_path)).alias("s")
    e = spark.read.parquet(str(events_path)).select("customer_id", F.col("event_ts").alias("e_ts"), "amount").alias("e")
    widest = max(WINDOW_LENGTHS.values())
    cond = ((F.col("s.customer_id") == F.col("e.customer_id"))
            & (F.col("e.e_ts") > F.col("s.event_ts") - F.expr(f"INTERVAL {int(widest.total_seconds())} SECONDS"))
            & (F.col("e.e_ts") <= F.col("s.event_ts")))
    joined = s.join(e, cond, "left")
    aggs = []
    for fn in AGG_FUNCTIONS:
        for w in WINDOWS:
            inside = F.col("e.e_ts") > F.col("s.event_ts") - F.expr(
                f"INTERVAL {int(WINDOW_LENGTHS[w].total_seconds())} SECONDS")
            value = F.when(inside, F.col("e.amount"))
            aggs.append(getattr(F, fn)(value).alias(f"amount_{fn}_{w}"))
    return joined.groupBy("s.row_id", "s.customer_id", "s.event_ts", "s.label").agg(*aggs)


def baseline_side(spark: Any, spine_path: Path, events_path: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    range_join(spark, spine_path, events_path).write.mode("overwrite").parquet(str(out))
    return time.perf_counter() - t0


def check_against_baseline(spark: Any, fl_out: Path, base_out: Path) -> dict:
    return compare_spark(spark, spark.read.parquet(str(fl_out)), spark.read.parquet(str(base_out)), "row_id",
                         ["customer_id", *AGG_FEATURES], rel_tol=1e-12, zero_is_null=COUNTS)


def check_against_oracle(data: Data, fl_out: Path, events: str) -> dict:
    import pandas as pd

    from bench import oracle

    expected = oracle.windows(data.frame("spine"), data.frame(events), WINDOW_LENGTHS, AGG_FUNCTIONS)
    got = pd.read_parquet(fl_out)
    return compare_pandas(got, expected, "row_id", AGG_FEATURES, rel_tol=1e-12, zero_is_null=COUNTS)


def run_case(ctx: Context, case: str, group: str, events: str) -> tuple[Row, dict]:
    from bench.flside import load_offline

    log, data = ctx.log, ctx.data
    spine, events_path = data.path("spine"), data.path(events)
    if not ctx.store.offline(group).exists():
        load_offline(ctx.store, group, events_path)
    outs = ctx.work / "w2" / group
    fl_out, base_out = outs / "featurelake", outs / "range_join"
    sides = {"featurelake": lambda i: featurelake_side(ctx.store, spine, group, fl_out),
             "range join": lambda i: baseline_side(ctx.spark, spine, events_path, base_out)}
    log(f"  case {case}: warm-up run of each side (not counted)")
    alternate(1, sides, log)
    checks = {"range join": check_against_baseline(ctx.spark, fl_out, base_out)}
    log(f"    featurelake vs range join: {describe_check(checks['range join'])}")
    if ctx.check_oracle:
        checks["oracle"] = check_against_oracle(data, fl_out, events)
        log(f"    featurelake vs oracle: {describe_check(checks['oracle'])}")
    log(f"  case {case}: {ctx.runs} timed runs")
    times = alternate(ctx.runs, sides, log)
    row = Row(NAME, case, "plain Spark range join + group by", median(times["featurelake"]),
              median(times["range join"]), target=f"<= {TARGET}x (2x faster)", target_ratio=TARGET,
              correct=all(c["ok"] for c in checks.values()),
              notes=[f"vs {k}: {describe_check(v)}" for k, v in checks.items()], runs=times)
    return row, times


def run(ctx: Context) -> list[Row]:
    s = ctx.scale
    row, _ = run_case(ctx, f"{s.spine:,} spine x {s.events:,} events, 12 features", "txn", "txn")
    rows = [row]
    if ctx.variants:
        row2, _ = run_case(ctx, f"history x2: {s.spine:,} spine x {2 * s.events:,} events", "txn2x", "txn2x")
        rows.append(row2)
        growth = Row(NAME, "growth when the history per key doubles", "featurelake itself at 1x history",
                     row2.featurelake, row.featurelake, unit="s", target=f"<= {TARGET_GROWTH}x (near-linear)",
                     target_ratio=TARGET_GROWTH, correct=row.correct is not False and row2.correct is not False,
                     notes=[f"range join grew x{row2.other / row.other:.2f}" if row.other and row2.other else ""])
        rows.append(growth)
    return rows
