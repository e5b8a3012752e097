"""The ingest contract on local files: a failing suite quarantines (or fails, or warns), a
quarantined batch comes back without double writes, the transform's output is checked, and the
offline table's schema evolves but refuses a changed type."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import write_config
from featurelake.errors import DefinitionError, UsageError, ValidationFailed

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source
from featurelake import transforms as T

item = Entity("item", join_keys=["id"])


def group(name, **kw):
    return FeatureGroup(name, entity=item, source=S3Source(name + "_files", path="{root}/" + name, format="parquet"),
                        timestamp_column="ts", features=[Feature("v", "double", "a value")],
                        expectations="expectations/range.yml", **kw)


quality = group("quality")                      # the config's policy: quarantine
strict = group("strict", validation="fail")
lenient = group("lenient", validation="warn",   # fits a mean: recorded with the run
                transform=lambda df: T.fill_nulls(df, strategy="mean", columns=["v"]))
daily = group("daily")
'''
SUITE = ("expectations:\n  - type: expect_column_values_to_be_between\n"
         "    kwargs: {{column: v, min_value: {low}, max_value: 100}}\n")


def put(folder: Path, name: str, rows: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["id", "ts", "v"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame.to_parquet(folder / f"{name}.parquet", index=False, coerce_timestamps="us")


@pytest.fixture(scope="module")
def env(tmp_path_factory, spark):
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("ingest")
    repo = tmp / "features"
    (repo / "expectations").mkdir(parents=True)
    (repo / "groups.py").write_text(REPO.format(root=tmp / "data"))
    (repo / "expectations" / "range.yml").write_text(SUITE.format(low=0))
    conf = write_config(tmp, monitoring="monitoring:\n  statistics: true")
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    return store, tmp / "data", repo / "expectations" / "range.yml", conf


def test_a_failing_batch_is_quarantined_then_reingested_once_after_the_suite_is_fixed(env, capsys):
    store, data, suite, conf = env
    put(data / "quality", "good", [(1, "2024-06-01T00:00:00Z", 1.0)])
    good = store.ingest("quality")
    assert good.ok
    version = store.offline("quality").version()

    put(data / "quality", "bad", [(2, "2024-06-02T00:00:00Z", -5.0), (3, "2024-06-02T00:00:00Z", 2.0)])
    bad = store.ingest("quality")
    assert not bad.ok and bad.status == "quarantined"
    assert (bad.rows_read, bad.rows_written, bad.rows_quarantined, bad.delta_version) == (2, 0, 2, None)
    assert "expect_column_values_to_be_between" in bad.summary() and "-5.0" in bad.summary()
    assert store.offline("quality").version() == version, "the offline table is untouched"
    held = store.spark.read.format("delta").load(f"{store.config.root}/quarantine/quality")
    assert sorted((r.id, r._run_id) for r in held.collect()) == [(2, bad.run_id), (3, bad.run_id)]
    assert "expect_column_values_to_be_between" in held.first()._reason
    assert store.ingest("quality").rows_read == 0, "the quarantined files are not read again"

    still = store.ingest("quality", from_quarantine=bad.run_id)
    assert not still.ok and still.rows_written == 0 and "stays in quarantine" in still.error

    suite.write_text(SUITE.format(low=-10))
    try:
        back = store.ingest("quality", from_quarantine=bad.run_id)
        again = store.ingest("quality", from_quarantine=bad.run_id)
    finally:
        suite.write_text(SUITE.format(low=0))
    assert back.ok and back.rows_written == 2 and back.parent_run_id == bad.run_id, back.summary()
    assert again.ok and (again.rows_written, again.delta_version) == (0, None), "no double write"
    assert store.read_offline("quality").count() == 3

    from featurelake.monitoring import read_statistics

    stats = {r["scope_id"]: r["stats"] for r in read_statistics(store, scope="run", group="quality")}
    assert set(stats) == {good.run_id, back.run_id}, "written batches have statistics, a quarantined one not"
    assert (stats[back.run_id]["count"], stats[back.run_id]["min"], stats[back.run_id]["max"]) == (2, -5.0, 2.0)

    run = next(r for r in store.catalog.rows("runs", f"run_id = '{bad.run_id}'"))
    assert run["status"] == "quarantined" and '"success": false' in run["validation"]

    from featurelake.cli import main

    assert main(["--conf", str(conf), "--repo", str(store.repo.path), "catalog", "history", "quality"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert back.run_id in out[0] and "rows=2" in out[0], out


def test_fail_policy_writes_nothing_and_reads_the_same_files_again_next_time(env):
    store, data, _, _ = env
    put(data / "strict", "batch", [(1, "2024-06-01T00:00:00Z", 500.0)])
    with pytest.raises(ValidationFailed) as err:
        store.ingest("strict")
    assert err.value.run_id and err.value.failures
    assert not store.offline("strict").exists()
    put(data / "strict", "batch", [(1, "2024-06-01T00:00:00Z", 50.0)])  # the data fixed in place
    fixed = store.ingest("strict")
    assert fixed.ok and fixed.rows_written == 1, fixed.summary()
    assert sorted(r["status"] for r in store.catalog.rows("runs", "`group` = 'strict'")) == ["failed", "succeeded"]


def test_warn_policy_writes_the_batch_and_reports_the_failures_and_fitted_parameters(env):
    import json

    store, data, _, _ = env
    put(data / "lenient", "batch", [(1, "2024-06-01T00:00:00Z", 500.0), (2, "2024-06-01T00:00:00Z", None)])
    warned = store.ingest("lenient")
    assert warned.ok and warned.status == "warned" and warned.rows_written == 2 and warned.failures
    assert {r.id: r.v for r in store.read_offline("lenient").collect()} == {1: 500.0, 2: 500.0}
    [run] = store.catalog.rows("runs", "`group` = 'lenient'")
    assert json.loads(run["params"]) == {"fill_nulls:v": {"strategy": "mean", "value": 500.0}}


def test_the_first_ingest_writes_one_file_per_event_date(env):
    """An S3 ingest runs as a streaming batch, without adaptive execution: the first write must
    still put each date's rows in one file, not one per shuffle partition."""
    store, data, _, _ = env
    for part in range(2):
        put(data / "daily", f"part{part}", [(i, f"2024-06-0{1 + i % 3}T0{part}:00:00Z", float(i)) for i in range(30)])
    assert store.ingest("daily").rows_written == 60
    files = sorted(p.parent.name for p in Path(store.offline("daily").path).glob("_event_date=*/*.parquet"))
    assert files == ["_event_date=2024-06-01", "_event_date=2024-06-02", "_event_date=2024-06-03"]


def test_the_transform_output_must_carry_keys_timestamp_and_typed_features(env):
    from featurelake.contract import conform

    store = env[0]
    group = store.group("quality")
    spark = store.spark
    with pytest.raises(DefinitionError, match=r"'quality'.*no column 'v' \(feature\)"):
        conform(group, spark.createDataFrame([], "id bigint, ts timestamp, value double"))
    with pytest.raises(DefinitionError, match=r"'quality'.*'v' \(feature\) is string but must be double"):
        conform(group, spark.createDataFrame([], "id bigint, ts timestamp, v string"))
    with pytest.raises(DefinitionError, match=r"'ts' \(event timestamp\) is string"):
        conform(group, spark.createDataFrame([], "id bigint, ts string, v double"))
    out = conform(group, spark.createDataFrame([], "extra string, v int, ts date, id int"))
    assert out.schema.simpleString() == "struct<id:int,ts:timestamp,v:double>"


EVOLVING = '''
from pyspark.sql import functions as F
from featurelake import Entity, Feature, FeatureGroup, S3Source

item = Entity("item", join_keys=["id"])
g = FeatureGroup("evolving", entity=item, timestamp_column="ts",
                 source=S3Source("evolving_files", path="{path}", format="parquet"),
                 transform=lambda df: df.select("id", "ts", {select}),
                 features=[{features}])
'''


def test_a_new_feature_evolves_the_schema_and_a_changed_type_is_refused_at_apply(make_store, tmp_path):
    data = tmp_path / "data"

    def store_with(select: str, features: str):
        store = make_store({"groups.py": EVOLVING.format(path=data, select=select, features=features)})
        store.apply()
        return store

    put(data, "one", [(1, "2024-06-01T00:00:00Z", 1.0)])
    v1 = store_with('"v"', 'Feature("v", "double")')
    assert v1.ingest("evolving").ok
    first = v1.offline("evolving").version()

    put(data, "two", [(2, "2024-06-02T00:00:00Z", 2.0)])
    v2 = store_with('"v", (F.col("v") * 10).alias("w")', 'Feature("v", "double"), Feature("w", "double")')
    assert v2.ingest("evolving").ok
    rows = {r.id: r.w for r in v2.read_offline("evolving").collect()}
    assert rows == {1: None, 2: 20.0}
    assert "w" not in v2.read_offline("evolving", version=first).columns
    evolved = v2.offline("evolving").version()

    put(data, "three", [(3, "2024-06-03T00:00:00Z", 3.0)])
    v3 = make_store({"groups.py": EVOLVING.format(path=data, select='F.col("v").cast("string").alias("v")',
                                                  features='Feature("v", "string")')})
    with pytest.raises(UsageError, match=r"changed type of v double -> string.*v_v2"):
        v3.apply()
    assert v3.offline("evolving").version() == evolved
    versions = sorted(r["version"] for r in v3.catalog.rows("groups", lambda r: r["name"] == "evolving"))
    assert versions == [1, 2]  # the refused definition registered nothing
