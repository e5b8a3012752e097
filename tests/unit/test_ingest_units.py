"""The parts of ingestion that need no Spark session: casting rules, results, the job's arguments."""
from __future__ import annotations

import pytest
from pyspark.sql import types as T

from featurelake.contract import safe_cast
from featurelake.runs import IngestResult


@pytest.mark.parametrize("src,dst", [
    (T.IntegerType(), T.LongType()), (T.ShortType(), T.IntegerType()), (T.IntegerType(), T.DoubleType()),
    (T.LongType(), T.DoubleType()), (T.FloatType(), T.DoubleType()), (T.DecimalType(10, 2), T.DoubleType()),
    (T.DecimalType(10, 2), T.DecimalType(12, 2)), (T.DateType(), T.TimestampType()),
    (T.TimestampNTZType(), T.TimestampType()), (T.NullType(), T.StringType()),
    (T.ArrayType(T.IntegerType()), T.ArrayType(T.LongType())),
    (T.MapType(T.StringType(), T.FloatType()), T.MapType(T.StringType(), T.DoubleType())),
])
def test_widening_casts_are_safe(src, dst):
    assert safe_cast(src, dst)


@pytest.mark.parametrize("src,dst", [
    (T.LongType(), T.IntegerType()), (T.DoubleType(), T.FloatType()), (T.StringType(), T.DoubleType()),
    (T.DoubleType(), T.LongType()), (T.DecimalType(12, 2), T.DecimalType(10, 2)), (T.StringType(), T.TimestampType()),
    (T.TimestampType(), T.DateType()), (T.BooleanType(), T.IntegerType()),
    (T.ArrayType(T.DoubleType()), T.ArrayType(T.FloatType())),
])
def test_narrowing_or_reinterpreting_casts_are_refused(src, dst):
    assert not safe_cast(src, dst)


def test_a_quarantined_result_says_how_to_reingest_and_lists_what_failed():
    failure = {"expectation": "expect_column_values_to_be_between", "column": "amount",
               "kwargs": {"column": "amount", "min_value": 0}, "severity": "critical", "unexpected_count": 1,
               "element_count": 3, "unexpected_percent": 33.3, "partial_unexpected_list": [-5.0]}
    result = IngestResult(group="g", run_id="run-1", status="quarantined", rows_read=3, rows_quarantined=3,
                          failures=[failure])
    text = result.summary()
    assert not result.ok and "--from-quarantine run-1" in text
    assert "expect_column_values_to_be_between(amount, min_value=0): 1 unexpected of 3 rows" in text
    assert "-5.0" in text
    assert result.to_dict()["ok"] is False and result.to_dict()["rows_quarantined"] == 3


def test_the_worst_status_of_a_runs_batches_wins():
    result = IngestResult(group="g", run_id="r")
    for status in ("warned", "succeeded", "quarantined", "warned"):
        result.worsen(status)
    assert result.status == "quarantined"


def test_the_spark_submit_job_passes_the_cli_the_same_arguments(monkeypatch):
    import jobs.ingest
    from featurelake import cli

    seen = []
    monkeypatch.setattr(cli, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr(jobs.ingest, "_without_delta", lambda conf: None)
    assert jobs.ingest.main(["--conf", "c.yaml", "--group", "a", "--group", "b", "--start", "2024-01-01"]) == 0
    assert seen == [["--repo", "features", "--conf", "c.yaml", "ingest", "a", "b", "--start", "2024-01-01"]]


@pytest.mark.parametrize("setting,expected", [("8", 8), ("200", 200), ("auto", 4), ("0", 4)])
def test_shuffle_partitions_falls_back_to_the_cores_where_the_setting_is_not_a_number(setting, expected):
    """Databricks' "auto" must not break a first write or a training set's plan."""
    from types import SimpleNamespace

    from featurelake.spark import shuffle_partitions

    spark = SimpleNamespace(conf=SimpleNamespace(get=lambda key, default=None: setting),
                            sparkContext=SimpleNamespace(defaultParallelism=4))
    assert shuffle_partitions(spark) == expected
