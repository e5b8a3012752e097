"""KafkaSource and Kafka connections: bad declarations fail when they load, naming the source
(or the config line) and the fix; secrets come only from the environment and never show."""
from __future__ import annotations

import pytest

from featurelake import Entity, Feature, FeatureGroup, KafkaSource
from featurelake.config import load_config
from featurelake.errors import ConfigError, DefinitionError, UsageError
from featurelake.kafkaread import describe, kafka_options
from featurelake.streaming import trigger_seconds

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
    ({"format": "avro"}, "schema= of an avro source is not JSON"),
    ({"avro_wire": "confluent"}, "avro_wire= applies to format=\"avro\""),
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


AVRO = {"type": "record", "name": "Payment", "namespace": "shop", "fields": [
    {"name": "customer_id", "type": "long"},
    {"name": "amount", "type": ["null", "double"], "default": None},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "channel", "type": {"type": "enum", "name": "Channel", "symbols": ["web", "pos"]}},
    {"name": "geo", "type": {"type": "record", "name": "Geo", "fields": [{"name": "lat", "type": "double"}]}},
    {"name": "home", "type": ["null", "Geo"]},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "limits", "type": {"type": "map", "values": "Channel"}},
    {"name": "fee", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}}]}


def test_an_avro_source_declares_a_record_schema_as_json_text_or_a_dict_and_its_fields_get_spark_types():
    import json

    as_dict = source(format="avro", schema=AVRO)
    as_text = source(format="avro", schema=json.dumps(AVRO, indent=2), avro_wire="confluent")
    assert as_dict.schema == as_text.schema == json.dumps(AVRO, separators=(",", ":"))
    assert (as_dict.avro_wire, as_text.avro_wire, source().avro_wire) == ("plain", "confluent", None)
    assert as_dict.field_types == [
        ("customer_id", "bigint"), ("amount", "double"), ("created_at", "timestamp"), ("channel", "string"),
        ("geo", "struct<lat: double>"), ("home", "struct<lat: double>"), ("tags", "array<string>"),
        ("limits", "map<string, string>"), ("fee", "decimal(10,2)"), ("day", "date")]
    # the wire is part of the definition; a json source's definition (and fingerprint) is as before
    assert as_text.to_dict()["avro_wire"] == "confluent" and "avro_wire" not in source().to_dict()
    FeatureGroup("pay", entity=customer, source=as_dict, timestamp_column="created_at",
                 features=[Feature("amount", "double"), Feature("channel", "string")])
    with pytest.raises(DefinitionError, match=r"fields are .*\['score'\] missing"):
        FeatureGroup("pay", entity=customer, source=as_dict, timestamp_column="created_at",
                     features=[Feature("score", "double")])


def avro(*fields, **record):
    return {"type": "record", "name": "P", **record, "fields": list(fields)}


@pytest.mark.parametrize("schema, message", [
    ('["a", "b"]', "must be an Avro record with fields"),
    ({"type": "enum", "name": "E", "symbols": ["a"]}, "must be an Avro record with fields"),
    (avro(), "must be an Avro record with fields"),
    (avro({"name": "x", "type": "lng"}), "Avro field P.x has type 'lng', which is neither an Avro type"),
    (avro({"name": "x"}), "has a field .* without a name of letters, digits and underscores and a type"),
    (avro({"name": "bad-name", "type": "int"}), "without a name of letters, digits and underscores"),
    (avro({"name": "x", "type": "int"}, {"name": "x", "type": "long"}), "Avro fields \\['x'\\] are declared twice"),
    (avro({"name": "next", "type": ["null", "P"]}), "refers to 'P' inside itself \\(a recursive type\\)"),
    (avro({"name": "fee", "type": {"type": "bytes", "logicalType": "decimal", "precision": 50}}),
     "needs a precision of 1 to 38"),
    (avro({"name": "x", "type": 5}), "has type 5, not an Avro type"),
    (avro({"name": "x", "type": "long"}), "timestamp_column 'created_at' is not a field of the schema"),
    (7, "an avro source needs schema=, found int"),
])
def test_a_bad_avro_schema_fails_when_the_source_is_declared_naming_the_source_and_the_fix(schema, message):
    with pytest.raises(DefinitionError, match=message) as info:
        source(format="avro", schema=schema)
    assert "source 'payments'" in str(info.value)
