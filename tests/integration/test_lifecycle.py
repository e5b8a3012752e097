"""Definitions that change (issue 22): plan, apply's refusals and revisions, backfill of a new
feature, deprecate, rollback, and the definition version on the offline rows. One small Delta
source of trips; each test evolves the repository the way a team does."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pandas as pd
import pytest

from featurelake.errors import UsageError

GROUP = '''
from pyspark.sql import functions as F
from featurelake import DeltaSource, Entity, Feature, FeatureGroup
driver = Entity("driver", join_keys=["driver_id"])
trips_src = DeltaSource("trips_src", path={src!r}, timestamp_column="ts")
trips = FeatureGroup(
    "trips", entity=driver, source=trips_src, timestamp_column="ts", description={description!r},
    transform=lambda df: df.select("driver_id", "ts", {columns}),
    features=[{features}], online=True)
'''
V1 = dict(columns='"km"', features='Feature("km", "double")')
V2 = dict(columns='"km", (F.col("km") * 1000).alias("trip_m")',
          features='Feature("km", "double"), Feature("trip_m", "double")')
T0 = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)


def repo(make_store, src, description="Trips", modules=None, **version):
    text = GROUP.format(src=src, description=description, **{**V1, **version})
    return make_store({"trips.py": text} if modules is None else modules)


@pytest.fixture
def src(tmp_path, spark):
    """A Delta source of four trips on two days (change data feed on); returns its path."""
    path = str(tmp_path / "src")
    rows = [(1, T0, 2.0), (2, T0, 3.5), (1, T0.replace(day=6), 4.0), (2, T0.replace(day=6), 1.5)]
    (spark.createDataFrame(rows, "driver_id bigint, ts timestamp, km double").write.format("delta")
     .option("delta.enableChangeDataFeed", "true").save(path))
    return path


def spine(store):
    return store.spark.createDataFrame(pd.DataFrame({"driver_id": [1, 2], "event_ts": [T0.replace(day=7)] * 2}))


def sets(store) -> int:
    return store.catalog.read("training_sets").count()


def test_added_feature_is_refused_until_backfilled(make_store, src, dynamodb_endpoint):
    online = (f"online:\n  dynamodb:\n    endpoint_url: {dynamodb_endpoint}\n    region: us-east-1\n"
              f"    table_prefix: lc{uuid.uuid4().hex[:6]}_")
    store = make_store({"trips.py": GROUP.format(src=src, description="Trips", **V1)}, online=online)
    store.apply()
    assert store.ingest("trips").ok
    store = make_store({"trips.py": GROUP.format(src=src, description="Trips", **V2)}, online=online)

    [change] = store.plan()
    assert (change.action, change.version, change.pending) == ("data", 2, ["trip_m"])
    assert "featurelake backfill trips" in change.run and "trip_m" in change.offline
    assert store.apply() == ["trips: version 2 (added trip_m; transform changed)"]

    # before the backfill: a clear error naming the verb, no traceback, nothing registered
    with pytest.raises(UsageError, match=r"trip_m .*not backfilled.*featurelake backfill trips"):
        store.training_set(spine(store), ["trips:*"])
    assert sets(store) == 0
    with pytest.raises(UsageError, match="featurelake backfill trips"):
        store.export("trips")
    # the feature that was there all along is served
    assert store.training_set(spine(store), ["trips:km"]).to_pandas()["km"].tolist() == [4.0, 1.5]

    result = store.backfill("trips", chunk="365d")
    assert result.ok and result.rows_written == 4
    rows = store.read_offline("trips").orderBy("driver_id", "ts").collect()
    assert [(r.trip_m, r._definition_version) for r in rows] == [(2000.0, 2), (4000.0, 2), (3500.0, 2),
                                                                 (1500.0, 2)]
    got = store.training_set(spine(store), ["trips:*"]).to_pandas()
    assert got["trip_m"].tolist() == [4000.0, 1500.0]
    assert store.export("trips").ok


def test_type_change_is_refused_and_metadata_is_a_revision(make_store, src):
    store = repo(make_store, src)
    store.apply()
    assert store.ingest("trips").ok
    before = store.catalog.read("groups").count(), store.catalog.read("group_states").count()

    retyped = repo(make_store, src, columns='F.col("km").cast("int").alias("km")', features='Feature("km", "int")')
    with pytest.raises(UsageError, match=r"changed type of km double -> int.*'km_v2'"):
        retyped.apply()
    assert (store.catalog.read("groups").count(), store.catalog.read("group_states").count()) == before
    from featurelake.cli import main

    assert main(["--conf", str(store.config.path), "--repo", retyped.repo.path, "plan"]) == 2

    described = repo(make_store, src, description="Trips of a driver, in km")
    assert described.apply() == ["trips: version 1 revision 1 (metadata only: description changed)"]
    assert {r["version"] for r in described.catalog.rows("groups")} == {1}
    assert described.catalog.version_of(described.group("trips")) == 1  # ingest and export go on
    assert described.ingest("trips").ok
    assert described.apply() == []


def test_deprecate_keeps_replays_and_rollback_works_end_to_end(make_store, src, tmp_path):
    store = repo(make_store, src)
    store.apply()
    assert store.ingest("trips").ok
    ts = store.training_set(spine(store), ["trips:km"])
    first = ts.to_pandas()

    # a changed transform: new rows carry version 2, the old ones version 1
    doubled = repo(make_store, src, columns='(F.col("km") * 2).alias("km")')
    assert doubled.apply() == ["trips: version 2 (transform changed)"]
    doubled.spark.createDataFrame([(3, T0.replace(day=7), 9.0)], "driver_id bigint, ts timestamp, km double") \
        .write.format("delta").mode("append").save(src)
    assert doubled.ingest("trips").ok
    versions = {(r.driver_id, r._definition_version) for r in doubled.read_offline("trips").collect()}
    assert versions == {(1, 1), (2, 1), (3, 2)}

    # the earlier code again: a rollback, and ingest/training then run version 1
    back = repo(make_store, src)
    assert back.apply() == ["trips: version 1 current again, a rollback (was version 2: transform changed)"]
    assert back.catalog.states()["trips"]["version"] == 1
    assert back.ingest("trips").ok
    assert back.training_set(spine(back), ["trips:km"]).to_pandas()["km"].tolist() == [4.0, 1.5]
    assert back.apply() == []
    # rollback by verb: the code of version 1 is then not the current one, and ingest says what to do
    assert "version 2 is current" in back.rollback("trips", to=2)
    with pytest.raises(UsageError, match=r"code is version 1, but version 2 is current.*featurelake apply"):
        back.ingest("trips")
    with pytest.raises(UsageError, match=r"no version 7: its versions are \[1, 2\]"):
        back.rollback("trips", to=7)
    back.rollback("trips", to=1)

    # the group leaves the repository: apply proposes deprecate, replays never need the code
    (tmp_path / "features" / "trips.py").unlink()
    gone = make_store({"other.py": "x = 1\n"})
    assert gone.apply() == ["trips: registered but not in the repository: apply leaves it registered and served; "
                            "run `featurelake deprecate trips` to retire it"]
    assert "deprecated" in gone.deprecate("trips")
    from featurelake.catalog import latest_groups

    assert [g["name"] for g in latest_groups(gone.catalog)] == []
    assert [(g["name"], g["deprecated"]) for g in latest_groups(gone.catalog, include_deprecated=True)] == [
        ("trips", True)]
    pd.testing.assert_frame_equal(gone.load_training_set(ts.id).to_pandas(), first, check_exact=True)
    assert gone.apply() == []
