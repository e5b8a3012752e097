"""`stream`: a real Kafka broker -> the offline Delta table and DynamoDB (dynalite), each compared
with a brute-force oracle computed in pandas from the events the test sent."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from conftest import write_config
from kafka_events import create_topic, event, produce
from kafka_events import windowed_oracle as oracle

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
REPO = '''
from featurelake import Entity, Feature, FeatureGroup, KafkaSource

customer = Entity("customer", join_keys=["customer_id"])
payments = KafkaSource("payments", connection="events", topic="{topic}",
                       schema="customer_id bigint, amount double, created_at timestamp, channel string")
customer_pay = FeatureGroup("customer_pay", entity=customer, source=payments, timestamp_column="created_at",
                            features=[Feature("amount", "double"), Feature("channel", "string")], ttl="3650d")
'''
SUITE = """expectations:
  - type: expect_column_values_to_be_between
    kwargs: {column: amount, min_value: 0, max_value: 100000}
"""


def newest(events: list[dict]) -> pd.DataFrame:
    """The oracle: valid events, one per (key, time), then the newest per key."""
    df = pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"], keep="last")
    return df.sort_values("created_at").groupby("customer_id").tail(1).set_index("customer_id").sort_index()


@pytest.fixture
def stream_store(tmp_path, spark, kafka_broker, dynamodb_endpoint):
    return kafka_store(tmp_path, spark, kafka_broker, dynamodb_endpoint, REPO, {"customer_pay": SUITE})


def kafka_store(tmp_path, spark, kafka_broker, dynamodb_endpoint, groups: str, suites: dict):
    from featurelake.store import FeatureStore

    topic = create_topic(kafka_broker.bootstrap_servers)
    repo = tmp_path / "features"
    (repo / "expectations").mkdir(parents=True)
    (repo / "groups.py").write_text(groups.format(topic=topic))
    for name, suite in suites.items():
        (repo / "expectations" / f"{name}.yml").write_text(suite)
    prefix = f"s{uuid.uuid4().hex[:8]}_"
    conf = write_config(tmp_path, connections=f"connections:\n  events: {{bootstrap_servers: "
                                              f"\"{kafka_broker.bootstrap_servers}\"}}",
                        online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
                               f"    table_prefix: {prefix}\n    lease_s: 6")
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    store.conf_path, store.topic = conf, topic
    return store


def offline_rows(store) -> pd.DataFrame:
    df = store.read_offline("customer_pay").select("customer_id", "created_at", "amount", "channel").toPandas()
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    return df


def online_rows(store, keys) -> dict:
    from featurelake.online.client import OnlineClient

    with OnlineClient.from_config(store.conf_path) as client:
        rows = client.get_many("customer_pay", [{"customer_id": int(k)} for k in keys], with_event_time=True)
    return {int(k): r for k, r in zip(keys, rows)}


def assert_online_is_newest(store, events: list[dict]) -> None:
    want = newest(events)
    got = online_rows(store, want.index)
    for key, row in want.iterrows():
        item = got[key]
        assert item is not None, key
        assert (item["amount"], item["channel"]) == (row["amount"], row["channel"]), (key, item, row.to_dict())
        assert pd.Timestamp(item["created_at"]) == row["created_at"], (key, item)


def test_a_topic_lands_offline_and_online_once_bad_messages_set_aside_with_their_offsets(stream_store, kafka_broker):
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    store, servers = stream_store, kafka_broker.bootstrap_servers
    rnd = random.Random(24)
    good: list[dict] = []
    messages = []
    for i in range(120):  # 30 keys, event times shuffled: later messages often carry older events
        cid = rnd.randrange(30)
        at = T0 + timedelta(minutes=rnd.randrange(10_000))
        row = {"customer_id": cid, "amount": round(rnd.uniform(1, 500), 2), "created_at": pd.Timestamp(at),
               "channel": rnd.choice(["web", "app"])}
        messages.append(event(cid, row["amount"], at, row["channel"]))
        good.append(row)
        if i % 10 == 0:  # a producer's retry: the same message twice
            messages.append(messages[-1])
    bad = ['{"customer_id": 3, "amount": "lots", "created_at": "2026-03-01T00:00:00Z"}',  # wrong type
           '{"customer_id": 4, "amount": 1.0, ',  # not JSON
           ""]                                                                              # empty
    null_key = '{"amount": 5.0, "created_at": "2026-03-02T00:00:00Z", "channel": "web"}'
    negative = '{"customer_id": 5, "amount": -7.5, "created_at": "2026-03-03T00:00:00Z", "channel": "app"}'
    messages[40:40] = [("3", bad[0]), ("4", bad[1]), ("9", bad[2]), ("x", null_key), ("5", negative)]
    sent = produce(servers, store.topic, messages)

    result = store.stream("customer_pay", available_now=True)
    assert result.rows_read == len(messages) and result.rows_rejected == 3 and result.rows_quarantined == 2
    assert result.status == "warned" and result.runs, result.summary()

    # offline: every valid event once, duplicates collapsed
    want = pd.DataFrame(good).drop_duplicates(["customer_id", "created_at"], keep="last")
    got = offline_rows(store)
    assert len(got) == len(want) and not got.duplicated(["customer_id", "created_at"]).any()
    merged = want.merge(got, on=["customer_id", "created_at"], suffixes=("", "_got"))
    assert len(merged) == len(want) and (merged["amount"] == merged["amount_got"]).all()
    # online: the newest event per key, as the offline rule gives
    assert_online_is_newest(store, good)

    # messages that do not parse: rejected with their topic, partition and offset
    places = {text: (p, o) for text, p, o in sent}
    rejected = store.spark.read.format("delta").load(store.config.lake("rejected", "customer_pay")).toPandas()
    assert sorted(rejected["_record"].fillna("")) == sorted(bad)
    for _, r in rejected.iterrows():
        assert (r["_topic"], r["_partition"], r["_offset"]) == (store.topic, *places[r["_record"] or ""])
        assert r["_file"] == f"kafka:{store.topic}/{r['_partition']}/{r['_offset']}"
    # rows with a null key or breaking a critical expectation: quarantined, with offsets too
    quarantined = store.spark.read.format("delta").load(store.config.lake("quarantine", "customer_pay")).toPandas()
    assert len(quarantined) == 2
    by_offset = {(r["_partition"], r["_offset"]): r for _, r in quarantined.iterrows()}
    assert "null entity key" in by_offset[places[null_key]]["_reason"]
    assert "expect_column_values_to_be_between" in by_offset[places[negative]]["_reason"]

    # the run rows: kind stream, in the catalogue
    runs = store.catalog.read("runs").where(F.col("kind") == "stream").toPandas()
    assert set(runs["run_id"]) == set(result.runs) and runs["rows_read"].sum() == len(messages)

    # later: older events for known keys (must not move online back), newer ones, duplicates
    version = DeltaTable.forPath(store.spark, store.config.lake("offline", "customer_pay")).history(1).first().version
    current = newest(good)
    late, more = [], []
    for cid, row in list(current.iterrows())[:10]:
        older = {"customer_id": cid, "amount": 999.0, "created_at": row["created_at"] - pd.Timedelta(days=3),
                 "channel": "late"}
        late.append(older)
        more.append(event(cid, older["amount"], older["created_at"].to_pydatetime(), "late"))
    for cid, row in list(current.iterrows())[10:15]:
        newer = {"customer_id": cid, "amount": 1.25, "created_at": row["created_at"] + pd.Timedelta(hours=1),
                 "channel": "new"}
        late.append(newer)
        more.append(event(cid, newer["amount"], newer["created_at"].to_pydatetime(), "new"))
    more += messages[:5]  # a replay of old messages: nothing new
    produce(servers, store.topic, more)
    again = store.stream("customer_pay", available_now=True)
    assert again.rows_read == len(more) and again.rows_rejected == 0
    everything = good + late
    assert len(offline_rows(store)) == len(pd.DataFrame(everything).drop_duplicates(["customer_id", "created_at"]))
    assert_online_is_newest(store, everything)
    assert again.not_newer >= 10  # the late events' keys: their items online were newer

    # nothing new in the topic: a continuous run (500 ms trigger) for a few seconds reads nothing,
    # commits nothing, and stops between micro-batches
    third = store.stream("customer_pay", trigger="500ms", timeout=6)
    assert third.ok and third.rows_read == 0 and third.delta_version is None, third.summary()
    assert DeltaTable.forPath(store.spark, store.config.lake("offline", "customer_pay")).history(1).first().version \
        == version + 1


def test_a_merge_that_dies_after_the_online_write_beside_it_is_replayed_once(stream_store, kafka_broker,
                                                                             monkeypatch):
    """Without windows a micro-batch writes DynamoDB beside its MERGE. A MERGE that fails once
    DynamoDB holds the batch's rows fails the stream; the restart replays the batch: each event is
    once offline and each item the newest offline row."""
    import time

    from featurelake.errors import JobError
    from featurelake.offline import OfflineTable

    store, servers = stream_store, kafka_broker.bootstrap_servers
    first = [{"customer_id": k, "amount": float(k), "created_at": pd.Timestamp(T0 + timedelta(minutes=k)),
              "channel": "web"} for k in range(20)]
    second = [{**e, "amount": e["amount"] + 0.5, "created_at": e["created_at"] + pd.Timedelta(days=1)} for e in first]

    def send(rows: list[dict]) -> None:
        produce(servers, store.topic, [event(r["customer_id"], r["amount"], r["created_at"].to_pydatetime(),
                                             r["channel"]) for r in rows])

    send(first)
    assert store.stream("customer_pay", available_now=True).ok
    send(second)
    merge = OfflineTable.merge

    def dies_once_dynamodb_has_the_batch(self, *args, **kwargs):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(item["amount"] == e["amount"] for e, item in
                   zip(second, online_rows(store, [e["customer_id"] for e in second]).values())):
                raise OSError("the disk went away")
            time.sleep(0.2)
        raise AssertionError("the online write beside the MERGE never landed")

    monkeypatch.setattr(OfflineTable, "merge", dies_once_dynamodb_has_the_batch)
    with pytest.raises(JobError, match="the disk went away"):
        store.stream("customer_pay", available_now=True)
    assert len(offline_rows(store)) == len(first)  # online ran ahead of the table until the restart
    monkeypatch.setattr(OfflineTable, "merge", merge)
    again = store.stream("customer_pay", available_now=True)
    assert again.ok and again.rows_read == len(second), again.summary()
    got = offline_rows(store)
    assert len(got) == len(first + second) and not got.duplicated(["customer_id", "created_at"]).any()
    assert_online_is_newest(store, first + second)


def test_a_missing_topic_or_a_broker_that_does_not_answer_is_a_clear_error(stream_store, kafka_broker):
    import services

    from featurelake.config import ConnectionConfig
    from featurelake.errors import JobError
    from featurelake.kafkaread import check_topic

    store = stream_store
    source = store.group("customer_pay").source
    conn = store.config.connection("events")
    assert check_topic(store.spark, conn, source) == 2
    source.topic = "no_such_topic"
    with pytest.raises(JobError, match="topic 'no_such_topic' does not exist on Kafka at 127.0.0.1:"):
        check_topic(store.spark, conn, source)
    down = ConnectionConfig(bootstrap_servers=f"127.0.0.1:{services.free_port()}")
    with pytest.raises(JobError, match="did not answer after 2 attempts"):
        check_topic(store.spark, down, source, attempts=2, timeout_s=2)


@pytest.fixture
def own_broker(tmp_path):
    """A broker of the test's own (free port, its data in tmp_path), which the test may kill and start
    again on the same port and data directory (services.restart_kafka): the session's broker is not
    touched. A dict, so that the fixture stops whichever broker runs at the end."""
    import services

    broker = {"svc": services.start_kafka(data_dir=tmp_path / "broker")}
    yield broker
    broker["svc"].stop()


def test_a_broker_killed_mid_stream_and_started_again_loses_nothing(tmp_path, spark, own_broker, dynamodb_endpoint):
    """A running stream (500 ms trigger, in a thread); the broker is killed (kill -9), the producer
    queues events while it is down, the stream keeps triggering against no broker; the broker starts
    again on its port and data directory, the queued events are delivered, more are sent. The stream
    carries on by itself, and in the end every event is once offline and the newest per key online."""
    import os
    import signal
    import threading
    import time

    import services
    from confluent_kafka import Producer
    from deltalake import DeltaTable

    broker = own_broker["svc"]
    servers = broker.bootstrap_servers
    store = kafka_store(tmp_path, spark, broker, dynamodb_endpoint, REPO, {})
    rnd, events, sent = random.Random(31), [], []

    def messages(n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):  # 25 keys, times shuffled, some messages sent twice
            cid, at = rnd.randrange(25), T0 + timedelta(seconds=rnd.randrange(10 ** 6))
            events.append({"customer_id": cid, "amount": round(rnd.uniform(1, 500), 2), "created_at": pd.Timestamp(at),
                           "channel": rnd.choice(["web", "app", "pos"])})
            out.append(event(cid, events[-1]["amount"], at, events[-1]["channel"]))
            if rnd.random() < 0.1:
                out.append(out[-1])
        sent.extend(out)
        return out

    stop, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["result"] = store.stream("customer_pay", trigger="500ms", until=stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the asserts below
            outcome["error"] = exc

    def offline_count() -> int:
        try:
            return len(DeltaTable(store.config.lake("offline", "customer_pay")).to_pyarrow_table(columns=["amount"]))
        except Exception:  # noqa: BLE001 - no table before the first micro-batch's commit
            return 0

    def wait_offline(what: str) -> None:
        want = len(pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"]))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and thread.is_alive() and offline_count() < want:
            time.sleep(0.5)
        assert offline_count() == want, (what, offline_count(), want, outcome)

    produce(servers, store.topic, messages(80))
    thread = threading.Thread(target=run, name="stream", daemon=True)
    thread.start()
    try:
        wait_offline("before the broker went away")
        os.killpg(broker.pid, signal.SIGKILL)  # the broker goes away at once: no clean shutdown
        producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "linger.ms": 5})
        delivered: list = []
        queued = messages(60)
        for key, text in queued:  # held in the producer's queue while the broker is down
            producer.produce(store.topic, key=key, value=text, on_delivery=lambda err, msg: delivered.append(err))
        producer.poll(0)
        time.sleep(5)  # ten triggers against no broker
        assert thread.is_alive(), outcome
        own_broker["svc"] = broker = services.restart_kafka(broker)
        assert producer.flush(60) == 0 and delivered == [None] * len(queued), delivered
        produce(servers, store.topic, messages(60))
        wait_offline("after the broker came back")
    finally:
        stop.set()
        thread.join(300)
    result = outcome.get("result")
    assert result is not None and result.ok and result.rows_read == len(sent), outcome

    want = pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"], keep="last")
    got = offline_rows(store)
    assert len(got) == len(want) and not got.duplicated(["customer_id", "created_at"]).any()
    both = want.merge(got, on=["customer_id", "created_at"], suffixes=("", "_got"))
    assert len(both) == len(want) and (both["amount"] == both["amount_got"]).all()
    assert (both["channel"] == both["channel_got"]).all()
    assert_online_is_newest(store, events)


WINDOWED = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, KafkaSource

customer = Entity("customer", join_keys=["customer_id"])
payments = KafkaSource("payments", connection="events", topic="{topic}",
                       schema="customer_id bigint, amount double, created_at timestamp, channel string")
customer_win = FeatureGroup("customer_win", entity=customer, source=payments, timestamp_column="created_at",
                            features=[Feature("amount", "double"), Feature("channel", "string")], ttl="3650d",
                            aggregations=[Aggregation("amount", ["sum", "count", "max"], windows=["1h", "1d"])])
'''
WINDOWS = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}


def windowed_oracle(events: list[dict]) -> pd.DataFrame:
    """Per key, as of its newest event t: the newest row and sum/count/max of amount over (t - w, t]."""
    return oracle(events, WINDOWS)


def assert_windows_match(store, events: list[dict], training_set: bool = True) -> pd.DataFrame:
    """Online items == the pandas oracle (== training_set), each as of the key's newest event."""
    from featurelake.online.client import OnlineClient

    want = windowed_oracle(events)
    ts = want
    if training_set:
        spine = pd.DataFrame({"customer_id": want.index.astype("int64"), "event_ts": want["created_at"].values})
        ts = store.training_set(spine, ["customer_win:*"], timestamp_column="event_ts").to_pandas()
        ts = ts.set_index("customer_id").sort_index()
    with OnlineClient.from_config(store.conf_path) as client:
        online = client.get_many("customer_win", [{"customer_id": int(k)} for k in want.index], with_event_time=True)
    columns = [c for c in want.columns if c != "created_at"]
    for (cid, row), item in zip(want.iterrows(), online):
        assert item is not None, cid
        assert pd.Timestamp(item["created_at"]) == row["created_at"], (cid, item, row.to_dict())
        for c in columns:
            assert item[c] == row[c] == ts.loc[cid, c], (cid, c, item[c], row[c], ts.loc[cid, c])
    return want


def test_window_features_online_equal_training_set_late_events_offline_never_back_online(
        tmp_path, spark, kafka_broker, dynamodb_endpoint):
    from featurelake.monitoring.freshness import freshness
    from featurelake.records import Run

    store = kafka_store(tmp_path, spark, kafka_broker, dynamodb_endpoint, WINDOWED, {})
    servers, rnd = kafka_broker.bootstrap_servers, random.Random(7)
    newest_at = T0 + timedelta(days=2)  # the group's newest event; key k's newest is 5k minutes before
    events: list[dict] = []

    def add(cid: int, at: datetime, amount: float, channel: str) -> tuple[str, str]:
        events.append({"customer_id": cid, "amount": amount, "created_at": pd.Timestamp(at), "channel": channel})
        return event(cid, amount, at, channel)

    first = [add(k, newest_at - timedelta(minutes=rnd.randrange(40, 2880)), float(rnd.randrange(1, 100)), "web")
             for k in range(8) for _ in range(8)]
    first += [add(k, newest_at - timedelta(minutes=5 * k), float(rnd.randrange(1, 100)), "app") for k in range(8)]
    rnd.shuffle(first)  # out of order within the topic
    produce(servers, store.topic, first)
    result = store.stream("customer_win", available_now=True)
    assert result.ok and result.late_rows == sum(e["created_at"] < pd.Timestamp(newest_at - timedelta(hours=1))
                                                 for e in events), result.summary()
    before = assert_windows_match(store, events, training_set=False)  # training_set: after the late events

    # later: events 3 h before their key's newest (late: beyond the 1 h allowed), one 5 days before
    # (late, outside every window), events 25 min before their key's newest (out of order, not late),
    # and newer events for two keys (the group's newest moves 10 min on)
    second = [add(k, before.loc[k, "created_at"] - pd.Timedelta(hours=3), 500.0, "late") for k in range(4)]
    second += [add(0, before.loc[0, "created_at"] - pd.Timedelta(days=5), 900.0, "late")]
    second += [add(k, before.loc[k, "created_at"] - pd.Timedelta(minutes=25), 7.0, "ooo") for k in (4, 5)]
    second += [add(k, newest_at + timedelta(minutes=10), 3.0, "new") for k in (6, 7)]
    produce(servers, store.topic, second)
    again = store.stream("customer_win", available_now=True)
    assert again.ok and again.rows_read == len(second) and again.late_rows == 5, again.summary()
    after = assert_windows_match(store, events)
    # online never moved back: keys 0..5 keep their newest event; their 1d windows took the late rows in
    assert (after.loc[0:5, "created_at"] == before.loc[0:5, "created_at"]).all()
    assert (after.loc[0:3, "amount_sum_1d"] == before.loc[0:3, "amount_sum_1d"] + 500).all()
    assert (after.loc[0:3, "amount_sum_1h"] == before.loc[0:3, "amount_sum_1h"]).all()
    assert (after.loc[6:7, "created_at"] == pd.Timestamp(newest_at + timedelta(minutes=10))).all()
    # offline: every event once, the late ones included
    offline = store.read_offline("customer_win").toPandas()
    assert len(offline) == len(pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"]))

    # progress in the catalogue: the late rows and the micro-batches, shown by monitor freshness
    params = [r.params for r in store.catalog.records(Run, lambda r: r.group == "customer_win")]
    assert sum(p["late_rows"] for p in params) == result.late_rows + 5 and all(p["batches"] >= 1 for p in params)
    report = freshness(store, ["customer_win"])
    (fresh,) = report.results
    assert fresh.stream is not None and fresh.stream["late_rows"] == 5 and fresh.stream["rows_read"] == len(second)
    assert not any("never exported" in n for n in fresh.notes), fresh.notes
    assert "stream" in fresh.summary()


AVRO_SCHEMA = {"type": "record", "name": "Payment", "namespace": "shop", "fields": [
    {"name": "customer_id", "type": "long"}, {"name": "amount", "type": "double"},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "channel", "type": ["null", "string"], "default": None}]}
AVRO_REPO = '''
import json
from featurelake import Entity, Feature, FeatureGroup, KafkaSource

customer = Entity("customer", join_keys=["customer_id"])
payments = KafkaSource("payments", connection="events", topic="{topic}", format="avro",
                       schema=json.loads(SCHEMA_TEXT), avro_wire="confluent")
customer_pay = FeatureGroup("customer_pay", entity=customer, source=payments, timestamp_column="created_at",
                            features=[Feature("amount", "double"), Feature("channel", "string")], ttl="3650d")
'''


def avro_body(row: dict) -> bytes:
    """A payment as plain Avro binary (no header), encoded by fastavro, not by Spark."""
    import io

    import fastavro

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), row)
    return out.getvalue()


def confluent(body: bytes, schema_id: int = 7) -> bytes:
    """The Confluent Schema Registry's wire format: magic byte 0, the schema id (4 bytes, big endian), the body."""
    import struct

    return struct.pack(">bI", 0, schema_id) + body


def test_avro_messages_in_the_confluent_wire_format_land_offline_and_online_bad_ones_rejected_with_offsets(
        tmp_path, spark, kafka_broker, dynamodb_endpoint):
    import base64
    import json

    repo = AVRO_REPO.replace("json.loads(SCHEMA_TEXT)", f"json.loads({json.dumps(AVRO_SCHEMA)!r})")
    repo = repo.replace("{", "{{").replace("}", "}}").replace("{{topic}}", "{topic}")
    store = kafka_store(tmp_path, spark, kafka_broker, dynamodb_endpoint, repo, {"customer_pay": SUITE})
    rnd = random.Random(7)
    good: list[dict] = []
    messages: list[tuple] = []
    for i in range(40):  # 12 keys (ids from 1: a plain body then never starts with byte 0), times shuffled
        row = {"customer_id": 1 + rnd.randrange(12), "amount": round(rnd.uniform(1, 500), 2),
               "created_at": pd.Timestamp(T0 + timedelta(minutes=rnd.randrange(10_000))),
               "channel": rnd.choice(["web", "app", None])}
        good.append(row)
        messages.append((str(row["customer_id"]), confluent(avro_body({**row, "created_at": row["created_at"]
                                                                        .to_pydatetime()}))))
        if i % 15 == 0:  # a producer's retry
            messages.append(messages[-1])
    body = avro_body({"customer_id": 3, "amount": 9.5, "created_at": T0, "channel": "web"})
    bad = {confluent(body)[:-4]: "does not decode as the declared Avro schema",           # truncated
           confluent(b"\xff" * 12): "does not decode as the declared Avro schema",       # garbage
           confluent(body + b"\x02\x04"): "with bytes left over",                         # another schema's
           body: "does not start with the Confluent wire format's header",               # no header
           event(4, 1.0, T0)[1].encode(): "does not start with the Confluent wire format's header",  # JSON
           b"": "the message is empty"}
    messages[20:20] = [("x", value) for value in bad]
    sent = produce(kafka_broker.bootstrap_servers, store.topic, messages, decode=False)

    result = store.stream("customer_pay", available_now=True)
    assert result.rows_read == len(messages) and result.rows_rejected == len(bad), result.summary()
    assert result.rows_quarantined == 0 and result.status == "warned", result.summary()

    # offline: every event once (the retries collapsed), the values fastavro wrote
    want = pd.DataFrame(good).drop_duplicates(["customer_id", "created_at"], keep="last")
    got = offline_rows(store)
    assert len(got) == len(want) and not got.duplicated(["customer_id", "created_at"]).any()
    merged = want.merge(got, on=["customer_id", "created_at"], suffixes=("", "_got"))
    assert len(merged) == len(want) and (merged["amount"] == merged["amount_got"]).all()
    assert (merged["channel"].fillna("-") == merged["channel_got"].fillna("-")).all()
    # online: the newest event per key
    want_online = newest(good)
    items = online_rows(store, want_online.index)
    for key, row in want_online.iterrows():
        item = items[key]
        assert item is not None and (item["amount"], item["channel"]) == (row["amount"], row["channel"]), (key, item)
        assert pd.Timestamp(item["created_at"]) == row["created_at"], (key, item)

    # the messages that do not decode: rejected, the value in base64, with topic, partition, offset and why
    places = {base64.b64encode(value).decode(): (p, o) for value, p, o in sent}
    rejected = store.spark.read.format("delta").load(store.config.lake("rejected", "customer_pay")).toPandas()
    assert sorted(rejected["_record"]) == sorted(base64.b64encode(v).decode() for v in bad)
    for _, r in rejected.iterrows():
        assert (r["_topic"], r["_partition"], r["_offset"]) == (store.topic, *places[r["_record"]])
        assert bad[base64.b64decode(r["_record"])] in r["_reason"], (r["_reason"], r["_record"])


def test_a_plain_avro_body_decodes_and_garbage_truncated_framed_or_leftover_bytes_are_malformed(spark):
    """The plain wire (the default) on a static frame through the reader's decoding: no stream."""
    from pyspark.sql import functions as F

    from featurelake.definitions import KafkaSource
    from featurelake.kafkaread import MESSAGE, _avro

    source = KafkaSource("payments", connection="events", topic="t", format="avro", schema=AVRO_SCHEMA)
    body = avro_body({"customer_id": 3, "amount": 9.5, "created_at": T0, "channel": None})
    values = [body, body[:-2], b"\xff" * 11, confluent(body), body + b"\x00", b"", None]
    frame = spark.createDataFrame([("t", 0, i, T0.replace(tzinfo=None), None if v is None else bytearray(v))
                                   for i, v in enumerate(values)],
                                  "topic string, partition int, offset bigint, timestamp timestamp, value binary")
    place = F.struct("topic", "partition", "offset", "timestamp").alias(MESSAGE)
    rows = sorted(_avro(spark, frame, source, place).collect(), key=lambda r: r[MESSAGE]["offset"])
    first = rows[0]
    assert (first["customer_id"], first["amount"], first["channel"], first["_fl_corrupt"]) == (3, 9.5, None, None)
    assert pd.Timestamp(first["created_at"], tz="UTC") == pd.Timestamp(T0)
    reasons = [r["_fl_corrupt"] or "" for r in rows[1:]]
    assert "does not decode" in reasons[0] and "does not decode" in reasons[1], reasons
    assert "bytes left over" in reasons[2] and "bytes left over" in reasons[3], reasons
    # empty and null values: no reason here, set aside as empty by the batch (their _fl_value is "" or null)
    assert reasons[4:] == ["", ""] and [r["_fl_value"] for r in rows[5:]] == ["", None]
