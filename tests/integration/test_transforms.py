"""Each preparation helper on tiny data with exact expected values; fitted parameters recorded."""
from __future__ import annotations

import math
import uuid
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from featurelake import transforms as T
from featurelake.errors import UsageError


def rows(df, *cols, order="id"):
    return [tuple(r) for r in df.orderBy(order).select(*cols).collect()]


@pytest.fixture
def small(spark):
    return spark.createDataFrame(
        [(1, "a", datetime(2024, 1, 1), 1.0, 2, None),
         (2, "a", datetime(2024, 1, 2, 12), 2.0, 0, "x"),
         (3, "b", datetime(2024, 1, 1), None, 4, "y"),
         (4, "b", datetime(2024, 1, 3), 6.0, None, None)],
        "id int, key string, ts timestamp, amount double, visits int, tag string")


def jobs_during(spark, action):
    sc = spark.sparkContext
    group = f"t-{uuid.uuid4().hex}"
    sc.setJobGroup(group, group)
    try:
        action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    return len(sc.statusTracker().getJobIdsForGroup(group))


def test_fill_nulls(small):
    out = T.fill_nulls(small, {"amount": 0.0, "tag": "none"})
    assert rows(out, "amount", "tag") == [(1.0, "none"), (2.0, "x"), (0.0, "y"), (6.0, "none")]
    with T.recording() as params:
        mean = T.fill_nulls(small, strategy="mean", columns=["amount", "visits"])
        median = T.fill_nulls(small, strategy="median", columns="amount")
    assert rows(mean, "amount", "visits") == [(1.0, 2), (2.0, 0), (3.0, 4), (6.0, 2)]  # visits: int mean 2
    assert rows(median, "amount") == [(1.0,), (2.0,), (2.0,), (6.0,)]
    assert params == {"fill_nulls:amount": {"strategy": "mean", "value": 3.0},
                      "fill_nulls:visits": {"strategy": "mean", "value": 2.0},
                      "fill_nulls:amount#2": {"strategy": "median", "value": 2.0}}


def test_drop_nulls(small):
    assert rows(T.drop_nulls(small, ["amount", "visits"]), "id") == [(1,), (2,)]
    assert rows(T.drop_nulls(small), "id") == [(2,)]


def test_clip_outliers_one_job_and_recorded(spark):
    df = spark.range(1, 101).select(F.col("id").cast("int").alias("id"), F.col("id").cast("double").alias("x"),
                                    (F.col("id") * 10).alias("y"))
    df = df.union(spark.createDataFrame([(0, None, 0)], "id int, x double, y bigint"))
    one_column = jobs_during(spark, lambda: T.clip_outliers(df, "x", 0.05, 0.95))
    with T.recording() as params:
        box = {}
        both = jobs_during(spark, lambda: box.setdefault("out", T.clip_outliers(df, ["x", "y"], 0.05, 0.95)))
    assert both == one_column <= 2  # one aggregation (AQE runs its shuffle stage as a job of its own)
    out = box["out"]
    assert params == {"clip_outliers:x": {"lower_q": 0.05, "upper_q": 0.95, "lower": 5.0, "upper": 95.0},
                      "clip_outliers:y": {"lower_q": 0.05, "upper_q": 0.95, "lower": 50, "upper": 950}}
    got = rows(out, "x", "y")
    assert got[0] == (None, 50)  # null stays null; y's 0 is below the 5% quantile
    assert got[1:6] == [(5.0, 50)] * 5 and got[6] == (6.0, 60) and got[-1] == (95.0, 950)
    assert dict(out.dtypes)["y"] == "bigint"


def test_normalize_and_standardize(spark, small):
    with T.recording() as params:
        norm = T.normalize(small, ["amount", "visits"], suffix="_norm")
        z = T.standardize(small, "amount")
    assert rows(norm, "amount_norm", "visits_norm", "amount") == [
        (0.0, 0.5, 1.0), (0.2, 0.0, 2.0), (None, 1.0, None), (1.0, None, 6.0)]
    s = math.sqrt(14 / 3)  # population stddev of 1, 2, 6 around 3
    assert rows(z, "amount") == [((1 - 3) / s,), ((2 - 3) / s,), (None,), ((6 - 3) / s,)]
    assert params == {"normalize:amount": {"min": 1.0, "max": 6.0}, "normalize:visits": {"min": 0, "max": 4},
                      "standardize:amount": {"mean": 3.0, "stddev": pytest.approx(s)}}

    # earlier parameters applied to a new batch: no fitting, the same scale
    later = spark.createDataFrame([(1, 11.0)], "id int, amount double")
    assert jobs_during(spark, lambda: T.normalize(later, "amount", params=params)) == 0
    assert rows(T.normalize(later, "amount", params=params), "amount") == [(2.0,)]
    const = spark.createDataFrame([(1, 5.0), (2, 5.0), (3, None)], "id int, amount double")
    assert rows(T.standardize(const, "amount"), "amount") == [(0.0,), (0.0,), (None,)]


def test_time_since_rate_indicator(small):
    ref = small.withColumn("ref", F.lit(datetime(2024, 1, 3)).cast("timestamp"))
    days = T.time_since(ref, "ts", "ref", "days")
    assert rows(days, "days_since_ts") == [(2.0,), (0.5,), (2.0,), (0.0,)]
    assert rows(T.time_since(ref, "ts", "ref", "h", output="age_h"), "age_h") == [(48.0,), (12.0,), (48.0,), (0.0,)]
    assert rows(T.rate(small, "amount", "visits"), "amount_per_visits") == [(0.5,), (None,), (None,), (None,)]
    assert rows(T.rate(small, "visits", "amount", output="r", default=0.0), "r") == [(2.0,), (0.0,), (0.0,), (None,)]
    flags = T.indicator(T.indicator(small, "big", "amount > 1.5"), "has_tag", F.col("tag").isNotNull(), as_int=True)
    assert rows(flags, "big", "has_tag") == [(False, 0), (True, 1), (False, 1), (True, 0)]


def test_lag_and_deduplicate(small):
    lagged = T.lag(small, "key", "ts", "amount")
    assert rows(lagged, "amount_lag_1") == [(None,), (1.0,), (None,), (None,)]
    assert rows(T.lag(small, ["key"], "ts", "id", 1, output="prev_id"), "prev_id") == [(None,), (1,), (None,), (3,)]
    assert rows(T.deduplicate(small, "key", "ts"), "id") == [(2,), (4,)]
    assert rows(T.deduplicate(small, ["key"], "ts", keep="first"), "id") == [(1,), (3,)]
    assert T.deduplicate(small, "key").count() == 2


def test_errors_name_the_column_and_fix(small):
    with pytest.raises(UsageError, match=r"normalize: column 'amout' is not in the DataFrame \(did you mean 'amount'"):
        T.normalize(small, "amout")
    with pytest.raises(UsageError, match=r"standardize: column 'tag' is string, not a number: cast it first"):
        T.standardize(small, "tag")
    with pytest.raises(UsageError, match="unknown strategy 'mode'"):
        T.fill_nulls(small, strategy="mode", columns="amount")
    with pytest.raises(UsageError, match="unknown unit 'fortnights'"):
        T.time_since(small, "ts", "ts", "fortnights")
    with pytest.raises(UsageError, match=r"params has no \['min', 'max'\] for column 'amount'"):
        T.normalize(small, "amount", params={"visits": {"min": 0, "max": 1}})
