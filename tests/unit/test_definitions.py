"""Definitions fail at load with a message that names the object and the fix."""
from __future__ import annotations

import sys
import threading

import pytest

from featurelake import Aggregation, DeltaSource, Entity, Feature, FeatureGroup, JdbcSource, S3Source
from featurelake.definitions import check_dtype, parse_duration
from featurelake.errors import DefinitionError
from featurelake.repo import load_repository

customer = Entity("customer", join_keys=["customer_id"])
source = JdbcSource("txns", connection="payments", table="public.transactions", watermark_column="updated_at")


def group(**kw):
    args = dict(entity=customer, source=source, timestamp_column="created_at",
                features=[Feature("amount", "double")])
    args.update(kw)
    return FeatureGroup(kw.pop("name", "customer_txn"), **{k: v for k, v in args.items() if k != "name"})


@pytest.mark.parametrize("text,seconds", [("30d", 30 * 86400), ("12h", 43200), ("15m", 900), ("45s", 45),
                                          ("2w", 14 * 86400)])
def test_good_durations(text, seconds):
    assert parse_duration(text, "ttl").total_seconds() == seconds


@pytest.mark.parametrize("text", ["30", "d30", "30 days", "0d", "-1d", "1.5h", "", None, 30])
def test_bad_durations(text):
    with pytest.raises(DefinitionError, match="bad duration"):
        parse_duration(text, "ttl")


@pytest.mark.parametrize("dtype", ["double", "bigint", "string", "boolean", "timestamp", "array<float>",
                                   "map<string,bigint>", "struct<a:int,b:array<string>>", "decimal(10,2)"])
def test_spark_dtypes(dtype):
    assert check_dtype(dtype, "x") == dtype


@pytest.mark.parametrize("dtype", ["doubel", "array<>", "array<float", "list<int>", "", None])
def test_unknown_dtypes(dtype):
    with pytest.raises(DefinitionError, match="unknown dtype"):
        check_dtype(dtype, "x")


def test_bad_ttl_names_the_group():
    with pytest.raises(DefinitionError, match="feature group 'customer_txn' ttl: bad duration '30 days'"):
        group(ttl="30 days")


def test_duplicate_features():
    with pytest.raises(DefinitionError, match=r"duplicate feature names \['amount'\]"):
        group(features=[Feature("amount", "double"), Feature("amount", "bigint")])


def test_aggregation_over_an_undeclared_column():
    with pytest.raises(DefinitionError, match="aggregation over undeclared column 'amout'.*did you mean 'amount'"):
        group(aggregations=[Aggregation("amout", ["sum"], windows=["7d"])])


def test_aggregation_names_and_bad_function():
    g = group(aggregations=[Aggregation("amount", ["sum", "max"], windows=["1d", "7d"])])
    assert g.feature_names == ["amount", "amount_sum_1d", "amount_sum_7d", "amount_max_1d", "amount_max_7d"]
    with pytest.raises(DefinitionError, match="unknown function 'summ'.*did you mean 'sum'"):
        Aggregation("amount", ["summ"], windows=["1d"])


def test_sql_transform_must_produce_the_keys():
    with pytest.raises(DefinitionError, match=r"does not produce \['customer_id'\]"):
        group(transform="SELECT client_id, created_at, amount FROM txns")
    assert group(transform="SELECT customer_id, created_at, amount FROM txns").name == "customer_txn"


def test_a_key_cannot_be_a_feature():
    with pytest.raises(DefinitionError, match="is a key or the timestamp"):
        group(features=[Feature("customer_id", "bigint")])


@pytest.mark.parametrize("name", ["customer-txn", "1group", "x; DROP TABLE y", "a b", ""])
def test_unsafe_names(name):
    with pytest.raises(DefinitionError, match="not a safe identifier"):
        group(name=name)


def test_sources_check_their_arguments():
    with pytest.raises(DefinitionError, match="exactly one of table= or query="):
        JdbcSource("x", connection="c")
    with pytest.raises(DefinitionError, match="unknown format 'jsn'.*did you mean 'json'"):
        S3Source("x", path="s3a://b/p", format="jsn")
    with pytest.raises(DefinitionError, match="exactly one of path=, table= or group="):
        DeltaSource("x")
    with pytest.raises(DefinitionError, match="not a safe name"):
        JdbcSource("x", connection="c", table="t; drop table t")


def test_version_changes_with_the_transform_source():
    a = group(transform=lambda df: df.selectExpr("customer_id", "created_at", "amount"))
    b = group(transform=lambda df: df.selectExpr("customer_id", "created_at", "amount * 2 AS amount"))
    c = group(transform=lambda df: df.selectExpr("customer_id", "created_at", "amount"))
    assert a.fingerprint != b.fingerprint
    assert a.to_dict()["transform"] != c.to_dict()["transform"] or a.fingerprint == c.fingerprint


ENTITIES = 'from featurelake import Entity\ncustomer = Entity("customer", join_keys=["customer_id"])\n'
GROUP = '''from featurelake import Feature, FeatureGroup, JdbcSource
from entities import customer
src = JdbcSource("{src}", connection="payments", table="transactions")
{name} = FeatureGroup("{name}", entity=customer, source=src, timestamp_column="ts",
                      features=[Feature("amount", "double")])
'''


def test_repository_collects_definitions_across_modules(tmp_path):
    (tmp_path / "entities.py").write_text(ENTITIES)
    (tmp_path / "a_txn.py").write_text(GROUP.format(name="txn", src="s1"))
    repo = load_repository(tmp_path)
    assert list(repo.groups) == ["txn"] and list(repo.entities) == ["customer"]


def test_threads_loading_one_repository_at_once_each_get_it_whole(tmp_path):
    """A FeatureStore loads its repository lazily, so two threads applying through one store load
    it together: sys.path and sys.modules are shared, and the loads must not trip over each other."""
    (tmp_path / "entities.py").write_text(ENTITIES)
    for i in range(6):
        (tmp_path / f"g{i}.py").write_text(GROUP.format(name=f"txn{i}", src=f"s{i}"))
    start, results, errors = threading.Barrier(8), [], []

    def load():
        start.wait()
        try:
            for _ in range(5):
                results.append(sorted(load_repository(tmp_path).groups))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(results) == 40
    assert all(r == [f"txn{i}" for i in range(6)] for r in results)
    assert sys.path.count(str(tmp_path.resolve())) == 1


def test_repository_rejects_duplicate_group_names(tmp_path):
    (tmp_path / "entities.py").write_text(ENTITIES)
    (tmp_path / "one.py").write_text(GROUP.format(name="txn", src="s1"))
    (tmp_path / "two.py").write_text(GROUP.format(name="txn", src="s2"))
    with pytest.raises(DefinitionError, match="duplicate FeatureGroup name 'txn'.*one.py.*two.py"):
        load_repository(tmp_path)


def test_repository_reports_the_module_of_a_bad_definition(tmp_path):
    (tmp_path / "entities.py").write_text(ENTITIES)
    (tmp_path / "bad.py").write_text(GROUP.format(name="txn", src="s1").replace('"double"', '"dubble"'))
    with pytest.raises(DefinitionError, match=r"bad.py: feature 'amount': unknown dtype 'dubble'"):
        load_repository(tmp_path)


def test_missing_repository(tmp_path):
    with pytest.raises(DefinitionError, match="pass --repo PATH"):
        load_repository(tmp_path / "nope")


def test_one_pii_rule_for_features_aggregations_and_groups():
    """Aggregations over a PII column are PII too (their sums reveal it); a group tagged pii makes
    every feature PII; statistics, skew examples and the online export all follow this one rule."""
    from featurelake.online.snapshot import online_features

    who = Entity("who", join_keys=["who_id"])
    src = S3Source("s", path="s3a://b/p", timestamp_column="ts")
    feats = [Feature("salary", "double", tags={"pii": "Yes"}), Feature("clicks", "bigint")]
    aggs = [Aggregation("salary", ["sum"], windows=["7d"]), Aggregation("clicks", ["sum"], windows=["7d"])]
    g = FeatureGroup("people", entity=who, source=src, timestamp_column="ts", features=feats, aggregations=aggs)
    assert g.pii_features == {"salary", "salary_sum_7d"}
    kept, held = online_features(g)
    assert sorted(held) == ["salary", "salary_sum_7d"] and [f.name for f in kept] == ["clicks", "clicks_sum_7d"]
    tagged = FeatureGroup("people", entity=who, source=src, timestamp_column="ts", features=feats,
                          aggregations=aggs, tags={"pii": "true"})
    assert tagged.pii_features == set(tagged.feature_names)
    # statistics mask the same set: before, a group tagged pii and a sum over a PII column were shown
    from types import SimpleNamespace

    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    from featurelake.monitoring.stats import feature_columns

    schema = StructType([StructField(n, DoubleType() if n.startswith("salary") else LongType())
                         for n in g.feature_names])
    masked = {name for name, _, _, pii in feature_columns(SimpleNamespace(schema=schema), g) if pii}
    assert masked == {"salary", "salary_sum_7d"}
    assert all(pii for *_, pii in feature_columns(SimpleNamespace(schema=schema), tagged))
