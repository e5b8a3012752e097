"""Log files: an S3Source of format "text" with a `pattern=` turns each line into columns.

The pattern is a Python regular expression whose named groups become string columns (an empty or
absent group is null); it must match the WHOLE line. Spark runs it as a Java regular expression,
so it is written with Python's named groups and translated here (named groups become plain
groups, read by position). A line that does not match is a source record that broke the data
contract: it is set aside in <root>/rejected/<group> with its file, its line number and its text,
and counted in the run; the other lines go on. The group's suite sees the unmatched lines as
rows of nulls, so it can bound their share with `mostly`. Line numbers count from 1 in each file, empty
lines included, and are found without reading a file whole: within a file split Spark returns
lines in order, so (split start, position in the split) orders the lines of each file.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from featurelake.errors import DefinitionError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LINE_COLUMN = "_featurelake_line"
"""The line number in its file of a log line that did not match the pattern."""
_NAMED = re.compile(r"\(\?P<([^>]*)>")


def check_pattern(source: str, pattern: Any) -> "re.Pattern[str]":
    """The compiled pattern, or a DefinitionError that says what is wrong with it."""
    from featurelake.definitions import check_identifier

    if not isinstance(pattern, str) or not pattern:
        raise DefinitionError(f"source {source!r}: pattern must be a regular expression (text) with named groups, "
                              f"such as r\"(?P<ts>\\S+) (?P<user>\\S+)\"; got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise DefinitionError(f"source {source!r}: pattern {pattern!r} does not compile: {exc}") from None
    if not compiled.groupindex:
        raise DefinitionError(f"source {source!r}: pattern {pattern!r} has no named group, so no column: name each "
                              f"part you need, such as (?P<user>\\S+)")
    if "(?P=" in pattern:
        raise DefinitionError(f"source {source!r}: pattern {pattern!r} uses a named back-reference (?P=...), which "
                              f"Spark's Java regular expressions do not have: repeat the group's expression instead")
    for name in compiled.groupindex:
        check_identifier(name, f"source {source!r} pattern group")
    return compiled


def columns(pattern: str) -> list[str]:
    """The pattern's named groups, in the order they appear: the source's columns."""
    return sorted(re.compile(pattern).groupindex, key=re.compile(pattern).groupindex.__getitem__)


def java_pattern(pattern: str) -> str:
    """The pattern as Spark runs it: anchored to the whole line, named groups as plain groups
    (same positions; Java's group names allow no underscore)."""
    return f"^(?:{_NAMED.sub('(', pattern)})$"


def parse_lines(spark: "SparkSession", paths: list[str], pattern: str, options: dict,
                file_column: str, corrupt_column: str) -> "DataFrame":
    """The lines of these files as the pattern's columns, with each line's file; a line that does
    not match has null columns, its text in corrupt_column and its line number in LINE_COLUMN."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    index = re.compile(pattern).groupindex
    java = java_pattern(pattern)
    lines = (spark.read.format("text").options(**{k: str(v) for k, v in options.items()}).load(paths)
             .select("value", F.col("_metadata.file_path").alias(file_column),
                     F.col("_metadata.file_block_start").alias("_fl_split"),
                     F.monotonically_increasing_id().alias("_fl_order")))
    numbered = lines.withColumn(LINE_COLUMN, F.row_number().over(
        Window.partitionBy(file_column).orderBy("_fl_split", "_fl_order")).cast("bigint"))
    matched = F.col("value").rlike(java)
    return numbered.select(
        *[F.when(matched, F.nullif(F.regexp_extract("value", java, index[name]), F.lit(""))).alias(name)
          for name in columns(pattern)],
        F.when(~matched, F.col("value")).alias(corrupt_column),
        F.when(~matched, F.col(LINE_COLUMN)).alias(LINE_COLUMN),
        F.col(file_column))


def schema(pattern: str) -> Any:
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(name, StringType()) for name in columns(pattern)])
