"""Issue 27, concurrent jobs on S3: two spark-submit jobs commit at the same moment to the same
catalogue table and the same offline table of a lake on moto's S3; with the commit lease in
dynalite (featurelake.commitlock, on by default for a lake on S3) no commit is lost.

Two JVMs on the 2-core machine take a minute or two: marked `cluster`, run by `make test-cluster`."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT
from service_fixtures import AWS_TEST_ENV

pytestmark = pytest.mark.cluster

HERE = Path(__file__).resolve().parent
COUNT = 12
REPO = '''
from featurelake import DeltaSource, Entity, Feature, FeatureGroup

customer = Entity("customer", join_keys=["customer_id"])
payments = FeatureGroup("payments", entity=customer, timestamp_column="ts",
                        source=DeltaSource("nowhere", path="/nonexistent", timestamp_column="ts"),
                        features=[Feature("amount", "double")])
'''


def test_two_jobs_committing_at_once_to_a_lake_on_s3_lose_no_commit(tmp_path, s3_endpoint, dynamodb_endpoint):
    import os

    import boto3
    from deltalake import DeltaTable

    from featurelake.commitlock import lock_table
    from featurelake.config import load_config
    from featurelake.spark import IVY_CACHE, PACKAGES

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(REPO)
    prefix = f"c{uuid.uuid4().hex[:6]}_"
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"project: commits\nstorage:\n  root: s3a://{bucket}/lake\n"
                    f"s3:\n  endpoint_url: {s3_endpoint}\n  path_style: true\n  region: us-east-1\n"
                    f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
                    f"    table_prefix: {prefix}\n")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, **AWS_TEST_ENV, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT)}
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]", "--driver-memory", "1g",
           "--packages", ",".join(PACKAGES), "--conf", f"spark.jars.ivy={IVY_CACHE}",
           "--conf", "spark.ui.enabled=false",
           str(HERE / "commit_writer.py"), str(conf), str(repo)]
    jobs = [subprocess.Popen([*cmd, who, str(COUNT), str(barrier)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for who in ("a", "b")]
    outputs = [job.communicate(timeout=900)[0] for job in jobs]
    for job, out in zip(jobs, outputs):
        assert job.returncode == 0, out[-4000:]

    config = load_config(str(conf))
    storage = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
               "AWS_S3_ALLOW_UNSAFE_RENAME": "true", **AWS_TEST_ENV}
    usage = DeltaTable(f"s3://{bucket}/lake/_catalog/usage", storage_options=storage).to_pandas()
    objects = sorted(usage[usage.action == "commit_test"].object)
    assert objects == sorted(f"{w}-{i}" for w in "ab" for i in range(COUNT))  # every commit is there, once
    offline = DeltaTable(f"s3://{bucket}/lake/offline/payments", storage_options=storage).to_pandas()
    assert len(offline) == 2 * COUNT and sorted(offline._run_id) == objects
    ddb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    assert ddb.scan(TableName=lock_table(config))["Count"] == 0  # every lease released

    # The two jobs really committed at the same time, and no two commits to one table overlapped.
    held: dict[str, list[tuple[float, float, str]]] = {}
    for who, out in zip("ab", outputs):
        for path, start, end in re.findall(r"commit lease on (\S+) held from ([\d.]+) to ([\d.]+)", out):
            held.setdefault(path, []).append((float(start), float(end), who))
    usage_path = f"s3a://{bucket}/lake/_catalog/usage"
    assert len(held[usage_path]) == 2 * COUNT and len(held[f"s3a://{bucket}/lake/offline/payments"]) == 2 * COUNT
    for path, spans in held.items():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"overlapping commits to {path}: {spans}"
    turns = "".join(who for _, _, who in held[usage_path])
    assert "ab" in turns and "ba" in turns, turns  # interleaved: the jobs ran at once and took turns
