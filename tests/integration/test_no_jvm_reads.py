"""The read verbs without a JVM: a lake written by Spark (catalogue, offline table, runs, an
export, a training set and its audit rows), then each read verb run as a separate process in
which `import pyspark` fails. Its JSON must equal what the Spark reader printed in this process
(FEATURELAKE_READER=spark), on a local path and on S3 (moto)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import write_config
from featurelake.cli import main

ROOT = Path(__file__).resolve().parents[2]
REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
payments = FeatureGroup(
    "payments", entity=customer, timestamp_column="ts",
    source=S3Source("payment_files", path="s3a://bucket/payments/", format="parquet"),
    features=[Feature("amount", "double", description="paid amount"), Feature("channel", "string")],
    aggregations=[Aggregation("amount", ["sum"], windows=["7d"])],
    online=True, freshness_sla="1d", owner="risk-team", tags={"domain": "risk"})
sessions = FeatureGroup(
    "sessions", entity=customer, timestamp_column="ts",
    source=S3Source("session_files", path="s3a://bucket/sessions/", format="json"),
    features=[Feature("seconds", "double")], freshness_sla="1h", owner="growth-team")
'''
NOW = datetime.now(timezone.utc).replace(microsecond=0)
# No pyspark in the process: any import of it (or of delta-spark, which imports it) fails.
NO_SPARK = "import sys; sys.modules['pyspark'] = None; from featurelake.cli import main; sys.exit(main())"
VERBS = [["catalog", "list"], ["catalog", "show", "payments"], ["catalog", "search", "amount"],
         ["catalog", "history", "payments"], ["catalog", "lineage", "payments"],
         ["catalog", "lineage", "payments:amount"], ["catalog", "usage", "payments"],
         ["catalog", "usage", "payments:channel"], ["monitor", "freshness", "--all"]]


def build_lake(spark, tmp: Path, **sections: str) -> list[str]:
    """Writes the lake with Spark; returns the CLI's global options for it."""
    from featurelake.records import Export, TrainingSetManifest
    from featurelake.store import FeatureStore

    repo = tmp / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(REPO)
    conf = write_config(tmp, **sections)
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    rows = [(i % 5, NOW - timedelta(hours=2 + i), float(i), ["web", "app"][i % 2]) for i in range(10)]
    versions = []
    for k in range(2):
        df = spark.createDataFrame(rows[k * 5:(k + 1) * 5], "customer_id bigint, ts timestamp, amount double, "
                                                            "channel string")
        versions.append(store.offline("payments").merge(df, f"run-{k}"))
    store.catalog.append("runs", [
        dict(run_id=f"run-{k}", group="payments", group_version=1, kind="ingest", status=status,
             started_at=NOW - timedelta(hours=3 - k), ended_at=NOW - timedelta(hours=2 - k), rows_written=5,
             delta_version=v, user="etl") for k, (v, status) in enumerate(zip(versions, ["succeeded", "warned"]))]
        + [dict(run_id="run-x", group="payments", group_version=1, kind="ingest", status="failed",
                started_at=NOW, ended_at=None, error="source down")])
    store.catalog.add(Export(export_id="exp-1", group="payments", group_version=1, from_version=None,
                             to_version=versions[-1], as_of=NOW, rows=5, items_written=5, status="succeeded",
                             table_name="featurelake_payments", started_at=NOW, user="etl"))
    store.catalog.add(TrainingSetManifest(id="ts-1", created_at=NOW, user="ana", spine_fingerprint="f", spine_rows=3,
                                          timestamp_column="event_ts", features=["payments:amount_sum_7d"],
                                          group_versions={"payments": 1}, table_versions={"payments": versions[-1]}))
    store.catalog.audit_many("training_set", [("payments", {"features": ["payments:amount_sum_7d"], "id": "ts-1"}),
                                              ("ts-1", None)])
    store.catalog.audit("export", "payments", {"export_id": "exp-1"})
    return ["--conf", str(conf), "--repo", str(repo), "--json"]


def spark_path(capsys, monkeypatch, options: list[str], verb: list[str]) -> tuple[int, object]:
    """The verb in this process, read with Spark (the session of the tests)."""
    monkeypatch.setenv("FEATURELAKE_READER", "spark")
    code = main(options + verb)
    monkeypatch.delenv("FEATURELAKE_READER")
    return code, json.loads(capsys.readouterr().out)


def no_jvm(options: list[str], verb: list[str], cwd: Path) -> tuple[int, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAKE_READER", None)
    env.pop("PYSPARK_GATEWAY_PORT", None)  # the tests' JVM is not this process's to reuse
    done = subprocess.run([sys.executable, "-c", NO_SPARK] + options + verb, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def comparable(verb: list[str], payload: object) -> object:
    """Drops what differs between two runs by design: the time a report was made and the lag
    it measured, and a commit's timestamp (Spark shows the log file's time, delta-rs the
    writer's commit time, milliseconds apart)."""
    if verb[0] == "monitor":
        payload = {k: v for k, v in payload.items() if k != "generated_at"}
        payload["results"] = [{k: v for k, v in r.items() if k != "lag_seconds"} for r in payload["results"]]
    if verb[1] == "history":
        payload = [{k: v for k, v in r.items() if k != "timestamp"} for r in payload]
    return payload


def assert_same_without_jvm(options, verbs, tmp_path, capsys, monkeypatch):
    for verb in verbs:
        code, expected = spark_path(capsys, monkeypatch, options, verb)
        got_code, got = no_jvm(options, verb, tmp_path)
        assert (got_code, comparable(verb, got)) == (code, comparable(verb, expected)), verb
        if verb[1] == "history":
            for a, b in zip(got, expected):
                gap = abs(datetime.fromisoformat(a["timestamp"]) - datetime.fromisoformat(b["timestamp"]))
                assert gap < timedelta(seconds=5), (a, b)


@pytest.fixture(scope="module")
def local_lake(spark, tmp_path_factory) -> tuple[list[str], Path]:
    tmp = tmp_path_factory.mktemp("nojvm")
    return build_lake(spark, tmp), tmp


def test_read_verbs_run_without_pyspark_and_print_what_spark_read(local_lake, capsys, monkeypatch):
    options, tmp = local_lake
    assert_same_without_jvm(options, VERBS, tmp, capsys, monkeypatch)
    # the payloads are not trivially equal: the lake's contents came through
    _, lineage = no_jvm(options, ["catalog", "lineage", "payments:amount"], tmp)
    assert [t["id"] for t in lineage["training_sets"]] == ["ts-1"] and lineage["runs"][0]["succeeded"] == 2
    code, fresh = no_jvm(options, ["monitor", "freshness", "--all"], tmp)
    assert code == 1 and [r["status"] for r in fresh["results"]] == ["fresh", "late"]


def test_an_unknown_group_is_a_clear_error_without_pyspark(local_lake):
    options, tmp = local_lake
    for verb in (["catalog", "show", "paymnts"], ["catalog", "history", "paymnts"]):
        done = subprocess.run([sys.executable, "-c", NO_SPARK] + options + verb, cwd=tmp,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "'paymnts'" in done.stderr and "did you mean 'payments'" in done.stderr.lower(), done.stderr


def build_s3_lake(spark, s3_endpoint: str, dynamodb_endpoint: str, tmp: Path) -> tuple[list[str], str]:
    """build_lake on a new bucket of the test S3 server, written by Spark under the commit lease
    that a lake on S3 takes in DynamoDB (featurelake.commitlock); -> (CLI options, bucket)."""
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    options = build_lake(spark, tmp, storage=f"storage:\n  root: s3a://{bucket}/lake",
                         s3=f"s3:\n  endpoint_url: {s3_endpoint}\n  path_style: true\n  region: us-east-1",
                         online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
                                f"    table_prefix: t{uuid.uuid4().hex[:8]}_")
    return options, bucket


def test_read_verbs_on_s3_run_without_pyspark(spark, s3_endpoint, dynamodb_endpoint, tmp_path, capsys, monkeypatch):
    options, _ = build_s3_lake(spark, s3_endpoint, dynamodb_endpoint, tmp_path)
    verbs = [["catalog", "list"], ["catalog", "history", "payments"], ["catalog", "lineage", "payments"],
             ["monitor", "freshness", "--all"]]
    assert_same_without_jvm(options, verbs, tmp_path, capsys, monkeypatch)


def test_a_training_set_on_s3_reads_its_new_spine_copy_from_the_files_delta_rs_lists(spark, s3_endpoint,
                                                                                    dynamodb_endpoint, tmp_path,
                                                                                    monkeypatch):
    """The Spark engine reads the copy just written as the parquet files of its one commit (no
    Delta state to build); a replay reads it as Delta, and so does a build where delta-rs cannot
    list the files. The driver engine writes its copy to S3 with delta-rs, reads the table there,
    and Spark reads that copy. All give the spine's rows the same features."""
    from featurelake import lakeread
    from featurelake.errors import JobError
    from featurelake.store import FeatureStore
    from featurelake.training import load_training_set

    options, bucket = build_s3_lake(spark, s3_endpoint, dynamodb_endpoint, tmp_path)
    store = FeatureStore.from_config(options[1], repo=options[3], spark=spark)
    spine = spark.createDataFrame([(0, NOW), (1, NOW), (4, NOW - timedelta(hours=20))],
                                  "customer_id bigint, event_ts timestamp")
    local = store.training_set(spine, ["payments:amount"])
    assert local.manifest["options"]["engine"] == "driver/1"
    assert spark.read.format("delta").load(local.manifest["spine_path"]).count() == 3
    monkeypatch.setattr(store.config.training, "driver_max_rows", 0)
    ts = store.training_set(spine, ["payments:amount"])
    copied = [f for f in ts.to_spark().inputFiles() if "/training_sets/" in f]
    assert copied and all(f.startswith(f"s3a://{bucket}/lake/training_sets/{ts.id}/spine/part-") for f in copied)
    got = ts.to_pandas()
    assert got["amount"].isna().tolist() == [False, False, True] and got["amount"][:2].tolist() == [0.0, 1.0]
    again = load_training_set(store, ts.id).to_pandas()
    assert again.equals(got)
    assert local.to_pandas().equals(got) and load_training_set(store, local.id).to_pandas().equals(got)

    def refused(*args, **kwargs):
        raise JobError("delta-rs cannot read this storage (test)")

    monkeypatch.setattr(lakeread, "data_files", refused)  # then Spark reads the copy as Delta
    assert store.training_set(spine, ["payments:amount"]).to_pandas().equals(got)


READ_GROUP = """
import sys
from featurelake import lakeread, localset
from featurelake.config import load_config
from featurelake.pointintime import GroupPlan
config = load_config(sys.argv[1])
table = lakeread.open_table(config.lake("offline", "payments"), config)
plan = GroupPlan("payments", ["customer_id"], "ts", None, [("amount", "amount")])
print(localset.read_group(table, plan, (None, None)).num_rows)
"""


def test_the_driver_engine_reads_a_table_on_s3_and_its_process_exits_0(spark, s3_endpoint, dynamodb_endpoint,
                                                                         tmp_path):
    """delta-rs' to_pyarrow_table leaves scan threads that abort a process at exit now and then
    (code 134, "terminate called without an active exception"): a set built or replayed on the
    driver, correct, then failed its job. Tables delta-rs reads (S3 here) go through its query
    engine instead: eight fresh processes read the rows and exit 0."""
    from featurelake.config import load_config

    options, _ = build_s3_lake(spark, s3_endpoint, dynamodb_endpoint, tmp_path)
    want = spark.read.format("delta").load(load_config(options[1]).lake("offline", "payments")).count()
    for _ in range(8):
        done = subprocess.run([sys.executable, "-c", READ_GROUP, options[1]], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert (done.returncode, done.stdout.strip()) == (0, str(want)), done.stderr[-2000:]


def test_unreachable_storage_is_a_clear_error_without_pyspark(tmp_path):
    """A lake on an S3 endpoint nobody serves: exit 1 with the path and what to check, no traceback."""
    conf = write_config(tmp_path, storage="storage:\n  root: s3a://nobucket/lake",
                        s3="s3:\n  endpoint_url: http://127.0.0.1:1\n  path_style: true\n  region: us-east-1")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "groups.py").write_text(REPO)
    done = subprocess.run([sys.executable, "-c", NO_SPARK, "--conf", str(conf), "--repo", str(tmp_path / "features"),
                           "catalog", "list"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "s3a://nobucket/lake/_catalog/groups" in done.stderr and "FEATURELAKE_READER=spark" in done.stderr
