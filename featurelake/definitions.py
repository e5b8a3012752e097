"""The objects a feature repository declares: entities, sources, feature groups.

Plain, keyword-friendly objects: no SparkSession at import time, every argument checked at
construction so that a bad definition fails when the repository loads, naming the object.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
import textwrap
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from featurelake.errors import DefinitionError, did_you_mean

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
AGGREGATE_FUNCTIONS = ("sum", "count", "avg", "min", "max", "stddev", "last", "approx_count_distinct")
_SIMPLE_TYPES = {"boolean", "tinyint", "byte", "smallint", "short", "int", "integer", "bigint", "long",
                 "float", "real", "double", "string", "binary", "date", "timestamp", "timestamp_ntz",
                 "decimal", "void"}


def check_identifier(name: Any, what: str) -> str:
    """Names reach SQL and paths: only letters, digits and underscores."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise DefinitionError(f"{what} name {name!r} is not a safe identifier: use letters, digits and "
                              f"underscores, starting with a letter (e.g. 'customer_txn')")
    return name


def parse_duration(text: Any, what: str) -> timedelta:
    """'30d', '12h', '15m', '45s', '2w' -> timedelta."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise DefinitionError(f"{what}: bad duration {text!r}: write a positive number and a unit, "
                              f"s, m, h, d or w, such as '30d', '12h' or '15m'")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def check_dtype(dtype: Any, what: str) -> str:
    """Accepts Spark SQL type names: double, bigint, array<float>, map<string,int>, decimal(10,2)..."""
    text = dtype.strip().lower() if isinstance(dtype, str) else ""
    rest = _parse_type(text) if text else None
    if rest != "":
        raise DefinitionError(f"{what}: unknown dtype {dtype!r}: use a Spark SQL type name such as "
                              f"double, bigint, string, boolean, timestamp or array<float>")
    return text


def _parse_type(s: str) -> Optional[str]:
    """Consumes one type from the front of s; returns the rest, or None when it is not a type."""
    s = s.lstrip()
    m = re.match(r"(decimal)\s*\(\s*\d+\s*(,\s*\d+\s*)?\)", s) or re.match(r"[a-z_]+", s)
    if not m:
        return None
    word, s = m.group(0), s[m.end():].lstrip()
    if word in ("array", "map", "struct"):
        if not s.startswith("<"):
            return None
        s = s[1:]
        while True:
            if word == "struct":
                f = re.match(r"\s*[a-z_][a-z0-9_]*\s*:", s)
                if not f:
                    return None
                s = s[f.end():]
            rest = _parse_type(s)
            if rest is None:
                return None
            s = rest.lstrip()
            if s.startswith(","):
                s = s[1:]
                continue
            return s[1:] if s.startswith(">") else None
    return s if word.startswith("decimal") or word in _SIMPLE_TYPES else None


def _code_text(fn: Any) -> str:
    """The transform as text: its source when available, so that editing it makes a new version."""
    if fn is None or isinstance(fn, str):
        return fn or ""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return fn.__code__.co_code.hex() if hasattr(fn, "__code__") else repr(fn)


class Entity:
    """A thing features describe, identified by one or more join keys (customer_id, merchant_id)."""

    def __init__(self, name: str, *, join_keys: Sequence[str], description: str = "",
                 owner: str = "", tags: Optional[dict] = None):
        self.name = check_identifier(name, "entity")
        if isinstance(join_keys, str) or not join_keys:
            raise DefinitionError(f"entity {name!r}: join_keys must be a non-empty list, e.g. ['{name}_id']")
        self.join_keys = [check_identifier(k, f"entity {name!r} join key") for k in join_keys]
        self.description, self.owner, self.tags = description, owner, dict(tags or {})

    def to_dict(self) -> dict:
        return {"name": self.name, "join_keys": self.join_keys, "description": self.description,
                "owner": self.owner, "tags": self.tags}

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={self.join_keys})"


def output_name(owner: str, feature: str, *, full: bool = False, shared: bool = False) -> str:
    """The column a feature gets in a training set or a get_features row: its own name, or
    `owner__feature` (its group's or request-time feature's name first) when asked for (full
    names) or when the name is shared (another group, a spine or entity column has it)."""
    return f"{owner}__{feature}" if full or shared else feature


def is_pii(tags: Mapping[str, Any]) -> bool:
    """The one PII rule: a `pii` tag of true, 1 or yes (any case) on a feature or a group."""
    return str(tags.get("pii", "false")).lower() in ("true", "1", "yes")


class Feature:
    """One declared column of a group, with its Spark SQL dtype."""

    def __init__(self, name: str, dtype: str, description: str = "", *, tags: Optional[dict] = None):
        self.name = check_identifier(name, "feature")
        self.dtype = check_dtype(dtype, f"feature {name!r}")
        self.description, self.tags = description, dict(tags or {})

    @property
    def pii(self) -> bool:
        return is_pii(self.tags)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "description": self.description, "tags": self.tags}

    def __repr__(self) -> str:
        return f"Feature({self.name!r}, {self.dtype!r})"


class Aggregation:
    """Window aggregations of one feature column, named <column>_<function>_<window>."""

    def __init__(self, column: str, functions: Sequence[str], *, windows: Sequence[str]):
        self.column = check_identifier(column, "aggregation column")
        if isinstance(functions, str) or not functions:
            raise DefinitionError(f"aggregation of {column!r}: functions must be a non-empty list")
        for f in functions:
            if f not in AGGREGATE_FUNCTIONS:
                raise DefinitionError(f"aggregation of {column!r}: unknown function {f!r}"
                                      f"{did_you_mean(f, AGGREGATE_FUNCTIONS)}")
        if isinstance(windows, str) or not windows:
            raise DefinitionError(f"aggregation of {column!r}: windows must be a non-empty list such as ['1d', '7d']")
        self.functions = list(functions)
        self.windows = {w: parse_duration(w, f"aggregation of {column!r} window") for w in windows}

    def feature_names(self) -> list[str]:
        return [f"{self.column}_{f}_{w}" for f in self.functions for w in self.windows]

    def outputs(self) -> list[tuple[str, str, str, timedelta]]:
        """(feature name, function, window text, window) for every output."""
        return [(f"{self.column}_{f}_{w}", f, w, d) for f in self.functions for w, d in self.windows.items()]

    def to_dict(self) -> dict:
        return {"column": self.column, "functions": self.functions, "windows": list(self.windows)}


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


def top_level_parts(text: str) -> list[str]:
    """'a int, b map<string, int>' -> ['a int', ' b map<string, int>']: split at the commas outside
    <> and ()."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "<(") - (ch in ">)")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


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


Transform = Union[Callable[[Any], Any], str, None]
DEFAULT_LATENESS = "1h"
"""How late a stream's event may be before the run counts it late (FeatureGroup allowed_lateness)."""


class FeatureGroup:
    """Features of one entity computed by one transform from one source, stored as one offline
    table (Delta) and, when online, one DynamoDB table."""

    def __init__(self, name: str, *, entity: Entity, source: Source, timestamp_column: str,
                 features: Sequence[Feature], transform: Transform = None,
                 aggregations: Sequence[Aggregation] = (), ttl: Optional[str] = None, online: bool = True,
                 owner: str = "", tags: Optional[dict] = None, description: str = "",
                 expectations: Optional[str] = None, validation: Optional[str] = None,
                 freshness_sla: Optional[str] = None, allow_online_pii: bool = False,
                 on_bad_file: str = "quarantine", allowed_lateness: Optional[str] = None):
        self.name = check_identifier(name, "feature group")
        where = f"feature group {name!r}"
        if not isinstance(entity, Entity):
            raise DefinitionError(f"{where}: entity must be an Entity, found {type(entity).__name__}")
        if not isinstance(source, Source):
            raise DefinitionError(f"{where}: source must be an S3Source, JdbcSource, DeltaSource, HttpSource or "
                                  f"KafkaSource, found {type(source).__name__}")
        if not features or not all(isinstance(f, Feature) for f in features):
            raise DefinitionError(f"{where}: features must be a non-empty list of Feature(...)")
        if transform is not None and not (callable(transform) or isinstance(transform, str)):
            raise DefinitionError(f"{where}: transform must be a function of a DataFrame or a SQL string")
        if on_bad_file not in ("quarantine", "fail"):
            raise DefinitionError(f"{where}: on_bad_file must be quarantine (a file that cannot be read or lacks "
                                  f"a column is set aside alone) or fail (all or nothing), not {on_bad_file!r}")
        if validation not in (None, "fail", "quarantine", "warn"):
            raise DefinitionError(f"{where}: validation must be fail, quarantine or warn, not {validation!r}")
        self.entity, self.source, self.transform = entity, source, transform
        self.timestamp_column = check_identifier(timestamp_column, f"{where} timestamp column")
        self.features = list(features)
        self.aggregations = list(aggregations)
        self.ttl = parse_duration(ttl, f"{where} ttl") if ttl is not None else None
        self.ttl_text = ttl
        self.freshness_sla = parse_duration(freshness_sla, f"{where} freshness_sla") if freshness_sla else None
        self.freshness_sla_text = freshness_sla
        self.online, self.owner, self.tags, self.description = online, owner, dict(tags or {}), description
        self.expectations, self.validation, self.allow_online_pii = expectations, validation, allow_online_pii
        self.on_bad_file = on_bad_file
        # a stream's events older than its newest minus this are counted late (still written offline)
        if allowed_lateness is not None and not isinstance(source, KafkaSource):
            raise DefinitionError(f"{where}: allowed_lateness applies to a group over a KafkaSource (a stream); "
                                  f"this group reads a {source.kind} source: remove allowed_lateness=")
        self.allowed_lateness_text = allowed_lateness
        self.allowed_lateness = parse_duration(allowed_lateness or DEFAULT_LATENESS, f"{where} allowed_lateness")
        self._check()

    def _check(self) -> None:
        where = f"feature group {self.name!r}"
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"{where}: duplicate feature names {dupes}: each feature needs its own name")
        reserved = set(self.keys) | {self.timestamp_column}
        clash = sorted(reserved & set(names))
        if clash:
            raise DefinitionError(f"{where}: {clash} is a key or the timestamp, not a feature: remove it "
                                  f"from features=")
        for agg in self.aggregations:
            if agg.column not in names:
                raise DefinitionError(f"{where}: aggregation over undeclared column {agg.column!r}"
                                      f"{did_you_mean(agg.column, names)}: declare it as a Feature first")
        agg_names = [n for a in self.aggregations for n in a.feature_names()]
        both = sorted(set(agg_names) & set(names) | {n for n in agg_names if agg_names.count(n) > 1})
        if both:
            raise DefinitionError(f"{where}: duplicate feature names {both} between features and aggregations")
        if self.transform is None and isinstance(self.source, KafkaSource):
            fields = self.source.fields
            missing = [c for c in self.columns if c not in fields]
            if missing:
                raise DefinitionError(f"{where}: without a transform the columns come from the messages of source "
                                      f"{self.source.name!r}, whose fields are {fields}: {missing} missing; "
                                      f"declare them in the source's schema= or add a transform that makes them")
        if isinstance(self.transform, str):
            words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.transform))
            missing = [c for c in [*self.keys, self.timestamp_column] if c not in words]
            if missing and "*" not in self.transform:
                raise DefinitionError(f"{where}: the SQL transform does not produce {missing}: select the "
                                      f"entity keys {self.keys} and the timestamp {self.timestamp_column!r}")

    @property
    def keys(self) -> list[str]:
        return self.entity.join_keys

    @property
    def feature_names(self) -> list[str]:
        """Declared features then aggregation outputs, in declaration order."""
        return [f.name for f in self.features] + [n for a in self.aggregations for n in a.feature_names()]

    @property
    def columns(self) -> list[str]:
        """What the offline table holds besides bookkeeping: keys, event time, declared features."""
        return [*self.keys, self.timestamp_column, *[f.name for f in self.features]]

    @property
    def pii_features(self) -> set[str]:
        """Features and aggregation outputs holding personal data: every one when the group is
        tagged pii, else the tagged features and the aggregations over them."""
        if is_pii(self.tags):
            return set(self.feature_names)
        tagged = {f.name for f in self.features if f.pii}
        return tagged | {n for a in self.aggregations if a.column in tagged for n in a.feature_names()}

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise DefinitionError(f"unknown feature {name!r} in group {self.name!r}"
                              f"{did_you_mean(name, self.feature_names)}")

    @property
    def transform_text(self) -> str:
        return _code_text(self.transform)

    def to_dict(self) -> dict:
        """Everything that defines the group's output; its hash is the group's fingerprint."""
        return {"name": self.name, "entity": self.entity.to_dict(), "source": self.source.to_dict(),
                "timestamp_column": self.timestamp_column, "features": [f.to_dict() for f in self.features],
                "aggregations": [a.to_dict() for a in self.aggregations], "ttl": self.ttl_text,
                "transform": self.transform_text, "online": self.online, "owner": self.owner,
                "tags": self.tags, "description": self.description, "expectations": self.expectations,
                "validation": self.validation, "freshness_sla": self.freshness_sla_text,
                "allow_online_pii": self.allow_online_pii,
                **({"on_bad_file": self.on_bad_file} if self.on_bad_file != "quarantine" else {}),
                **({"allowed_lateness": self.allowed_lateness_text} if self.allowed_lateness_text else {})}

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def streamed(self) -> bool:
        """Fed by a Kafka topic through `featurelake stream`, not by `ingest`."""
        return isinstance(self.source, KafkaSource)

    @property
    def upstream_groups(self) -> list[str]:
        return [self.source.group] if isinstance(self.source, DeltaSource) and self.source.group else []

    def __repr__(self) -> str:
        return f"FeatureGroup({self.name!r}, entity={self.entity.name!r}, features={self.feature_names})"


SERVICE_PREFIX = "service"


def check_reference(ref: Any, where: str) -> tuple[str, str]:
    """'group:feature' or 'group:*' -> (group, feature); anything else is a DefinitionError."""
    parts = ref.split(":") if isinstance(ref, str) else []
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DefinitionError(f"{where}: bad feature reference {ref!r}: write group:feature or group:*")
    return parts[0].strip(), parts[1].strip()


class FeatureService:
    """A named list of feature references one model uses (Feast's FeatureService, Databricks'
    FeatureSpec). Training sets and online reads ask for it as "service:<name>"; the catalogue
    gives every distinct feature list a new version, and a training set records the version."""

    def __init__(self, name: str, *, features: Sequence[str], owner: str = "", description: str = "",
                 tags: Optional[dict] = None):
        self.name = check_identifier(name, "feature service")
        where = f"feature service {name!r}"
        if isinstance(features, str) or not features:
            raise DefinitionError(f"{where}: features must be a non-empty list of references such as "
                                  f"['customer_txn:*', 'merchant_risk:chargeback_rate_30d']")
        refs = [":".join(check_reference(ref, where)) for ref in features]
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise DefinitionError(f"{where}: references {dupes} are listed twice: list each once")
        self.features = refs
        self.owner, self.description, self.tags = owner, description, dict(tags or {})

    @property
    def groups(self) -> list[str]:
        """The groups the service reads, in order of first mention."""
        return list(dict.fromkeys(ref.split(":")[0] for ref in self.features))

    def to_dict(self) -> dict:
        return {"name": self.name, "features": self.features, "owner": self.owner,
                "description": self.description, "tags": self.tags}

    @property
    def fingerprint(self) -> str:
        """Of the feature list alone: owner, description and tags are metadata, not a new version."""
        return hashlib.sha256(json.dumps(self.features).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r}, features={self.features})"
