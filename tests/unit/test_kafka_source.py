"""KafkaSource and Kafka connections: bad declarations fail when they load, naming the source
(or the config line) and the fix; secrets come only from the environment and never show."""
from __future__ import annotations

import pytest

from featurelake import Entity, Feature, FeatureGroup, KafkaSource
from featurelake.config import load_config
from featurelake.errors import ConfigError, DefinitionError, UsageError
from featurelake.streaming import describe, kafka_options, trigger_seconds

SCHEMA = "customer_id bigint, amount double, created_at timestamp, tags array<string>, geo struct<lat: double>"
customer = Entity("customer", join_keys=["customer_id"])


def source(**kw):
    args = dict(connection="events", topic="payments.v1", schema=SCHEMA, timestamp_column="created_at")
    args.update(kw)
    return KafkaSource("payments", **args)


def test_a_json_source_declares_its_fields_and_reads_from_the_start_by_default():
    s = source(options={"maxOffsetsPerTrigger": 1000})
    assert s.kind == "kafka" and s.starting_offsets == "earliest" and s.format == "json"
    assert s.fields == ["customer_id", "amount", "created_at", "tags", "geo"]
    assert s.options == {"maxOffsetsPerTrigger": "1000"}
    assert KafkaSource("raw_events", connection="events", topic="t", format="raw").fields == ["key", "value"]


@pytest.mark.parametrize("kw, message", [
    ({"topic": "bad topic!"}, "is not a Kafka topic name"),
    ({"connection": ""}, "connection= names an entry of the config's connections"),
    ({"format": "avro"}, "format 'avro' is not supported yet"),
    ({"format": "jsn"}, "unknown format 'jsn' \\(did you mean 'json'"),
    ({"schema": None}, "a json source needs schema="),
    ({"schema": "customer_id bigint, amount"}, "schema entry 'amount' is not 'name type'"),
    ({"schema": "customer_id bigint, amount dubble"}, "unknown dtype 'dubble'"),
    ({"schema": "a int, a int"}, "declared twice"),
    ({"timestamp_column": "created"}, "timestamp_column 'created' is not a field of the schema \\(did you mean"),
    ({"starting_offsets": "beginning"}, "starting_offsets must be \"earliest\""),
    ({"options": {"subscribe": "other"}}, "option 'subscribe' is set by featurelake"),
    ({"options": {"kafka.sasl.jaas.config": "x"}}, "looks like a secret"),
    ({"format": "raw"}, "a raw source's columns are key and value"),
])
def test_bad_declarations_name_the_source_and_the_fix(kw, message):
    with pytest.raises(DefinitionError, match=message) as info:
        source(**kw)
    assert "'payments'" in str(info.value)


def test_a_group_without_transform_needs_its_columns_in_the_messages():
    FeatureGroup("pay", entity=customer, source=source(), timestamp_column="created_at",
                 features=[Feature("amount", "double")])
    with pytest.raises(DefinitionError, match=r"fields are .*\['channel'\] missing; declare them in the source"):
        FeatureGroup("pay", entity=customer, source=source(), timestamp_column="created_at",
                     features=[Feature("channel", "string")])


def write(tmp_path, text):
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


def test_a_sasl_connection_takes_its_password_from_the_environment_and_never_shows_it(tmp_path):
    path = write(tmp_path, "connections:\n  events:\n    bootstrap_servers: b1:9092,b2:9092\n"
                           "    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
                           "    user: svc\n    password: ${KAFKA_PASSWORD}\n"
                           "    properties: {ssl.truststore.location: /etc/ca.jks}\n")
    conn = load_config(path, env={"KAFKA_PASSWORD": 's3"cret'}).connection("events")
    options = kafka_options(conn)
    assert options["kafka.bootstrap.servers"] == "b1:9092,b2:9092"
    assert options["kafka.security.protocol"] == "SASL_SSL" and options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                                 'username="svc" password="s3\\"cret";')
    assert options["kafka.ssl.truststore.location"] == "/etc/ca.jks"
    assert "s3" not in describe(conn) and describe(conn) == "b1:9092,b2:9092 (SASL_SSL, SCRAM-SHA-512)"


@pytest.mark.parametrize("text, message", [
    ("    bootstrap_servers: b:9092\n    password: hunter2\n", "passwords come only from the environment"),
    ("    bootstrap_servers: b:9092\n    security_protocol: TLS\n", "unknown Kafka security protocol 'TLS'"),
    ("    bootstrap_servers: b:9092\n    security_protocol: SASL_SSL\n", "SASL_SSL needs sasl_mechanism"),
    ("    bootstrap_servers: b:9092\n    sasl_mechanism: PLAIN\n", "sasl_mechanism is set but the protocol"),
    ("    bootstrap_servers: b:9092\n    properties: {ssl.key.password: x}\n", "secrets come only from the env"),
    ("    user: u\n", "or, for Kafka, bootstrap_servers"),
])
def test_bad_kafka_connections_name_the_line_and_the_fix(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, "connections:\n  events:\n" + text), env={})
    assert "conf.yaml:" in str(info.value)


def test_triggers():
    assert [trigger_seconds(t) for t in ("500ms", "1s", "2m")] == [0.5, 1, 120]
    for bad in ("0s", "1 s", "fast", "1d"):
        with pytest.raises(UsageError, match="--trigger"):
            trigger_seconds(bad)


def test_allowed_lateness_defaults_to_an_hour_and_is_checked_like_other_durations():
    from datetime import timedelta

    from featurelake import S3Source

    feats = [Feature("amount", "double")]
    g = FeatureGroup("pay", entity=customer, source=source(), timestamp_column="created_at", features=feats)
    assert g.allowed_lateness == timedelta(hours=1) and "allowed_lateness" not in g.to_dict()
    g = FeatureGroup("pay", entity=customer, source=source(), timestamp_column="created_at", features=feats,
                     allowed_lateness="15m")
    assert g.allowed_lateness == timedelta(minutes=15) and g.to_dict()["allowed_lateness"] == "15m"
    with pytest.raises(DefinitionError, match="feature group 'pay' allowed_lateness: bad duration 'soon'"):
        FeatureGroup("pay", entity=customer, source=source(), timestamp_column="created_at", features=feats,
                     allowed_lateness="soon")
    files = S3Source("files", path="s3a://b/p", format="parquet")
    with pytest.raises(DefinitionError, match="allowed_lateness applies to a group over a KafkaSource"):
        FeatureGroup("pay", entity=customer, source=files, timestamp_column="created_at", features=feats,
                     allowed_lateness="1h")
