"""Kafka as Spark sees it: a connection's options (secrets included, never logged), the words safe
to say about it, the topic checked before a stream starts, and the topic as a streaming frame
(json, avro or raw messages, each with its place: topic, partition, offset)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from featurelake.definitions import KafkaSource
from featurelake.errors import ConfigError, FeaturelakeError, JobError, root_message
from featurelake.retry import retry

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from featurelake.config import ConnectionConfig

log = logging.getLogger("featurelake.streaming")
MESSAGE = "_kafka"
"""The struct column (topic, partition, offset, timestamp) a message's row carries through the
transform when the transform keeps it (no transform, or one that selects `*` or `_kafka`)."""
CORRUPT = "_fl_corrupt"
VALUE = "_fl_value"
START_ATTEMPTS = 3
"""Tries to reach the broker and find the topic before a stream gives up (exit code 1)."""



def kafka_options(conn: "ConnectionConfig") -> dict[str, str]:
    """Spark's `kafka.*` options of a connection: bootstrap servers, security settings (the SASL
    login built from user and password, which came from the environment) and `properties`. Holds
    secrets: never log it (`describe` says what is safe to say)."""
    options = {"kafka.bootstrap.servers": str(conn.bootstrap_servers)}
    protocol = (conn.security_protocol or "PLAINTEXT").upper()
    if protocol != "PLAINTEXT":
        options["kafka.security.protocol"] = protocol
    if protocol.startswith("SASL"):
        mechanism = str(conn.sasl_mechanism).upper()
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        quote = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
        options["kafka.sasl.mechanism"] = mechanism
        options["kafka.sasl.jaas.config"] = (f'{module} required username="{quote(conn.user)}" '
                                             f'password="{quote(conn.password)}";')
    for key, value in (conn.properties or {}).items():
        options[f"kafka.{key}"] = str(value)
    return options


def describe(conn: "ConnectionConfig") -> str:
    """The connection in words safe for logs and errors: servers and protocol, no secret."""
    protocol = (conn.security_protocol or "PLAINTEXT").upper()
    return f"{conn.bootstrap_servers} ({protocol}{', ' + str(conn.sasl_mechanism) if conn.sasl_mechanism else ''})"


def check_topic(spark: "SparkSession", conn: "ConnectionConfig", source: KafkaSource, *,
                attempts: int = START_ATTEMPTS, timeout_s: float = 10.0) -> int:
    """The topic's partition count, asked of the brokers with Kafka's own admin client (the one
    Spark's connector brings, with the same settings). A topic that does not exist is an error at
    once; brokers that do not answer are asked `attempts` times with backoff, then an error."""
    from featurelake.spark import KAFKA_CONNECTOR, jvm

    vm = jvm(spark)
    if type(vm.org.apache.kafka.clients.admin.AdminClient).__name__ != "JavaClass":
        raise ConfigError(f"source {source.name!r}: Spark's Kafka connector is not on the classpath: start the job "
                          f"with spark-submit --packages {KAFKA_CONNECTOR},... (featurelake adds it to the sessions it "
                          f"builds itself)")
    props = vm.java.util.Properties()
    for key, value in kafka_options(conn).items():
        props.setProperty(key[len("kafka."):], value)
    for key in ("request.timeout.ms", "default.api.timeout.ms"):
        props.setProperty(key, str(int(timeout_s * 1000)))
    props.setProperty("client.id", "featurelake-stream-check")
    where = f"Kafka at {describe(conn)}"

    def ask() -> int:
        admin = vm.org.apache.kafka.clients.admin.AdminClient.create(props)
        try:
            topics = admin.describeTopics(vm.java.util.Collections.singletonList(source.topic)).allTopicNames()
            return int(topics.get(int(timeout_s) + 2, vm.java.util.concurrent.TimeUnit.SECONDS)
                       .get(source.topic).partitions().size())
        finally:
            admin.close(vm.java.time.Duration.ofSeconds(2))

    def missing(exc: Exception) -> bool:
        return "UnknownTopicOrPartition" in f"{exc}"

    try:
        return retry(ask, attempts=attempts, retryable=lambda exc: not missing(exc), base=1.0, cap=5.0,
                     give_up=lambda exc: JobError(f"source {source.name!r}: {where} did not answer after {attempts} "
                                                  f"attempts ({root_message(exc)}): start the broker or fix the "
                                                  f"connection's bootstrap_servers"),
                     on_retry=lambda exc, n: log.warning("%s did not answer (attempt %d of %d): %s", where, n,
                                                         attempts, root_message(exc)))
    except Exception as exc:
        if isinstance(exc, FeaturelakeError):
            raise
        if missing(exc):
            raise JobError(f"source {source.name!r}: topic {source.topic!r} does not exist on {where}: create "
                           f"it (kafka-topics.sh --create --topic {source.topic} ...) or fix the source's topic="
                           ) from None
        raise


def topic_frame(spark: "SparkSession", conn: "ConnectionConfig", source: KafkaSource) -> "DataFrame":
    """The topic as a streaming frame: the message's fields (json: parsed by the schema, with the
    text of a message that does not parse in _fl_corrupt; avro: decoded by the schema, see _avro;
    raw: key and value), its text in _fl_value, and its place (_kafka: topic, partition, offset,
    timestamp)."""
    from pyspark.sql import functions as F

    reader = (spark.readStream.format("kafka").options(**kafka_options(conn)).option("subscribe", source.topic)
              .option("startingOffsets", source.starting_offsets).options(**source.options))
    raw = reader.load()
    place = F.struct(F.col("topic"), F.col("partition"), F.col("offset"), F.col("timestamp")).alias(MESSAGE)
    text = F.col("value").cast("string").alias(VALUE)
    if source.format == "raw":
        return raw.select(F.col("key").cast("string").alias("key"), F.col("value").cast("string").alias("value"),
                          text, place)
    if source.format == "avro":
        return _avro(spark, raw, source, place)
    schema = f"{source.schema}, {CORRUPT} string"
    parsed = F.from_json(F.col("value").cast("string"), schema,
                         {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    return raw.select(parsed.alias("_fl_message"), text, place).select("_fl_message.*", VALUE, MESSAGE)



def _avro(spark: "SparkSession", raw: "DataFrame", source: KafkaSource, place: "Column") -> "DataFrame":
    """An avro source's messages: the fields decoded by from_avro with the declared schema in
    PERMISSIVE mode, which gives a row of nulls for a body that does not decode (garbage,
    truncated); _fl_corrupt says why a message is set aside (no Confluent header, not decodable,
    bytes left over: its fields re-encoded are shorter than the body), _fl_value holds the value
    in base64 (the rejected table keeps text)."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro, to_avro

    from featurelake.spark import AVRO_PACKAGE, jvm

    if type(jvm(spark).org.apache.spark.sql.avro.AvroDataToCatalyst).__name__ != "JavaClass":
        raise ConfigError(f"source {source.name!r} is format=\"avro\" and Spark's Avro support is not on the "
                          f"classpath: start the job with spark-submit --packages {AVRO_PACKAGE},... (featurelake adds "
                          f"it to the sessions it builds itself)")
    schema, wire, value = str(source.schema), source.avro_wire, F.col("value")
    if wire == "confluent":  # magic byte 0, a 4-byte schema id (not looked up), then the body
        framed = (F.length(value) >= 5) & (F.hex(F.substring(value, 1, 1)) == F.lit("00"))
        body = F.when(framed, F.expr("substring(value, 6)"))
    else:
        framed, body = F.lit(True), value
    message = raw.select(from_avro(body, schema, {"mode": "PERMISSIVE"}).alias("_fl_message"),
                         body.alias("_fl_body"), framed.alias("_fl_framed"), value,
                         F.regexp_replace(F.base64(value), "[\r\n]", "").alias(VALUE), place)  # one line
    nothing = F.lit(True)
    for name in source.fields:
        nothing = nothing & F.col(f"_fl_message.`{name}`").isNull()
    leftover = F.length(to_avro(F.col("_fl_message"), schema)) != F.length(F.col("_fl_body"))
    corrupt = (F.when(value.isNull() | (F.length(value) == 0), F.lit(None).cast("string"))
               .when(~F.col("_fl_framed"),
                     F.lit("the value does not start with the Confluent wire format's header (magic byte 0, a 4-byte "
                           "schema id): produce it with the registry's serializer, or declare avro_wire=\"plain\""))
               .when(nothing, F.lit(f"the value does not decode as the declared Avro schema ({wire} wire format)"))
               .when(leftover, F.lit(f"the value decodes as the declared Avro schema with bytes left over ({wire} "
                                     f"wire format): it was written with another schema")))
    return message.select(*[F.col(f"_fl_message.`{n}`").alias(n) for n in source.fields], corrupt.alias(CORRUPT),
                          VALUE, MESSAGE)
