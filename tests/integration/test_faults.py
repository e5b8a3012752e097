"""Faults, each ending with the data checked exactly (every row once, online equal to offline):
an ingest and an export killed with SIGKILL in the middle of their write and run again, DynamoDB
throttling through a fault proxy (tests/throttle_proxy.py), PostgreSQL stopping during an ingest,
a corrupt and a vanished S3 object, and runs that overlap (two ingests of one group at once, from
a database and from files, an ingest during an export).

The killed runs are real `featurelake` processes (their own JVM); everything else runs in the
tests' Spark session, with a second session where two independent jobs are needed."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

import boto3
import pytest

import services
import throttle_proxy
from procs import processes
from featurelake.errors import JobError
from featurelake.online import OnlineClient

BUCKET = f"fl-faults-{uuid.uuid4().hex[:6]}"
BASE = datetime(2024, 3, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PG_ROLE, PG_SECRET, PASSWORD_ENV = "faults_reader", "Fault-Secret-7731", "FL_FAULTS_PG_PASSWORD"
WAIT_S = 300  # the longest any one step may take (a subprocess starts a JVM: slow on a busy machine)

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, JdbcSource, S3Source

thing = Entity("thing", join_keys=["id"])


def files(name, path, **kw):
    return FeatureGroup(name, entity=thing, timestamp_column="ts", features=[Feature("v", "double")],
                        source=S3Source(name + "_files", path=path, format="parquet"), **kw)


def rows(name):
    return FeatureGroup(name, entity=thing, timestamp_column="ts", features=[Feature("v", "double")],
                        source=JdbcSource(name + "_rows", connection="pg", table="public." + name,
                                          timestamp_column="ts", watermark_column="updated_at"))


killed = files("killed", "{local}/killed/")
busy = files("busy", "{local}/busy/")
exported = files("exported", "{local}/unused/")   # filled by OfflineTable.merge: only exported
throttled = files("throttled", "{local}/unused/")
corrupt = files("corrupt", "s3a://{bucket}/corrupt/", on_bad_file="fail")  # all or nothing
vanished = files("vanished", "s3a://{bucket}/vanished/")
shared = files("shared", "s3a://{bucket}/shared/")
pg_down = rows("pg_down")
twice = rows("twice")
'''


# ---- data ---------------------------------------------------------------------------------------

def events(ids, *, day: int = 0, bump: float = 0.0) -> list[tuple]:
    """(id, ts, v): one row per id, a day apart from id to id, so that a batch spans many
    `_event_date` partitions (and a write makes many files)."""
    return [(i, BASE + timedelta(days=i % 150 + day, minutes=i), float(i) + bump) for i in ids]


def micros(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def exact(rows: list[tuple]) -> list[tuple]:
    return sorted((i, micros(ts), v) for i, ts, v in rows)


def newest(rows: list[tuple]) -> dict:
    """id -> v of its newest event: what the online store must hold."""
    out: dict = {}
    for i, _ts, v in sorted(rows, key=lambda r: r[1]):
        out[i] = v
    return out


def parquet(rows: list[tuple]) -> bytes:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["id", "ts", "v"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, coerce_timestamps="us")
    return buf.getvalue()


def offline(store, group: str) -> list[tuple]:
    """The offline table's rows as (id, ts µs, v), sorted: a duplicate shows as a repeated tuple."""
    df = store.read_offline(group).selectExpr("id", "unix_micros(ts) AS ts", "v")
    return sorted(tuple(r) for r in df.collect())


def offline_newest(store, group: str) -> dict:
    out: dict = {}
    for i, _ts, v in sorted(offline(store, group), key=lambda r: r[1]):
        out[i] = v
    return out


# ---- processes ----------------------------------------------------------------------------------

def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def wait_until(what: str, check: Callable[[], object], proc: Optional[subprocess.Popen] = None,
               timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first (exit {proc.returncode}):\n{_tail(proc.log)}")
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout:.0f}s" + (f"\n{_tail(proc.log)}" if proc else ""))


def _group_alive(pgid: int) -> list[int]:
    """Processes of the group that are still running (zombies excluded)."""
    return [pid for pid, fields in processes() if int(fields[2]) == pgid and fields[0] != "Z"]


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL to the whole process group (the Python driver, its JVM and the Python workers), then
    waits until none of them runs: nothing of the killed job may still write afterwards."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    wait_until("the killed job's processes to exit", lambda: not _group_alive(proc.pid), timeout=30)


def data_files(table_path: str) -> set:
    return {p for p in Path(table_path).rglob("*.parquet") if "_delta_log" not in p.parts}


# ---- services and the lake ----------------------------------------------------------------------

class Database:
    """This module's own PostgreSQL (the tests stop and start it), with a reader role whose password
    only the environment knows."""

    def __init__(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="featurelake-faults-pg-")
        self.service = services.start_postgres(data_dir=self.data_dir)
        self.sql(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_SECRET}'; GRANT pg_read_all_data TO {PG_ROLE}")

    def sql(self, text: str) -> None:
        svc = self.service
        subprocess.run([f"{svc.bin_dir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", text, svc.dsn],
                       check=True, capture_output=True)

    def create(self, table: str) -> None:
        self.sql(f"CREATE TABLE {table} (id bigint, ts timestamp, updated_at timestamp, v double precision)")

    def insert(self, table: str, rows: list[tuple], batch: int) -> None:
        """Rows (id, ts, v) changed at the batch's own time, later than every earlier batch's."""
        updated = (BASE + timedelta(days=400 + batch)).strftime("%Y-%m-%d %H:%M:%S")
        values = ", ".join(f"({i}, '{ts:%Y-%m-%d %H:%M:%S}', '{updated}', {v})" for i, ts, v in rows)
        self.sql(f"INSERT INTO {table} VALUES {values}")

    def stop(self) -> None:
        self.service.stop()

    def start(self) -> None:
        self.service = services.start_postgres(port=self.service.port, data_dir=self.data_dir)

    def close(self) -> None:
        self.service.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    db = Database()
    for table in ("pg_down", "twice"):
        db.create(table)
    yield db
    db.close()


class Lake:
    """One lake (storage root, catalogue, DynamoDB table prefix) that every store here shares; a
    store may reach DynamoDB through a proxy and may run in its own Spark session."""

    def __init__(self, tmp: Path, spark, dynamodb: str, s3, pg: Database):
        self.tmp, self.spark, self.dynamodb, self.s3, self.pg = tmp, spark, dynamodb, s3, pg
        self.local = tmp / "sources"
        self.repo = tmp / "features"
        self.repo.mkdir()
        (self.repo / "groups.py").write_text(REPO.format(local=self.local, bucket=BUCKET))
        self.prefix = f"f{uuid.uuid4().hex[:8]}_"
        self.conf = self.config(dynamodb, "direct")
        self.store = self.open(self.conf)

    def config(self, endpoint: str, name: str) -> Path:
        """A config file over this lake whose DynamoDB endpoint is `endpoint`."""
        pg = self.pg.service
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            f"project: faults\nstorage:\n  root: {self.tmp / 'lake'}\n"
            f"spark:\n  master: local[2]\n  conf: {{spark.sql.shuffle.partitions: 2}}\n"
            f"connections:\n  pg: {{url: \"{pg.jdbc_url}\", user: {PG_ROLE}, password: \"${{{PASSWORD_ENV}}}\", "
            f"retries: 2}}\n"
            f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {endpoint}\n"
            f"    table_prefix: {self.prefix}\n    write_concurrency: 2\n    lock_wait_s: 120\n"
            f"monitoring:\n  statistics: false\n")
        return path

    def open(self, conf: Path, spark=None):
        from featurelake.store import FeatureStore

        return FeatureStore.from_config(conf, repo=self.repo, spark=spark or self.spark)

    def through(self, endpoint: str, name: str):
        """A store whose exports go to `endpoint` (a proxy)."""
        return self.open(self.config(endpoint, name))

    def second_job(self):
        """A store in a Spark session of its own: another job on the same lake, as far as Delta and
        Spark's session-wide settings are concerned."""
        session = self.spark.newSession()
        for key in ("spark.sql.session.timeZone", "spark.sql.shuffle.partitions"):
            session.conf.set(key, self.spark.conf.get(key))
        return self.open(self.conf, spark=session)

    def frame(self, rows: list[tuple]):
        return self.spark.createDataFrame(rows, "id bigint, ts timestamp, v double")

    def put_local(self, name: str, rows: list[tuple]) -> None:
        path = self.local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # renamed into place: a reader never sees half a file
        tmp.write_bytes(parquet(rows))
        tmp.rename(path)

    def put_s3(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def cli(self, conf: Path, *args: str) -> subprocess.Popen:
        """`featurelake ARGS` in a process group of its own, its output in a log file."""
        log = self.tmp / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, PASSWORD_ENV: PG_SECRET}
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "featurelake.cli", "--conf", str(conf), "--repo",
                                     str(self.repo), *args], cwd=self.tmp, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        proc.log = log
        return proc

    def online(self, group: str) -> dict:
        """id -> v of every item of the group's table, read from dynalite itself (no proxy)."""
        client = boto3.client("dynamodb", endpoint_url=self.dynamodb, region_name="us-east-1")
        items, kwargs = [], {}
        while True:
            page = client.scan(TableName=f"{self.prefix}{group}", ConsistentRead=True, **kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        return {int(i["pk"]["S"]): float(i["v"]["N"]) for i in items if not i["pk"]["S"].startswith("%")}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint, s3_endpoint, pg):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    with pytest.MonkeyPatch.context() as env:  # the password comes only from the environment
        env.setenv(PASSWORD_ENV, PG_SECRET)
        lake = Lake(tmp_path_factory.mktemp("faults"), spark, dynamodb_endpoint, s3, pg)
        lake.store.apply()
        yield lake


def together(**runs: Callable[[], object]) -> dict:
    """Runs each callable in its own thread, all released at once; name -> result (or the error)."""
    start, results = threading.Barrier(len(runs)), {}

    def run(name: str, fn: Callable[[], object]) -> None:
        start.wait()
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertions
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n, fn), name=n) for n, fn in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not any(t.is_alive() for t in threads), "a run did not finish"
    return results


# ---- 1. an ingest killed in the middle of its write ---------------------------------------------

def test_an_ingest_killed_mid_write_leaves_the_table_as_it_was_and_the_rerun_writes_each_row_once(lake):
    store = lake.store
    first, more = events(range(60)), events(range(60, 260))
    lake.put_local("killed/a.parquet", first)
    assert store.ingest("killed").ok
    table = store.offline("killed")
    version, before = table.version(), offline(store, "killed")
    assert before == exact(first)

    lake.put_local("killed/b.parquet", more)
    known = data_files(table.path)
    proc = lake.cli(lake.conf, "ingest", "killed")
    try:  # its MERGE writes one file per event date: kill it at the first one
        wait_until("a data file of the killed ingest", lambda: data_files(table.path) - known, proc)
    finally:
        kill_hard(proc)
    left = data_files(table.path) - known
    assert table.version() == version, f"the killed ingest committed a version (after writing {len(left)} files)"
    assert table.history()[0]["version"] == version
    assert offline(store, "killed") == before, "uncommitted files must not be visible"

    rerun = store.ingest("killed")
    assert rerun.ok and (rerun.rows_read, rerun.rows_written) == (200, 200), rerun.summary()
    assert table.version() == version + 1
    assert offline(store, "killed") == exact(first + more)


# ---- 2. an export killed in the middle of its write ---------------------------------------------

def test_an_export_killed_mid_write_is_completed_by_the_rerun(lake):
    store, n = lake.store, 200
    rows = events(range(n))
    store.offline("exported").merge(lake.frame(rows), "exported-1")
    assert store.export("exported").ok
    newer = events(range(n), day=1, bump=1000)
    store.offline("exported").merge(lake.frame(newer), "exported-2")

    # two BatchWriteItem requests reach DynamoDB, the next ones hang: the export is mid-write
    with throttle_proxy.start(lake.dynamodb, hold_after=2) as proxy:
        proc = lake.cli(lake.config(proxy.url, "export-killed"), "export", "exported")
        def mid_write() -> bool:
            faults = proxy.faults()
            return faults["writes_forwarded"] >= 2 and faults["held"] > 0

        try:
            wait_until("the killed export's first writes", mid_write, proc)
        finally:
            kill_hard(proc)
    half = [k for k, v in lake.online("exported").items() if v >= 1000]
    assert 0 < len(half) < n, f"{len(half)} of {n} items were written before the kill"

    rerun = store.export("exported")
    assert rerun.ok and rerun.mode == "incremental", rerun.summary()
    assert lake.online("exported") == newest(rows + newer)
    assert lake.online("exported") == offline_newest(store, "exported")


# ---- 3. DynamoDB throttling ---------------------------------------------------------------------

def test_throttling_and_unprocessed_items_lose_nothing_on_export_or_read(lake):
    store, n = lake.store, 300
    rows = events(range(n))
    store.offline("throttled").merge(lake.frame(rows), "throttled-1")
    with throttle_proxy.start(lake.dynamodb, throttle_every=4, partial_every=3, max_streak=2) as proxy:
        through = lake.through(proxy.url, "throttling")
        full = through.export("throttled")
        assert full.ok and full.mode == "full" and full.items_written == n, full.summary()
        newer = events(range(0, n, 3), day=1, bump=1000)
        store.offline("throttled").merge(lake.frame(newer), "throttled-2")
        increment = through.export("throttled")  # reads the items online first (BatchGetItem)
        assert increment.ok and increment.mode == "incremental", increment.summary()
        assert increment.items_written == len(newer), increment.summary()
        exported = proxy.faults()
    want = newest(rows + newer)
    assert lake.online("throttled") == want
    assert exported["throttled"] > 0 and exported["partial:BatchWriteItem"] > 0, exported
    assert exported["partial:BatchGetItem"] > 0 and exported["withheld"] > 0, exported

    with throttle_proxy.start(lake.dynamodb, throttle_every=2, partial_every=3, max_streak=2) as proxy:
        with OnlineClient.from_config(str(lake.config(proxy.url, "throttled-reads"))) as client:
            got = client.get_many("throttled", range(n), consistent=True)
        read = proxy.faults()
    assert None not in got and {row["id"]: row["v"] for row in got} == want
    assert read["throttled"] > 0 and read["partial:BatchGetItem"] > 0 and read["withheld"] > 0, read


def test_dynamodb_refusing_every_request_is_a_clear_error_in_bounded_time(lake):
    table = f"{lake.prefix}throttled"
    lake.store.offline("throttled").merge(lake.frame(events(range(300))), "refusing")  # as the test before
    with throttle_proxy.start(lake.dynamodb, throttle_every=1, max_streak=0) as proxy:
        through = lake.through(proxy.url, "refusing")
        started = time.monotonic()
        with pytest.raises(JobError) as export_error:
            through.export("throttled")
        export_s = time.monotonic() - started
        with OnlineClient.from_config(str(lake.config(proxy.url, "refusing"))) as client:
            started = time.monotonic()
            with pytest.raises(JobError) as read_error:
                client.get_many("throttled", range(10))
            read_s = time.monotonic() - started
        assert proxy.faults()["throttled"] > 0
    host = f"127.0.0.1:{proxy.port}"
    for error, took in ((export_error, export_s), (read_error, read_s)):
        message = str(error.value)
        assert took < 60, f"{took:.0f}s to give up: {message}"
        assert table in message and host in message, message
        assert "ProvisionedThroughputExceeded" in message or "throttl" in message.lower(), message

    # The table answers but refuses every write: the error now starts in the executors' writers
    # and must reach the user as what happened, not as the executors' Python and Java tracebacks.
    with throttle_proxy.start(lake.dynamodb, throttle_every=1, max_streak=0, only=("BatchWriteItem",)) as proxy:
        started = time.monotonic()
        with pytest.raises(JobError) as write_error:
            lake.through(proxy.url, "refusing-writes").export("throttled", full=True)
        took = time.monotonic() - started
        assert proxy.faults()["throttled"] > 0
    message = str(write_error.value)
    assert took < 120, f"{took:.0f}s to give up: {message}"
    assert table in message and f"127.0.0.1:{proxy.port}" in message and "throttled" in message, message
    assert "Traceback" not in message and "\tat " not in message and len(message) < 1000, message


# ---- 4. a source that fails: PostgreSQL stopping, S3 objects corrupt or gone ---------------------

def test_postgres_stopping_during_an_ingest_is_a_clear_error_and_the_next_run_reads_every_row(lake, pg, monkeypatch):
    from featurelake import sources

    store = lake.store
    first, more = events(range(40)), events(range(40, 100))
    pg.insert("pg_down", first, batch=1)
    assert store.ingest("pg_down").rows_written == 40
    table = store.offline("pg_down")
    version = table.version()
    pg.insert("pg_down", more, batch=2)

    connect = sources._jdbc_frame

    def stop_once_connected(*args, **kwargs):
        frame = connect(*args, **kwargs)  # the database answered: the ingest is under way
        pg.stop()
        return frame

    monkeypatch.setattr(sources, "_jdbc_frame", stop_once_connected)
    try:
        started = time.monotonic()
        with pytest.raises(JobError) as error:
            store.ingest("pg_down")
        took = time.monotonic() - started
    finally:
        monkeypatch.setattr(sources, "_jdbc_frame", connect)
        pg.start()
    message = str(error.value)
    assert "connection 'pg'" in message and "after 2 attempt(s)" in message, message
    assert PG_SECRET not in message and took < 60
    assert table.version() == version and offline(store, "pg_down") == exact(first)
    failed = [r for r in store.catalog.rows("runs", "`group` = 'pg_down'") if r["status"] == "failed"]
    assert len(failed) == 1 and PG_SECRET not in failed[0]["error"] and failed[0]["rows_written"] == 0

    rerun = store.ingest("pg_down")
    assert rerun.ok and (rerun.rows_read, rerun.rows_written) == (60, 60), rerun.summary()
    assert offline(store, "pg_down") == exact(first + more)


def test_a_corrupt_s3_object_is_a_clear_error_and_once_it_is_removed_the_next_run_reads_the_rest(lake):
    store = lake.store
    first, more = events(range(20)), events(range(20, 40))
    lake.put_s3("corrupt/a.parquet", parquet(first))
    assert store.ingest("corrupt").ok
    table = store.offline("corrupt")
    version = table.version()

    lake.put_s3("corrupt/b.parquet", parquet(more))
    whole = parquet(events(range(40, 45)))
    lake.put_s3("corrupt/c.parquet", whole[: len(whole) // 2])  # cut short: no parquet footer
    with pytest.raises(JobError) as error:
        store.ingest("corrupt")
    message = str(error.value)
    assert "corrupt/c.parquet cannot be read" in message and "not a Parquet file" in message, message
    assert "nothing was written" in message and "remove it" in message, message
    assert table.version() == version and offline(store, "corrupt") == exact(first)

    lake.s3.delete_object(Bucket=BUCKET, Key="corrupt/c.parquet")
    rerun = store.ingest("corrupt")
    assert rerun.ok and rerun.rows_written == 20, rerun.summary()
    assert offline(store, "corrupt") == exact(first + more)


def test_an_s3_object_deleted_between_listing_and_reading_is_a_clear_error_then_the_next_run_completes(
        lake, monkeypatch):
    from featurelake import ingest

    store = lake.store
    kept, gone = events(range(30)), events(range(30, 50))
    lake.put_s3("vanished/a.parquet", parquet(kept))
    lake.put_s3("vanished/b.parquet", parquet(gone))
    count = ingest._count

    def delete_then_count(*args, **kwargs):  # the batch's files are listed: one goes away
        lake.s3.delete_object(Bucket=BUCKET, Key="vanished/b.parquet")
        return count(*args, **kwargs)

    monkeypatch.setattr(ingest, "_count", delete_then_count)
    with pytest.raises(JobError) as error:
        store.ingest("vanished")
    monkeypatch.setattr(ingest, "_count", count)
    message = str(error.value)
    assert "vanished/b.parquet was deleted after this run listed it" in message, message
    assert "nothing was written" in message, message
    assert not store.offline("vanished").exists()

    rerun = store.ingest("vanished")
    assert rerun.ok and rerun.rows_written == 30, rerun.summary()
    assert offline(store, "vanished") == exact(kept)


# ---- 5. runs that overlap -----------------------------------------------------------------------

def test_two_ingests_of_a_group_at_once_write_each_row_once(lake, pg, monkeypatch):
    from pyspark.sql.readwriter import DataFrameWriter

    store, other = lake.store, lake.second_job()
    table = store.offline("twice")
    first = events(range(50))
    pg.insert("twice", first, batch=1)

    # 1. both runs find no table; the late one writes only after the early one has created it
    late_checked, early_done, save = threading.Event(), threading.Event(), DataFrameWriter.save

    def save_in_turn(writer, path=None, *args, **kwargs):
        if path == table.path and threading.current_thread().name == "late":
            late_checked.set()
            assert early_done.wait(WAIT_S)
        elif path == table.path and threading.current_thread().name == "early":
            assert late_checked.wait(WAIT_S)
        return save(writer, path, *args, **kwargs)

    def early():
        try:
            return other.ingest("twice")
        finally:
            early_done.set()

    monkeypatch.setattr(DataFrameWriter, "save", save_in_turn)
    results = together(early=early, late=lambda: store.ingest("twice"))
    monkeypatch.setattr(DataFrameWriter, "save", save)
    assert late_checked.is_set(), "the late run did not reach the table's creation: no race"
    for name, r in results.items():
        assert not isinstance(r, Exception) and r.ok, f"{name}: {r}"
    assert offline(store, "twice") == exact(first)
    assert sum(r.rows_written for r in results.values()) == 50

    # 2. three runs on the table at once: two in one Spark session, one in another
    more, changed = events(range(50, 100)), events(range(10), bump=0.5)
    pg.insert("twice", more + changed, batch=2)
    runs = together(a=lambda: store.ingest("twice"), b=lambda: store.ingest("twice"),
                    c=lambda: other.ingest("twice"))
    for name, r in runs.items():
        assert not isinstance(r, Exception) and r.ok, f"{name}: {r}"
    assert offline(store, "twice") == exact(changed + first[10:] + more)
    assert sum(r.rows_written for r in runs.values()) == 60, [r.summary() for r in runs.values()]
    history = {h["version"]: h for h in table.history()}
    for r in [*results.values(), *runs.values()]:
        if r.delta_version is not None:  # the version a run reports is the commit it made
            assert history[r.delta_version]["userMetadata"] == f"run_id={r.run_id}", (r.summary(), history)
    again = store.ingest("twice")
    assert again.ok and again.rows_read == 0, again.summary()


def test_a_second_ingest_of_a_file_group_while_one_runs_fails_clearly_and_writes_nothing(lake, monkeypatch):
    """A file source's progress is a streaming checkpoint, which one query at a time may hold:
    the second run (another job's session) must fail at once, not stop the first one half-way
    (Spark's default), and every row must land once."""
    from featurelake.offline import OfflineTable

    store, other = lake.store, lake.second_job()
    first = events(range(60))
    lake.put_s3("shared/a.parquet", parquet(first))
    writing, late_done, merge = threading.Event(), threading.Event(), OfflineTable.merge

    def merge_held(table, batch, run_id, **options):  # the early run holds the checkpoint until the late one ended
        if table.spark is other.spark:  # (foreachBatch runs in a thread of Spark's, not the caller's)
            writing.set()
            assert late_done.wait(WAIT_S)
        return merge(table, batch, run_id, **options)

    def late():
        assert writing.wait(WAIT_S)
        try:
            return store.ingest("shared")
        finally:
            late_done.set()

    monkeypatch.setattr(OfflineTable, "merge", merge_held)
    results = together(early=lambda: other.ingest("shared"), late=late)
    monkeypatch.setattr(OfflineTable, "merge", merge)
    early, refused = results["early"], results["late"]
    assert not isinstance(early, Exception) and early.ok and early.rows_written == 60, early
    assert isinstance(refused, JobError), refused
    assert "another ingest" in str(refused) and "wrote nothing" in str(refused), refused
    assert offline(store, "shared") == exact(first)

    more = events(range(60, 90), day=1)
    lake.put_s3("shared/b.parquet", parquet(more))
    again = store.ingest("shared")  # the refused run left the checkpoint as the early one committed it
    assert again.ok and again.rows_read == 30 and again.rows_written == 30, again.summary()
    assert offline(store, "shared") == exact(first + more)


def test_an_ingest_during_an_export_then_the_next_export_makes_online_equal_offline(lake):
    store = lake.store
    first, more = events(range(100)), events(range(50, 150), day=1, bump=1000)
    lake.put_local("busy/a.parquet", first)
    assert store.ingest("busy").ok
    assert store.export("busy").ok
    version = store.offline("busy").version()
    lake.put_local("busy/b.parquet", more)

    results: dict = {}

    def export_held() -> None:
        try:
            results["export"] = through.export("busy", full=True)
        except Exception as exc:  # noqa: BLE001 - asserted below
            results["export"] = exc

    with throttle_proxy.start(lake.dynamodb, hold_after=0) as proxy:  # the export's writes wait
        through = lake.through(proxy.url, "held")
        exporting = threading.Thread(target=export_held)
        exporting.start()
        try:
            wait_until("the export to be writing", lambda: proxy.faults()["held"] > 0 or not exporting.is_alive())
            assert exporting.is_alive(), results
            ingested = store.ingest("busy")  # commits while the export writes the version before it
        finally:
            proxy.release()
            exporting.join(WAIT_S)
    assert ingested.ok and ingested.rows_written == 100, ingested.summary()
    held = results["export"]
    assert not isinstance(held, Exception) and held.ok and held.to_version == version, held.summary()

    final = store.export("busy")
    assert final.ok and final.mode == "incremental" and final.from_version == version + 1, final.summary()
    assert offline(store, "busy") == exact(first + more)
    assert lake.online("busy") == newest(first + more) == offline_newest(store, "busy")
