"""Parquet timestamps in nanoseconds, as pandas and pyarrow write them by default.

Spark 4 reads milli- and microsecond parquet timestamps only: an INT64 TIMESTAMP(NANOS) column
fails schema inference ("Illegal Parquet type") and a read with a timestamp schema
(SchemaColumnConvertNotSupportedException). Read with a bigint schema, which Spark allows, the
nanoseconds since the epoch come back exactly; they are floored to microseconds (Spark's
resolution) and given the declared type. Each file's footer says which of its columns are
nanoseconds, so a directory mixing nanosecond and microsecond files reads each file its own way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
"""Spark's setting that infers a nanosecond column as bigint instead of failing."""
_TIME_TYPES = ("timestamp", "timestamp_ntz")


def nanos_columns(footer_schema: Any) -> dict[str, bool]:
    """The top-level INT64 TIMESTAMP(NANOS) columns of a parquet footer's schema (a Java
    MessageType): name -> whether the values are UTC instants (pandas: a tz-aware column)."""
    found = {}
    for f in footer_schema.getFields():
        note = f.getLogicalTypeAnnotation() if f.isPrimitive() else None
        if note is not None and note.getClass().getSimpleName() == "TimestampLogicalTypeAnnotation" \
                and str(note.getUnit()) == "NANOS":
            found[str(f.getName())] = bool(note.isAdjustedToUTC())
    return found


def as_declared(column: str, dtype: Any) -> "Column":
    """The bigint nanoseconds of `column` as the declared type: timestamp (or timestamp_ntz, a
    wall-clock time) floored to the microsecond; bigint left as the raw nanoseconds; any other
    type cast from the timestamp."""
    from pyspark.sql import functions as F

    name = dtype.typeName()
    if name == "long":
        return F.col(f"`{column}`").alias(column)
    quoted = f"`{column}`"
    micros = F.expr(f"timestamp_micros(({quoted} - pmod({quoted}, 1000)) div 1000)")  # exact: integer floor
    return micros.cast(dtype).alias(column) if name != "timestamp" else micros.alias(column)


def is_nanos_error(exc: BaseException) -> bool:
    return "TIMESTAMP(NANOS" in str(exc)


def infer_with_nanos(spark: "SparkSession", infer: Callable[[], Any], files: Callable[[], list[str]],
                     footer_nanos: Callable[[str], dict[str, bool]], sample: int = 20) -> Any:
    """The inferred schema of files some of which hold nanosecond timestamps: inferred with
    nanosAsLong, then each bigint column that a footer (of the first `sample` files) declares
    as nanoseconds becomes timestamp (UTC instants) or timestamp_ntz (wall-clock times)."""
    from pyspark.sql.types import StructField, StructType, TimestampNTZType, TimestampType

    from featurelake.spark import session_setting

    with session_setting(spark, NANOS_AS_LONG, "true"):  # for this eager step only
        schema, paths = infer(), files()
    longs = {f.name for f in schema.fields if f.dataType.typeName() == "long"}
    kinds: dict[str, bool] = {}
    for path in paths[:sample]:
        if not longs - set(kinds):
            break
        kinds.update({k: v for k, v in footer_nanos(path).items() if k in longs and k not in kinds})
    return StructType([StructField(f.name, (TimestampType() if kinds[f.name] else TimestampNTZType()), f.nullable)
                       if f.name in kinds else f for f in schema.fields])
