"""`featurelake ingest` and `spark-submit jobs/ingest.py` as a user runs them, in their own
processes: exit 0 when done, 1 when a batch is quarantined, 2 for a usage error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, write_config
from featurelake.cli import main
from featurelake.spark import IVY_CACHE, PACKAGES

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source

item = Entity("item", join_keys=["id"])


def group(name):
    return FeatureGroup(name, entity=item, source=S3Source(name + "_files", path="{root}/" + name, format="parquet"),
                        timestamp_column="ts", features=[Feature("v", "double")])


good = group("good")
bad = group("bad")
submitted = group("submitted")
'''
SUITE = "expectations:\n  - type: expect_column_values_to_be_between\n    kwargs: {column: v, min_value: 0}\n"


def put(folder: Path, rows: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["id", "ts", "v"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame.to_parquet(folder / "part.parquet", index=False, coerce_timestamps="us")


@pytest.fixture(scope="module")
def project(tmp_path_factory, spark):
    tmp = tmp_path_factory.mktemp("cli_ingest")
    repo = tmp / "features"
    (repo / "expectations").mkdir(parents=True)
    (repo / "groups.py").write_text(REPO.format(root=tmp / "data"))
    (repo / "expectations" / "bad.yml").write_text(SUITE)
    conf = write_config(tmp, spark="spark:\n  master: local[1]\n  conf: {spark.sql.shuffle.partitions: 2}")
    put(tmp / "data" / "good", [(1, "2024-06-01T00:00:00Z", 1.0)])
    put(tmp / "data" / "bad", [(1, "2024-06-01T00:00:00Z", -1.0)])
    put(tmp / "data" / "submitted", [(7, "2024-06-01T00:00:00Z", 7.0)])
    assert main(["--conf", str(conf), "--repo", str(repo), "apply"]) == 0  # in this process's session
    return {"conf": str(conf), "repo": str(repo), "root": tmp / "lake"}


def cli(project: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "featurelake.cli", "--conf", project["conf"], "--repo", project["repo"], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_usage_errors_exit_2_before_any_spark(project):
    nothing = cli(project, "ingest")
    assert nothing.returncode == 2 and "name the groups to ingest or pass --all" in nothing.stderr
    unknown = cli(project, "ingest", "godo")
    assert unknown.returncode == 2 and "unknown feature group 'godo'" in unknown.stderr and "'good'" in unknown.stderr


def test_ingest_exits_1_when_a_batch_is_quarantined_and_keeps_going_with_the_others(project):
    done = cli(project, "ingest", "bad", "good", "--keep-going", "--json")
    assert done.returncode == 1, done.stderr[-3000:]
    results = {r["group"]: r for r in json.loads(done.stdout)}
    assert results["bad"]["status"] == "quarantined" and not results["bad"]["ok"]
    assert results["bad"]["failures"][0]["expectation"] == "expect_column_values_to_be_between"
    assert results["good"]["ok"] and results["good"]["rows_written"] == 1
    assert "featurelake.ingest" in done.stderr and "read 1 rows from 1 files" in done.stderr  # progress logs


def test_spark_submit_runs_the_job_like_the_cli(project):
    submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cmd = [str(submit), "--master", "local[1]", "--packages", ",".join(PACKAGES), "--conf",
           f"spark.jars.ivy={IVY_CACHE}", str(ROOT / "jobs" / "ingest.py"), "--conf", project["conf"],
           "--repo", project["repo"], "--group", "submitted"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted: succeeded, 1 read, 1 written" in done.stdout
    from delta.tables import DeltaTable
    from featurelake.spark import get_spark

    spark = get_spark()
    assert DeltaTable.isDeltaTable(spark, str(project["root"] / "offline" / "submitted"))
    assert spark.read.format("delta").load(str(project["root"] / "offline" / "submitted")).count() == 1
