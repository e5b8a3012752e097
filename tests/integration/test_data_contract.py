"""The data contract at the door (issue 22): data that is wrong never passes as right. Columns
are matched by name in every file, per file; a file missing a declared column, a file that
cannot be read and a value that does not parse as its declared type are set aside with the file
and the reason while the good rows go on; implausible event times are quarantined; collapsed
duplicates, empty files and naive timestamps taken as UTC are counted or said. Each case failed
silently before (wrong values written, or a run that said `succeeded read=1 written=1`)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_config
from featurelake.errors import JobError

REPO = '''
from pyspark.sql import functions as F
from featurelake import Entity, Feature, FeatureGroup, S3Source

trip = Entity("trip", join_keys=["trip_id"])
FEATURES = [Feature("distance_km", "double"), Feature("fare", "double"), Feature("pickup_zone", "string")]


def csv(name, **kw):
    return FeatureGroup(name, entity=trip, timestamp_column="ts", features=FEATURES,
                        source=S3Source(name, path="{root}/" + name, format="csv", options={{"header": "true"}},
                                        schema="trip_id bigint, ts timestamp, distance_km double, fare double, "
                                               "pickup_zone string"), **kw)


def parquet(name, **kw):
    return FeatureGroup(name, entity=trip, timestamp_column="ts", features=FEATURES,
                        source=S3Source(name, path="{root}/" + name, format="parquet"), **kw)


trips = csv("trips")
windowed = csv("windowed")
inferred = FeatureGroup("inferred", entity=trip, timestamp_column="ts", features=FEATURES,
                        transform=lambda df: df.select(F.col("trip_id").cast("bigint").alias("trip_id"),
                                                       F.to_timestamp("ts").alias("ts"), "pickup_zone",
                                                       *[F.col(c).cast("double").alias(c)
                                                         for c in ("distance_km", "fare")]),
                        source=S3Source("inferred", path="{root}/inferred", format="csv",
                                        options={{"header": "true", "inferSchema": "true"}}))
files = parquet("files")
strict = parquet("strict", on_bad_file="fail")
times = parquet("times")
'''
HEADER = "trip_id,ts,distance_km,fare,pickup_zone"


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark):
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("contract")
    repo = tmp / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(REPO.format(root=tmp / "data"))
    s = FeatureStore.from_config(write_config(tmp), repo=repo, spark=spark)
    s.apply()
    s.data = tmp / "data"
    return s


def text(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(body)


def frame(ids, **columns) -> pd.DataFrame:
    ts = pd.Timestamp("2024-06-01T00:00:00Z")
    base = {"trip_id": list(ids), "ts": [ts] * len(ids), "distance_km": [float(i) for i in ids],
            "fare": [10.0 * i for i in ids], "pickup_zone": [f"z{i}" for i in ids]}
    return pd.DataFrame({**base, **columns})


def put(folder: Path, df: pd.DataFrame, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / name, index=False, coerce_timestamps="us")


def offline(store, group) -> dict:
    return {r.trip_id: (r.distance_km, r.fare, r.pickup_zone) for r in store.read_offline(group).collect()}


def rejected(store, group) -> list:
    return store.spark.read.format("delta").load(f"{store.config.root}/rejected/{group}").collect()


def last_run(store, group) -> dict:
    return sorted(store.catalog.rows("runs", f"`group` = '{group}'"), key=lambda r: r["ended_at"])[-1]


def test_csv_columns_are_matched_by_header_in_each_file_and_bad_files_and_values_are_set_aside(store):
    folder = store.data / "trips"
    text(folder, "a.csv", f"{HEADER}\n1,2024-06-01 00:00:00,1.5,15.0,north\n")
    # the same columns in another order: read by name, never by position
    text(folder, "b.csv", "pickup_zone,fare,distance_km,ts,trip_id\nsouth,42.0,3.5,2024-06-01 00:00:00,2\n")
    # no `fare`: the whole file is set aside, not written with the distance as fare
    text(folder, "c.csv", "trip_id,ts,distance_km,pickup_zone\n3,2024-06-01 00:00:00,7.0,east\n")
    # "abc" is not a double: that row is set aside, the other one of the file goes on
    text(folder, "d.csv", f"{HEADER}\n4,2024-06-01 00:00:00,abc,1.0,west\n5,2024-06-01 00:00:00,5.0,50.0,west\n")
    text(folder, "e.csv", "")  # zero bytes

    result = store.ingest("trips")
    assert offline(store, "trips") == {1: (1.5, 15.0, "north"), 2: (3.5, 42.0, "south"), 5: (5.0, 50.0, "west")}
    assert result.ok and result.status == "warned", result.summary()
    assert (result.rows_read, result.rows_written, result.rows_rejected, result.files_empty) == (4, 3, 1, 1)
    assert [f["file"].rsplit("/", 1)[1] for f in result.files_rejected] == ["c.csv"]
    head = result.summary().splitlines()[0]
    assert "1 rejected" in head and "1 file(s) rejected" in head and "1 empty file(s)" in head, head
    assert "c.csv has no column 'fare'" not in head and "no column 'fare'" in result.summary()

    held = {r._file.rsplit("/", 1)[1]: r for r in rejected(store, "trips")}
    assert set(held) == {"c.csv", "d.csv"}
    assert "no column 'fare'" in held["c.csv"]._reason and held["c.csv"]._run_id == result.run_id
    assert held["d.csv"]._record.startswith("4,2024-06-01 00:00:00,abc") and "declared type" in held["d.csv"]._reason
    counted = json.loads(last_run(store, "trips")["contract"])
    assert counted["rows_rejected"] == 1 and counted["files_empty"] == 1 and len(counted["files_rejected"]) == 1

    again = store.ingest("trips")
    assert (again.rows_read, again.rows_written, again.files_rejected) == (0, 0, []), "each file is read once"


def test_a_backfill_and_an_inferred_schema_read_csv_by_name_too(store):
    # Spark infers one schema for the folder from the first header (so distance_km comes out a
    # string here, and the transform casts it); the values are still read by each file's header.
    for group in ("windowed", "inferred"):
        folder = store.data / group
        text(folder, "a.csv", f"{HEADER}\n1,2024-06-01 00:00:00,1.5,15.0,north\n")
        text(folder, "b.csv", "distance_km,fare,trip_id,ts,pickup_zone\n3.5,42.0,2,2024-06-01 00:00:00,south\n")
    dry = store.validate("windowed", start=datetime(2024, 5, 1), end=datetime(2024, 7, 1))
    assert dry.rows_read == 2 and not store.offline("windowed").exists()
    assert store.ingest("windowed", start=datetime(2024, 5, 1), end=datetime(2024, 7, 1)).ok
    assert offline(store, "windowed") == {1: (1.5, 15.0, "north"), 2: (3.5, 42.0, "south")}
    assert store.ingest("inferred").ok
    assert offline(store, "inferred") == {1: (1.5, 15.0, "north"), 2: (3.5, 42.0, "south")}


def test_a_parquet_file_missing_a_column_or_unreadable_is_set_aside_alone(store):
    folder = store.data / "files"
    put(folder, frame([1, 2]), "a.parquet")
    put(folder, frame([3]).drop(columns=["fare"]), "b.parquet")
    whole = frame([4]).to_parquet(index=False, coerce_timestamps="us")
    folder.joinpath("c.parquet").write_bytes(whole[: len(whole) // 2])  # cut short: no footer

    result = store.ingest("files")
    assert result.ok and result.rows_written == 2, result.summary()
    assert offline(store, "files") == {1: (1.0, 10.0, "z1"), 2: (2.0, 20.0, "z2")}, "no row with a NULL fare"
    reasons = {f["file"].rsplit("/", 1)[1]: f["reason"] for f in result.files_rejected}
    assert "no column 'fare'" in reasons["b.parquet"] and "cannot be read" in reasons["c.parquet"], reasons
    assert {r._file.rsplit("/", 1)[1] for r in rejected(store, "files")} == {"b.parquet", "c.parquet"}


def test_a_group_can_ask_for_all_or_nothing(store):
    folder = store.data / "strict"
    put(folder, frame([1, 2]), "a.parquet")
    folder.joinpath("b.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(JobError, match=r"b\.parquet cannot be read.*nothing was written \(on_bad_file='fail'\)"):
        store.ingest("strict")
    assert not store.offline("strict").exists()
    folder.joinpath("b.parquet").unlink()
    assert store.ingest("strict").rows_written == 2, "the batch is read again once the bad file is gone"


def test_implausible_times_are_quarantined_duplicates_counted_and_naive_times_said(store):
    naive = [pd.Timestamp("2024-06-01T00:00:00")] * 6 + [pd.Timestamp("2099-01-01"), pd.Timestamp("1970-01-01")]
    df = frame([1, 1, 2, 2, 3, 3, 4, 5]).assign(ts=naive)
    put(store.data / "times", df, "a.parquet")

    result = store.ingest("times")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (8, 3, 2), result.summary()
    assert (result.rows_out_of_range, result.duplicates_collapsed) == (2, 3)
    assert sorted(offline(store, "times")) == [1, 2, 3]
    head = result.summary().splitlines()[0]
    assert "2 out of the event-time range" in head and "3 duplicates collapsed" in head, head
    assert len(result.notes) == 1 and "taken as UTC" in result.notes[0]
    held = store.spark.read.format("delta").load(f"{store.config.root}/quarantine/times").collect()
    assert sorted(r.trip_id for r in held) == [4, 5]
    assert all("plausible range" in r._reason for r in held)
    counted = json.loads(last_run(store, "times")["contract"])
    assert counted["rows_out_of_range"] == 2 and counted["duplicates_collapsed"] == 3


def test_freshness_never_shows_a_negative_lag(store):
    from featurelake.monitoring.freshness import freshness

    put(store.data / "times", frame([9]), "b.parquet")  # 2024-06-01, seen from 2020
    store.ingest("times")
    report = freshness(store, ["times"], now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    r = report.results[0]
    assert r.lag.total_seconds() == 0 and "-" not in r.summary().split(" lag ")[1].split("/")[0], r.summary()
    assert any("event times ahead of now" in n for n in r.notes), r.notes
