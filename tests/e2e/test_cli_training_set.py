"""`featurelake training-set` as a user runs it: build from a spine file, print the id; later,
after more data arrived, `--replay ID` in its own process writes the same rows again."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pandas as pd

from conftest import ROOT, write_config

REPO = '''
from featurelake import Aggregation, DeltaSource, Entity, Feature, FeatureGroup

customer = Entity("customer", join_keys=["customer_id"])
payments = FeatureGroup(
    "payments", entity=customer, source=DeltaSource("raw", path="/nonexistent"), timestamp_column="ts",
    features=[Feature("amount", "double")], ttl="1d",
    aggregations=[Aggregation("amount", ["sum", "count"], windows=["1d"])])
'''


def test_training_set_then_replay_after_more_data(tmp_path, spark, capsys):
    from featurelake.cli import main
    from featurelake.store import FeatureStore

    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "groups.py").write_text(REPO)
    conf = write_config(tmp_path, spark="spark:\n  master: local[1]\n  conf: {spark.sql.shuffle.partitions: 2}")
    repo = str(tmp_path / "features")
    assert main(["--conf", str(conf), "--repo", repo, "apply"]) == 0
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    schema = "customer_id bigint, ts timestamp, amount double"
    store.offline("payments").merge(spark.createDataFrame(
        [(1, datetime(2024, 5, 1, 10), 10.0), (1, datetime(2024, 5, 1, 12), 5.0), (2, datetime(2024, 5, 1, 9), 7.0)],
        schema), "r1")
    spine = tmp_path / "spine.parquet"
    pd.DataFrame({"customer_id": [1, 1, 2, 3], "event_ts": pd.to_datetime(
        ["2024-05-01T11:00", "2024-05-01T13:00", "2024-05-02T10:00", "2024-05-01T13:00"]),
        "label": [0, 1, 0, 1]}).to_parquet(spine, index=False, coerce_timestamps="us")

    capsys.readouterr()
    assert main(["--conf", str(conf), "--repo", repo, "training-set", "--spine", str(spine), "--features",
                 "payments:*", "--out", str(tmp_path / "first")]) == 0
    ts_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert ts_id.startswith("ts-")
    first = pd.read_parquet(tmp_path / "first").sort_values(["label", "customer_id"]).reset_index(drop=True)
    expected = pd.DataFrame({
        "customer_id": [1, 2, 1, 3],
        "event_ts": pd.to_datetime(["2024-05-01T11:00", "2024-05-02T10:00", "2024-05-01T13:00", "2024-05-01T13:00"]),
        "label": [0, 0, 1, 1], "amount": [10.0, None, 5.0, None],   # customer 2's row is older than the ttl
        "amount_sum_1d": [10.0, None, 15.0, None], "amount_count_1d": [1, 0, 2, 0]})
    pd.testing.assert_frame_equal(first, expected, check_dtype=False)

    # More data arrives, including a correction of a row the set read.
    store.offline("payments").merge(spark.createDataFrame(
        [(1, datetime(2024, 5, 1, 12), 500.0), (2, datetime(2024, 5, 2, 9), 1.0)], schema), "r2")
    cmd = [sys.executable, "-m", "featurelake.cli", "--conf", str(conf), "--repo", repo, "training-set",
           "--replay", ts_id, "--out", str(tmp_path / "replay"), "--format", "parquet"]
    replayed = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert replayed.stdout.strip().splitlines()[-1] == ts_id
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "replay"), pd.read_parquet(tmp_path / "first"),
                                  check_exact=True)
