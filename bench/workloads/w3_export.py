"""Workload 3: export the newest row of every key to DynamoDB (dynalite on loopback).

featurelake   store.export("profile", full=True): Spark -> BatchWriteItem from the executors
Feast 0.67    materialize(start, end) of the same rows (its local engine: Spark -> driver -> boto3)
floor         the very items featurelake wrote, rewritten by raw parallel BatchWriteItem calls
              (boto3, parameter validation off, 2 processes x 8 threads: 16 requests in flight,
              as featurelake's 2 tasks x 8)
Then 1% of the keys change (a newer row each, appended to the source and merged into the
offline table) and both export incrementally: featurelake store.export("profile") (change data
feed), Feast materialize_incremental(end=now).
Also: bytes per item by DynamoDB's sizing rule (write units), both sides; peak RSS of the Python
driver during the export, both sides.
Correctness: every item of featurelake's table decodes to the newest offline row of its key
(brute force in pandas over the source files), after the full and after the incremental export;
Feast's online values for a sample of keys (changed keys included) equal the same rows.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from bench import dynamo, floor_writer
from bench.common import Context, Row, RssSampler, fmt, median
from bench.data import N_FEATURES

NAME = "3 export to DynamoDB"
GROUP, VIEW = "profile", "profile_fv"
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
TARGET_FLOOR = 1.3
TARGET_INCREMENTAL = 0.05
CHANGED_SHARE = 0.01
MATERIALIZE_START = "2023-12-01T00:00:00+00:00"


def source_dir(ctx: Context) -> Path:
    """The bench's own copy of the profile data: changes are appended to it, never to bench/data."""
    return ctx.work / "w3" / "profile"


def feast_views(ctx: Context) -> list[dict]:
    return [{"name": VIEW, "entities": [{"name": "customer", "join_keys": ["customer_id"]}],
             "path": str(prepare_source(ctx)), "features": FEATURES, "ttl_days": 0, "online": True}]


def prepare_source(ctx: Context) -> Path:
    target = source_dir(ctx)
    if not target.exists():
        shutil.copytree(ctx.data.path("profile"), target)
    return target


def ensure_loaded(ctx: Context) -> None:
    from bench.flside import load_offline

    if not ctx.store.offline(GROUP).exists():
        load_offline(ctx.store, GROUP, prepare_source(ctx))


# ---- the sides ----------------------------------------------------------------------------------

def featurelake_export(store: Any, full: bool) -> tuple[float, Any, int]:
    """(seconds, ExportResult, peak RSS added to this Python process during the export)."""
    with RssSampler([os.getpid()], children=False) as rss:
        start = rss.total()
        t0 = time.perf_counter()
        result = store.export(GROUP, full=full)
        seconds = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"featurelake export failed: {result.summary()}")
    return seconds, result, max(0, rss.peak - start)


def feast_materialize(feast: Any) -> dict:
    return feast.call("materialize", views=[VIEW], start=MATERIALIZE_START, end=datetime.now(timezone.utc).isoformat())


def feast_incremental(feast: Any) -> dict:
    return feast.call("materialize_incremental", views=[VIEW], end=datetime.now(timezone.utc).isoformat())


def dump_items(endpoint: str, table: str, path: Path) -> int:
    """featurelake's entity items (not its %meta / %lock items), one JSON item a line."""
    c = dynamo.client(endpoint)
    n = 0
    with open(path, "w") as f:
        for item in dynamo.scan(c, table):
            if item["pk"]["S"].startswith("%"):
                continue
            f.write(json.dumps(item) + "\n")
            n += 1
    return n


# ---- changes and checks -------------------------------------------------------------------------

def change_keys(ctx: Context, run: int) -> pd.DataFrame:
    """A newer row for 1% of the keys, appended to the source folder and merged offline."""
    from bench.flside import load_offline

    rng = np.random.default_rng(1000 + run)
    n = max(1, int(ctx.scale.export_keys * CHANGED_SHARE))
    keys = np.sort(rng.choice(ctx.scale.export_keys, size=n, replace=False)).astype(np.int64)
    now = pd.Timestamp(datetime.now(timezone.utc)).as_unit("us")
    frame = pd.DataFrame({"customer_id": keys,
                          "event_ts": pd.Series([now] * n).astype("datetime64[us, UTC]")})
    for f in FEATURES:
        frame[f] = rng.standard_normal(n)
    path = source_dir(ctx) / f"part-change-{run:03d}.parquet"
    frame.to_parquet(path, index=False, coerce_timestamps="us")
    load_offline(ctx.store, GROUP, path, run_id=f"bench-change-{run}")
    return frame


def expected_rows(ctx: Context) -> pd.DataFrame:
    from bench import oracle

    return oracle.newest(pd.read_parquet(source_dir(ctx)), ["customer_id"]).set_index("customer_id")


def check_featurelake_table(endpoint: str, table: str, expected: pd.DataFrame) -> dict:
    """Every entity item of the table against the expected newest rows (exact doubles)."""
    c = dynamo.client(endpoint)
    seen, wrong, examples = set(), 0, []
    exp = expected[FEATURES].to_dict("index")
    exp_ts = (expected["event_ts"].astype("int64") // 1000).to_dict()  # epoch ms, featurelake's _event_ts
    for item in dynamo.scan(c, table):
        pk = item["pk"]["S"]
        if pk.startswith("%"):
            continue
        key = int(pk)
        seen.add(key)
        want = exp.get(key)
        got = {f: float(item[f]["N"]) if f in item else None for f in FEATURES}
        ok = want is not None and all(got[f] == want[f] for f in FEATURES)
        ok = ok and int(float(item["_event_ts"]["N"])) == exp_ts[key]
        if not ok:
            wrong += 1
            if len(examples) < 3:
                examples.append({"key": key, "got": got, "want": want})
    missing = len(set(exp) - seen)
    return {"ok": not wrong and not missing, "items": len(seen), "wrong": wrong, "missing": missing,
            "examples": examples}


def check_feast_sample(feast: Any, expected: pd.DataFrame, keys: list) -> dict:
    got = feast.call("online_values", refs=[f"{VIEW}:{f}" for f in FEATURES], key="customer_id", keys=keys)["rows"]
    wrong = 0
    for i, k in enumerate(keys):
        want = expected.loc[k]
        if any(got[f][i] != want[f] for f in FEATURES):
            wrong += 1
    return {"ok": not wrong, "keys": len(keys), "wrong": wrong}


def describe(check: dict) -> str:
    if check.get("ok"):
        return f"equal ({check.get('items', check.get('keys'))} keys)"
    return f"DIFFERENT: {json.dumps(check, default=str)[:400]}"


def feast_item_sizes(endpoint: str, feast: Any, sample: int = 2000) -> dict:
    table = feast.call("table_names", views=[VIEW])["tables"][VIEW]
    return dynamo.size_stats(list(dynamo.scan(dynamo.client(endpoint), table, limit=sample)))


def fl_item_sizes(endpoint: str, table: str, sample: int = 2000) -> dict:
    items = [i for i in dynamo.scan(dynamo.client(endpoint), table, limit=sample + 2)
             if not i["pk"]["S"].startswith("%")]
    return dynamo.size_stats(items[:sample])


# ---- the workload --------------------------------------------------------------------------------

def ensure_exported(ctx: Context, feast: Any) -> None:
    """Workload 4 alone: the profile table exported by both sides (untimed)."""
    if ctx.state.get("profile_exported"):
        return
    ensure_loaded(ctx)
    featurelake_export(ctx.store, full=True)
    if feast is not None:
        feast_materialize(feast)
    ctx.state["profile_exported"] = True


def run(ctx: Context) -> list[Row]:
    log = ctx.log
    feast = ctx.feast() if ctx.feast else None
    endpoint = ctx.dynamodb_endpoint
    ensure_loaded(ctx)
    table = f"{ctx.store.config.online.dynamodb.table_prefix}{GROUP}"
    floor_table = f"{table}_floor"
    floor_writer.create_table(dynamo.client(endpoint), floor_table)
    items_path = ctx.work / "w3" / "items.jsonl"

    log("  warm-up (not counted): full export of each side")
    t, result, _ = featurelake_export(ctx.store, full=True)
    log(f"    featurelake: {fmt(t)} ({result.items_written:,} items)")
    if feast is not None:
        log(f"    feast: {fmt(feast_materialize(feast)['seconds'])}")
    n_items = dump_items(endpoint, table, items_path)
    expected = expected_rows(ctx)
    sample = [int(k) for k in np.random.default_rng(7).choice(expected.index.to_numpy(), size=min(100, len(expected)),
                                                               replace=False)]
    checks = {"full": check_featurelake_table(endpoint, table, expected)}
    log(f"    featurelake table vs newest offline rows: {describe(checks['full'])}")
    if feast is not None:
        checks["feast full"] = check_feast_sample(feast, expected, sample)
        log(f"    Feast online sample vs newest offline rows: {describe(checks['feast full'])}")

    log(f"  {ctx.runs} timed runs: full export (featurelake, Feast, floor), then 1% of the keys change and "
        f"both export incrementally")
    times: dict[str, list] = {"featurelake": [], "feast": [], "floor": [], "featurelake incremental": [],
                              "feast incremental": []}
    mem: dict[str, list] = {"featurelake": [], "feast": [], "featurelake incremental": []}
    results = []
    for i in range(ctx.runs):
        full_sides = ["featurelake", "feast", "floor"] if feast is not None else ["featurelake", "floor"]
        for side in (full_sides if i % 2 == 0 else full_sides[::-1]):
            if side == "featurelake":
                t, result, added = featurelake_export(ctx.store, full=True)
                mem["featurelake"].append(added)
                results.append(result)
            elif side == "feast":
                answer = feast_materialize(feast)
                t = answer["seconds"]
                mem["feast"].append(answer.get("rss_growth_python"))
            else:
                t, n = floor_writer.write(items_path, floor_table, endpoint)
                assert n == n_items
            times[side].append(t)
            log(f"    run {i + 1}/{ctx.runs} {side} full: {fmt(t)}")
        changed = change_keys(ctx, i)
        inc_sides = ["featurelake", "feast"] if feast is not None else ["featurelake"]
        for side in (inc_sides if i % 2 == 0 else inc_sides[::-1]):
            if side == "featurelake":
                t, result, added = featurelake_export(ctx.store, full=False)
                mem["featurelake incremental"].append(added)
                if result.mode != "incremental":
                    checks[f"incremental {i}"] = {"ok": False, "error": f"export ran as {result.mode}"}
                log(f"    run {i + 1}/{ctx.runs} featurelake incremental: {fmt(t)} ({result.items_written:,} items "
                    f"for {len(changed):,} changed keys)")
            else:
                t = feast_incremental(feast)["seconds"]
                log(f"    run {i + 1}/{ctx.runs} feast incremental: {fmt(t)}")
            times[f"{side} incremental"].append(t)
        if i == 0:
            expected = expected_rows(ctx)
            checks["incremental"] = check_featurelake_table(endpoint, table, expected)
            log(f"    featurelake table after the increment: {describe(checks['incremental'])}")
            if feast is not None:
                changed_keys = [int(k) for k in changed["customer_id"][:50]]
                checks["feast incremental"] = check_feast_sample(feast, expected, changed_keys + sample[:50])
                log(f"    Feast online sample after the increment: {describe(checks['feast incremental'])}")
    ctx.state["profile_exported"] = True

    fl_checks = {k: v for k, v in checks.items() if not k.startswith("feast")}
    correct = all(c["ok"] for c in fl_checks.values())
    feast_ok = all(c["ok"] for k, c in checks.items() if k.startswith("feast"))
    notes = [f"{k}: {describe(v)}" for k, v in checks.items()]
    fl_full = median(times["featurelake"])
    items_s = n_items / fl_full if fl_full else None
    floor_s = median(times["floor"])
    rows = [Row(NAME, f"full: {n_items:,} keys x {N_FEATURES} features", "floor: raw parallel BatchWriteItem",
                fl_full, floor_s, target=f"<= {TARGET_FLOOR}x", target_ratio=TARGET_FLOOR, correct=correct,
                notes=notes + [f"featurelake {items_s:,.0f} items/s, floor {n_items / floor_s:,.0f} items/s"
                               if items_s and floor_s else ""], runs=times)]
    if feast is not None:
        rows.append(Row(NAME, f"full: {n_items:,} keys x {N_FEATURES} features", "Feast 0.67 materialize", fl_full,
                        median(times["feast"]), target="(about 8x faster, given the floor)", correct=correct,
                        notes=[] if feast_ok else ["Feast's online values differ from the offline rows"]))
    rows.append(Row(NAME, f"incremental: {CHANGED_SHARE:.0%} of keys changed", "featurelake's own full export",
                    median(times["featurelake incremental"]), fl_full, target=f"<= {TARGET_INCREMENTAL}x",
                    target_ratio=TARGET_INCREMENTAL, correct=correct))
    if feast is not None:
        rows.append(Row(NAME, f"incremental: {CHANGED_SHARE:.0%} of keys changed", "Feast materialize_incremental",
                        median(times["featurelake incremental"]), median(times["feast incremental"]),
                        target="(info)", correct=correct))
        sizes_fl, sizes_feast = fl_item_sizes(endpoint, table), feast_item_sizes(endpoint, feast)
        last = results[-1] if results else None
        reported = last.bytes_written / last.items_written if last is not None and last.items_written else None
        rows.append(Row(NAME, "bytes per item (DynamoDB size rule)", "Feast's items", sizes_fl.get("mean_bytes"),
                        sizes_feast.get("mean_bytes"), unit="B", target="(info: write units)", correct=correct,
                        notes=[f"write units per item: featurelake {sizes_fl.get('write_units_per_item')}, "
                               f"Feast {sizes_feast.get('write_units_per_item')}",
                               f"featurelake's own count: {reported:.1f} B/item" if reported else ""]))
        rows.append(Row(NAME, "Python driver's RSS growth during a full export", "Feast's Python process",
                        _mb(median(mem["featurelake"])), _mb(median(mem["feast"])), unit="MB",
                        target="(info: flat in rows)", correct=correct,
                        notes=["peak minus start RSS of the Python process that called export / materialize, "
                               "sampled every 50 ms (featurelake builds items in the executors; Feast collects "
                               "the rows to its driver)"]))
    return rows


def _mb(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 2 ** 20
