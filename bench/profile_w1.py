#!/usr/bin/env python3
"""Where workload 1's (or 2's) time goes: featurelake's training set on the bench data, phase by
phase, beside the floor, in one Spark session and without Feast's process. Measures, changes nothing.

    .venv/bin/python bench/profile_w1.py --scale medium --runs 2
    .venv/bin/python bench/profile_w1.py --scale medium --runs 2 --group txn   # workload 2

Phases: the floor (read, shuffle, sort, no output; for workload 2 the range join, written); building
the set (spine copy and catalogue commits, timed inside); the point-in-time rows with no output and
written to parquet; the statistics a written set records (batch_statistics on the written file);
then TrainingSet.write as a user calls it (the rows, their statistics and the statistics' commit).
The last run's figures are the warm ones.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "scripts")]

from bench import flside  # noqa: E402
from bench.data import Data  # noqa: E402
from bench.scales import SCALES  # noqa: E402
from bench.workloads.w1_training import GROUPS, features, floor_side  # noqa: E402
from bench.workloads.w2_windows import baseline_side  # noqa: E402


def timed(owner: object, name: str, spent: dict) -> None:
    """Wraps owner.name so that its seconds add up in spent[name]."""
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
    setattr(owner, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--group", choices=["cust", "merch", "pair", "txn"], default="cust")
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    from featurelake import catalog, localset, training, trainingset
    from featurelake.monitoring import stats

    scale, group = SCALES[args.scale], args.group
    data = Data(scale)
    work = Path(tempfile.mkdtemp(prefix="fl-profile-"))
    conf, repo = flside.write_project(work, data, None)
    spark = flside.spark_session(scale)
    store = flside.open_store(conf, repo, spark)
    windows = group == "txn"
    source = data.path("txn" if windows else GROUPS[group][0])
    flside.load_offline(store, group, source)
    refs, columns = ([f"txn:{f}" for f in flside.AGG_FEATURES], flside.AGG_FEATURES) if windows else \
        ([f"{group}:*"], features(group))
    spent: dict = {}
    for owner, name in ((training, "copy_spine"), (catalog.Catalog, "add"), (training, "_audit"),
                        (catalog.Catalog, "version_of"), (training, "_versions"), (localset, "collect_spine"),
                        (localset, "read_group"), (localset, "point_in_time"), (localset, "write_copy"),
                        (localset, "spine_stats"), (localset, "open_tables"), (stats, "table_statistics"),
                        (trainingset.TrainingSet, "_write_local")):
        timed(owner, name, spent)
    spine, noop = data.path("spine"), lambda df: df.write.format("noop").mode("overwrite").save()
    for run in range(1, args.runs + 1):
        spent.clear()
        floor = baseline_side(spark, spine, source, work / "range_join") if windows else \
            floor_side(spark, spine, [(source, GROUPS[group][1])])
        t0 = time.perf_counter()
        ts = store.training_set(spark.read.parquet(str(spine)), features=refs, timestamp_column="event_ts")
        build = time.perf_counter() - t0
        inside = ", ".join(f"{k} {v:.2f}" for k, v in spent.items())
        spent.clear()
        if ts.local_rows() is None:  # the Spark engine's phases
            t0 = time.perf_counter()
            noop(ts.ordered())
            rows = time.perf_counter() - t0
            out = str(work / f"out{run}")
            t0 = time.perf_counter()
            ts.ordered().write.parquet(out)
            written = time.perf_counter() - t0
            t0 = time.perf_counter()
            stats.batch_statistics(spark.read.parquet(out), columns=columns)
            described = time.perf_counter() - t0
            phases = (f"point-in-time rows, no output {rows:.2f} s | written to parquet {written:.2f} s | "
                      f"statistics of the written set {described:.2f} s")
        else:
            phases = "built on the driver"
        t0 = time.perf_counter()
        ts.write(work / f"set{run}")
        whole = time.perf_counter() - t0
        writing = ", ".join(f"{k} {v:.2f}" for k, v in spent.items())
        print(f"run {run}: floor {floor:.2f} s | build {build:.2f} s ({inside}) | {phases} "
              f"| TrainingSet.write, rows and statistics {whole:.2f} s ({writing})", flush=True)


if __name__ == "__main__":
    main()
