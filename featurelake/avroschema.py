"""Avro schemas of KafkaSource(format="avro"), checked without Spark when a repository loads:
the record's fields and the Spark SQL types Spark's from_avro gives them."""
from __future__ import annotations

import json
from typing import Any, Mapping

from featurelake.defchecks import IDENTIFIER, check_dtype, check_identifier, top_level_parts
from featurelake.errors import DefinitionError

_AVRO_PRIMITIVES = {"null": "void", "boolean": "boolean", "int": "int", "long": "bigint", "float": "float",
                    "double": "double", "bytes": "binary", "string": "string"}
_AVRO_LOGICAL = {("int", "date"): "date", ("long", "timestamp-millis"): "timestamp",
                 ("long", "timestamp-micros"): "timestamp", ("long", "local-timestamp-millis"): "timestamp_ntz",
                 ("long", "local-timestamp-micros"): "timestamp_ntz"}
AVRO_WIRES = ("plain", "confluent")
"""plain: the message's value is the Avro binary body alone; confluent: the Confluent Schema
Registry's framing, magic byte 0 and a 4-byte schema id before the body (the id is not looked up:
the declared schema decodes every message)."""


def avro_schema(schema: Any, where: str) -> tuple[str, list[tuple[str, str]]]:
    """An Avro record schema (its JSON text, or that JSON as a dict) -> (the schema as compact
    JSON text, [(field, Spark SQL type), ...]) with the types Spark's from_avro gives the fields:
    long bigint, timestamp-millis timestamp, enum string, [null, T] T, record struct<...>, ...
    Checked without Spark, so that a bad schema fails when the repository loads."""
    fix = ("declare the Avro schema of the messages' value, a record, as a JSON string or a dict, e.g. "
           "{\"type\": \"record\", \"name\": \"Payment\", \"fields\": [{\"name\": \"customer_id\", "
           "\"type\": \"long\"}, ...]}")
    if isinstance(schema, str):
        try:
            parsed = json.loads(schema)
        except ValueError as exc:
            raise DefinitionError(f"{where}: schema= of an avro source is not JSON ({exc}): {fix}") from None
    elif isinstance(schema, Mapping):
        parsed = json.loads(json.dumps(schema))
    else:
        raise DefinitionError(f"{where}: an avro source needs schema=, found {type(schema).__name__}: {fix}")
    if not isinstance(parsed, dict) or parsed.get("type") != "record" or not isinstance(parsed.get("fields"), list) \
            or not parsed["fields"]:
        raise DefinitionError(f"{where}: schema= must be an Avro record with fields (type \"record\", a name and a "
                              f"non-empty list of fields), the whole message's value: {fix}")
    named: dict[str, Any] = {}

    def spark_type(t: Any, path: str, space: str, seen: tuple) -> str:
        if isinstance(t, str):
            if t in _AVRO_PRIMITIVES:
                return _AVRO_PRIMITIVES[t]
            full = t if "." in t or not space else f"{space}.{t}"
            for ref in (full, t):
                if ref in seen:
                    raise DefinitionError(f"{where}: Avro field {path} refers to {t!r} inside itself (a recursive "
                                          f"type), which Spark's from_avro cannot map to a column: flatten it")
                if ref in named:
                    return spark_type(named[ref], path, space, seen)
            raise DefinitionError(f"{where}: Avro field {path} has type {t!r}, which is neither an Avro type nor "
                                  f"a record, enum or fixed declared before it: fix the type")
        if isinstance(t, list):
            members = [m for m in t if m != "null"]
            if not members:
                return "void"
            types = [spark_type(m, path, space, seen) for m in members]
            if len(types) == 1:
                return types[0]
            if sorted(types) in (["bigint", "int"], ["double", "float"]):
                return "bigint" if "bigint" in types else "double"
            return "struct<" + ", ".join(f"member{i}: {ty}" for i, ty in enumerate(types)) + ">"
        if not isinstance(t, dict) or "type" not in t:
            raise DefinitionError(f"{where}: Avro field {path} has type {t!r}, not an Avro type: fix the type")
        kind, logical = t["type"], t.get("logicalType")
        if kind in ("record", "enum", "fixed"):
            name = t.get("name")
            if not isinstance(name, str) or not name:
                raise DefinitionError(f"{where}: Avro {kind} at {path} has no name: give it \"name\"")
            space = t.get("namespace", space) or ""
            full = name if "." in name or not space else f"{space}.{name}"
            named[full] = named[name] = t
            if kind == "enum":
                return "string"
            if kind == "fixed":
                return _decimal(t) if logical == "decimal" else "binary"
            fields = t.get("fields")
            if not isinstance(fields, list) or not fields:
                raise DefinitionError(f"{where}: Avro record {name!r} at {path} has no fields: give it \"fields\"")
            inner = [(f.get("name") if isinstance(f, dict) else None, f) for f in fields]
            for fname, f in inner:
                if not isinstance(fname, str) or not IDENTIFIER.match(fname) or "type" not in f:
                    raise DefinitionError(f"{where}: Avro record {name!r} has a field {f!r} without a name of "
                                          f"letters, digits and underscores and a type: fix the field")
            body = ", ".join(f"{fname}: {spark_type(f['type'], f'{path}.{fname}', space, seen + (full,))}"
                             for fname, f in inner)
            return f"struct<{body}>"
        if kind == "array":
            return f"array<{spark_type(t.get('items'), path + '[]', space, seen)}>"
        if kind == "map":
            return f"map<string, {spark_type(t.get('values'), path + '{}', space, seen)}>"
        if isinstance(kind, str) and kind in _AVRO_PRIMITIVES:
            if logical == "decimal" and kind == "bytes":
                return _decimal(t)
            return _AVRO_LOGICAL.get((kind, str(logical)), _AVRO_PRIMITIVES[kind])
        return spark_type(kind, path, space, seen)

    def _decimal(t: dict) -> str:
        precision, scale = t.get("precision"), t.get("scale", 0)
        if not isinstance(precision, int) or not isinstance(scale, int) or not 0 < precision <= 38 \
                or not 0 <= scale <= precision:
            raise DefinitionError(f"{where}: Avro decimal {t!r} needs a precision of 1 to 38 and a scale within it "
                                  f"(Spark's decimal): fix precision and scale")
        return f"decimal({precision},{scale})"

    top = spark_type(parsed, parsed.get("name", "record"), parsed.get("namespace", ""), ())
    out = []
    for f in parsed["fields"]:
        check_identifier(f["name"], f"{where} schema field")
        dtype = _split_struct(top, f["name"])
        out.append((f["name"], check_dtype(dtype, f"{where} Avro field {f['name']!r} (as Spark type {dtype!r})")))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DefinitionError(f"{where}: Avro fields {dupes} are declared twice: declare each field once")
    return json.dumps(parsed, separators=(",", ":")), out


def _split_struct(struct: str, name: str) -> str:
    """The type of field `name` in 'struct<a: int, b: array<string>>'."""
    out: dict[str, str] = {}
    for part in top_level_parts(struct[len("struct<"):-1]):
        key, _, dtype = part.strip().partition(":")
        out.setdefault(key.strip(), dtype.strip())
    return out[name]
