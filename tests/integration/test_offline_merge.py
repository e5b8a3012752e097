"""OfflineTable.merge's ways to write (a stream's in-order micro-batch appended under a Delta
transaction id unseen, one of new (key, time) pairs appended under its id once compared, a batch of
new pairs inserted, a batch changing rows merged) all leave every (key, time) once with its newest
values, and a replay of any of them writes nothing."""
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
    assert table.merge(frame(stream_batch), "stream", txn=("app", 7), newer=True) is not None
    assert rows(table) == [(1, 1.0), (1, 10.0), (2, 2.0), (3, 31.0)]  # the later of the two sent
    before = len(table.history())
    assert table.merge(frame(stream_batch), "replay", txn=("app", 7), newer=True) is None  # same transaction: skipped
    assert len(table.history()) == before

    # out of order (older than the table's newest row), every (key, time) new: appended under its id
    late_batch = [(6, 1, 60.0), (7, 2, 70.0)]
    assert table.merge(frame(late_batch), "late", txn=("app", 8)) is not None
    assert table.history()[0]["operation"] == "WRITE"
    assert table.merge(frame(late_batch), "late-replay", txn=("app", 8)) is None
    assert table.merge(frame(late_batch), "late-again", txn=("app", 9)) is None  # compared: all there already
    table.merge(frame([(6, 1, 60.0), (8, 3, 80.0)]), "late-half", txn=("app", 10))  # one of two new: a MERGE
    assert table.history()[0]["operation"] == "MERGE"
    assert rows(table)[-3:] == [(6, 60.0), (7, 70.0), (8, 80.0)]

    assert table.merge(frame([(2, 0, 2.0), (4, 1, 40.0)]), "inserts") is not None  # one new, one as stored
    assert table.merge(frame([(2, 0, 2.0), (4, 1, 40.0)]), "inserts-again") is None
    assert table.merge(frame([(2, 0, 20.0), (5, 2, 50.0)]), "changes") is not None  # one changed, one new
    assert table.merge(frame([(2, 0, 20.0), (5, 2, 50.0)]), "changes-again") is None
    assert rows(table) == [(1, 1.0), (1, 10.0), (2, 20.0), (3, 31.0), (4, 40.0), (5, 50.0), (6, 60.0), (7, 70.0),
                           (8, 80.0)]
    assert [h["operation"] for h in table.history()][:2] == ["MERGE", "MERGE"]  # changes, inserts
