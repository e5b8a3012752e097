"""Workload 1: point-in-time training set.

featurelake   store.training_set(spine, features=[...], timestamp_column="event_ts").write(out)
Feast 0.67    get_historical_features(entity_df=<the spine as a Spark DataFrame>, features=[...])
              .to_spark_df().write.parquet(out), Spark offline store, same Spark conf
floor         read both inputs, shuffle by key, sort by key and time, no output (noop sink)

Cases: one group (cust, 10 doubles, ttl 90d); three groups over customer, merchant and
(customer, merchant) keys; one group with 4x the keys, spine and rows.
Correctness: featurelake's rows equal Feast's (every spine row, every feature), and at small
scale the brute-force oracle's (pandas merge_asof); a run that differs is a failure.
"""
from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.common import Context, Row, alternate, compare_pandas, compare_spark, describe_check, median
from bench.data import N_FEATURES, Data
from bench.scales import TTL_DAYS

NAME = "1 PIT training set"
TARGET_FEAST = 0.5     # at least 2x faster than Feast (issue 23), warm and for a process's first set
TARGET_FLOOR = 1.5     # within 1.5x of the floor

GROUPS = {  # featurelake group -> (data set, keys, feature prefix, Feast view)
    "cust": ("cust", ["customer_id"], "c_f", "cust_fv"),
    "merch": ("merch", ["merchant_id"], "m_f", "merch_fv"),
    "pair": ("pair", ["customer_id", "merchant_id"], "p_f", "pair_fv"),
    "cust4": ("cust", ["customer_id"], "c_f", "cust4_fv"),
}
ENTITIES = {"customer_id": {"name": "customer", "join_keys": ["customer_id"]},
            "merchant_id": {"name": "merchant", "join_keys": ["merchant_id"]}}


def features(group: str) -> list[str]:
    return [f"{GROUPS[group][2]}{i}" for i in range(N_FEATURES)]


def feast_views(data: Data, data4: Optional[Data] = None) -> list[dict]:
    """Feast's feature views over the same parquet folders (offline only)."""
    out = []
    for group, (dataset, keys, _, view) in GROUPS.items():
        d = data4 if group == "cust4" else data
        if d is None:
            continue
        out.append({"name": view, "entities": [ENTITIES[k] for k in keys], "path": str(d.path(dataset)),
                    "features": features(group), "ttl_days": TTL_DAYS, "online": False})
    return out


# ---- the three sides ---------------------------------------------------------------------------

def featurelake_side(store: Any, spine_path: Path, groups: Sequence[str], out: Path) -> float:
    """Seconds to build the training set and write it to parquet."""
    import time

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    spine = store.spark.read.parquet(str(spine_path))
    ts = store.training_set(spine, features=[f"{g}:*" for g in groups], timestamp_column="event_ts")
    ts.write(str(out))
    return time.perf_counter() - t0


def feast_side(feast: Any, spine_path: Path, groups: Sequence[str], out: Path) -> float:
    refs = [f"{GROUPS[g][3]}:{f}" for g in groups for f in features(g)]
    return feast.call("hist", spine=str(spine_path), refs=refs, out=str(out))["seconds"]


def floor_side(spark: Any, spine_path: Path, inputs: Sequence[tuple[Path, list]]) -> float:
    """Per group: spine and group rows in one shuffle by the group's keys, sorted by key and time
    within partitions, written nowhere (noop). The least any point-in-time join must do."""
    import time

    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    for path, keys in inputs:
        spine = spark.read.parquet(str(spine_path)).withColumn("_side", F.lit(0))
        rows = spark.read.parquet(str(path)).withColumn("_side", F.lit(1))
        both = spine.unionByName(rows, allowMissingColumns=True)
        (both.repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), *keys)
         .sortWithinPartitions(*keys, "event_ts", "_side").write.format("noop").mode("overwrite").save())
    return time.perf_counter() - t0


# ---- checks --------------------------------------------------------------------------------------

def output_columns(groups: Sequence[str]) -> list[str]:
    return [f for g in groups for f in features(g)]


def check_against_feast(spark: Any, fl_out: Path, feast_out: Path, groups: Sequence[str]) -> dict:
    fl = spark.read.parquet(str(fl_out))
    fe = spark.read.parquet(str(feast_out))
    return compare_spark(spark, fl, fe, "row_id", ["customer_id", "label", *output_columns(groups)])


def check_against_oracle(data: Data, fl_out: Path, groups: Sequence[str]) -> dict:
    """pandas merge_asof per group (keys, time <= t, time >= t - ttl), independent of Spark."""
    import pandas as pd

    from bench import oracle

    spine = data.frame("spine")
    expected = spine
    for g in groups:
        dataset, keys, _, _ = GROUPS[g]
        feats = features(g)
        part = oracle.pit(spine, data.frame(dataset), keys, feats, timedelta(days=TTL_DAYS))
        expected = expected.merge(part[["row_id", *feats]], on="row_id")
    got = pd.read_parquet(fl_out)
    return compare_pandas(got, expected, "row_id", ["customer_id", "label", *output_columns(groups)])


def spine_columns_kept(spark: Any, fl_out: Path) -> list[str]:
    cols = spark.read.parquet(str(fl_out)).columns
    return [c for c in ("row_id", "customer_id", "merchant_id", "event_ts", "label") if c not in cols]


# ---- the workload --------------------------------------------------------------------------------

def load(ctx: Context, groups: Sequence[str], data: Data) -> None:
    from bench.flside import load_offline

    for g in groups:
        if not ctx.store.offline(g).exists():
            load_offline(ctx.store, g, data.path(GROUPS[g][0]))


def run_case(ctx: Context, case: str, groups: Sequence[str], data: Data, feast: Any,
             first_of_process: bool = False) -> list[Row]:
    """The case's rows; with first_of_process, also one for the warm-up run, each side's first
    training set in its process (as a scheduled job or a new notebook kernel meets it)."""
    log = ctx.log
    spine = data.path("spine")
    load(ctx, groups, data)
    outs = ctx.work / "w1" / case.replace(" ", "_")
    fl_out, feast_out = outs / "featurelake", outs / "feast"
    inputs = [(data.path(GROUPS[g][0]), GROUPS[g][1]) for g in groups]
    sides = {"featurelake": lambda i: featurelake_side(ctx.store, spine, groups, fl_out)}
    if feast is not None:
        sides["feast"] = lambda i: feast_side(feast, spine, groups, feast_out)
    sides["floor"] = lambda i: floor_side(ctx.spark, spine, inputs)
    log(f"  case {case}: warm-up run of each side (not counted)")
    first = alternate(1, sides, log)
    checks, notes = {}, []
    missing = spine_columns_kept(ctx.spark, fl_out)
    if missing:
        notes.append(f"featurelake's output lacks spine columns {missing}")
    if feast is not None:
        checks["feast"] = check_against_feast(ctx.spark, fl_out, feast_out, groups)
        log(f"    featurelake vs Feast: {describe_check(checks['feast'])}")
    if ctx.check_oracle:
        checks["oracle"] = check_against_oracle(data, fl_out, groups)
        log(f"    featurelake vs oracle: {describe_check(checks['oracle'])}")
    correct = all(c["ok"] for c in checks.values()) and not missing if checks else None
    notes += [f"vs {k}: {describe_check(v)}" for k, v in checks.items()]
    log(f"  case {case}: {ctx.runs} timed runs")
    times = alternate(ctx.runs, sides, log)
    fl = median(times["featurelake"])
    rows = []
    if feast is not None:
        rows.append(Row(NAME, case, "Feast 0.67 get_historical_features", fl, median(times["feast"]),
                        target=f"<= {TARGET_FEAST}x (2x faster)", target_ratio=TARGET_FEAST, correct=correct,
                        notes=list(notes), runs=times))
        if first_of_process:
            rows.append(Row(NAME, f"{case}, the first set of each side's process (its warm-up run)",
                            "Feast 0.67 get_historical_features", first["featurelake"][0], first["feast"][0],
                            target=f"<= {TARGET_FEAST}x (2x faster)", target_ratio=TARGET_FEAST, correct=correct,
                            notes=list(notes), runs=first))
    rows.append(Row(NAME, case, "floor: read, shuffle by key, sort, no output", fl, median(times["floor"]),
                    target=f"<= {TARGET_FLOOR}x", target_ratio=TARGET_FLOOR, correct=correct, notes=list(notes),
                    runs=times))
    return rows


def run(ctx: Context) -> list[Row]:
    s = ctx.scale
    feast = ctx.feast() if ctx.feast else None
    rows = run_case(ctx, f"1 group: {s.spine:,} spine x {s.rows:,} rows", ["cust"], ctx.data, feast,
                    first_of_process=True)
    if ctx.variants:
        rows += run_case(ctx, f"3 groups: {s.spine:,} spine x 3 x {s.rows:,} rows", ["cust", "merch", "pair"],
                         ctx.data, feast)
        data4 = Data(ctx.data.base, root=ctx.data.root, factor=4)
        x4 = run_case(ctx, f"4x data: {4 * s.spine:,} spine x {4 * s.rows:,} rows", ["cust4"], data4, feast)
        base = rows[0]
        for r in x4:
            side = "feast" if "Feast" in r.against else "floor"
            growth_fl = r.featurelake / base.featurelake if r.featurelake and base.featurelake else None
            base_other = next((b for b in rows if b.case == base.case and b.against == r.against), None)
            growth_other = r.other / base_other.other if base_other and r.other and base_other.other else None
            if growth_fl and growth_other:
                r.notes.append(f"growth for 4x data: featurelake x{growth_fl:.2f}, {side} x{growth_other:.2f}")
        rows += x4
    return rows
