"""Each service fixture answers real requests through the client the library uses."""
import subprocess
import uuid

import boto3
import pytest


def test_dynamodb_endpoint_stores_items(dynamodb_endpoint):
    ddb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    table = f"t_{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    ddb.put_item(TableName=table, Item={"k": {"S": "a"}, "v": {"N": "1.5"}})
    item = ddb.get_item(TableName=table, Key={"k": {"S": "a"}}, ConsistentRead=True)["Item"]
    assert item["v"] == {"N": "1.5"}


def test_s3_endpoint_stores_objects(s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="featurelake-test")
    s3.put_object(Bucket="featurelake-test", Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket="featurelake-test", Key="a/b.txt")["Body"].read() == b"hello"


def test_postgres_service_accepts_sql_over_tcp(postgres_service):
    pg = postgres_service
    sql = "create table t(x int); insert into t values (41); select x + 1 from t;"
    out = subprocess.run(
        [f"{pg.bin_dir}/psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql, pg.dsn],
        capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "42"
    assert pg.jdbc_url == f"jdbc:postgresql://127.0.0.1:{pg.port}/featurelake"


def test_kafka_broker_keeps_what_a_producer_sends(kafka_broker):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = kafka_broker.bootstrap_servers
    topic = f"t_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, key=str(i % 2), value=f"event {i}")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "test", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen = []
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                seen.append(msg.value().decode())
            if len(seen) == 10:
                break
    finally:
        consumer.close()
    assert sorted(seen) == sorted(f"event {i}" for i in range(10))
    assert "unknown_topic" not in admin.list_topics(timeout=10).topics  # no topic is created by accident


def test_the_demo_api_answers_pages_only_to_its_token(demo_api):
    import json
    import os
    import urllib.error
    import urllib.request

    records = [{"merchant_id": i, "score": 1.0, "band": "low", "scored_at": f"2026-01-0{i}T03:00:00.000Z",
                "updated_at": f"2026-01-0{i}T03:00:00.000Z"} for i in range(1, 4)]
    demo_api.data.write_text(json.dumps(records))

    def get(query: str, token: str) -> dict:
        req = urllib.request.Request(f"{demo_api.url}/v1/merchant-scores?{query}",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as answer:
            return json.loads(answer.read())

    token = os.environ["FEATURELAKE_DEMO_API_TOKEN"]
    first = get("limit=2", token)
    assert [r["merchant_id"] for r in first["data"]] == [1, 2] and first["next_cursor"] == "2"
    assert get(f"limit=2&cursor={first['next_cursor']}", token) == {"data": [records[2]]}
    assert get("updated_since=2026-01-02T03:00:00.000Z", token) == {"data": [records[2]]}
    with pytest.raises(urllib.error.HTTPError) as refused:
        get("", "not-the-token")
    assert refused.value.code == 401


def test_up_starts_what_the_config_uses_and_a_failed_up_stops_what_it_started(monkeypatch, tmp_path):
    import socket

    import services

    assert services.needed(services.REPO / "conf" / "local.yaml") == ["dynalite", "moto", "api", "kafka"]  # no pg
    taken = socket.create_server(("127.0.0.1", 0))
    ports = {"dynalite": services.free_port(), "api": services.free_port(), "moto": taken.getsockname()[1]}
    monkeypatch.setattr(services, "DEMO_PORTS", ports)
    monkeypatch.setattr(services, "STATE_DIR", tmp_path)
    try:
        with pytest.raises(services.ServiceError, match="already in use"):
            services.up(["dynalite", "api", "moto"])
        assert not services._port_open(ports["dynalite"])  # stopped again: a retry finds the port free
        assert not services._port_open(ports["api"])
        assert not list(tmp_path.glob("*.json"))
    finally:
        taken.close()
