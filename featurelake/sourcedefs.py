"""The sources a feature group reads, as a repository declares them: S3Source, JdbcSource,
DeltaSource, HttpSource, KafkaSource, each checked at construction. Declarations only: the
readers are in featurelake.sources, featurelake.httpread and featurelake.streaming.
featurelake.definitions re-exports every one (import them from there or from `featurelake`).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Union

from featurelake.defchecks import check_dtype, check_identifier, top_level_parts
from featurelake.errors import DefinitionError, did_you_mean


class Source:
    """Base of the three kinds of source; kind names the reader in ingest.py."""

    kind = "source"

    def __init__(self, name: str, timestamp_column: Optional[str] = None):
        self.name = check_identifier(name, f"{self.kind} source")
        self.timestamp_column = timestamp_column and check_identifier(
            timestamp_column, f"source {name!r} timestamp column")

    def to_dict(self) -> dict:
        return {"kind": self.kind, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class S3Source(Source):
    """Files under a path (s3a://, file://, dbfs:/ or local) in parquet, csv, json, xml, text,
    binaryFile or delta; read incrementally, each file once."""

    kind = "s3"
    FORMATS = ("parquet", "csv", "json", "xml", "text", "binaryFile", "delta")

    def __init__(self, name: str, *, path: str, format: str = "parquet", options: Optional[dict] = None,
                 schema: Optional[str] = None, timestamp_column: Optional[str] = None,
                 pattern: Optional[str] = None):
        super().__init__(name, timestamp_column)
        if format not in self.FORMATS:
            raise DefinitionError(f"source {name!r}: unknown format {format!r}{did_you_mean(format, self.FORMATS)}")
        if not path or not isinstance(path, str):
            raise DefinitionError(f"source {name!r}: path is required (s3a://bucket/prefix/, file:///...)")
        if pattern is not None:
            from featurelake.logfiles import check_pattern

            if format != "text":
                raise DefinitionError(f"source {name!r}: pattern= splits the lines of log files: use it with "
                                      f"format=\"text\" (this source is {format!r})")
            if schema is not None:
                raise DefinitionError(f"source {name!r}: with pattern= the columns are the pattern's named groups "
                                      f"(as strings; cast them in the transform): remove schema=")
            check_pattern(name, pattern)
        self.path, self.format, self.options, self.schema = path, format, dict(options or {}), schema
        self.pattern = pattern
        """Log files (format "text"): a regular expression whose named groups are the columns."""

    def to_dict(self) -> dict:
        out = super().to_dict()
        if out.get("pattern") is None:
            out.pop("pattern", None)  # the definitions of plain file sources keep their fingerprint
        return out


class JdbcSource(Source):
    """A table or query over JDBC, read incrementally past the last recorded watermark."""

    kind = "jdbc"

    def __init__(self, name: str, *, connection: str, table: Optional[str] = None, query: Optional[str] = None,
                 timestamp_column: Optional[str] = None, watermark_column: Optional[str] = None,
                 partition_column: Optional[str] = None, lower_bound: Optional[int] = None,
                 upper_bound: Optional[int] = None, num_partitions: Optional[int] = None,
                 fetch_size: int = 10_000):
        super().__init__(name, timestamp_column)
        if (table is None) == (query is None):
            raise DefinitionError(f"source {name!r}: give exactly one of table= or query=")
        if table is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", table):
            raise DefinitionError(f"source {name!r}: table {table!r} is not a safe name: schema.table, "
                                  f"letters, digits and underscores")
        if partition_column and (lower_bound is None or upper_bound is None or not num_partitions):
            raise DefinitionError(f"source {name!r}: partition_column needs lower_bound, upper_bound and "
                                  f"num_partitions")
        self.connection, self.table, self.query = connection, table, query
        self.watermark_column = watermark_column and check_identifier(watermark_column, f"source {name!r} watermark")
        self.partition_column, self.lower_bound, self.upper_bound = partition_column, lower_bound, upper_bound
        self.num_partitions, self.fetch_size = num_partitions, fetch_size


class DeltaSource(Source):
    """A Delta table (path, metastore table, or another group's offline table), read through its
    change data feed from the last version read."""

    kind = "delta"

    def __init__(self, name: str, *, path: Optional[str] = None, table: Optional[str] = None,
                 group: Optional[str] = None, timestamp_column: Optional[str] = None):
        super().__init__(name, timestamp_column)
        if sum(x is not None for x in (path, table, group)) != 1:
            raise DefinitionError(f"source {name!r}: give exactly one of path=, table= or group=")
        self.path, self.table, self.group = path, table, group


class HttpSource(Source):
    """A JSON HTTP API, read page by page on the driver, past the watermark of the last
    successful run (passed to the API as `watermark_param`). Pagination is declared: `next_link`
    (dotted path to the next page's URL in each answer, or "Link" for the Link header), `cursor`
    (dotted path to the next cursor, sent back as `cursor_param`) or `page_param` (page numbers
    from `first_page` until a page without records); none means one page. `records` is the
    dotted path to the list of records in each answer (None: the answer is the list). The
    connection (config `connections:`) holds the base URL, headers, auth, rate limit, timeouts
    and retries. Declare the watermark field as a string in `schema` so that its highest value
    goes back to the API exactly as the API wrote it."""

    kind = "http"

    def __init__(self, name: str, *, connection: str, path: str, params: Optional[dict] = None,
                 records: Optional[str] = None, next_link: Optional[str] = None, cursor: Optional[str] = None,
                 cursor_param: str = "cursor", page_param: Optional[str] = None, first_page: int = 1,
                 watermark_param: Optional[str] = None, watermark_column: Optional[str] = None,
                 timestamp_column: Optional[str] = None, schema: Optional[str] = None, max_pages: int = 100_000):
        super().__init__(name, timestamp_column)
        if not connection or not isinstance(connection, str):
            raise DefinitionError(f"source {name!r}: connection= names an entry of the config's connections: "
                                  f"(with its base_url)")
        if not isinstance(path, str):
            raise DefinitionError(f"source {name!r}: path= is the API's path under the connection's base_url, "
                                  f"such as \"/v1/rates\"; got {path!r}")
        declared = [k for k, v in (("next_link", next_link), ("cursor", cursor), ("page_param", page_param)) if v]
        if len(declared) > 1:
            raise DefinitionError(f"source {name!r}: declare one way to page, not {' and '.join(declared)}")
        if params is not None and (not isinstance(params, dict)
                                   or any(not isinstance(v, (str, int, float, bool)) for v in params.values())):
            raise DefinitionError(f"source {name!r}: params= is a mapping of query parameters to plain values; "
                                  f"got {params!r}")
        for what, dotted in (("records", records), ("next_link", next_link), ("cursor", cursor)):
            if dotted is not None and (not isinstance(dotted, str) or not all(dotted.split("."))):
                raise DefinitionError(f"source {name!r}: {what}= is a dotted path into each answer, such as "
                                      f"\"data.items\"; got {dotted!r}")
        if not isinstance(max_pages, int) or max_pages < 1 or not isinstance(first_page, int):
            raise DefinitionError(f"source {name!r}: max_pages must be a positive integer and first_page an integer")
        watermark_column = watermark_column or (timestamp_column if watermark_param else None)
        if watermark_param and not watermark_column:
            raise DefinitionError(f"source {name!r}: watermark_param={watermark_param!r} passes the highest value "
                                  f"read so far: say of which field with watermark_column= (or timestamp_column=)")
        self.connection, self.path, self.params, self.records = connection, path, dict(params or {}), records
        self.next_link, self.cursor, self.cursor_param = next_link, cursor, cursor_param
        self.page_param, self.first_page, self.max_pages = page_param, first_page, max_pages
        self.watermark_param = watermark_param
        self.watermark_column = watermark_column and check_identifier(watermark_column, f"source {name!r} watermark")
        self.schema = schema


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_RESERVED_KAFKA_OPTIONS = ("subscribe", "subscribepattern", "assign", "startingoffsets", "endingoffsets",
                           "kafka.bootstrap.servers", "startingoffsetsbytimestamp", "startingtimestamp")
_SECRET_WORDS = ("password", "jaas", "secret", "token")


def split_schema(text: str, where: str) -> list[tuple[str, str]]:
    """'customer_id bigint, amount double, tags array<string>' -> [(name, dtype), ...]; a name and
    a Spark SQL type per top-level comma, each checked (a typo fails when the repository loads)."""
    out = []
    for part in top_level_parts(text):
        words = part.strip().split(None, 1)
        if len(words) != 2:
            raise DefinitionError(f"{where}: schema entry {part.strip()!r} is not 'name type': write the message's "
                                  f"fields as a Spark DDL string, e.g. \"customer_id bigint, amount double, "
                                  f"created_at timestamp\"")
        name, dtype = words[0].strip("`"), words[1]
        check_identifier(name, f"{where} schema field")
        out.append((name, check_dtype(dtype, f"{where} schema field {name!r}")))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DefinitionError(f"{where}: schema fields {dupes} are declared twice: declare each field once")
    return out


class KafkaSource(Source):
    """A Kafka topic read by Spark Structured Streaming (`featurelake stream GROUP`): each message's
    value parsed as `format` with the declared `schema`; a message that does not parse is set
    aside with its topic, partition and offset. The connection (config `connections:`) holds the
    bootstrap servers and security settings, its secrets from the environment. `options` are
    further settings of Spark's Kafka source (maxOffsetsPerTrigger, minPartitions, kafka.* client
    settings without secrets)."""

    kind = "kafka"
    FORMATS = ("json", "avro", "raw")
    """json: the value is a JSON object with the schema's fields (Spark DDL); avro: the value is
    Avro binary of the declared Avro record schema (JSON text or a dict), plain or in the
    Confluent wire format (avro_wire=); raw: the columns are the message's `key` and `value` as
    strings, parsed by the group's transform."""

    def __init__(self, name: str, *, connection: str, topic: str, format: str = "json",
                 schema: Union[str, Mapping[str, Any], None] = None, timestamp_column: Optional[str] = None,
                 starting_offsets: str = "earliest", options: Optional[dict] = None,
                 avro_wire: Optional[str] = None):
        super().__init__(name, timestamp_column)
        where = f"source {name!r}"
        if not connection or not isinstance(connection, str):
            raise DefinitionError(f"{where}: connection= names an entry of the config's connections: (with its "
                                  f"bootstrap_servers), e.g. connection=\"events\"")
        if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
            raise DefinitionError(f"{where}: topic {topic!r} is not a Kafka topic name: letters, digits, '.', '_' "
                                  f"and '-', at most 249 of them")
        if format not in self.FORMATS:
            raise DefinitionError(f"{where}: unknown format {format!r}{did_you_mean(str(format), self.FORMATS)}: "
                                  f"json (the value is a JSON object), avro (Avro binary of a declared record "
                                  f"schema) or raw (key and value as strings)")
        from featurelake.avroschema import AVRO_WIRES, avro_schema

        if avro_wire is not None and (format != "avro" or avro_wire not in AVRO_WIRES):
            raise DefinitionError(f"{where}: avro_wire= applies to format=\"avro\" and is \"plain\" (the value is the "
                                  f"Avro body, the default) or \"confluent\" (magic byte 0 and a 4-byte schema id "
                                  f"before it), not {avro_wire!r}")
        fields: list[tuple[str, str]] = []
        if format == "json":
            if not isinstance(schema, str) or not schema.strip():
                raise DefinitionError(f"{where}: a json source needs schema=, the message's fields as a Spark DDL "
                                      f"string, e.g. \"customer_id bigint, amount double, created_at timestamp\"")
            fields = split_schema(schema, where)
        elif format == "avro":
            schema, fields = avro_schema(schema, where)
        elif schema is not None:
            raise DefinitionError(f"{where}: a raw source's columns are key and value (strings): remove schema= "
                                  f"and parse the value in the transform")
        names = [n for n, _ in fields] if fields else ["key", "value"]
        if self.timestamp_column and self.timestamp_column not in names:
            raise DefinitionError(f"{where}: timestamp_column {self.timestamp_column!r} is not a field of the schema"
                                  f"{did_you_mean(self.timestamp_column, names)}")
        if starting_offsets not in ("earliest", "latest"):
            raise DefinitionError(f"{where}: starting_offsets must be \"earliest\" (the topic's whole retained "
                                  f"history on the first run) or \"latest\" (only what arrives after it), "
                                  f"not {starting_offsets!r}")
        if options is not None and not isinstance(options, dict):
            raise DefinitionError(f"{where}: options= is a mapping of Spark Kafka source settings, "
                                  f"e.g. {{\"maxOffsetsPerTrigger\": 10000}}; got {options!r}")
        for key, value in (options or {}).items():
            low = str(key).lower()
            if low in _RESERVED_KAFKA_OPTIONS:
                raise DefinitionError(f"{where}: option {key!r} is set by featurelake (topic=, starting_offsets= "
                                      f"and the connection's bootstrap_servers): remove it from options=")
            if any(word in low for word in _SECRET_WORDS) and "location" not in low and "type" not in low:
                raise DefinitionError(f"{where}: option {key!r} looks like a secret, and definitions are "
                                      f"registered in the catalogue: put it in the connection (password: "
                                      f"${{SOME_ENV_VAR}}) instead")
            if not isinstance(value, (str, int, float, bool)):
                raise DefinitionError(f"{where}: option {key!r} must be a plain value, not {value!r}")
        self.connection, self.topic, self.format, self.schema = connection, topic, format, schema
        self.starting_offsets = starting_offsets
        self.options = {str(k): str(v) for k, v in (options or {}).items()}
        # kept out of vars(): the definitions of json and raw sources keep their fingerprints
        self._avro_wire = (avro_wire or "plain") if format == "avro" else None
        self._fields = fields

    @property
    def avro_wire(self) -> Optional[str]:
        """An avro source's framing of the value: plain (the Avro body) or confluent; None otherwise."""
        return self._avro_wire

    @property
    def fields(self) -> list[str]:
        """The columns a message becomes, before the transform."""
        return [n for n, _ in self._fields] if self._fields else ["key", "value"]

    @property
    def field_types(self) -> list[tuple[str, str]]:
        """(column, Spark SQL type) of each field a message becomes; for avro, as from_avro maps them."""
        return list(self._fields) if self._fields else [("key", "string"), ("value", "string")]

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self._avro_wire is not None:
            out["avro_wire"] = self._avro_wire
        return out
