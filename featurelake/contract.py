"""What a transform must produce: the entity keys, the event timestamp and every declared feature
with its declared dtype. Checked on every batch, before validation, so that a wrong column is an
error naming the group and the column instead of a surprise in the offline table.

Only widenings that lose nothing are cast automatically; anything else is an error that says
which cast to write in the transform:
- integers to wider integers (int -> bigint); float to double; decimal to a decimal at least as
  wide;
- integers and decimals to double: features are used as floating point anyway, and this is the
  one conversion that may round (bigint beyond 2^53, decimals beyond 15-17 digits);
- date to timestamp (midnight UTC), timestamp_ntz to timestamp (featurelake's times are UTC);
- a null-only column (lit(None)) to any type;
- arrays and maps element by element, structs field by field, by the same rules.
Columns the transform produces beyond these are dropped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from featurelake.errors import DefinitionError, did_you_mean

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.definitions import FeatureGroup

_INTEGRAL = ("byte", "short", "integer", "long")


def safe_cast(src: Any, dst: Any) -> bool:
    """True when every value of type src fits type dst without loss (see the module's rules)."""
    from pyspark.sql import types as T

    if src == dst or isinstance(src, T.NullType):
        return True
    s, d = src.typeName(), dst.typeName()
    if s in _INTEGRAL and d in _INTEGRAL:
        return _INTEGRAL.index(s) <= _INTEGRAL.index(d)
    if d == "double":
        return s in (*_INTEGRAL, "float") or s.startswith("decimal")
    if s.startswith("decimal") and d.startswith("decimal"):
        return dst.precision - dst.scale >= src.precision - src.scale and dst.scale >= src.scale
    if d == "timestamp":
        return s in ("date", "timestamp_ntz")
    if isinstance(src, T.ArrayType) and isinstance(dst, T.ArrayType):
        return safe_cast(src.elementType, dst.elementType)
    if isinstance(src, T.MapType) and isinstance(dst, T.MapType):
        return src.keyType == dst.keyType and safe_cast(src.valueType, dst.valueType)
    if isinstance(src, T.StructType) and isinstance(dst, T.StructType):
        return [f.name for f in src.fields] == [f.name for f in dst.fields] and all(
            safe_cast(a.dataType, b.dataType) for a, b in zip(src.fields, dst.fields))
    return False


def conform(group: "FeatureGroup", df: "DataFrame", naive: Optional[list] = None,
            keep: Sequence[str] = ()) -> "DataFrame":
    """The transform's output cut to keys, timestamp and features, in that order, each of its
    declared type; raises DefinitionError naming the group and the column otherwise. A note for
    each column of times without a zone (taken as UTC) is added to `naive`, to be said once.
    `keep`: bookkeeping columns carried after them as they are (a Kafka message's offset)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType, _parse_datatype_string

    where = f"feature group {group.name!r}"
    have = {f.name: f.dataType for f in df.schema.fields}
    wanted: list[tuple[str, Any, str]] = [(k, None, "entity key") for k in group.keys]
    wanted.append((group.timestamp_column, TimestampType(), "event timestamp"))
    wanted += [(f.name, _parse_datatype_string(f.dtype), "feature") for f in group.features]
    columns = []
    for name, dtype, role in wanted:
        if name not in have:
            raise DefinitionError(
                f"{where}: the transform's output has no column {name!r} ({role}){did_you_mean(name, have)}; "
                f"it produced {sorted(have)}: select or alias it in the transform")
        found = have[name]
        if dtype is None or found == dtype:
            columns.append(F.col(f"`{name}`"))
        elif safe_cast(found, dtype):
            columns.append(F.col(f"`{name}`").cast(dtype).alias(name))
            if naive is not None and found.typeName() == "timestamp_ntz":
                naive.append(f"column {name!r} holds times without a time zone (timestamp_ntz): they were taken "
                             f"as UTC; if they are local times, convert them in the transform "
                             f"(F.to_utc_timestamp({name!r}, 'Europe/Paris'))")
        else:
            declared = dtype.simpleString()
            fix = (f"parse it in the transform, e.g. F.to_timestamp({name!r})" if role == "event timestamp"
                   else f"cast it in the transform (F.col({name!r}).cast({declared!r})) or declare "
                        f"Feature({name!r}, {found.simpleString()!r})")
            raise DefinitionError(f"{where}: column {name!r} ({role}) is {found.simpleString()} but must be "
                                  f"{declared}: {fix}")
    return df.select(*columns, *[F.col(f"`{c}`") for c in keep if c in have])
