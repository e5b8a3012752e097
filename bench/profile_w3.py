#!/usr/bin/env python3
"""Where workload 3's time goes: featurelake's export of the bench's profile group, phase by phase
(ExportResult.timings), with the CPU seconds each process took (dynalite, Spark's JVM, its Python
workers), beside the floor, in one process and without Feast's. Measures, changes nothing.

    .venv/bin/python bench/profile_w3.py --scale medium --runs 2

Prints, per run: the full export and its phases; the newest rows alone (computed, not written);
the floor (the same items by raw parallel BatchWriteItem); an incremental export after 1% of the
keys change. The last run's figures are the warm ones.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "scripts")]

from bench import dynamo, flside, floor_writer  # noqa: E402
from bench.common import Context  # noqa: E402
from bench.data import Data  # noqa: E402
from bench.scales import SCALES  # noqa: E402
from bench.workloads import w3_export as w3  # noqa: E402


def cpu_seconds() -> dict:
    """CPU seconds so far of dynalite (node), Spark's JVM and Spark's Python workers (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict = {}
    for proc in (Path("/proc") / name for name in os.listdir("/proc") if name.isdigit()):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = ("dynalite" if "dynalite" in cmd else "jvm" if "java" in cmd.split(" ")[0]
                else "python workers" if "pyspark" in cmd else None)
        if kind:  # utime and stime: fields 14 and 15 of stat, 12 and 13 after the command's name
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def spent(before: dict) -> str:
    after = cpu_seconds()
    return ", ".join(f"{k} {after[k] - before.get(k, 0.0):.1f}" for k in sorted(after))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    import services
    from featurelake.online.snapshot import export_frame, online_features

    scale = SCALES[args.scale]
    work = Path(tempfile.mkdtemp(prefix="fl-profile-w3-"))
    dyn = services.start_dynalite(log=work / "dynalite.log")
    try:
        data = Data(scale)
        conf, repo = flside.write_project(work / "project", data, dyn.url)
        spark = flside.spark_session(scale)
        store = flside.open_store(conf, repo, spark)
        ctx = Context(scale=scale, data=data, work=work, spark=spark, store=store, dynamodb_endpoint=dyn.url,
                      runs=args.runs)
        w3.ensure_loaded(ctx)
        table = f"{store.config.online.dynamodb.table_prefix}{w3.GROUP}"
        group, offline = store.group(w3.GROUP), store.offline(w3.GROUP)
        features, _ = online_features(group)
        items = work / "items.jsonl"
        for run in range(1, args.runs + 1):
            before = cpu_seconds()
            seconds, result, _ = w3.featurelake_export(store, full=True)
            print(f"run {run}: full export {seconds:.2f} s, {result.items_written:,} items; phases {result.timings}; "
                  f"CPU s: {spent(before)}", flush=True)
            t0 = time.perf_counter()
            export_frame(offline, group, features, version=offline.version(), end=datetime.now(timezone.utc),
                         since=None).write.format("noop").mode("overwrite").save()
            print(f"run {run}: the newest rows alone, not written {time.perf_counter() - t0:.2f} s", flush=True)
            if run == 1:
                w3.dump_items(dyn.url, table, items)
                floor_writer.create_table(dynamo.client(dyn.url), f"{table}_floor")
            before = cpu_seconds()
            seconds, n = floor_writer.write(items, f"{table}_floor", dyn.url)
            print(f"run {run}: floor {seconds:.2f} s, {n:,} items; CPU s: {spent(before)}", flush=True)
            w3.change_keys(ctx, run)
            seconds, result, _ = w3.featurelake_export(store, full=False)
            print(f"run {run}: {result.mode} export {seconds:.2f} s, {result.items_written:,} items; phases "
                  f"{result.timings}", flush=True)
        check = w3.check_featurelake_table(dyn.url, table, w3.expected_rows(ctx))
        print(f"online table vs the newest offline rows: {w3.describe(check)}")
    finally:
        dyn.stop()


if __name__ == "__main__":
    main()
