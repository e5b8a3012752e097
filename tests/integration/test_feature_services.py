"""Feature services end to end: versions in the catalogue, training sets built from one (and
what to_pandas gives back), online reads by service name, and lineage."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from conftest import write_config
from featurelake.cli import main
from featurelake.errors import NotFoundError
from featurelake.monitoring import lineage
from featurelake.online import OnlineClient

GROUPS = '''
from featurelake import DeltaSource, Entity, Feature, FeatureGroup
customer = Entity("customer", join_keys=["customer_id"])
nowhere = DeltaSource("nowhere", path="/nonexistent/source", timestamp_column="ts")
cust = FeatureGroup("cust", entity=customer, source=nowhere, timestamp_column="ts",
                    features=[Feature("amount", "double"), Feature("tag", "string")])
profile = FeatureGroup("profile", entity=customer, source=nowhere, timestamp_column="ts",
                       features=[Feature("level", "bigint"), Feature("vip", "boolean"), Feature("rank", "int")])
'''
SERVICE = '''
from featurelake import FeatureService
fraud = FeatureService("fraud", features={features!r}, owner={owner!r})
'''
REFS = ["cust:amount", "profile:*"]
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint):
    """Two groups with a few rows, the service 'fraud' over them, applied and exported."""
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("services")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(GROUPS)
    (tmp / "features" / "svc.py").write_text(SERVICE.format(features=REFS, owner="risk"))
    conf = write_config(tmp, online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: "
                                   f"{dynamodb_endpoint}\n    table_prefix: t{uuid.uuid4().hex[:8]}_")
    store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.apply()
    store.offline("cust").merge(spark.createDataFrame(
        [(1, at(0), 1.5, "a"), (2, at(1), 2.25, "b")],
        "customer_id bigint, ts timestamp, amount double, tag string"), "r1")
    store.offline("profile").merge(spark.createDataFrame(
        [(1, at(0), 7, True, 3), (2, at(0), 9, False, 4)],
        "customer_id bigint, ts timestamp, level bigint, vip boolean, rank int"), "r1")
    store.conf_path, store.repo_path = str(conf), str(tmp / "features")
    return store


def test_apply_versions_a_service_by_its_feature_list(make_store):
    def apply(features, owner="risk"):
        store = make_store({"groups.py": GROUPS, "svc.py": SERVICE.format(features=features, owner=owner)})
        return store, store.apply()

    store, changes = apply(REFS)
    assert "service fraud: version 1 (new service)" in changes
    assert apply(["cust:*"])[1] == ["service fraud: version 2 (added cust:*; removed cust:amount, profile:*)"]
    assert apply(["cust:*"], owner="ml")[1] == ["service fraud: metadata updated (version 2)"]
    assert apply(REFS, owner="ml")[1] == ["service fraud: metadata updated (version 1)",
                                          "service fraud: matches registered version 1 (latest is 2)"]
    assert apply(REFS, owner="ml")[1] == ["service fraud: matches registered version 1 (latest is 2)"]
    rows = sorted(store.catalog.rows("feature_services"), key=lambda r: r["version"])
    assert [(r["version"], r["features"], r["groups"], r["owner"]) for r in rows] == [
        (1, REFS, ["cust", "profile"], "ml"), (2, ["cust:*"], ["cust"], "ml")]


def test_a_bad_reference_is_refused_at_apply_naming_the_service(tmp_path, spark, capsys):
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(GROUPS)
    (repo / "svc.py").write_text(SERVICE.format(features=["cust:amount", "profile:levle"], owner=""))
    assert main(["--conf", str(write_config(tmp_path)), "--repo", str(repo), "apply"]) == 2
    err = capsys.readouterr().err
    assert "feature service 'fraud'" in err and "'profile:levle'" in err and "did you mean 'level'" in err
    assert "Traceback" not in err


def test_a_training_set_from_a_service_has_its_features_and_records_its_version(lake):
    spine = pd.DataFrame({"customer_id": pd.array([1, None, 2], dtype="Int64"),
                          "event_ts": [at(2), at(2), at(3)], "label": [1, 0, 1]})
    assert str(spine["event_ts"].dtype) == "datetime64[ns, UTC]"
    with pytest.warns(UserWarning, match="null entity key"):
        ts = lake.training_set(spine, "service:fraud")
        by_refs = lake.training_set(spine, REFS)
    assert ts.manifest["options"]["services"] == {"fraud": 1}
    assert ts.manifest["features"] == by_refs.manifest["features"]
    got = ts.to_pandas()
    pd.testing.assert_frame_equal(got, by_refs.to_pandas(), check_exact=True)
    assert got["event_ts"].tolist() == spine["event_ts"].tolist()
    assert {c: str(t) for c, t in got.dtypes.items()} == {
        "customer_id": "Int64", "event_ts": "datetime64[ns, UTC]", "label": "int64", "amount": "float64",
        "level": "Int64", "vip": "boolean", "rank": "Int32"}
    assert got["level"].tolist() == [7, pd.NA, 9] and got["vip"].tolist() == [True, pd.NA, False]
    with pytest.warns(UserWarning, match="null entity key"):
        pd.testing.assert_frame_equal(lake.load_training_set(ts.id).to_pandas(), got, check_exact=True)

    naive = spine.assign(event_ts=spine["event_ts"].dt.tz_localize(None), customer_id=[1, 2, 2])
    plain = lake.training_set(naive, "service:fraud").to_pandas()
    assert str(plain["event_ts"].dtype) == "datetime64[ns]" and plain["event_ts"].tolist() == naive["event_ts"].tolist()
    assert str(plain["level"].dtype) == "int64" and plain["level"].tolist() == [7, 9, 9]

    with pytest.raises(NotFoundError, match="unknown feature service 'fruad'.*did you mean 'fraud'"):
        lake.training_set(spine, ["service:fruad"])


def test_the_online_client_reads_a_service_by_name(lake):
    with OnlineClient.from_config(lake.conf_path) as client:
        with pytest.raises(NotFoundError, match="feature service 'fraud' is not online.*featurelake export"):
            client.get_features([{"customer_id": 1}], "service:fraud")
        notes = lake.export("cust").notes + lake.export("profile").notes
        assert any("feature service fraud version 1 published" in n for n in notes)
        rows = [{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}]
        got = client.get_features(rows, "service:fraud")
        assert got == client.get_features(rows, REFS)
        assert got[0] == {"customer_id": 1, "amount": 1.5, "level": 7, "vip": True, "rank": 3}
        assert got[2] == {"customer_id": 3, "amount": None, "level": None, "vip": None, "rank": None}


def test_lineage_of_a_service_and_the_services_of_a_group(lake, capsys):
    ts = lake.training_set(pd.DataFrame({"customer_id": [1], "event_ts": [at(2)]}), "service:fraud")
    out = lineage(lake, "fraud")
    assert out["features"] == REFS and out["groups"] == ["cust", "profile"]
    assert [v["version"] for v in out["versions"]] == [1]
    assert ts.id in [t["id"] for t in out["training_sets"]]
    assert lineage(lake, "service:fraud")["training_sets"] == out["training_sets"]
    assert lineage(lake, "cust")["services"] == {"fraud": 1} == lineage(lake, "profile:level")["services"]
    assert lineage(lake, "cust:tag")["services"] == {}  # fraud reads cust:amount only

    args = ["--conf", lake.conf_path, "--repo", lake.repo_path, "catalog", "lineage"]
    assert main(args + ["fraud"]) == 0
    text = capsys.readouterr().out
    assert "lineage of feature service fraud" in text and ts.id in text and "cust:amount, profile:*" in text
    assert main(args + ["profile", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["services"] == {"fraud": 1}
