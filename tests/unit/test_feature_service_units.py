"""Feature services without Spark: the definition, the checks when a repository loads, the
expansion of 'service:NAME', and the pandas types a training set comes back in."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from featurelake import FeatureService
from featurelake.errors import DefinitionError, NotFoundError, UsageError
from featurelake.repo import load_repository
from featurelake.services import expand
from featurelake.training import naive_columns
from featurelake.trainingset import arrow_to_pandas

GROUPS = '''
from featurelake import DeltaSource, Entity, Feature, FeatureGroup
customer = Entity("customer", join_keys=["customer_id"])
nowhere = DeltaSource("nowhere", path="/nonexistent", timestamp_column="ts")
cust = FeatureGroup("cust", entity=customer, source=nowhere, timestamp_column="ts",
                    features=[Feature("amount", "double"), Feature("tag", "string")])
profile = FeatureGroup("profile", entity=customer, source=nowhere, timestamp_column="ts",
                       features=[Feature("level", "bigint")])
'''


def repo_with(tmp_path: Path, services: str):
    (tmp_path / "groups.py").write_text(GROUPS)
    (tmp_path / "svc.py").write_text("from featurelake import FeatureService\n" + services)
    return load_repository(tmp_path)


def test_the_version_follows_the_feature_list_not_the_metadata():
    a = FeatureService("fraud", features=["cust:*", "profile:level"], owner="risk", description="x")
    b = FeatureService("fraud", features=["cust:*", "profile:level"], owner="ml", tags={"t": 1})
    c = FeatureService("fraud", features=["cust:*"])
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.groups == ["cust", "profile"]


@pytest.mark.parametrize("features, message", [
    ([], "non-empty list"), ("cust:*", "non-empty list"), (["cust"], "bad feature reference 'cust'"),
    (["cust:a:b"], "bad feature reference"), (["cust:*", "cust:*"], "listed twice")])
def test_a_malformed_service_is_refused_naming_it(features, message):
    with pytest.raises(DefinitionError, match=message) as err:
        FeatureService("fraud", features=features)
    assert "'fraud'" in str(err.value)


@pytest.mark.parametrize("refs, message", [
    ('["custt:amount"]', "unknown feature group 'custt'.*did you mean 'cust'"),
    ('["cust:amout"]', "group 'cust' has no feature 'amout'.*did you mean 'amount'")])
def test_a_service_naming_an_unknown_group_or_feature_is_refused_at_load(tmp_path, refs, message):
    with pytest.raises(DefinitionError, match=message) as err:
        repo_with(tmp_path, f"fraud = FeatureService('fraud', features={refs})\n")
    assert "feature service 'fraud'" in str(err.value) and "fix the service's features=" in str(err.value)


def test_a_service_reference_expands_to_its_features(tmp_path):
    repo = repo_with(tmp_path, "fraud = FeatureService('fraud', features=['cust:amount', 'profile:*'])\n")
    assert list(repo.services) == ["fraud"]
    refs, used = expand(repo, ["service:fraud", "cust:tag", "cust:amount"])
    assert refs == ["cust:amount", "profile:*", "cust:tag"] and [s.name for s in used] == ["fraud"]
    with pytest.raises(NotFoundError, match="unknown feature service 'fruad'.*did you mean 'fraud'"):
        expand(repo, ["service:fruad"])
    with pytest.raises(UsageError, match="'service:fraud'"):
        expand(repo, [repo.services["fraud"]])


def test_the_demo_repository_has_a_service_over_its_groups():
    repo = load_repository(Path(__file__).resolve().parents[2] / "features")
    assert set(repo.services["fraud_model"].groups) <= set(repo.groups)


def test_arrow_rows_keep_utc_and_nullable_integers():
    """What to_pandas does with the rows Spark hands over as Arrow."""
    table = pa.table({
        "n": pa.array([1, None], pa.int64()), "m": pa.array([1, 2], pa.int64()), "i": pa.array([None, 3], pa.int32()),
        "b": pa.array([True, None]), "c": pa.array([True, False]),
        "ts": pa.array([1_700_000_000_000_000, None], pa.timestamp("us", tz="UTC")),
        "naive": pa.array([1_700_000_000_000_000, 0], pa.timestamp("us", tz="UTC"))})
    pdf = arrow_to_pandas(table, naive=["naive"])
    assert {c: str(t) for c, t in pdf.dtypes.items()} == {
        "n": "Int64", "m": "int64", "i": "Int32", "b": "boolean", "c": "bool",
        "ts": "datetime64[ns, UTC]", "naive": "datetime64[ns]"}
    assert pdf["ts"][0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert pdf["naive"][0] == pd.Timestamp(1_700_000_000, unit="s")
    spine = pd.DataFrame({"a": pd.to_datetime(["2024-01-01"]), "b": pd.to_datetime(["2024-01-01"], utc=True)})
    assert naive_columns(spine) == ["a"] and naive_columns("path/to/spine") == []
