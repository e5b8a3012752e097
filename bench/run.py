#!/usr/bin/env python3
"""featurelake's benchmarks against Feast 0.67 and against the floor (issue 7).

    .venv/bin/python bench/run.py --scale small            # `make bench SCALE=small`
    .venv/bin/python bench/run.py --scale medium --workloads 1,3 --runs 3
    .venv/bin/python bench/run.py --scale small --no-feast  # featurelake and the floors only

Generates the data (bench/data/<scale>/, once), starts dynalite on a free port, builds
featurelake's store (its Spark: local[2], 8 shuffle partitions) and Feast's (in
bench/.venv-feast, created when missing), runs each workload's sides alternately, checks
featurelake's output before reporting a time, prints one table and the machine line, and writes
bench/results/<scale>-<timestamp>.json and the scale's section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from bench import report  # noqa: E402
from bench.common import Context, Row, machine, machine_line  # noqa: E402
from bench.data import Data  # noqa: E402
from bench.scales import SCALES  # noqa: E402

WORKLOADS = {1: "w1_training", 2: "w2_windows", 3: "w3_export", 4: "w4_online", 5: "w5_ingest", 6: "w6_stream"}
DATASETS = {1: ["spine", "cust", "merch", "pair"], 2: ["spine", "txn", "txn2x"], 3: ["profile"],
            4: ["profile", "wide"], 5: ["ingest", "ingest_bad"], 6: []}


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--workloads", default="1,2,3,4,5,6", help="comma-separated, of 1..6 (default all)")
    p.add_argument("--runs", type=int, help="timed runs per measurement (default: the scale's, 3)")
    p.add_argument("--no-feast", action="store_true", help="skip Feast (featurelake against the floors only)")
    p.add_argument("--variants", action=argparse.BooleanOptionalAction, default=None,
                   help="workload 1's 3-group and 4x cases, workload 2's 2x history (default: on below medium)")
    p.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=None,
                   help="brute-force oracle checks in pandas (default: on below medium)")
    p.add_argument("--driver-memory", help="both sides' Spark driver memory (default: the scale's; 8g at medium)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (outputs, lakes)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    scale = SCALES[args.scale]
    if args.driver_memory:
        from dataclasses import replace
        scale = replace(scale, driver_memory=args.driver_memory)
    selected = [int(w) for w in args.workloads.split(",") if w.strip()]
    small = scale.name != "medium"
    variants = small if args.variants is None else args.variants
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    import importlib

    import services

    from bench import flside
    from bench.feast_client import FeastSide, ensure_venv, spark_conf

    started = datetime.now(timezone.utc)
    m = machine()
    log(f"featurelake bench, scale {scale.name}, workloads {selected}; {machine_line(m)}")
    data = Data(scale)
    data4 = Data(scale, root=data.root, factor=4) if variants and 1 in selected else None
    t0 = time.perf_counter()
    for w in selected:
        for name in DATASETS[w]:
            data.path(name)
    if data4:
        data4.path("spine"), data4.path("cust")
    log(f"data ready under {data.root} ({time.perf_counter() - t0:.1f}s)")
    if not args.no_feast:
        ensure_venv(log)

    work = data.root / f"work-{started:%Y%m%dT%H%M%S}"
    work.mkdir(parents=True)
    dynalite = services.start_dynalite(log=work / "dynalite.log")
    log(f"dynalite at {dynalite.url}")
    feast_side = None
    rows: list[Row] = []
    try:
        spark = flside.spark_session(scale)
        m["spark"] = spark.version
        conf, repo = flside.write_project(work / "project", data, dynalite.url, extra=data4)
        store = flside.open_store(conf, repo, spark)
        ctx = Context(scale=scale, data=data, work=work, spark=spark, store=store, dynamodb_endpoint=dynalite.url,
                      runs=args.runs or scale.runs, check_oracle=small if args.oracle is None else args.oracle,
                      variants=variants, log=log)
        modules = {w: importlib.import_module(f"bench.workloads.{WORKLOADS[w]}") for w in selected}

        def feast():
            nonlocal feast_side
            if feast_side is None:
                log("  starting Feast's side (bench/.venv-feast)")
                feast_side = FeastSide(work / "feast" / "feast_side.log")
                views = []
                if 1 in selected:
                    views += modules[1].feast_views(data, data4)
                if 3 in selected or 4 in selected:
                    from bench.workloads import w3_export
                    views += w3_export.feast_views(ctx)
                if 4 in selected:
                    views += modules[4].feast_views(ctx)
                feast_side.call("setup", dir=str(work / "feast" / "repo"), dynamodb_endpoint=dynalite.url,
                                spark_conf=spark_conf(scale.driver_memory), views=views)
                m["feast"] = feast_side.call("versions")
            return feast_side

        ctx.feast = None if args.no_feast else feast
        for w in selected:
            log(f"workload {w}: {WORKLOADS[w]}")
            t1 = time.perf_counter()
            try:
                rows += modules[w].run(ctx)
            except Exception as exc:  # one workload's failure must not hide the others' results
                traceback.print_exc()
                rows.append(Row(getattr(modules[w], "NAME", str(w)), "-", "-", None, None,
                                error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
            log(f"workload {w} done in {time.perf_counter() - t1:.0f}s")
    finally:
        if feast_side is not None:
            feast_side.close()
        dynalite.stop()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    finished = datetime.now(timezone.utc)
    m["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    meta = {"scale": scale.to_dict(), "workloads": selected, "runs": args.runs or scale.runs, "variants": variants,
            "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
            "duration_s": (finished - started).total_seconds(), "driver_memory": scale.driver_memory,
            "feast": not args.no_feast}
    name = f"{scale.name}-{started:%Y%m%dT%H%M%S}.json"
    if scale.name != "tiny":  # tiny is the test suite's scale, not a result
        report.write_json(BENCH / "results" / name, {"meta": meta, "machine": m, "rows": [r.to_dict() for r in rows]})
        report.update_results_md(scale.name, rows, m, meta, name)
    print()
    print(report.console_table(rows))
    print()
    print(f"machine: {machine_line(m)}; load average {m['load_avg_end'][0]:.1f} at the end")
    print(f"results: bench/results/{name}; summary: bench/RESULTS.md ({(finished - started).total_seconds():.0f}s)")
    bad = [r for r in rows if r.verdict in ("FAIL (wrong)", "ERROR")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
