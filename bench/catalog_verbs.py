"""`featurelake catalog list/show/search/lineage/usage` as whole processes, as a user runs them:
median wall time of N runs each, read through delta-rs (no JVM) and with FEATURELAKE_READER=spark
(the old path: a SparkSession and Delta), and their ratio. Target: at most 1.5 s each.

    python -m bench.catalog_verbs                       # the demo's lake if built, else a small one
    python -m bench.catalog_verbs --conf conf/local.yaml --repo features --group customer_txn
    python -m bench.catalog_verbs --lake /tmp/lake --runs 3 --spark-runs 1

The small lake (built once with Spark under --lake, default a temporary folder): two groups
applied, three offline versions, runs, an export, a training set and its audit rows."""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
customer_txn = FeatureGroup(
    "customer_txn", entity=customer, timestamp_column="ts",
    source=S3Source("txn_files", path="s3a://bucket/txn/", format="parquet"),
    features=[Feature("amount", "double", description="paid amount"), Feature("channel", "string")],
    aggregations=[Aggregation("amount", ["sum", "count"], windows=["7d", "30d"])],
    online=True, freshness_sla="1d", owner="risk-team")
customer_sessions = FeatureGroup(
    "customer_sessions", entity=customer, timestamp_column="ts",
    source=S3Source("session_files", path="s3a://bucket/sessions/", format="json"),
    features=[Feature("seconds", "double")], freshness_sla="1h", owner="growth-team")
'''


def build_lake(folder: Path) -> tuple[Path, Path]:
    """Writes the small lake with Spark (once); returns (config file, repository)."""
    conf, repo = folder / "conf.yaml", folder / "features"
    if (folder / "lake" / "_catalog" / "usage").exists():
        return conf, repo
    from featurelake.store import FeatureStore

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "groups.py").write_text(REPO)
    conf.write_text(f"project: bench\nstorage:\n  root: {folder / 'lake'}\nspark:\n  master: local[2]\n"
                    "monitoring:\n  statistics: false\n")
    store = FeatureStore.from_config(conf, repo=repo)
    store.apply()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    spark, runs = store.spark, []
    for k in range(3):
        rows = [(i, now - timedelta(hours=k * 24 + i % 24), float(i), ["web", "app"][i % 2]) for i in range(200)]
        version = store.offline("customer_txn").merge(
            spark.createDataFrame(rows, "customer_id bigint, ts timestamp, amount double, channel string"), f"run-{k}")
        runs.append(dict(run_id=f"run-{k}", group="customer_txn", group_version=1, kind="ingest", status="succeeded",
                         started_at=now, ended_at=now, rows_written=200, delta_version=version, user="etl"))
    store.catalog.append("runs", runs)
    store.catalog.record("exports", export_id="exp-1", group="customer_txn", group_version=1, to_version=2,
                         as_of=now, items_written=200, status="succeeded", table_name="bench_customer_txn",
                         started_at=now, user="etl")
    store.catalog.record("training_sets", id="ts-1", created_at=now, user="ana", spine_rows=10,
                         features=["customer_txn:amount_sum_7d"], table_versions={"customer_txn": 2})
    store.catalog.audit("training_set", "customer_txn", {"features": ["customer_txn:amount_sum_7d"], "id": "ts-1"})
    spark.stop()
    return conf, repo


def timed(argv: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conf", help="an existing lake's config (default: the demo's, else a small lake)")
    p.add_argument("--repo", default="features")
    p.add_argument("--group", help="the group to show, search and trace (default customer_txn)")
    p.add_argument("--lake", help="where to build the small lake (kept for the next run)")
    p.add_argument("--runs", type=int, default=3, help="runs per verb without a JVM (median)")
    p.add_argument("--spark-runs", type=int, default=3, help="runs per verb with FEATURELAKE_READER=spark; 0 skips")
    args = p.parse_args()
    demo = ROOT / ".featurelake" / "lake" / "_catalog"
    if args.conf:
        conf, repo = Path(args.conf).resolve(), Path(args.repo).resolve()
    elif demo.exists():
        conf, repo = ROOT / "conf" / "local.yaml", ROOT / "features"
    else:
        conf, repo = build_lake(Path(args.lake or tempfile.mkdtemp(prefix="catalog-verbs-")).resolve())
    group = args.group or "customer_txn"
    verbs = [["list"], ["show", group], ["search", "amount"], ["lineage", group], ["usage", group]]
    pythonpath = [str(ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    env.pop("FEATURELAKE_READER", None)
    cli = [sys.executable, "-m", "featurelake.cli", "--conf", str(conf), "--repo", str(repo), "-q", "catalog"]
    print(f"lake: {conf}; median of {args.runs} (delta-rs) and {args.spark_runs} (Spark) whole processes")
    print(f"{'verb':<28} {'delta-rs s':>10} {'spark s':>9} {'ratio':>7}  target <= 1.5 s")
    worst = 0.0
    for verb in verbs:
        fast = statistics.median(timed(cli + verb, env, ROOT) for _ in range(args.runs))
        slow = statistics.median(timed(cli + verb, {**env, "FEATURELAKE_READER": "spark"}, ROOT)
                                 for _ in range(args.spark_runs)) if args.spark_runs else None
        worst = max(worst, fast)
        print(f"{'catalog ' + ' '.join(verb):<28} {fast:>10.2f} " + (f"{slow:>9.2f} {fast / slow:>7.3f}" if slow else
                                                                     f"{'-':>9} {'-':>7}")
              + ("  ok" if fast <= 1.5 else "  OVER"))
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
