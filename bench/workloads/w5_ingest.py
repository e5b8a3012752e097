"""Workload 5: ingest with validation.

featurelake   store.ingest("ing_v"): parquet files -> contract -> 10-expectation suite -> Delta
baseline      store.ingest("ing_nv"): the same files and group, without a suite
Each run ingests into a fresh lake (an ingest reads only new files), both groups in the same
lake, alternating which goes first. Target: validation adds at most 50% (ratio <= 1.5).
Correctness: both write every source row (count and sums of the offline table equal the
source's); the validated run recorded 10 evaluated expectations, all passed; and a batch that
breaks two expectations is quarantined, not written (a validation that validates nothing would
be fast and wrong).
"""
from __future__ import annotations

import json
import time
from typing import Any

from bench.common import Context, Row, fmt, median
from bench.flside import SUITE_SIZE, open_store, write_project

NAME = "5 ingest with validation"
TARGET = 1.5


def fresh_store(ctx: Context, tag: str) -> Any:
    conf, repo = write_project(ctx.work / "w5" / tag, ctx.data, None)
    return open_store(conf, repo, ctx.spark)


def ingest(store: Any, group: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = store.ingest(group)
    return time.perf_counter() - t0, result


def check_written(store: Any, group: str, source: Any) -> dict:
    from pyspark.sql import functions as F

    table = store.read_offline(group)
    agg = [F.count(F.lit(1)).alias("n"), F.sum("amount").alias("amount"), F.sum("txn_id").alias("ids"),
           F.sum("n_items").alias("items")]
    got, want = table.agg(*agg).first().asDict(), source.agg(*agg).first().asDict()
    return {"ok": got == want, "offline": got, "source": want}


def check_validation(store: Any, run_id: str, expect_success: bool = True) -> dict:
    rows = store.catalog.rows("runs", where=f"run_id = '{run_id}'")
    if not rows or not rows[0].get("validation"):
        return {"ok": False, "error": "no validation recorded for the run (was the suite run at all?)"}
    batches = json.loads(rows[0]["validation"])
    evaluated = [b.get("statistics", {}).get("evaluated_expectations") for b in batches]
    success = all(b.get("success") for b in batches)
    ok = all(e == SUITE_SIZE for e in evaluated) and success == expect_success
    return {"ok": ok, "batches": len(batches), "evaluated": evaluated, "success": success,
            "engines": [b.get("statistics", {}).get("engines") for b in batches]}


def check_bad_batch(ctx: Context) -> dict:
    """The suite must catch a broken batch: it is quarantined, nothing reaches the offline table."""
    ctx.data.path("ingest_bad")  # generated on first use
    store = fresh_store(ctx, "bad")
    _, result = ingest(store, "ing_bad")
    written = store.offline("ing_bad").exists() and store.read_offline("ing_bad").count() > 0
    failed = sorted({f.get("expectation", "?") for f in result.failures if isinstance(f, dict)})
    ok = result.status == "quarantined" and not written and len(failed) == 2
    return {"ok": ok, "status": result.status, "quarantined": result.rows_quarantined, "written": written,
            "failed_expectations": failed}


def run(ctx: Context) -> list[Row]:
    import importlib.util

    log, s = ctx.log, ctx.scale
    if importlib.util.find_spec("featurelake.validation") is None:
        return [Row(NAME, f"{s.ingest_rows:,} rows, 10 expectations", "the same ingest without validation", None,
                    None, target=f"<= {TARGET}x", target_ratio=TARGET,
                    notes=["featurelake.validation is missing: the ingest would pass every batch unchecked"])]
    source = ctx.spark.read.parquet(str(ctx.data.path("ingest")))
    times: dict[str, list] = {"validation": [], "no validation": []}
    checks: dict[str, dict] = {}
    log(f"  1 warm-up run + {ctx.runs} timed runs, each into a fresh lake")
    for i in range(ctx.runs + 1):
        store = fresh_store(ctx, f"run{i}")
        sides = [("validation", "ing_v"), ("no validation", "ing_nv")]
        for name, group in (sides if i % 2 == 0 else sides[::-1]):
            t, result = ingest(store, group)
            if not result.ok or result.rows_written != s.ingest_rows:
                checks[f"run {i} {name}"] = {"ok": False, "status": result.status, "rows_written": result.rows_written,
                                             "error": result.error}
            if i == 0:
                checks[f"{name}: rows"] = check_written(store, group, source)
                if group == "ing_v":
                    checks["suite"] = check_validation(store, result.run_id)
            else:
                times[name].append(t)
            log(f"    {'warm-up' if i == 0 else f'run {i}/{ctx.runs}'} {name}: {fmt(t)} "
                f"({result.rows_written:,} rows written, {result.status})")
    checks["bad batch"] = check_bad_batch(ctx)
    for k, v in checks.items():
        details = json.dumps({x: y for x, y in v.items() if x != 'ok'}, default=str)[:300]
        log(f"    check {k}: {'ok' if v['ok'] else 'FAILED'} {details}")
    correct = all(v["ok"] for v in checks.values())
    return [Row(NAME, f"{s.ingest_rows:,} rows, 10 expectations", "the same ingest without validation",
                median(times["validation"]), median(times["no validation"]), target=f"<= {TARGET}x (adds <= 50%)",
                target_ratio=TARGET, correct=correct,
                notes=[f"{k}: {'ok' if v['ok'] else 'FAILED ' + json.dumps(v, default=str)[:300]}"
                       for k, v in checks.items()], runs=times)]
