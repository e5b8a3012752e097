"""The checks a definition's arguments pass when a repository loads: safe names, durations, Spark
SQL type names. Shared by featurelake.definitions, featurelake.sourcedefs and
featurelake.avroschema, and apart from them so that they import it without importing each other.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Optional

from featurelake.errors import DefinitionError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
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
