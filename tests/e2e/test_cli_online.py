"""`featurelake export` then `featurelake online get` as a user runs them: the row as JSON, exit 1
for a key that is not online, exit 2 for a malformed --key."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

from conftest import ROOT, write_config
from featurelake.cli import main

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
wallet = FeatureGroup(
    "wallet", entity=customer, timestamp_column="ts",
    source=S3Source("wallet_files", path="s3a://bucket/wallet/", format="parquet"),
    features=[Feature("balance", "double"), Feature("tier", "string"), Feature("active", "boolean"),
              Feature("cards", "bigint")], ttl="90d")
'''


def online_get(conf, *args):
    return subprocess.run([sys.executable, "-m", "featurelake.cli", "--conf", str(conf), "online", "get", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_export_then_online_get_prints_the_row(tmp_path, spark, dynamodb_endpoint, capsys):
    from featurelake.store import FeatureStore

    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "wallet.py").write_text(REPO)
    conf = write_config(tmp_path, online=f"online:\n  dynamodb:\n    endpoint_url: {dynamodb_endpoint}\n"
                                         f"    table_prefix: cli{uuid.uuid4().hex[:6]}_")
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    ts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    rows = [(1, ts - timedelta(days=1), 10.0, "gold", True, 2), (1, ts, 12.5, "gold", False, 3),
            (2, ts, 0.0, "basic", True, None)]
    store.offline("wallet").merge(spark.createDataFrame(
        rows, "customer_id bigint, ts timestamp, balance double, tier string, active boolean, cards bigint"), "r1")

    assert main(["--conf", str(conf), "--repo", str(repo), "export", "wallet", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported[0]["ok"] and exported[0]["mode"] == "full" and exported[0]["items_written"] == 2

    out = online_get(conf, "wallet", "--key", "customer_id=1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"customer_id": 1, "balance": 12.5, "tier": "gold", "active": False, "cards": 3,
                                      "ts": ts.isoformat()}
    out = online_get(conf, "wallet", "--key", "customer_id=2")
    assert json.loads(out.stdout)["cards"] is None

    missing = online_get(conf, "wallet", "--key", "customer_id=999")
    assert missing.returncode == 1 and missing.stdout.strip() == "null"
    bad = online_get(conf, "wallet", "--key", "customer_id")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    unknown = online_get(conf, "nope", "--key", "customer_id=1")
    assert unknown.returncode == 2 and "featurelake export" in unknown.stderr
