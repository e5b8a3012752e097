"""The smaller things a Feast or Databricks user notices (issue 22): Delta versions spelt @N apart
from definition versions vN, a partial export counted as an export, an increment with nothing new
or with its change data feed gone, drift between two training sets' rows, a quiet CLI, and
`online get` for several keys."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT, write_config
from featurelake.cli import main

REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
files = S3Source("files", path="s3a://bucket/none/", format="parquet")
pay = FeatureGroup("pay", entity=customer, source=files, timestamp_column="ts", online=False,
                   features=[Feature("amount", "double")],
                   aggregations=[Aggregation("amount", ["sum"], windows=["1d"])])
blobs = FeatureGroup("blobs", entity=customer, source=files, timestamp_column="ts",
                     features=[Feature("payload", "binary")])
plain = FeatureGroup("plain", entity=customer, source=files, timestamp_column="ts", features=[Feature("v", "bigint")])
fed = FeatureGroup("fed", entity=customer, source=files, timestamp_column="ts", features=[Feature("v", "bigint")])
'''
NOW = datetime.now(timezone.utc).replace(microsecond=0)
PLAIN = "customer_id bigint, ts timestamp, v bigint"


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint):
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("small")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    conf = write_config(tmp, online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: "
                                   f"{dynamodb_endpoint}\n    table_prefix: s{uuid.uuid4().hex[:8]}_")
    store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.apply()
    store.offline("plain").merge(spark.createDataFrame(
        [(k, NOW - timedelta(hours=k), k * 10) for k in range(1, 4)], PLAIN), "plain-1")
    store.conf_path, store.repo_path = str(conf), str(tmp / "features")
    return store


def cli(lake, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "featurelake.cli", "--conf", lake.conf_path, "--repo", lake.repo_path, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, **(env or {})})


# ---- Delta versions @N, definition versions vN ------------------------------------------------

def test_catalog_history_and_drift_spell_delta_versions_with_an_at(lake, capsys, caplog):
    from featurelake import monitoring

    assert main(["--conf", lake.conf_path, "--repo", lake.repo_path, "catalog", "history", "plain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(re.match(r"^@\d+ ", line) for line in lines), lines
    assert main(["--conf", lake.conf_path, "--repo", lake.repo_path, "catalog", "list"]) == 0
    assert re.search(r"^plain\s+v1 ", capsys.readouterr().out, re.M)  # definition versions keep their v

    report = monitoring.drift(lake, "plain", reference="@0", current="@0")
    assert report["plain"].reference.version == 0 and "@0" in report.summary()
    with caplog.at_level(logging.WARNING, logger="featurelake"):
        old = monitoring.drift(lake, "plain", reference="v0")  # the old spelling: read, with a warning
    assert old["plain"].reference.version == 0
    assert any("write Delta versions as @0" in r.getMessage() for r in caplog.records), caplog.records


# ---- exports -----------------------------------------------------------------------------------

def test_a_partial_export_counts_as_the_last_export_with_a_note(lake, spark):
    from featurelake import monitoring

    rows = [(k, NOW - timedelta(hours=1), bytes(500_000 if k == 3 else 10)) for k in range(10)]
    lake.offline("blobs").merge(spark.createDataFrame(rows, "customer_id bigint, ts timestamp, payload binary"), "b")
    result = lake.export("blobs")
    assert result.status == "partial" and result.items_written == 9
    fresh = monitoring.freshness(lake, ["blobs"])["blobs"]
    assert fresh.last_export and fresh.last_export["export_id"] == result.export_id
    assert not any("never exported" in n for n in fresh.notes), fresh.notes
    assert any("was partial: 9 items written" in n and "featurelake export blobs" in n
               for n in fresh.notes), fresh.notes


def test_an_increment_with_nothing_new_reads_no_change_feed_and_warns_nothing(lake, caplog):
    from featurelake.online.table import read_meta
    from featurelake.online.export import driver_client

    first = lake.export("plain")
    assert first.ok
    with caplog.at_level(logging.WARNING, logger="featurelake"):
        again = lake.export("plain")
    assert again.ok and again.mode == "incremental" and again.from_version > again.to_version
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    dyn = lake.config.online.dynamodb
    meta = read_meta(driver_client(dyn.region, dyn.endpoint_url), again.table_name)
    assert meta["last"]["rows_ahead"] is False  # known, so the next increment skips the window scan


def test_an_increment_whose_change_feed_cannot_be_read_exports_in_full(lake, spark, caplog):
    from featurelake.online import OnlineClient

    fed = lake.offline("fed")
    fed.merge(spark.createDataFrame([(1, NOW - timedelta(hours=2), 1)], PLAIN), "fed-1")
    assert lake.export("fed").ok
    spark.sql(f"ALTER TABLE delta.`{fed.path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = false)")
    fed.merge(spark.createDataFrame([(2, NOW - timedelta(hours=1), 2)], PLAIN), "fed-2")  # no change data
    spark.sql(f"ALTER TABLE delta.`{fed.path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    with caplog.at_level(logging.WARNING, logger="featurelake"):
        result = lake.export("fed")
    assert result.ok and result.mode == "full", result.summary()
    assert any("change data feed of Delta versions" in n and "full export instead" in n for n in result.notes)
    assert not any("DELTA_" in r.getMessage() for r in caplog.records)
    with OnlineClient.from_config(lake.conf_path) as client:
        assert [r and r["v"] for r in client.get_many("fed", [1, 2])] == [1, 2]


def test_online_get_takes_several_keys_and_prints_a_list(lake):
    assert lake.export("plain").ok
    many = cli(lake, "online", "get", "plain", "--key", "customer_id=1", "--key", "customer_id=999",
               "--key", "customer_id=3")
    assert many.returncode == 0, many.stderr
    rows = json.loads(many.stdout)
    assert [r and r["v"] for r in rows] == [10, None, 30]
    none = cli(lake, "online", "get", "plain", "--key", "customer_id=998", "--key", "customer_id=999")
    assert none.returncode == 1 and json.loads(none.stdout) == [None, None]


# ---- drift between training sets ---------------------------------------------------------------

def test_drift_between_two_training_sets_compares_their_rows_window_features_included(lake, spark):
    from featurelake import monitoring

    rows = [(k, NOW - timedelta(days=30, hours=h), float(k + h)) for k in range(40) for h in (1, 2, 3)]
    lake.offline("pay").merge(spark.createDataFrame(rows, "customer_id bigint, ts timestamp, amount double"), "p")
    spine = "customer_id bigint, event_ts timestamp"
    refs = ["pay:amount", "pay:amount_sum_1d"]
    # the same table version; one spine just after the events (1-day sums), one 20 days later (none)
    near = lake.training_set(spark.createDataFrame([(k, NOW - timedelta(days=30)) for k in range(40)], spine), refs)
    far = lake.training_set(spark.createDataFrame([(k, NOW - timedelta(days=10)) for k in range(40)], spine), refs)
    report = monitoring.drift(lake, "pay", reference=near.id, current=far.id)
    result = report["pay"]
    assert result.reference.kind == result.current.kind == "training_set_rows"
    assert result.feature("amount_sum_1d").alert, result.summary()
    assert not result.feature("amount").alert, result.summary()
    assert f"the rows of training set {near.id}" in report.summary()


# ---- the CLI is quiet --------------------------------------------------------------------------

def test_quiet_prints_only_the_answer_and_spark_talks_to_its_log(lake, tmp_path):
    quiet = cli(lake, "-q", "catalog", "list")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert len(quiet.stdout.splitlines()) == 4 and all(re.match(r"^\w+\s+v1 ", x) for x in quiet.stdout.splitlines())

    log = tmp_path / "spark.log"  # a verb that starts a JVM (one is enough: it costs ~25 s)
    default = cli(lake, "catalog", "history", "plain",
                  env={"FEATURELAKE_SPARK_LOG": str(log), "FEATURELAKE_READER": "spark"})
    assert default.returncode == 0 and default.stdout.startswith("@")
    stray = [x for x in default.stderr.splitlines() if not re.match(r"^\d\d:\d\d:\d\d \w+ featurelake", x)]
    assert not stray, stray  # neither Spark's log nor Ivy's report reached the terminal...
    assert "ivy" in log.read_text().lower()  # ...they went to the log
