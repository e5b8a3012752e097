"""`featurelake stream` as a user runs it: exit 1 for a topic that is not there; `kill -9` of the
whole process (its JVM too) half-way, then a restart on the same checkpoint, leaves every event
exactly once offline and DynamoDB equal to the newest offline row of every key, with its window
features as of that row (the group declares some, so the kill also lands in their read-back)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, write_config
from featurelake.cli import main
from kafka_events import create_topic, event, produce, windowed_oracle

REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, KafkaSource

customer = Entity("customer", join_keys=["customer_id"])
payments = KafkaSource("payments", connection="events", topic="{topic}", options={{"maxOffsetsPerTrigger": 300}},
                       schema="customer_id bigint, amount double, created_at timestamp, channel string")
customer_pay = FeatureGroup("customer_pay", entity=customer, source=payments, timestamp_column="created_at",
                            features=[Feature("amount", "double"), Feature("channel", "string")],
                            aggregations=[Aggregation("amount", ["sum", "count", "max"], windows=["1h", "1d"])])
'''
T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
WINDOWS = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}


@pytest.fixture
def project(tmp_path, spark, kafka_broker, dynamodb_endpoint):
    topic = create_topic(kafka_broker.bootstrap_servers)
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(REPO.format(topic=topic))
    servers = kafka_broker.bootstrap_servers
    conf = write_config(tmp_path, spark="spark:\n  master: local[2]\n  conf: {spark.sql.shuffle.partitions: 2}",
                        connections=f"connections:\n  events: {{bootstrap_servers: \"{servers}\"}}",
                        online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
                               f"    table_prefix: k{uuid.uuid4().hex[:8]}_\n    lease_s: 6")
    assert main(["--conf", str(conf), "--repo", str(repo), "apply"]) == 0  # in this process's session
    return {"conf": str(conf), "repo": str(repo), "root": tmp_path / "lake", "topic": topic,
            "servers": kafka_broker.bootstrap_servers}


def test_a_topic_that_does_not_exist_exits_1_naming_it(project, capsys):
    groups = Path(project["repo"]) / "groups.py"
    groups.write_text(groups.read_text().replace(project["topic"], "payments_nowhere"))
    assert main(["--conf", project["conf"], "--repo", project["repo"], "apply"]) == 0
    code = main(["--conf", project["conf"], "--repo", project["repo"], "stream", "customer_pay", "--available-now"])
    assert code == 1
    assert "topic 'payments_nowhere' does not exist on Kafka at 127.0.0.1:" in capsys.readouterr().err


def test_ingest_all_leaves_a_stream_group_to_stream_and_naming_it_says_so(project, capsys):
    args = ["--conf", project["conf"], "--repo", project["repo"], "--json"]
    assert main([*args, "ingest", "--all"]) == 0 and capsys.readouterr().out.strip() == "[]"
    assert main([*args, "ingest", "customer_pay"]) == 2
    assert "run `featurelake stream customer_pay`" in capsys.readouterr().err


def start(project: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "featurelake.cli", "--conf", project["conf"], "--repo", project["repo"],
           "stream", "customer_pay", "--available-now"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_kill_9_half_way_then_a_restart_leaves_every_event_once_offline_and_the_newest_online(project, spark):
    from featurelake.online.client import OnlineClient
    from featurelake.store import FeatureStore

    rnd = random.Random(9)
    events, messages = [], []
    for _ in range(560):  # 80 keys over 2 days, times shuffled, some sent twice: two micro-batches of 300
        cid, at = rnd.randrange(80), T0 + timedelta(seconds=rnd.randrange(2 * 86400))
        row = {"customer_id": cid, "amount": float(rnd.randrange(10 ** 5)) / 100, "created_at": pd.Timestamp(at),
               "channel": rnd.choice(["web", "app", "pos"])}
        events.append(row)
        messages.append(event(cid, row["amount"], at, row["channel"]))
        if rnd.random() < 0.05:
            messages.append(messages[-1])
    produce(project["servers"], project["topic"], messages)

    log = Path(project["root"]) / "offline" / "customer_pay" / "_delta_log"
    first = start(project)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(log.glob("*.json")) and first.poll() is None:
        time.sleep(0.1)  # killed just after its first commit: between the MERGE and DynamoDB, or in the next batch
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL, first.stderr.read()[-3000:]
    assert len(list(log.glob("*.json"))) == 1  # the first batch merged, the second not

    store = FeatureStore.from_config(project["conf"], repo=project["repo"], spark=spark)
    again = store.stream("customer_pay", available_now=True)  # the restart, in this process's session
    assert again.ok and again.rows_read > 0, again.summary()

    offline = spark.read.format("delta").load(str(Path(project["root"]) / "offline" / "customer_pay")).toPandas()
    offline["created_at"] = pd.to_datetime(offline["created_at"], utc=True)
    want = pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"], keep="last")
    assert len(offline) == len(want) and not offline.duplicated(["customer_id", "created_at"]).any()
    both = want.merge(offline, on=["customer_id", "created_at"], suffixes=("", "_offline"))
    assert len(both) == len(want) and (both["amount"] == both["amount_offline"]).all()

    newest = offline.sort_values(["created_at", "_ingested_at"]).groupby("customer_id").tail(1)
    with OnlineClient.from_config(project["conf"]) as client:
        items = client.get_many("customer_pay", [{"customer_id": int(k)} for k in newest["customer_id"]],
                                with_event_time=True)
    for (_, row), item in zip(newest.iterrows(), items):
        assert item is not None and item["amount"] == row["amount"] and item["channel"] == row["channel"], row
        assert pd.Timestamp(item["created_at"]) == row["created_at"], (item, row.to_dict())
    # the window features: each item as of its key's newest event t, windows (t - w, t], as the oracle gives
    oracle = windowed_oracle(events, WINDOWS)
    assert sorted(oracle.index) == sorted(int(k) for k in newest["customer_id"])
    assert (oracle["amount_count_1d"] > 1).sum() > 40 and (oracle["amount_count_1h"] > 1).any()  # windows hold rows
    for (_, row), item in zip(newest.iterrows(), items):
        want = oracle.loc[int(row["customer_id"])]
        for name in WINDOWS:
            assert item[f"amount_count_{name}"] == want[f"amount_count_{name}"], (name, item, want.to_dict())
            assert item[f"amount_max_{name}"] == want[f"amount_max_{name}"], (name, item, want.to_dict())
            assert item[f"amount_sum_{name}"] == pytest.approx(want[f"amount_sum_{name}"], rel=1e-12, abs=1e-9), \
                (name, item, want.to_dict())
