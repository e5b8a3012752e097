"""The demo's log-fed and API-fed groups over the demo's own generated data: app_access splits
the access log lines and sets the malformed ones aside with their file and line; merchant_scores
follows the demo API's cursor pages and, on the next run, asks only for the newer scores."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import ROOT, write_config

NOW = datetime(2026, 2, 10, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, spark, s3_endpoint, demo_api):
    import generate_data
    from featurelake.config import load_config
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("demo_sources")
    conf = write_config(tmp, s3=f"s3:\n  endpoint_url: {s3_endpoint}\n  path_style: true\n  region: us-east-1",
                        connections='connections:\n  payments: {url: "jdbc:sqlite:payments.db"}\n'
                                    + demo_api.connection)
    counts = generate_data.generate(load_config(conf), seed=3, customers=40, merchants=4, days=15, txns=200,
                                    now=NOW, reset=True, api_data=demo_api.data)
    store = FeatureStore.from_config(conf, repo=ROOT / "features", spark=spark)
    store.apply()
    return store, conf, counts


def test_access_log_lines_become_rows_and_the_malformed_ones_are_set_aside(demo):
    store, _, counts = demo
    assert counts["malformed_lines"] >= 1 and counts["access_lines"] > 100
    result = store.ingest("app_access")
    assert result.ok, result.summary()
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


def test_merchant_scores_are_read_page_by_page_and_then_only_the_newer_ones(demo, demo_api):
    import generate_data
    from featurelake.config import load_config

    store, conf, counts = demo
    first = store.ingest("merchant_scores")
    assert first.ok and first.rows_written == counts["scores"] == 4 * 14, first.summary()  # 14 days, 4 merchants
    later = generate_data.generate(load_config(conf), append=True, now=NOW + timedelta(days=2),
                                   api_data=demo_api.data)
    second = store.ingest("merchant_scores")
    assert second.ok and second.rows_read == later["scores"] == 4 * 3, second.summary()  # only updated_since
    assert store.read_offline("merchant_scores").count() == 4 * 17
    token = store.config.connection("merchant_api").token
    assert token and token not in first.summary() + second.summary()
    assert token not in "".join(str(store.catalog.rows(t)) for t in ("groups", "runs"))
