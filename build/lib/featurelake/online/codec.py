"""The DynamoDB item layout, shared by the export (which writes items) and the OnlineClient (which
reads them). Standard library only: it runs in Spark's Python workers and in inference services.

One item per entity key::

    pk            S  the entity's key values, encoded by `encode_pk` (below)
    <feature>     the value as a native attribute: N (numbers), S (strings, dates), BOOL, B (binary,
                  and float/double arrays packed little-endian: 4 or 8 bytes a value, smaller than a
                  list of numbers and read with one call), L (other arrays), M (maps, structs).
                  A null feature is left out of the item.
    _event_ts     N  event time of the row, epoch milliseconds (a fraction keeps microseconds)
    _ingested_ts  N  when that row was ingested (offline's `_ingested_at`), epoch milliseconds
    _as_of        N  groups with aggregations: the time the window features were computed as of
    _expires_at   N  groups with a ttl: epoch seconds after which DynamoDB may delete the item

The item `pk = "%meta"` describes the table (keys, features and their Spark dtypes, ttl) so that
the client returns declared Python types without reading the catalogue. `pk = "%lock"` is the
export lease. Neither can be an entity: in an entity's pk a `%` is always followed by `25` or `7C`.

Numbers DynamoDB cannot hold (NaN, +-inf, -0.0, magnitudes beyond 1e125 or below 1e-130) are
stored as S in Python's repr; the client reads them back with float().
"""
from __future__ import annotations

import base64
import json
import math
import sys
from array import array
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Optional, Sequence, Union

META_PK = "%meta"
LOCK_PK = "%lock"
EVENT_TS = "_event_ts"
INGESTED_TS = "_ingested_ts"
AS_OF = "_as_of"
EXPIRES_AT = "_expires_at"
BOOKKEEPING = ("pk", EVENT_TS, INGESTED_TS, AS_OF, EXPIRES_AT)
MAX_ITEM_BYTES = 400 * 1024
FORMAT = 1

INTEGRAL = {"tinyint", "smallint", "int", "integer", "bigint", "long", "short", "byte"}
FLOATING = {"float", "double", "real"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_LITTLE = sys.byteorder == "little"

DType = tuple  # ("bigint",) | ("array", elem) | ("map", key, value) | ("struct", ((name, t), ...))


class UnsupportedType(ValueError):
    """A Spark type with no DynamoDB representation here (e.g. a map with struct keys)."""


# ---- Spark dtypes ----------------------------------------------------------------------------

def parse_dtype(text: str) -> DType:
    """Spark's simpleString ('array<float>', 'map<string,int>', 'struct<a:int>', 'decimal(10,2)')
    -> a small tuple tree."""
    t, rest = _parse(text.strip().lower())
    if rest.strip():
        raise UnsupportedType(f"cannot parse Spark type {text!r}")
    return t


def _parse(s: str) -> tuple[DType, str]:
    s = s.lstrip()
    i = 0
    while i < len(s) and (s[i].isalnum() or s[i] == "_"):
        i += 1
    word, s = s[:i], s[i:].lstrip()
    if not word:
        raise UnsupportedType(f"cannot parse Spark type near {s!r}")
    if word in ("decimal", "varchar", "char") and s.startswith("("):
        s = s[s.index(")") + 1:]
        return (("decimal",) if word == "decimal" else ("string",)), s
    if word not in ("array", "map", "struct"):
        return (word,), s
    if not s.startswith("<"):
        raise UnsupportedType(f"{word} without <...>")
    s = s[1:]
    if word == "array":
        elem, s = _parse(s)
        return ("array", elem), _close(s)
    if word == "map":
        key, s = _parse(s)
        s = s.lstrip()[1:]  # the comma
        value, s = _parse(s)
        return ("map", key, value), _close(s)
    fields = []
    while True:
        name, s = s.split(":", 1)
        ftype, s = _parse(s)
        fields.append((name.strip().strip("`"), ftype))
        s = s.lstrip()
        if s.startswith(","):
            s = s[1:]
            continue
        return ("struct", tuple(fields)), _close(s)


def _close(s: str) -> str:
    s = s.lstrip()
    if not s.startswith(">"):
        raise UnsupportedType(f"expected '>' near {s!r}")
    return s[1:]


def has_timestamp(t: DType) -> bool:
    if t[0] in ("timestamp", "timestamp_ntz"):
        return True
    if t[0] == "array":
        return has_timestamp(t[1])
    if t[0] == "map":
        return has_timestamp(t[1]) or has_timestamp(t[2])
    if t[0] == "struct":
        return any(has_timestamp(f) for _, f in t[1])
    return False


# ---- epoch milliseconds as DynamoDB numbers ---------------------------------------------------

def micros_to_ms_text(us: int) -> str:
    """Epoch microseconds -> '1700000000123' or '1700000000123.456' (exact, no float)."""
    sign = "-" if us < 0 else ""
    whole, frac = divmod(abs(us), 1000)
    return f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:03d}".rstrip("0")


def ms_text_to_micros(text: str) -> int:
    """The inverse of micros_to_ms_text, also for DynamoDB's normalised forms."""
    if text.isdigit():
        return int(text) * 1000
    whole, dot, frac = text.partition(".")
    if dot and len(frac) <= 3 and frac.isdigit() and whole.lstrip("-").isdigit():
        us = int(whole.lstrip("-")) * 1000 + int(frac.ljust(3, "0"))
        return -us if whole.startswith("-") else us
    return int(Decimal(text) * 1000)


def micros_to_datetime(us: int, aware: bool = True) -> datetime:
    return (_EPOCH if aware else _EPOCH_NAIVE) + timedelta(microseconds=us)


def datetime_to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# ---- the partition key ------------------------------------------------------------------------

def encode_pk(parts: Sequence[str]) -> str:
    """Key values (already rendered as text, in the entity's join_keys order) -> pk.

    Each part has `%` written `%25` and `|` written `%7C`; parts are joined with `|`. So a one-key
    entity whose values have neither character reads as itself (customer 42 -> "42"), and the
    encoding is injective for a fixed list of key columns and types."""
    if len(parts) == 1:
        p = parts[0]
        return p.replace("%", "%25").replace("|", "%7C") if ("%" in p or "|" in p) else p
    return "|".join(p.replace("%", "%25").replace("|", "%7C") for p in parts)


def key_renderer(dtype: str) -> Callable[[Any], str]:
    """A key value (as Spark gives it, or as a caller passes it) -> its text in the pk. Coerces, so
    that `customer_id="42"` finds the bigint key 42 (the CLI passes text)."""
    t = parse_dtype(dtype)[0]
    if t in INTEGRAL:
        return lambda v: str(int(v))
    if t == "string":
        return str
    if t == "boolean":
        return lambda v: _render_bool(v)
    if t in FLOATING:
        return lambda v: repr(float(v))
    if t == "decimal":
        return lambda v: str(Decimal(str(v)).normalize())
    if t == "date":
        return lambda v: (v if isinstance(v, date) else date.fromisoformat(str(v))).isoformat()
    if t == "binary":
        return lambda v: base64.b64encode(bytes(v)).decode()
    if t in ("timestamp", "timestamp_ntz"):
        return lambda v: str(v if isinstance(v, int) else datetime_to_micros(
            v if isinstance(v, datetime) else datetime.fromisoformat(str(v))))
    raise UnsupportedType(f"key type {dtype!r} cannot be an online key: use integers, strings, dates or booleans")


def _render_bool(v: Any) -> str:
    if isinstance(v, str):
        if v.lower() not in ("true", "false"):
            raise ValueError(f"{v!r} is not a boolean")
        return v.lower()
    return "true" if v else "false"


# ---- values -> attributes (export side; values as Arrow's to_pylist or Spark's Rows give them) ---

def export_sql(column: str, dtype: str) -> str:
    """The SQL that prepares a column for the writer: timestamps become epoch microseconds (exact,
    and independent of the Python worker's time zone)."""
    t = parse_dtype(dtype)
    q = f"`{column}`"
    if t[0] in ("timestamp", "timestamp_ntz"):
        return f"unix_micros(CAST({q} AS TIMESTAMP))"
    if t[0] == "array" and t[1][0] in ("timestamp", "timestamp_ntz"):
        return f"transform({q}, x -> unix_micros(CAST(x AS TIMESTAMP)))"
    if has_timestamp(t):
        raise UnsupportedType(f"column {column!r} ({dtype}): timestamps nested in maps or structs are not "
                              f"supported online: store them as bigint epoch values")
    return q


def _sized_number(v: float) -> tuple:
    """A double as N, with its size; as S when DynamoDB's numbers cannot hold it (NaN, infinities,
    -0.0, magnitudes outside 1e-130..1e125)."""
    text = repr(v)
    if 1e-130 <= abs(v) < 1e125 or (v == 0 and math.copysign(1, v) > 0):
        return {"N": text}, _number_size(text)
    return {"S": text}, len(text)


def _number(v: float) -> dict:
    return _sized_number(v)[0]


def encoder(dtype: Union[str, DType]) -> Callable[[Any], dict]:
    """A function value -> AttributeValue (botocore form: bytes for B). The value is not None; a map
    is a dict or Arrow's (key, value) pairs, a struct a Row or Arrow's dict."""
    t = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    kind = t[0]
    if kind == "boolean":
        return lambda v: {"BOOL": bool(v)}
    if kind in INTEGRAL:
        return lambda v: {"N": str(v)}
    if kind in FLOATING:
        return _number
    if kind == "decimal":
        return lambda v: {"N": str(v)}
    if kind == "string":
        return lambda v: {"S": v}
    if kind == "binary":
        return lambda v: {"B": bytes(v)}
    if kind == "date":
        return lambda v: {"S": v.isoformat()}
    if kind in ("timestamp", "timestamp_ntz"):
        return lambda us: {"N": micros_to_ms_text(us)}
    if kind == "array":
        inner = _nullable(encoder(t[1]))
        if t[1][0] in FLOATING:
            code = "f" if t[1][0] in ("float", "real") else "d"

            def packed(v: list) -> dict:
                if None in v:
                    return {"L": [inner(x) for x in v]}
                arr = array(code, v)
                if not _LITTLE:
                    arr.byteswap()
                return {"B": arr.tobytes()}
            return packed
        return lambda v: {"L": [inner(x) for x in v]}
    if kind == "map":
        inner = _nullable(encoder(t[2]))
        render = _map_key_text(t[1])
        return lambda v: {"M": {render(k): inner(x) for k, x in (v.items() if isinstance(v, dict) else v)}}
    if kind == "struct":
        fields = [(name, _nullable(encoder(ft))) for name, ft in t[1]]
        return lambda v: {"M": {name: enc(v[name] if isinstance(v, dict) else v[i])
                                for i, (name, enc) in enumerate(fields)}}
    raise UnsupportedType(f"type {dtype!r} has no DynamoDB representation here")


def _nullable(enc: Callable[[Any], dict]) -> Callable[[Any], dict]:
    return lambda v: {"NULL": True} if v is None else enc(v)


def _map_key_text(t: DType) -> Callable[[Any], str]:
    if t[0] in ("string",) or t[0] in INTEGRAL:
        return str
    if t[0] == "boolean":
        return _render_bool
    if t[0] == "date":
        return lambda v: v.isoformat()
    raise UnsupportedType(f"map keys of type {t[0]} are not supported online: use string or integer keys")


def attribute_size(av: dict) -> int:
    """Bytes DynamoDB counts for a value (its item-size rules: numbers ~1 byte per 2 digits + 1,
    1 byte of overhead per list/map element, 3 per list/map)."""
    (kind, v), = av.items()
    if kind == "S":
        return len(v.encode("utf-8")) if not v.isascii() else len(v)
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + attribute_size(x) for k, x in v.items())
    return len(json.dumps(v))


def _number_size(text: str) -> int:
    digits = len(text.lstrip("-").replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


def sized_encoder(dtype: Union[str, DType]) -> Callable[[Any], tuple]:
    """encoder(dtype) with the attribute's size (attribute_size) beside it, for the export, which
    sums every item's size: a double's comes from its text, without reading the attribute again."""
    t = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    if t[0] in FLOATING:
        return _sized_number
    enc = encoder(t)
    return lambda v: (av := enc(v), attribute_size(av))


# ---- attributes -> values (client side; raw DynamoDB JSON, B as base64 text) -----------------

def decoder(dtype: Union[str, DType]) -> Callable[[dict], Any]:
    """A function AttributeValue (raw JSON form) -> the declared Python type."""
    t = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    kind = t[0]
    if kind == "boolean":
        return lambda av: av.get("BOOL")
    if kind in INTEGRAL:
        return lambda av: int(av["N"]) if "N" in av else None
    if kind in FLOATING:
        def floating(av: dict) -> Optional[float]:
            n = av.get("N")
            if n is not None:
                return float(n)
            s = av.get("S")
            return float(s) if s is not None else None
        return floating
    if kind == "decimal":
        return lambda av: Decimal(av["N"]) if "N" in av else None
    if kind == "string":
        return lambda av: av.get("S")
    if kind == "binary":
        return lambda av: _bytes(av["B"]) if "B" in av else None
    if kind == "date":
        return lambda av: date.fromisoformat(av["S"]) if "S" in av else None
    if kind in ("timestamp", "timestamp_ntz"):
        aware = kind == "timestamp"
        return lambda av: micros_to_datetime(ms_text_to_micros(av["N"]), aware) if "N" in av else None
    if kind == "array":
        inner = decoder(t[1])
        code = "f" if t[1][0] in ("float", "real") else "d"

        def arr(av: dict) -> Optional[list]:
            if "L" in av:
                return [None if "NULL" in x else inner(x) for x in av["L"]]
            if "B" in av:
                packed = array(code, _bytes(av["B"]))
                if not _LITTLE:
                    packed.byteswap()
                return packed.tolist()
            return None
        return arr
    if kind == "map":
        inner = decoder(t[2])
        key = _map_key_value(t[1])
        return lambda av: {key(k): (None if "NULL" in x else inner(x)) for k, x in av["M"].items()} \
            if "M" in av else None
    if kind == "struct":
        fields = [(name, decoder(ft)) for name, ft in t[1]]

        def struct(av: dict) -> Optional[dict]:
            m = av.get("M")
            if m is None:
                return None
            out = {}
            for name, dec in fields:
                x = m.get(name)
                out[name] = None if x is None or "NULL" in x else dec(x)
            return out
        return struct
    raise UnsupportedType(f"type {dtype!r} has no DynamoDB representation here")


def _bytes(v: Union[str, bytes]) -> bytes:
    return base64.b64decode(v) if isinstance(v, str) else bytes(v)


def _map_key_value(t: DType) -> Callable[[str], Any]:
    if t[0] in INTEGRAL:
        return int
    if t[0] == "boolean":
        return lambda k: k == "true"
    if t[0] == "date":
        return date.fromisoformat
    return str
