#!/usr/bin/env python3
"""Workload 1's fixed costs, this code against another git revision's, taking turns in one Spark
session (on a shared machine, only turns in one process compare): building a training set
(training.build_training_set) and a written set's statistics (monitoring.stats.batch_statistics).
Measures, changes nothing; checks first that both revisions give the same statistics.

    .venv/bin/python bench/probe_w1_against.py --scale small --against HEAD~1 --runs 11

The set is workload 1's (one group). Each revision's module is imported from `git show`, beside
this code's other modules; statistics are asked for as TrainingSet.write asks (the row count
known) where the revision takes the row count.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "scripts")]

from bench import flside  # noqa: E402
from bench.data import Data  # noqa: E402
from bench.scales import SCALES  # noqa: E402


def module_at(revision: str, source: str, work: Path):
    """A module's file as it was at revision, imported under another name."""
    text = subprocess.run(["git", "-C", str(BENCH.parent), "show", f"{revision}:{source}"],
                          check=True, capture_output=True, text=True).stdout
    name = Path(source).stem + "_then"
    path = work / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--against", default="HEAD~1", help="the git revision to compare with")
    p.add_argument("--runs", type=int, default=11)
    args = p.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    from featurelake import training
    from featurelake.monitoring import stats as now

    data = Data(SCALES[args.scale])
    work = Path(tempfile.mkdtemp(prefix="fl-probe-w1-"))
    then, training_then = (module_at(args.against, f"featurelake/{m}.py", work)
                           for m in ("monitoring/stats", "training"))
    conf, repo = flside.write_project(work, data, None)
    spark = flside.spark_session(SCALES[args.scale])
    store = flside.open_store(conf, repo, spark)
    flside.load_offline(store, "cust", data.path("cust"))
    spine = spark.read.parquet(str(data.path("spine")))
    ts = store.training_set(spine, features=["cust:*"], timestamp_column="event_ts")
    out = str(work / "written")
    ts.ordered().write.parquet(out)
    written, columns = spark.read.parquet(out), [c for c in ts.columns if c not in spine.columns]
    known = {"rows": int(ts.manifest["spine_rows"])}
    takes_rows = "rows" in inspect.signature(then.batch_statistics).parameters
    sides = {f"statistics at {args.against}": lambda: then.batch_statistics(
                 written, columns=columns, **(known if takes_rows else {})),
             "statistics, this code": lambda: now.batch_statistics(written, columns=columns, **known),
             f"build at {args.against}": lambda: training_then.build_training_set(
                 store, spine, ["cust:*"], timestamp_column="event_ts"),
             "build, this code": lambda: training.build_training_set(store, spine, ["cust:*"],
                                                                     timestamp_column="event_ts")}
    first = [side() for side in list(sides.values())[:2]]
    assert first[0] == first[1], "the two revisions give different statistics"
    for side in list(sides.values())[2:]:
        side()
    spent: dict = {name: [] for name in sides}
    for _ in range(args.runs):
        for name, side in sides.items():
            t0 = time.perf_counter()
            side()
            spent[name].append(time.perf_counter() - t0)
    for name, times in spent.items():
        print(f"{name}: median {statistics.median(times):.3f} s ({', '.join(f'{t:.2f}' for t in times)})",
              flush=True)


if __name__ == "__main__":
    main()
