"""apply registers a repository in a fresh Delta catalogue, readable with plain Spark SQL."""
from __future__ import annotations

import threading

import pytest

GROUP = '''
from featurelake import Entity, Feature, FeatureGroup, JdbcSource, Aggregation
customer = Entity("customer", join_keys=["customer_id"], description="A paying customer")
txns = JdbcSource("transactions", connection="payments", table="transactions",
                  timestamp_column="created_at", watermark_column="updated_at")
customer_txn = FeatureGroup(
    "customer_txn", entity=customer, source=txns, timestamp_column="created_at",
    transform=lambda df: df.selectExpr("customer_id", "created_at", "amount"{extra}),
    features=[Feature("amount", "double", "Amount in BRL"){extra_feature}],
    aggregations=[Aggregation("amount", ["sum", "count"], windows=["7d"])],
    ttl="30d", owner="risk-team", tags={{"team": "risk"}})
'''
CONN = 'connections:\n  payments: {url: "jdbc:sqlite:payments.db"}'


def module(extra: str = "", extra_feature: str = "") -> dict:
    return {"txn.py": GROUP.format(extra=extra, extra_feature=extra_feature)}


def test_apply_registers_then_reports_no_changes(make_store):
    store = make_store(module(), connections=CONN)
    changes = store.apply()
    assert "customer_txn: version 1 (new group)" in changes
    assert "entity customer: new" in changes
    assert store.apply() == []

    spark = store.spark
    root = store.config.root
    groups = spark.sql(f"SELECT name, version, owner, ttl FROM delta.`{root}/_catalog/groups`").collect()
    assert [(r.name, r.version, r.owner, r.ttl) for r in groups] == [("customer_txn", 1, "risk-team", "30d")]
    feats = spark.sql(f"SELECT name, dtype, kind FROM delta.`{root}/_catalog/features` ORDER BY name").collect()
    assert [(r.name, r.dtype, r.kind) for r in feats] == [
        ("amount", "double", "feature"), ("amount_count_7d", "bigint", "aggregation"),
        ("amount_sum_7d", "double", "aggregation")]
    history = spark.sql(f"DESCRIBE HISTORY delta.`{root}/_catalog/groups`").collect()
    assert len([h for h in history if h.operation == "MERGE"]) == 1


def test_changing_the_transform_makes_a_new_version_and_keeps_the_old(make_store, tmp_path):
    store = make_store(module(), connections=CONN)
    store.apply()
    store2 = make_store(module(extra=', "amount > 1000 AS is_large"',
                               extra_feature=', Feature("is_large", "boolean")'), connections=CONN)
    changes = store2.apply()
    assert len(changes) == 1 and changes[0].startswith("customer_txn: version 2 (added is_large")
    rows = store2.spark.sql(f"SELECT version FROM delta.`{store2.config.root}/_catalog/groups` ORDER BY version")
    assert [r.version for r in rows.collect()] == [1, 2]
    history = store2.spark.sql(f"DESCRIBE HISTORY delta.`{store2.config.root}/_catalog/groups`").collect()
    assert len([h for h in history if h.operation == "MERGE"]) == 2


def test_two_concurrent_applies_leave_one_row_per_version(make_store):
    store = make_store(module(), connections=CONN)
    store.catalog.apply(store.repo)  # creates the tables; the race is on the next version
    other = make_store(module(extra=', "amount * 2 AS doubled"', extra_feature=', Feature("doubled", "double")'),
                       connections=CONN)
    errors = []

    def run():
        try:
            other.catalog.apply(other.repo)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    rows = other.catalog.rows("groups")
    assert sorted((r["version"], r["fingerprint"]) for r in rows) == sorted(
        {(r["version"], r["fingerprint"]) for r in rows})
    assert [r["version"] for r in sorted(rows, key=lambda r: r["version"])] == [1, 2]


def test_an_older_catalogue_table_gains_the_columns_added_since(spark, tmp_path):
    """A catalogue written before a column existed (here: usage without `detail`) takes the next
    append and keeps its rows, the new column null in them."""
    from featurelake.catalog import Catalog, now

    catalog = Catalog(spark, str(tmp_path))
    spark.createDataFrame([(now(), "ann", "apply", "g")], "ts timestamp, user string, action string, object string") \
        .write.format("delta").save(catalog.path("usage"))
    catalog.audit("export", "g", {"rows": 3})
    rows = sorted(catalog.rows("usage"), key=lambda r: r["action"])
    assert [(r["user"], r["action"], r["detail"]) for r in rows][0] == ("ann", "apply", None)
    assert rows[1]["action"] == "export" and rows[1]["detail"] == '{"rows": 3}'


def test_catalogue_rows_keep_every_value_they_were_given(spark, tmp_path):
    """Catalogue rows travel to Spark as JSON: timestamps keep their microseconds and their
    instant (a naive one is local time, as Spark's own conversion takes it), arrays, maps, text
    of any script and non-finite floats come back equal, and a value of the wrong type is refused
    instead of stored as null."""
    import math
    from datetime import datetime, timedelta, timezone

    from featurelake.catalog import Catalog

    catalog = Catalog(spark, str(tmp_path))
    aware = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    naive = datetime(2026, 7, 1, 12, 0, 0, 654321)
    catalog.append("groups", [{"name": "pagamentos_ção", "version": 2, "keys": ["a", "b"],
                               "tags": {"ç": "ü", "k": ""}, "online": False, "registered_at": aware,
                               "definition": '{"x": "\\n\\u00e9"}'},
                              {"name": "empty", "version": 1, "keys": [], "tags": {}, "registered_at": naive}])
    catalog.append("runs", [{"run_id": "r", "duration_s": math.inf, "rows_read": 2 ** 40}])
    got = {r["name"]: r for r in catalog.rows("groups")}
    assert got["pagamentos_ção"]["keys"] == ["a", "b"] and got["pagamentos_ção"]["tags"] == {"ç": "ü", "k": ""}
    assert got["pagamentos_ção"]["definition"] == '{"x": "\\n\\u00e9"}' and got["pagamentos_ção"]["online"] is False
    assert got["pagamentos_ção"]["registered_at"].timestamp() == aware.timestamp()
    assert got["empty"]["registered_at"].timestamp() == naive.timestamp()
    assert got["empty"]["keys"] == [] and got["empty"]["tags"] == {} and got["empty"]["description"] is None
    run = catalog.rows("runs")[0]
    assert run["duration_s"] == math.inf and run["rows_read"] == 2 ** 40
    with pytest.raises(Exception, match="(?i)malformed|parse|cannot"):
        catalog.append("runs", [{"run_id": "bad", "rows_read": "many"}])
    assert [r["run_id"] for r in catalog.rows("runs")] == ["r"]
    # a table the catalogue creates checkpoints its log every 100 commits, not Delta's 10, and
    # keeps no column statistics (read whole, never skipped by them)
    properties = dict(spark.sql(f"SHOW TBLPROPERTIES delta.`{catalog.path('runs')}`").collect())
    assert properties["delta.checkpointInterval"] == "100"
    assert properties["delta.dataSkippingNumIndexedCols"] == "0"
