"""Ingest from a real PostgreSQL (and SQLite, as the demo does) over JDBC: watermarks, late
corrections and time travel, resumable backfills, and a database that is down or refuses login."""
from __future__ import annotations

import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest

from conftest import write_config
from featurelake.errors import JobError

REPO = '''
from pyspark.sql import functions as F
from featurelake import Entity, Feature, FeatureGroup, JdbcSource

customer = Entity("customer", join_keys=["customer_id"])
FEATURES = [Feature("amount", "double", "BRL"), Feature("currency", "string")]


def source(name, connection, **kw):
    return JdbcSource(name, connection=connection, table="public.payments", timestamp_column="created_at",
                      watermark_column="updated_at", **kw)


def group(name, src, transform=None, features=FEATURES):
    return FeatureGroup(name, entity=customer, source=src, timestamp_column="created_at", transform=transform,
                        features=features)


# numeric(10,2) arrives as decimal: the contract widens it to the declared double
payments = group("payments", source("pg_payments", "pg", partition_column="payment_id", lower_bound=1,
                                    upper_bound=100, num_partitions=2))
checked = group("checked", source("pg_checked", "pg"),
                transform=lambda df: df.select("customer_id", "created_at", "currency",
                    F.coalesce(F.assert_true(F.col("amount") >= 0).cast("double"),
                               F.col("amount")).alias("amount")))
down = group("down", source("pg_down", "down"))
refused = group("refused", source("pg_refused", "badpass"))
lite = FeatureGroup("lite", entity=customer, timestamp_column="created_at", features=FEATURES,
                    source=JdbcSource("lite_src", connection="lite", watermark_column="updated_at",
                                      query="SELECT customer_id, created_at, updated_at, amount, currency "
                                            "FROM payments"))
'''
PASSWORD_ENV = "FL_TEST_PG_PASSWORD"
WRONG = "not-the-password-123"


def ts(day: int, hour: int = 12) -> str:
    return f"2024-05-{day:02d} {hour:02d}:00:00"


@pytest.fixture(scope="module")
def pg(postgres_service):
    def sql(text: str) -> None:
        subprocess.run([f"{postgres_service.bin_dir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", text,
                        postgres_service.dsn], check=True, capture_output=True)

    sql("CREATE TABLE payments (payment_id int PRIMARY KEY, customer_id bigint, created_at timestamp, "
        "updated_at timestamp, amount numeric(10,2), currency text)")
    return sql


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark, postgres_service, pg):
    from featurelake.store import FeatureStore
    from services import free_port

    tmp = tmp_path_factory.mktemp("ingest_jdbc")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    url, user = postgres_service.jdbc_url, postgres_service.user
    conns = (f"connections:\n"
             f"  pg: {{url: \"{url}\", user: {user}, password: \"${{{PASSWORD_ENV}}}\"}}\n"
             f"  down: {{url: \"jdbc:postgresql://127.0.0.1:{free_port()}/x\", user: {user}, "
             f"password: \"${{FL_TEST_WRONG_PASSWORD}}\", retries: 2}}\n"
             f"  badpass: {{url: \"{url}\", user: {user}, password: \"${{FL_TEST_WRONG_PASSWORD}}\", retries: 2}}\n"
             f"  lite: {{url: \"jdbc:sqlite:{tmp / 'lite.db'}\"}}")
    with pytest.MonkeyPatch.context() as env:  # passwords come only from the environment
        env.setenv(PASSWORD_ENV, postgres_service.password)
        env.setenv("FL_TEST_WRONG_PASSWORD", WRONG)
        store = FeatureStore.from_config(write_config(tmp, connections=conns), repo=tmp / "features", spark=spark)
    store.apply()
    return store


def test_watermark_reads_only_new_rows_then_a_late_correction_keeps_the_old_value_in_history(store, pg):
    pg(f"INSERT INTO payments VALUES (1, 10, '{ts(1)}', '{ts(1)}', 5.50, 'BRL'), "
       f"(2, 11, '{ts(1, 13)}', '{ts(1, 13)}', 7.00, 'USD'), (3, 10, '{ts(2)}', '{ts(2)}', 1.25, 'BRL')")
    first = store.ingest("payments")
    assert first.ok and (first.rows_read, first.rows_written) == (3, 3), first.summary()
    assert first.watermark == "2024-05-02 12:00:00.000000"
    before = store.offline("payments").version()

    pg(f"INSERT INTO payments VALUES (4, 12, '{ts(3)}', '{ts(3)}', 9.99, 'EUR'); "
       f"UPDATE payments SET amount = 6.50, updated_at = '{ts(3, 14)}' WHERE payment_id = 1")
    second = store.ingest("payments")
    assert second.ok and (second.rows_read, second.rows_written) == (2, 2), second.summary()
    assert second.window == "updated_at in (2024-05-02 12:00:00.000000, 2024-05-03 14:00:00.000000]"

    corrected = "customer_id = 10 AND created_at = '2024-05-01 12:00:00'"
    assert [r.amount for r in store.read_offline("payments").where(corrected).collect()] == [6.5]
    assert [r.amount for r in store.read_offline("payments", version=before).where(corrected).collect()] == [5.5]
    from delta.tables import DeltaTable

    commits = DeltaTable.forPath(store.spark, store.offline("payments").path).history()
    committed = {r.version: r.ts for r in commits.selectExpr("version", "CAST(timestamp AS STRING) AS ts").collect()}
    as_of = store.read_offline("payments", timestamp=committed[before])
    assert sorted((r.customer_id, r.amount) for r in as_of.collect()) == [(10, 1.25), (10, 5.5), (11, 7.0)]

    third = store.ingest("payments")
    assert third.ok and third.rows_read == 0 and third.watermark == second.watermark

    from featurelake.history import offline_history

    history = offline_history(store, "payments")
    assert history[0]["run_id"] == second.run_id and history[0]["rows_written"] == 2
    assert {h["run_id"] for h in history} >= {first.run_id, second.run_id}


def test_a_backfill_runs_in_chunks_resumes_after_a_failure_and_a_rerun_writes_nothing(store, pg):
    pg(f"INSERT INTO payments VALUES (10, 20, '{ts(10)}', '{ts(10)}', 1.00, 'BRL'), "
       f"(11, 21, '{ts(11)}', '{ts(11)}', -1.00, 'BRL')")
    start, end = datetime(2024, 5, 10, tzinfo=timezone.utc), datetime(2024, 5, 12, tzinfo=timezone.utc)
    with pytest.raises(JobError, match="checked"):
        store.ingest("checked", start=start, end=end, chunk="1d")
    assert store.read_offline("checked").count() == 1, "the first day was written before the second failed"

    pg("UPDATE payments SET amount = 1.00 WHERE payment_id = 11")
    resumed = store.ingest("checked", start=start, end=end, chunk="1d")
    assert resumed.ok, resumed.summary()
    assert [c["status"] for c in resumed.chunks] == ["skipped", "succeeded"]
    assert resumed.rows_written == 1
    version = store.offline("checked").version()

    again = store.ingest("checked", start=start, end=end, chunk="1d")
    assert again.ok and [c["status"] for c in again.chunks] == ["succeeded", "succeeded"]
    assert (again.rows_read, again.rows_written, again.delta_version) == (2, 0, None)
    assert store.offline("checked").version() == version
    statuses = [r["status"] for r in store.catalog.rows("runs", "`group` = 'checked'")]
    assert sorted(statuses) == ["failed", "succeeded", "succeeded", "succeeded", "succeeded"]


@pytest.mark.parametrize("group,conn", [("down", "down"), ("refused", "badpass")])
def test_a_database_down_or_refusing_login_fails_clearly_after_bounded_retries(store, group, conn):
    with pytest.raises(JobError) as err:
        store.ingest(group)
    message = str(err.value)
    assert f"connection {conn!r}" in message and "after 2 attempt(s)" in message
    assert store.config.connection(conn).password == WRONG and WRONG not in message
    assert not store.offline(group).exists()
    [run] = store.catalog.rows("runs", f"`group` = '{group}'")
    assert run["status"] == "failed" and run["rows_written"] == 0 and WRONG not in run["error"]


def test_sqlite_query_source_with_text_timestamps(store, tmp_path_factory):
    path = store.config.connection("lite").url[len("jdbc:sqlite:"):]
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE payments (customer_id INTEGER, created_at TIMESTAMP, updated_at TIMESTAMP, "
               "amount DOUBLE, currency TEXT)")
    db.execute("INSERT INTO payments VALUES (1, '2024-05-01 10:00:00.000', '2024-05-01 10:00:00.000', 2.5, 'BRL')")
    db.commit()
    assert store.ingest("lite").rows_read == 1
    db.execute("INSERT INTO payments VALUES (2, '2024-05-01 11:00:00.000', '2024-05-01 11:00:00.250', 3.5, 'BRL')")
    db.commit()
    second = store.ingest("lite")
    # SQLite compares the pushed-down bound as text: the boundary row may come again, harmlessly
    assert second.ok and second.rows_read in (1, 2) and second.rows_written == 1, second.summary()
    assert second.watermark == "2024-05-01 11:00:00.250000"
    assert store.read_offline("lite").count() == 2
