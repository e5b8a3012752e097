"""Writes the cluster test's data with Spark itself (run by spark-submit on the cluster, so the
driver never holds it): sensor readings and a spine, each also as the sample of keys that the
local-mode run uses.

    make_data.py OUT --rows N --sensors K --features F --spine-rows S --sample-every M

Every value is a hash of the row's id, not rand(): the same rows whatever the partitioning.
Feature values are multiples of 0.25 below 1000, so sums are exact in doubles and the cluster's
and local mode's aggregates compare bit for bit. Each sensor has one event per time slot, so no
two rows share (sensor_id, ts) and the MERGE's choice between duplicates never matters.
"""
from __future__ import annotations

import argparse
import json

START = "2024-01-01 00:00:00"
SPAN_DAYS = 90


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--sensors", type=int, required=True)
    p.add_argument("--features", type=int, required=True)
    p.add_argument("--spine-rows", type=int, required=True)
    p.add_argument("--sample-every", type=int, required=True)
    p.add_argument("--files", type=int, default=12)
    a = p.parse_args()

    from pyspark.sql import SparkSession, functions as F

    spark = SparkSession.builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
    start = F.unix_timestamp(F.lit(START))
    events_per_sensor = a.rows // a.sensors
    slot = SPAN_DAYS * 86400 // events_per_sensor

    def h(*salt: object):
        return F.xxhash64(F.col("id"), *[F.lit(s) for s in salt])

    readings = spark.range(0, events_per_sensor * a.sensors, numPartitions=a.files).select(
        (F.col("id") % a.sensors).alias("sensor_id"),
        F.timestamp_seconds(start + (F.col("id") / a.sensors).cast("long") * slot + F.pmod(h("ts"), slot)).alias("ts"),
        *[(F.pmod(h(i), 4000) / 4.0).alias(f"f{i}") for i in range(a.features)])
    spine = spark.range(0, a.spine_rows, numPartitions=max(1, a.files // 4)).select(
        F.pmod(h("sensor"), a.sensors).alias("sensor_id"),
        F.timestamp_seconds(start + F.pmod(h("t"), (SPAN_DAYS + 5) * 86400)).alias("event_ts"),
        F.pmod(h("label"), 2).cast("int").alias("label"))

    def sample(df):
        return df.where(F.col("sensor_id") % a.sample_every == 0)

    readings.write.mode("overwrite").parquet(f"{a.out}/readings")
    sample(spark.read.parquet(f"{a.out}/readings")).write.mode("overwrite").parquet(f"{a.out}/readings_sample")
    spine.write.mode("overwrite").parquet(f"{a.out}/spine")
    sample(spark.read.parquet(f"{a.out}/spine")).coalesce(1).write.mode("overwrite").parquet(f"{a.out}/spine_sample")
    print(json.dumps({"rows": events_per_sensor * a.sensors, "sensors": a.sensors, "columns": 2 + a.features,
                      "spine_rows": a.spine_rows}))
    spark.stop()


if __name__ == "__main__":
    main()
