"""Ingest from S3 (moto, through s3a) in every file format, incrementally by file, and from
another group's offline table through its change data feed."""
from __future__ import annotations

import io
import json
import uuid

import boto3
import pytest

from conftest import write_config

BUCKET = f"fl-ingest-{uuid.uuid4().hex[:6]}"
T1, T2, T3 = "2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z", "2024-03-02T09:30:00Z"

REPO = f'''
from pyspark.sql import functions as F
from featurelake import DeltaSource, Entity, Feature, FeatureGroup, S3Source

thing = Entity("thing", join_keys=["id"])
doc = Entity("doc", join_keys=["doc"])
FEATURES = [Feature("v", "double", "a value")]
ROOT = "s3a://{BUCKET}"


def group(name, source, transform=None, entity=thing):
    return FeatureGroup(name, entity=entity, source=source, timestamp_column="ts", transform=transform,
                        features=FEATURES, owner="tests", description="format " + name)


parquet = group("g_parquet", S3Source("raw_parquet", path=ROOT + "/parquet/", format="parquet"))
csv = group("g_csv", S3Source("raw_csv", path=ROOT + "/csv/", format="csv", options={{"header": "true"}}),
            transform="SELECT CAST(id AS BIGINT) AS id, CAST(ts AS TIMESTAMP) AS ts, CAST(v AS DOUBLE) AS v "
                      "FROM raw_csv")
json_nested = group("g_json", S3Source("raw_json", path=ROOT + "/json/", format="json",
                    schema="user STRUCT<id: BIGINT>, event STRUCT<ts: TIMESTAMP, v: DOUBLE>"),
                    transform=lambda df: df.select(F.col("user.id").alias("id"), F.col("event.ts").alias("ts"),
                                                   F.col("event.v").alias("v")))
xml = group("g_xml", S3Source("raw_xml", path=ROOT + "/xml/", format="xml", options={{"rowTag": "row"}}),
            transform=lambda df: df.select(F.col("id").cast("bigint").alias("id"),
                                           F.to_timestamp("ts").alias("ts"), F.col("v").cast("double").alias("v")))
text = group("g_text", S3Source("raw_text", path=ROOT + "/text/", format="text"),
             transform=lambda df: df.select(F.split("value", ",").alias("p")).select(
                 F.col("p")[0].cast("bigint").alias("id"), F.to_timestamp(F.col("p")[1]).alias("ts"),
                 F.col("p")[2].cast("double").alias("v")))
binary = group("g_binary", S3Source("raw_binary", path=ROOT + "/binary/", format="binaryFile"), entity=doc,
               transform=lambda df: df.select(F.regexp_extract("path", "([^/]+)$", 1).alias("doc"),
                                              F.col("modificationTime").alias("ts"), F.col("length").alias("v")))
delta = group("g_delta", S3Source("raw_delta", path=ROOT + "/delta/", format="delta"))
downstream = FeatureGroup("g_down", entity=thing, timestamp_column="ts", features=[Feature("v2", "double")],
                          source=DeltaSource("parquet_table", group="g_parquet"),
                          transform=lambda df: df.select("id", "ts", (F.col("v") * 2).alias("v2")))
'''


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark, s3):
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("ingest_sources")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    store = FeatureStore.from_config(write_config(tmp), repo=tmp / "features", spark=spark)
    store.apply()
    return store


def _rows(rows):
    return [{"id": i, "ts": t, "v": v} for i, t, v in rows]


def put(s3, spark, fmt: str, name: str, rows: list[tuple]) -> None:
    """Writes (id, iso ts, v) rows as one file (a Delta commit for delta) under s3a://BUCKET/<fmt>/."""
    if fmt == "delta":
        df = spark.createDataFrame([(i, t, v) for i, t, v in rows], "id bigint, ts string, v double")
        df.selectExpr("id", "CAST(ts AS TIMESTAMP) AS ts", "v").write.format("delta").mode("append").save(
            f"s3a://{BUCKET}/delta/")
        return
    if fmt == "parquet":
        import pandas as pd

        frame = pd.DataFrame(_rows(rows))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False, coerce_timestamps="us")
        body = buf.getvalue()
    elif fmt == "csv":
        body = ("id,ts,v\n" + "".join(f"{i},{t},{v}\n" for i, t, v in rows)).encode()
    elif fmt == "json":
        body = "".join(json.dumps({"user": {"id": i}, "event": {"ts": t, "v": v}}) + "\n" for i, t, v in rows).encode()
    elif fmt == "xml":
        body = ("<rows>" + "".join(f"<row><id>{i}</id><ts>{t}</ts><v>{v}</v></row>" for i, t, v in rows)
                + "</rows>").encode()
    elif fmt == "text":
        body = "".join(f"{i},{t},{v}\n" for i, t, v in rows).encode()
    else:  # binaryFile: one file per row, its length is the value
        for i, _, v in rows:
            s3.put_object(Bucket=BUCKET, Key=f"binary/doc{i}-{name}.bin", Body=b"x" * int(v))
        return
    s3.put_object(Bucket=BUCKET, Key=f"{fmt}/{name}.{fmt}", Body=body)


FORMATS = ["parquet", "csv", "json", "xml", "text", "binaryFile", "delta"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_read_through_s3a_and_only_new_files_the_second_time(store, s3, fmt):
    group = {"binaryFile": "g_binary"}.get(fmt, f"g_{fmt}")
    put(s3, store.spark, fmt, "first", [(1, T1, 3.0), (2, T2, 5.0)])
    first = store.ingest(group)
    assert first.ok and first.status == "succeeded", first.summary()
    assert (first.rows_read, first.rows_written) == (2, 2), first.summary()
    table = store.read_offline(group)
    if fmt == "binaryFile":
        assert sorted((r.doc, r.v) for r in table.collect()) == [("doc1-first.bin", 3.0), ("doc2-first.bin", 5.0)]
        return
    assert sorted(tuple(r) for r in table.selectExpr("id", "CAST(ts AS STRING)", "v").collect()) == [
        (1, "2024-03-01 10:00:00", 3.0), (2, "2024-03-01 11:00:00", 5.0)]
    if fmt not in ("parquet", "delta"):  # the same file-stream checkpoint as parquet: once is enough
        return

    put(s3, store.spark, fmt, "second", [(2, T2, 5.0), (3, T3, 7.0)])  # one row again, one new
    second = store.ingest(group)
    assert second.ok and second.rows_read == 2, second.summary()
    assert second.rows_written == 1, "the repeated row is left alone by the MERGE"
    assert store.read_offline(group).count() == 3
    if fmt == "parquet":
        assert second.files_read == 1
        version = store.offline(group).version()
        third = store.ingest(group)
        assert third.ok and (third.rows_read, third.rows_written, third.delta_version) == (0, 0, None)
        assert store.offline(group).version() == version
        runs = store.catalog.rows("runs", f"`group` = '{group}'")
        assert sorted(r["rows_read"] for r in runs) == [0, 2, 2]


def test_a_group_reads_another_groups_table_through_its_change_data_feed(store, s3):
    put(s3, store.spark, "parquet", "cdf1", [(21, T1, 1.0), (22, T1, 2.0)])
    store.ingest("g_parquet")
    first = store.ingest("g_down")
    assert first.ok and first.rows_read == store.read_offline("g_parquet").count()
    assert first.source_version == store.offline("g_parquet").version()

    put(s3, store.spark, "parquet", "cdf2", [(21, T1, 10.0), (23, T2, 3.0)])  # a correction and a new row
    store.ingest("g_parquet")
    second = store.ingest("g_down")
    assert second.ok and second.rows_read == 2, second.summary()
    values = {r.id: r.v2 for r in store.read_offline("g_down").where("id IN (21, 22, 23)").collect()}
    assert values == {21: 20.0, 22: 4.0, 23: 6.0}
    assert store.ingest("g_down").rows_read == 0


def test_validate_only_reads_the_pending_files_and_moves_nothing(store, s3):
    put(s3, store.spark, "json", "pending", [(31, T1, 1.0)])
    checked = store.validate("g_json")
    assert checked.ok and checked.rows_read == 1, checked.summary()
    ingested = store.ingest("g_json")
    assert ingested.rows_read == 1, "the dry run left the checkpoint where it was"
