"""Secrets and identifiers. A password planted in the environment and in a secret file is used
for real PostgreSQL logins, then looked for everywhere a leak could land: logs, the process's
output (the JVM's too), error messages, the catalogue, every file of the lake, and Spark's plans.
Then SQL injection through every name a user can pass."""
from __future__ import annotations

import io
import logging
import subprocess
import uuid

import pytest

from conftest import write_config
from featurelake.cli import main
from featurelake.errors import DefinitionError, JobError, NotFoundError

PLANTED = f"Pl4nted-{uuid.uuid4().hex[:12]}"
WRONG = f"Wr0ng-{uuid.uuid4().hex[:12]}"
ROLE = "fl_secret_reader"

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, JdbcSource

customer = Entity("customer", join_keys=["customer_id"])


def group(name, connection):
    return FeatureGroup(name, entity=customer, timestamp_column="created_at", features=[Feature("amount", "double")],
                        source=JdbcSource(name + "_src", connection=connection, table="public.secret_payments",
                                          watermark_column="created_at"))


by_env = group("by_env", "by_env")
by_file = group("by_file", "by_file")
refused = group("refused", "wrong")
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory, spark, postgres_service):
    from featurelake.store import FeatureStore

    def sql(text: str) -> None:
        subprocess.run([f"{postgres_service.bin_dir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", text,
                        postgres_service.dsn], check=True, capture_output=True)

    sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PLANTED}'")
    sql("CREATE TABLE secret_payments (customer_id bigint, created_at timestamp, amount double precision)")
    sql("INSERT INTO secret_payments VALUES (1, '2024-06-01 10:00', 5.0), (2, '2024-06-01 11:00', 7.5)")
    sql(f"GRANT SELECT ON secret_payments TO {ROLE}")

    tmp = tmp_path_factory.mktemp("security")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    (tmp / "pg.secret").write_text(PLANTED + "\n")
    (tmp / "wrong.secret").write_text(WRONG + "\n")
    url = postgres_service.jdbc_url
    conns = (f"connections:\n"
             f"  by_env: {{url: \"{url}\", user: {ROLE}, password: \"${{FL_PLANTED_PASSWORD}}\"}}\n"
             f"  by_file: {{url: \"{url}\", user: {ROLE}, password_file: pg.secret}}\n"
             f"  wrong: {{url: \"{url}\", user: {ROLE}, password_file: wrong.secret, retries: 1}}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FL_PLANTED_PASSWORD", PLANTED)
        conf = write_config(tmp, connections=conns)
        store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.apply()
    return store, tmp


def test_a_planted_password_appears_in_no_log_output_error_catalogue_file_or_plan(project, capfd):
    from featurelake.sources import read_jdbc

    store, tmp = project
    assert store.config.connection("by_file").password == PLANTED, "read from the secret file"
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        assert store.ingest("by_env").rows_written == 2
        assert store.ingest("by_file").rows_written == 2
        with pytest.raises(JobError) as refused:
            store.ingest("refused")
        batch = read_jdbc(store.spark, store, store.group("by_env").source, None, None)
        execution = batch.df._jdf.queryExecution()
        plans = execution.toString() + store.spark._jvm.org.apache.spark.sql.api.python.PythonSQLUtils.explainString(
            execution, "extended")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out, err = capfd.readouterr()
    error = str(refused.value)
    assert "'wrong'" in error, error

    catalogue = "".join(str(store.catalog.rows(t)) for t in ("groups", "features", "runs", "usage", "statistics"))
    lake_bytes = b"".join(p.read_bytes() for p in (tmp / "lake").rglob("*") if p.is_file())
    assert "JDBCRelation" in plans or "jdbc" in plans.lower(), "the plan is the JDBC read's"
    places = {"log": log.getvalue(), "stdout": out, "stderr": err, "error": error, "catalogue": catalogue,
              "plan": plans, "lake files": lake_bytes.decode("latin-1")}
    for secret in (PLANTED, WRONG):
        leaked = [where for where, text in places.items() if secret in text]
        assert not leaked, f"the password leaked into: {leaked}"
    assert "by_env" in catalogue and "by_env: read 2 rows" in log.getvalue(), "the places searched were not empty"


INJECTIONS = ["items' OR '1'='1", "items` OR 1=1 --", "x'); DROP TABLE runs; --"]


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_through_names_finds_nothing_and_changes_nothing(project, name, capsys, monkeypatch):
    store, _ = project
    monkeypatch.setenv("FL_PLANTED_PASSWORD", PLANTED)
    conf, repo = str(store.config.path), str(store.repo.path)
    runs_before = len(store.catalog.rows("runs"))

    for verb in (["catalog", "show", name], ["catalog", "lineage", name], ["catalog", "usage", name],
                 ["catalog", "history", name], ["ingest", name], ["export", name], ["monitor", "drift", name]):
        code = main(["--conf", conf, "--repo", repo, *verb])
        out, err = capsys.readouterr()
        if verb[1] == "usage":  # a search of the audit log: it finds nothing
            assert code == 0 and f"usage of {name}: 0 events" in out, (out, err)
        else:
            assert code == 2 and any(s in err for s in ("unknown", "not in the catalogue", "not a safe")), (verb, err)
    with pytest.raises(NotFoundError):
        store.load_training_set(name)
    with pytest.raises(NotFoundError):
        store.ingest("by_env", from_quarantine=name)
    with pytest.raises(NotFoundError):
        store.training_set(store.spark.range(1).selectExpr("id AS customer_id", "current_timestamp() AS event_ts"),
                           [f"by_env:{name}"])
    from featurelake.monitoring import read_statistics

    assert read_statistics(store, scope_id=name) == []
    assert len(store.catalog.rows("runs")) == runs_before, "nothing ran, nothing was recorded"


@pytest.mark.parametrize("field", ["group", "feature", "key", "timestamp", "table"])
def test_unsafe_identifiers_in_definitions_are_refused_at_load(field):
    from featurelake import Entity, Feature, FeatureGroup, JdbcSource

    bad = "amount; DROP TABLE x"
    with pytest.raises(DefinitionError, match="safe|letters|identifier"):
        FeatureGroup(bad if field == "group" else "g",
                     entity=Entity("e", join_keys=[bad if field == "key" else "id"]),
                     timestamp_column=bad if field == "timestamp" else "ts",
                     features=[Feature(bad if field == "feature" else "v", "double")],
                     source=JdbcSource("s", connection="c", table=bad if field == "table" else "t"))
