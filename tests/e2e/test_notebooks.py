"""The notebooks run top to bottom (nbclient, a fresh kernel), against tiny lakes and local services."""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from random import Random
from types import SimpleNamespace

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, write_config

NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, env: dict, timeout: int = 600) -> nbformat.NotebookNode:
    """Executes notebooks/<name> with `env` added to the kernel's environment; raises on a failing cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def synthetic_rows(group, n_keys: int, seed: int) -> list[tuple]:
    """Rows for a demo group's offline table, made from its declared columns: a few events per key
    within the last day (inside every ttl), values by dtype."""
    rnd, now = Random(seed), datetime.now(timezone.utc)
    dtypes = {f.name: f.dtype for f in group.features}
    rows = []
    for key in range(1, n_keys + 1):
        for _ in range(rnd.randint(1, 3)):
            ts = now - timedelta(minutes=rnd.randint(5, 20 * 60))
            row = []
            for col in group.columns:
                dtype = dtypes.get(col)
                if col in group.keys:
                    row.append(key)
                elif col == group.timestamp_column or dtype == "timestamp":
                    row.append(ts)
                elif dtype in ("int", "bigint"):
                    row.append(rnd.randint(0, 400))
                elif dtype == "double":
                    row.append(round(rnd.uniform(1, 2000), 2))
                elif dtype == "boolean":
                    row.append(rnd.random() < 0.3)
                else:
                    row.append(rnd.choice(["BRL", "USD", "gold", "basic"]))
            rows.append(tuple(row))
    return rows


@pytest.fixture(scope="module")
def demo_online(tmp_path_factory, spark, dynamodb_endpoint):
    """The demo repository (features/) applied to a fresh lake; customer_txn, customer_profile and
    merchant_risk hold synthetic rows and are exported to dynalite. Returns the config path."""
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("demo_online")
    conf = write_config(tmp, online=f"online:\n  dynamodb:\n    endpoint_url: {dynamodb_endpoint}\n"
                                    f"    table_prefix: nb{uuid.uuid4().hex[:6]}_",
                        connections='connections:\n  payments: {url: "jdbc:sqlite:payments.db"}')
    store = FeatureStore.from_config(conf, repo=ROOT / "features", spark=spark)
    store.apply()
    for name, keys in (("customer_txn", 120), ("customer_profile", 120), ("merchant_risk", 20)):
        group = store.group(name)
        schema = ", ".join(f"{c} {dict((f.name, f.dtype) for f in group.features).get(c, 'bigint')}"
                           if c != group.timestamp_column else f"{c} timestamp" for c in group.columns)
        store.offline(name).merge(spark.createDataFrame(synthetic_rows(group, keys, seed=len(name)), schema), "nb")
        assert store.export(name).ok
    return conf


def test_02_online_lookup(demo_online):
    nb = run_notebook("02_online_lookup.ipynb", {"FEATURELAKE_CONF": str(demo_online)})
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "score" in printed and "100 requests in" in printed


def test_03_monitoring(demo_online, tmp_path):
    """Freshness, drift between event-time windows, injected drift caught, the HTML report, skew
    and lineage, on the same tiny exported lake as 02."""
    nb = run_notebook("03_monitoring.ipynb", {"FEATURELAKE_CONF": str(demo_online),
                                              "FEATURELAKE_REPORTS": str(tmp_path)})
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "freshness: ALERT" in printed  # customer_sessions and customer_risk have no data
    assert "customer_txn:amount drifted" in printed
    assert "skew of customer_txn" in printed and "lineage of customer_txn:amount" in printed
    page = (tmp_path / "customer_txn_drift.html").read_text()
    assert page.count('class="plot histogram"') >= 1 and 'class="plot psi"' in page


@pytest.fixture(scope="module")
def demo_ingested(tmp_path_factory, spark, s3_endpoint, demo_api):
    """The demo's own data (scripts/generate_data.py, a small seeded month) generated into SQLite, the
    test S3 server and the demo API's file, then every group ingested into a fresh lake. Returns the
    config path."""
    import generate_data
    from featurelake.config import load_config
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("demo_ingested")
    conf = write_config(tmp, s3=f"s3:\n  endpoint_url: {s3_endpoint}\n  path_style: true\n  region: us-east-1",
                        connections='connections:\n  payments: {url: "jdbc:sqlite:payments.db"}\n'
                                    + demo_api.connection)
    counts = generate_data.generate(load_config(conf), seed=42, customers=200, merchants=20, days=30, txns=3000,
                                    now=datetime(2026, 1, 15, tzinfo=timezone.utc), reset=True,
                                    api_data=demo_api.data)
    store = FeatureStore.from_config(conf, repo=ROOT / "features", spark=spark)
    store.apply()
    results = {}
    for group in store.repo.ordered():
        if group.streamed:  # customer_live: tests/integration/test_streaming.py
            continue
        results[group.name] = result = store.ingest(group.name)
        assert result.ok, result.summary()
    return SimpleNamespace(conf=conf, store=store, counts=counts, results=results)


def test_01_training_set(demo_ingested, tmp_path):
    """Builds the fraud training set from the demo features, trains a model, replays it."""
    nb = run_notebook("01_training_set.ipynb", {"FEATURELAKE_CONF": str(demo_ingested.conf),
                                                "FEATURELAKE_NOTEBOOK_OUT": str(tmp_path)})
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "ROC AUC" in printed and "identical rows" in printed
    assert len(list(tmp_path.glob("ts-*/*.parquet"))) >= 1


# ---- the demo's log-fed and API-fed groups, on the same lake (after notebook 01 has read it) -----

def test_access_log_lines_become_rows_and_the_malformed_ones_are_set_aside(demo_ingested):
    store, counts, result = demo_ingested.store, demo_ingested.counts, demo_ingested.results["app_access"]
    assert counts["malformed_lines"] >= 1 and counts["access_lines"] > 100
    good = counts["access_lines"] - counts["malformed_lines"]
    assert (result.rows_read, result.rows_written, result.rows_rejected) == (
        counts["access_lines"], good, counts["malformed_lines"]), result.summary()
    rows = store.read_offline("app_access")
    assert {r.status_class for r in rows.select("status_class").distinct().collect()} <= {"2xx", "3xx", "4xx", "5xx"}
    assert rows.where("customer_id IS NULL OR request_ts IS NULL OR latency_ms IS NULL").count() == 0
    held = store.spark.read.format("delta").load(f"{store.config.root}/rejected/app_access").collect()
    assert len(held) == counts["malformed_lines"]
    assert all(r._file.endswith(f"access-{counts['run_id']}.log") and r._reason.startswith("line ")
               and " customer=" not in r._record for r in held), held


def test_merchant_scores_are_read_page_by_page_and_then_only_the_newer_ones(demo_ingested, demo_api):
    import generate_data
    from featurelake.config import load_config

    store, counts, first = demo_ingested.store, demo_ingested.counts, demo_ingested.results["merchant_scores"]
    assert first.rows_written == counts["scores"] == 20 * 29, first.summary()  # 29 days of 20 merchants' scores
    later = generate_data.generate(load_config(demo_ingested.conf), append=True,
                                   now=datetime(2026, 1, 17, tzinfo=timezone.utc), api_data=demo_api.data)
    second = store.ingest("merchant_scores")
    assert second.ok and second.rows_read == later["scores"] == 20 * 3, second.summary()  # only updated_since
    assert store.read_offline("merchant_scores").count() == 20 * 32
    token = store.config.connection("merchant_api").token
    assert token and token not in first.summary() + second.summary()
    assert token not in "".join(str(store.catalog.rows(t)) for t in ("groups", "runs"))
