"""Parquet as pandas writes it (issue 25): INT64 nanosecond timestamps, with and without a time
zone, beside microsecond files in one directory, are ingested with their exact instants
(floored to the microsecond, Spark's resolution); Spark 4 alone refuses such files."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source

thing = Entity("thing", join_keys=["id"])
FEATURES = [Feature("born", "timestamp"), Feature("v", "double")]
declared = FeatureGroup("declared", entity=thing, timestamp_column="ts", features=FEATURES,
                        source=S3Source("declared", path="{root}/declared", format="parquet",
                                        schema="id bigint, ts timestamp, born timestamp, v double"))
inferred = FeatureGroup("inferred", entity=thing, timestamp_column="ts", features=FEATURES,
                        source=S3Source("inferred", path="{root}/inferred", format="parquet"))
'''
WHEN = "2024-03-01 12:34:56.123456789"
BORN = "1969-12-31 23:59:59.999999999"  # before the epoch: negative nanoseconds, floored not rounded


def put(folder, name, id_, ts, born, unit="ns"):
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"id": [id_], "ts": [ts], "born": [born], "v": [float(id_)]})
    for c in ("ts", "born"):
        df[c] = df[c].astype(f"datetime64[{unit}, UTC]" if df[c].dt.tz is not None else f"datetime64[{unit}]")
    df.to_parquet(folder / name, index=False)  # pandas' own defaults: nanoseconds stay nanoseconds


def utc(text):
    return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc)  # floored to the microsecond


@pytest.fixture
def store(make_store, tmp_path):
    s = make_store({"groups.py": REPO.format(root=tmp_path / "data")})
    s.apply()
    s.data = tmp_path / "data"
    return s


def instants(store, group):
    return {r.id: (r.ts.replace(tzinfo=timezone.utc), r.born.replace(tzinfo=timezone.utc))
            for r in store.read_offline(group).collect()}


def test_nanosecond_and_microsecond_files_in_one_directory_keep_their_exact_instants(store):
    when, born = pd.Timestamp(WHEN), pd.Timestamp(BORN)
    folder = store.data / "declared"
    put(folder, "ns_naive.parquet", 1, when, born)                                  # naive: taken as UTC
    put(folder, "ns_utc.parquet", 2, when.tz_localize("UTC"), born.tz_localize("UTC"))
    put(folder, "ns_sao_paulo.parquet", 3, when.tz_localize("America/Sao_Paulo"), born.tz_localize("UTC"))
    put(folder, "us_naive.parquet", 4, when, born, unit="us")
    put(folder, "us_utc.parquet", 5, when.tz_localize("UTC"), born.tz_localize("UTC"), unit="us")
    import pyarrow.parquet as pq
    assert str(pq.read_schema(folder / "ns_utc.parquet").field("ts").type) == "timestamp[ns, tz=UTC]"

    result = store.ingest("declared")
    assert result.ok and result.rows_written == 5, result.summary()
    got = instants(store, "declared")
    expected = (utc(WHEN), utc("1969-12-31 23:59:59.999999"))
    assert got[1] == got[2] == got[4] == got[5] == expected
    assert got[3] == (utc("2024-03-01 15:34:56.123456"), expected[1])  # 12:34 at UTC-3

    # the batch reader (a backfill's window) reads the same files the same way
    again = store.ingest("declared", start=datetime(2024, 3, 1), end=datetime(2024, 3, 2))
    assert again.ok and again.rows_read == 5 and instants(store, "declared") == got, again.summary()


def test_an_inferred_schema_reads_nanosecond_columns_as_timestamps(store):
    when, born = pd.Timestamp(WHEN, tz="UTC"), pd.Timestamp(BORN, tz="UTC")
    put(store.data / "inferred", "a_ns.parquet", 1, when, born)
    put(store.data / "inferred", "b_us.parquet", 2, when, born, unit="us")

    result = store.ingest("inferred")
    assert result.ok and result.rows_written == 2, result.summary()
    assert instants(store, "inferred") == {i: (utc(WHEN), utc("1969-12-31 23:59:59.999999")) for i in (1, 2)}
    assert store.spark.conf.get("spark.sql.legacy.parquet.nanosAsLong") == "false"  # the session as it was
