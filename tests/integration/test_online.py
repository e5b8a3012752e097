"""Export to DynamoDB (dynalite on loopback) and the OnlineClient: online equals the offline as-of
rule for every key and feature, increments write only what changed, an older export never wins,
expired rows read as None, and the spark-submit job does the same."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from random import Random

import pytest

from conftest import ROOT, write_config
from featurelake.online import OnlineClient, codec

REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
pair = Entity("pair", join_keys=["customer_id", "merchant_id"])
files = S3Source("files", path="s3a://bucket/none/", format="parquet")
txn = FeatureGroup(
    "txn", entity=customer, source=files, timestamp_column="ts",
    features=[Feature("amount", "double"), Feature("is_large", "boolean"), Feature("currency", "string"),
              Feature("n_items", "int"), Feature("tags", "array<string>"), Feature("emb", "array<float>"),
              Feature("blob", "binary"), Feature("seen_at", "timestamp"), Feature("day", "date"),
              Feature("price", "decimal(10,2)"), Feature("email", "string", tags={"pii": "true"}),
              Feature("attrs", "map<string,bigint>"), Feature("place", "struct<city:string,lat:double>")],
    aggregations=[Aggregation("amount", ["sum", "count", "avg", "max"], windows=["1d", "7d"])],
    ttl="30d")
pair_stats = FeatureGroup(
    "pair_stats", entity=pair, source=files, timestamp_column="ts",
    features=[Feature("score", "double"), Feature("amount", "double")])
short = FeatureGroup("short", entity=customer, source=files, timestamp_column="ts",
                     features=[Feature("v", "bigint")], ttl="1h")
plain = FeatureGroup("plain", entity=customer, source=files, timestamp_column="ts", features=[Feature("v", "bigint")])
soon = FeatureGroup("soon", entity=customer, source=files, timestamp_column="ts", features=[Feature("v", "bigint")])
typed = FeatureGroup("typed", entity=customer, source=files, timestamp_column="ts", features=txn.features, ttl="30d")
blobs = FeatureGroup("blobs", entity=customer, source=files, timestamp_column="ts",
                     features=[Feature("payload", "binary"), Feature("size", "bigint")])
'''
TXN_SCHEMA = ("customer_id bigint, ts timestamp, amount double, is_large boolean, currency string, n_items int, "
              "tags array<string>, emb array<float>, blob binary, seen_at timestamp, day date, price decimal(10,2), "
              "email string, attrs map<string,bigint>, place struct<city:string,lat:double>")
N = 200
NOW = datetime.now(timezone.utc)
TYPES = {"double": float, "boolean": bool, "string": str, "int": int, "bigint": int, "array<string>": list,
         "array<float>": list, "binary": bytes, "timestamp": datetime, "date": date, "decimal(10,2)": Decimal,
         "map<string,bigint>": dict, "struct<city:string,lat:double>": dict}


def txn_rows(keys: range, seed: int, base: datetime) -> list[tuple]:
    """1-4 events per key, at (3j + 0.5) hours before `base` (never near a window's edge), some
    older than the ttl, some in the future; amounts in quarters so that sums are exact."""
    rnd = Random(seed)
    rows = []
    for k in keys:
        for _ in range(rnd.randint(1, 4)):
            j = rnd.choice([0, 1, 2, 5, 9, 30, 60, 250, 300, -2])  # 250+ -> past the 30d ttl; -2 -> future
            ts = base - timedelta(hours=3 * j + 0.5, microseconds=rnd.randint(0, 999_999))
            amount = rnd.randint(0, 4000) / 4
            rows.append((k, ts, amount if rnd.random() > 0.05 else None, amount > 500,
                         rnd.choice(["BRL", "USD", "", "€uro|%"]), rnd.randint(-5, 5),
                         rnd.choice([[], ["a"], ["a", None, "b|c"]]), [rnd.random() for _ in range(4)],
                         bytes(rnd.getrandbits(8) for _ in range(5)) if rnd.random() > 0.3 else None,
                         ts - timedelta(seconds=rnd.randint(0, 10 ** 6)), (ts - timedelta(days=1)).date(),
                         Decimal(rnd.randint(0, 10 ** 6)) / 100, f"user{k}@mail.com",
                         rnd.choice([{}, {"a": 1, "b|%": None}, {"x": -k}]),
                         rnd.choice([None, (None, 0.5), ("São Paulo", -23.55)])))
    return rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint):
    """A store over a fresh lake, its groups applied, `txn` holding one version of N keys."""
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("online")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    conf = write_config(tmp, online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: "
                                   f"{dynamodb_endpoint}\n    table_prefix: {prefix}\n    lease_s: 6")
    store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.apply()
    store.offline("txn").merge(spark.createDataFrame(txn_rows(range(N), 1, NOW), TXN_SCHEMA), "run-1")
    store.conf_path = conf
    store.first_export = store.export("txn")  # full: nothing exported yet
    return store


@pytest.fixture(scope="module")
def client(lake):
    with OnlineClient.from_config(lake.conf_path) as c:
        yield c


def expected(store, group_name: str, at: datetime) -> dict:
    """The offline rule (offline.as_of) at `at`, per key tuple; timestamps as epoch microseconds."""
    from pyspark.sql import functions as F

    from featurelake.offline import as_of

    group = store.group(group_name)
    rows = as_of(store.read_offline(group_name), group, at)
    ts_cols = [f.name for f in rows.schema.fields if f.dataType.simpleString() == "timestamp"]
    rows = rows.select(*[F.unix_micros(c).alias(c) if c in ts_cols else F.col(c) for c in rows.columns])
    return {tuple(r[k] for k in group.keys): r.asDict(recursive=True) for r in rows.collect()}


def window_oracle(raw: list[tuple], at: datetime) -> dict:
    """Brute force: sum/count/avg/max of amount over (at - w, at] per customer."""
    out: dict = {}
    for w_name, w in (("1d", timedelta(days=1)), ("7d", timedelta(days=7))):
        for k in {r[0] for r in raw}:
            vals = [r[2] for r in raw if r[0] == k and at - w < r[1] <= at and r[2] is not None]
            got = out.setdefault(k, {})
            got[f"amount_sum_{w_name}"] = sum(vals) if vals else None
            got[f"amount_count_{w_name}"] = len(vals)
            got[f"amount_avg_{w_name}"] = sum(vals) / len(vals) if vals else None
            got[f"amount_max_{w_name}"] = max(vals) if vals else None
    return out


def assert_online_equals_offline(store, client, raw: list[tuple], at: datetime) -> None:
    want = expected(store, "txn", at)
    windows = window_oracle(raw, at)
    dtypes = {f.name: f.dtype for f in store.group("txn").features}
    keys = [{"customer_id": k} for k in range(N)]
    rows = client.get_many("txn", keys, with_event_time=True)
    assert sum(r is not None for r in rows) == len(want) > N // 2
    for k, row in zip(range(N), rows):
        exp = want.get((k,))
        if exp is None:
            assert row is None, k
            continue
        assert row is not None, k
        assert "email" not in row  # PII stays offline
        assert codec.datetime_to_micros(row["ts"]) == exp["ts"] and row["ts"].tzinfo is not None
        assert row["_as_of"] == at
        for name, dtype in dtypes.items():
            if name == "email":
                continue
            value, ref = row[name], exp[name]
            if dtype == "timestamp" and ref is not None:
                value = codec.datetime_to_micros(value)
            elif dtype == "binary" and ref is not None:
                assert type(value) is bytes
                ref = bytes(ref)
            elif ref is not None:
                assert type(value) is TYPES[dtype], (k, name, value)
            assert value == ref, (k, name, value, ref)
        for name, ref in windows[k].items():
            assert row[name] == ref, (k, name, row[name], ref)
            assert ref is None or type(row[name]) is (int if "count" in name else float)


def scan(store, table: str) -> list[dict]:
    from featurelake.online.writer import make_client

    dyn = store.config.online.dynamodb
    c = make_client(dyn.region, dyn.endpoint_url)
    items, kwargs = [], {}
    while True:
        page = c.scan(TableName=table, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return [i for i in items if not i["pk"]["S"].startswith("%")]
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def test_full_export_then_every_key_equals_the_offline_rule(lake, client):
    result = lake.first_export
    assert result.ok and result.mode == "full" and result.created_table, result.summary()
    raw = txn_rows(range(N), 1, NOW)
    assert result.items_written == len(expected(lake, "txn", result.as_of)) == len(scan(lake, result.table_name))
    assert "PII features kept offline: email" in " ".join(result.notes)
    assert_online_equals_offline(lake, client, raw, result.as_of)
    # the same rows through a caller's own boto3 client (botocore transport)
    import boto3

    own = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=client.endpoint_url)
    with OnlineClient(table_prefix=client.table_prefix, client=own) as other:
        keys = [{"customer_id": k} for k in range(N)]
        assert other.get_many("txn", keys, with_event_time=True) == client.get_many("txn", keys, with_event_time=True)
        assert other.get("txn", {"customer_id": 3}) == client.get("txn", 3)
    assert client.get("txn", {"customer_id": 10 ** 9}) is None
    created = lake.catalog.rows("usage", "action = 'create_online_table'")
    assert [r["object"] for r in created] == [result.table_name]


def test_incremental_export_writes_only_the_changed_keys(lake, client, spark):
    first = lake.first_export
    changed = {7: 1.25, 123: 2.5}  # 1% of the keys get a newer event
    fresh = [(k, NOW - timedelta(minutes=5), amount, *txn_rows([k], 99, NOW)[0][3:13], {"a": k, "z": None},
              ("Recife", -8.05)) for k, amount in changed.items()]
    assert lake.offline("txn").merge(spark.createDataFrame(fresh, TXN_SCHEMA), "run-2") is not None
    # the same rows again change nothing (a map or struct value is compared too; Spark cannot compare maps)
    assert lake.offline("txn").merge(spark.createDataFrame(fresh, TXN_SCHEMA), "run-2b") is None
    second = lake.export("txn")
    assert second.ok and second.mode == "incremental", second.summary()
    assert second.from_version == first.to_version + 1 and second.items_written == len(changed)
    as_of_ms = codec.micros_to_ms_text(codec.datetime_to_micros(second.as_of))
    rewritten = [int(i["pk"]["S"]) for i in scan(lake, second.table_name) if i["_as_of"]["N"] == as_of_ms]
    assert sorted(rewritten) == sorted(changed)
    assert client.get("txn", 7, consistent=True)["amount"] == 1.25
    assert client.get("txn", 123, consistent=True)["amount"] == 2.5
    recorded = {r["export_id"]: r for r in lake.catalog.rows("exports", "`group` = 'txn'")}
    assert recorded[second.export_id]["items_written"] == 2 and recorded[second.export_id]["status"] == "ok"
    assert recorded[second.export_id]["from_version"] == first.to_version + 1
    assert recorded[first.export_id]["from_version"] == 0 and recorded[first.export_id]["rows"] == first.rows


def test_an_increment_writes_a_changed_row_only_where_it_is_newer_than_online(lake, client, spark):
    """No window features, rows only added or updated: the increment reads the changed rows (change
    data feed) and compares them with the items online; a late row older than online is skipped."""
    now = datetime.now(timezone.utc)
    schema = "customer_id bigint, ts timestamp, v bigint"
    lake.offline("plain").merge(spark.createDataFrame([(k, now - timedelta(hours=1), k) for k in range(10)], schema),
                                "p-1")
    assert lake.export("plain").items_written == 10
    changes = [(0, now - timedelta(minutes=10), 100),  # newer: written
               (1, now - timedelta(hours=2), -1),       # late and older than online: not written
               (2, now - timedelta(hours=1), 222)]      # the same event, corrected: written
    lake.offline("plain").merge(spark.createDataFrame(changes, schema), "p-2")
    result = lake.export("plain")
    assert result.mode == "incremental"
    assert any("newer than its item online" in n for n in result.notes), result.notes
    assert (result.items_written, result.not_newer) == (2, 1), result.summary()
    assert [r["v"] for r in client.get_many("plain", range(4), consistent=True)] == [100, 1, 222, 3]
    want = expected(lake, "plain", result.as_of)
    assert {k: r["v"] for (k,), r in want.items()} == {k: r["v"] for k, r in
                                                       zip(range(10), client.get_many("plain", range(10)))}


def test_a_small_increment_is_read_on_the_driver_and_writes_the_items_spark_writes(lake, spark, monkeypatch):
    """An increment of a few rows is computed on the driver from the change data feed as delta-rs
    reads it, with no Spark job. Over every dtype an item can hold, late, future and expired
    rows among them, it writes the same items as the same increment computed by Spark
    (FEATURELAKE_READER=spark) into a second online table."""
    from featurelake.online.table import read_meta
    from featurelake.online.writer import make_client

    dyn = lake.config.online.dynamodb
    ddb = make_client(dyn.region, dyn.endpoint_url)
    ours, theirs = dyn.table_prefix, f"{dyn.table_prefix}spark_"

    def export_both() -> tuple:
        first = lake.export("typed")
        with monkeypatch.context() as m:
            m.setenv("FEATURELAKE_READER", "spark")
            m.setattr(dyn, "table_prefix", theirs)
            return first, lake.export("typed")

    current = [r for r in txn_rows(range(40), 5, NOW) if r[1] <= NOW]  # none ahead: the next increment reads
    lake.offline("typed").merge(spark.createDataFrame(current, TXN_SCHEMA), "typed-1")  # only the change
    assert all(r.mode == "full" and r.items_written > 30 for r in export_both())
    assert read_meta(ddb, f"{ours}typed")["last"]["rows_ahead"] is False
    changes = txn_rows(range(30, 50), 6, datetime.now(timezone.utc))  # new keys, newer, late, future, expired
    lake.offline("typed").merge(spark.createDataFrame(changes, TXN_SCHEMA), "typed-2")
    driver, by_spark = export_both()
    assert driver.mode == by_spark.mode == "incremental", (driver.summary(), by_spark.summary())
    assert any("read on the driver" in n for n in driver.notes), driver.notes
    assert not any("read on the driver" in n for n in by_spark.notes), by_spark.notes
    assert driver.items_written > 10 and driver.not_newer > 0, driver.summary()
    assert (driver.rows, driver.items_written, driver.bytes_written, driver.not_newer) == \
        (by_spark.rows, by_spark.items_written, by_spark.bytes_written, by_spark.not_newer)
    assert read_meta(ddb, f"{ours}typed")["last"]["rows_ahead"] is True  # a future row came in the change
    assert read_meta(ddb, f"{theirs}typed")["last"]["rows_ahead"] is True
    items = {name: sorted(scan(lake, f"{name}typed"), key=lambda i: i["pk"]["S"]) for name in (ours, theirs)}
    assert items[ours] == items[theirs] and len(items[ours]) >= 45


def test_a_row_dated_ahead_is_exported_once_its_time_comes(lake, client, spark):
    """An export records whether the offline table holds rows dated after its end. When it holds
    none, the next increment reads only the change data feed; when it does, the next increment
    also looks for rows that became current, and writes them."""
    from featurelake.online.table import read_meta
    from featurelake.online.writer import make_client

    dyn = lake.config.online.dynamodb
    ddb, table = make_client(dyn.region, dyn.endpoint_url), f"{dyn.table_prefix}soon"
    schema = "customer_id bigint, ts timestamp, v bigint"
    now = datetime.now(timezone.utc)
    lake.offline("soon").merge(spark.createDataFrame([(k, now - timedelta(hours=1), k) for k in range(4)], schema),
                               "s-1")
    assert lake.export("soon").items_written == 4
    assert read_meta(ddb, table)["last"]["rows_ahead"] is False
    ahead = datetime.now(timezone.utc) + timedelta(seconds=8)
    lake.offline("soon").merge(spark.createDataFrame([(1, ahead, 100), (2, now - timedelta(minutes=30), 200)], schema),
                               "s-2")
    second = lake.export("soon")  # key 2 now; key 1's row is not current yet
    assert second.as_of < ahead, "the machine took over 8 s to merge and export: the test cannot tell"
    assert (second.mode, second.items_written) == ("incremental", 1), second.summary()
    assert read_meta(ddb, table)["last"]["rows_ahead"] is True
    assert [r["v"] for r in client.get_many("soon", [1, 2], consistent=True)] == [1, 200]
    time.sleep(max(0.0, (ahead - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    third = lake.export("soon")  # no commit since: the row that became current is found in the table
    assert (third.mode, third.items_written) == ("incremental", 1), third.summary()
    assert client.get("soon", 1, consistent=True)["v"] == 100
    assert read_meta(ddb, table)["last"]["rows_ahead"] is False
    assert lake.export("soon").items_written == 0  # nothing changed, nothing ahead: nothing to read


def test_an_overlapping_older_export_does_not_win(lake, client, spark):
    """A (slow) reads version v; while it writes, a newer version lands and B starts. B waits for
    A's lease, then writes the newer rows: online ends equal to the offline rule as of B."""
    from featurelake.online.export import export
    from featurelake.online.table import read_meta
    from featurelake.online.writer import make_client

    dyn = lake.config.online.dynamodb
    table = f"{dyn.table_prefix}pair_stats"
    schema = "customer_id bigint, merchant_id string, ts timestamp, score double, amount double"
    old = [(c, f"m|{c % 3}%", NOW - timedelta(hours=2), float(c), 1.0) for c in range(40)]
    lake.offline("pair_stats").merge(spark.createDataFrame(old, schema), "pairs-1")
    results: dict = {}

    def run(name: str, **kw) -> None:
        results[name] = export(lake, "pair_stats", full=True, **kw)

    a = threading.Thread(target=run, args=("a",), kwargs={"items_per_s": 4})  # 40 items: 3-10 s
    a.start()
    ddb = make_client(dyn.region, dyn.endpoint_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # A holds the lease and has fixed its version
        try:
            if read_meta(ddb, table):
                break
        except Exception:
            pass
        time.sleep(0.1)
    newer = [(c, f"m|{c % 3}%", NOW - timedelta(hours=1), float(c) + 0.5, 2.0) for c in range(40)]
    lake.offline("pair_stats").merge(spark.createDataFrame(newer, schema), "pairs-2")
    assert a.is_alive(), "export A finished before the newer version landed: the machine is too slow for this test"
    b = threading.Thread(target=run, args=("b",))
    b.start()
    a.join(300)
    b.join(300)
    assert results["a"].ok and results["b"].ok
    assert results["b"].waited_s > 0.5 and results["b"].to_version > results["a"].to_version
    want = expected(lake, "pair_stats", results["b"].as_of)
    got = client.get_many("pair_stats", [{"customer_id": c, "merchant_id": f"m|{c % 3}%"} for c in range(40)],
                          consistent=True, with_event_time=True)
    for c, row in enumerate(got):
        exp = want[(c, f"m|{c % 3}%")]
        assert row["score"] == exp["score"] == c + 0.5 and row["amount"] == 2.0
        assert codec.datetime_to_micros(row["ts"]) == exp["ts"]
    # features of two groups for one request: the clashing name `amount` is qualified
    c = next(c for c in range(40) if client.get("txn", c) is not None)
    features = client.get_features([{"customer_id": c, "merchant_id": f"m|{c % 3}%"},
                                    {"customer_id": 10 ** 6, "merchant_id": "x"}],
                                   ["txn:amount", "txn:currency", "pair_stats:*"])
    assert features[0]["pair_stats__amount"] == 2.0 and features[0]["score"] == c + 0.5
    assert features[0]["txn__amount"] == client.get("txn", c)["amount"]
    assert features[1]["score"] is None and features[1]["txn__amount"] is None
    assert features[1]["customer_id"] == 10 ** 6
    # one entity row: a GetItem per group, projected to the features asked for; a missing key gives None
    one = client.get_features([{"customer_id": c, "merchant_id": f"m|{c % 3}%"}], ["txn:amount", "pair_stats:score"])
    assert one == [{"customer_id": c, "merchant_id": f"m|{c % 3}%", "amount": features[0]["txn__amount"],
                    "score": c + 0.5}]
    assert client.get_features([{"customer_id": 10 ** 6, "merchant_id": "x"}], ["pair_stats:*"])[0]["score"] is None


def test_a_writer_that_lost_its_lease_stops(lake):
    from featurelake.online.table import Lease, ensure_table
    from featurelake.online.writer import BatchWriter, LeaseLost, make_client, task_transport

    dyn = lake.config.online.dynamodb
    ddb = make_client(dyn.region, dyn.endpoint_url)
    table = f"{dyn.table_prefix}fencing"
    ensure_table(ddb, table, ttl=False)
    transport = task_transport(dyn.region, dyn.endpoint_url, pool=4, max_rounds=3)
    with Lease(ddb, table, "export-a", lease_s=30) as lease:
        writer = BatchWriter(transport, table, lease_token=lease.token, check_every=0.0)
        writer.add({"pk": {"S": "1"}})
        writer.close()
        ddb.put_item(TableName=table, Item={"pk": {"S": codec.LOCK_PK}, "token": {"S": "someone-else"},
                                            "owner": {"S": "export-b"}, "expires_ms": {"N": "9" * 13}})
        writer = BatchWriter(transport, table, lease_token=lease.token, check_every=0.0)
        writer.add({"pk": {"S": "2"}})
        with pytest.raises(LeaseLost, match="export-b"):
            writer.close()
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "2"}}).get("Item") is None


def test_expired_rows_read_as_none(lake, client, spark):
    now = datetime.now(timezone.utc)
    rows = [(1, now - timedelta(minutes=30), 10), (2, now - timedelta(minutes=5), 20),
            (3, now - timedelta(hours=2), 30)]
    lake.offline("short").merge(spark.createDataFrame(rows, "customer_id bigint, ts timestamp, v bigint"), "s-1")
    result = lake.export("short")
    assert result.ok and result.items_written == 2  # key 3 was already past its 1h ttl
    assert [r and r["v"] for r in client.get_many("short", [1, 2, 3])] == [10, 20, None]
    item = scan(lake, result.table_name)[0]
    assert int(item["_expires_at"]["N"]) * 1000 >= float(item["_event_ts"]["N"]) + 3600 * 1000
    # forty minutes on (the client's clock): key 1 is past its ttl, as offline; dynalite keeps the item
    later = now + timedelta(minutes=40)
    client._clock_us = lambda: codec.datetime_to_micros(later)
    try:
        assert [r and r["v"] for r in client.get_many("short", [1, 2, 3])] == [None, 20, None]
        assert client.get("short", 1) is None
        assert set(expected(lake, "short", later)) == {(2,)}
    finally:
        del client._clock_us


def test_an_item_over_400_kb_is_an_error_naming_key_and_feature(lake, client, spark):
    rows = [(k, NOW - timedelta(hours=1), bytes(500_000 if k == 4 else 10), k) for k in range(6)]
    lake.offline("blobs").merge(spark.createDataFrame(rows, "customer_id bigint, ts timestamp, payload binary, "
                                                            "size bigint"), "b-1")
    result = lake.export("blobs")
    assert result.status == "partial" and not result.ok and result.too_large == 1
    assert "customer_id=4" in result.errors[0] and "'payload'" in result.errors[0] and "400 KB" in result.errors[0]
    assert result.items_written == 5
    assert client.get("blobs", 4) is None and client.get("blobs", 5) == {"customer_id": 5, "payload": bytes(10),
                                                                          "size": 5}


def test_importing_the_client_does_not_import_pyspark():
    code = "import featurelake.online, sys; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_spark_submit_job_exports(lake, client, spark, tmp_path):
    from featurelake.spark import IVY_CACHE, PACKAGES

    rows = [(k, datetime.now(timezone.utc) - timedelta(minutes=10), 100 + k) for k in range(10, 15)]
    lake.offline("short").merge(spark.createDataFrame(rows, "customer_id bigint, ts timestamp, v bigint"), "s-2")
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "--driver-memory", "1g", "--packages", PACKAGES[0],
         "--conf", f"spark.jars.ivy={IVY_CACHE}", "--conf", "spark.ui.enabled=false",
         str(ROOT / "jobs" / "export_online.py"), "--conf", str(lake.conf_path), "--repo", lake.repo.path,
         "--group", "short"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "incremental" in proc.stdout and "5 items" in proc.stdout, proc.stdout
    assert [r["v"] for r in client.get_many("short", range(10, 15))] == [110, 111, 112, 113, 114]
