"""OfflineTable.merge's three ways to write (a stream's in-order micro-batch appended under a Delta
transaction id, a batch of new (key, time) pairs inserted, a batch changing rows merged) all leave
every (key, time) once with its newest values, and a replay of any of them writes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
files = S3Source("files", path="s3a://bucket/none/", format="parquet")
pay = FeatureGroup("pay", entity=customer, source=files, timestamp_column="ts", online=False,
                   features=[Feature("amount", "double")])
'''
SCHEMA = "customer_id bigint, ts timestamp, amount double"
T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.fixture
def table(make_store):
    store = make_store({"groups.py": REPO})
    store.apply()
    return store.offline("pay")


def rows(table) -> list:
    return sorted((r["customer_id"], r["amount"]) for r in table.read().collect())


def test_each_way_of_writing_leaves_every_key_and_time_once_and_a_replay_writes_nothing(table, spark):
    def frame(data: list):
        return spark.createDataFrame([(k, T0 + timedelta(hours=h), a) for k, h, a in data], SCHEMA)

    assert table.merge(frame([(1, 0, 1.0), (2, 0, 2.0)]), "first") is not None
    stream_batch = [(1, 5, 10.0), (3, 6, 30.0), (3, 6, 31.0)]  # newer than the table; one (key, time) twice
    assert table.merge(frame(stream_batch), "stream", newer=("app", 7)) is not None
    assert rows(table) == [(1, 1.0), (1, 10.0), (2, 2.0), (3, 31.0)]  # the later of the two sent
    before = len(table.history())
    assert table.merge(frame(stream_batch), "replay", newer=("app", 7)) is None  # the same transaction: skipped
    assert len(table.history()) == before

    assert table.merge(frame([(2, 0, 2.0), (4, 1, 40.0)]), "inserts") is not None  # one new, one as stored
    assert table.merge(frame([(2, 0, 2.0), (4, 1, 40.0)]), "inserts-again") is None
    assert table.merge(frame([(2, 0, 20.0), (5, 2, 50.0)]), "changes") is not None  # one changed, one new
    assert table.merge(frame([(2, 0, 20.0), (5, 2, 50.0)]), "changes-again") is None
    assert rows(table) == [(1, 1.0), (1, 10.0), (2, 20.0), (3, 31.0), (4, 40.0), (5, 50.0)]
    assert [h["operation"] for h in table.history()][:3] == ["MERGE", "MERGE", "WRITE"]  # changes, inserts, stream
