"""The demo feature repository and its data generator, without services: the repository loads,
covers every source kind, and every suite is well formed and names real columns."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from featurelake.definitions import DeltaSource, JdbcSource, S3Source
from featurelake.repo import load_repository

FEATURES = Path(__file__).resolve().parents[2] / "features"


@pytest.fixture(scope="module")
def repo():
    return load_repository(FEATURES)


def test_loads_at_least_four_groups_over_every_source_kind(repo):
    assert len(repo.groups) >= 4
    sources = [g.source for g in repo.groups.values()]
    assert any(isinstance(s, JdbcSource) for s in sources)
    assert {s.format for s in sources if isinstance(s, S3Source)} >= {"csv", "json"}
    assert any(isinstance(s, DeltaSource) and s.group in repo.groups for s in sources)
    assert set(repo.entities) == {"customer", "merchant"}


def test_a_group_reading_another_comes_after_it(repo):
    order = [g.name for g in repo.ordered()]
    for g in repo.groups.values():
        for up in g.upstream_groups:
            assert order.index(up) < order.index(g.name)


def test_the_documented_features_exist(repo):
    assert "amount_sum_7d" in repo.group("customer_txn").feature_names
    assert "chargeback_rate_30d" in repo.group("merchant_risk").feature_names
    assert repo.group("customer_profile").feature("email").pii
    assert "is_fraud" not in repo.group("customer_txn").feature_names  # the label is never a feature


def test_every_group_has_a_well_formed_suite_over_its_own_columns(repo):
    for group in repo.groups.values():
        path = repo.expectations_path(group)
        assert path is not None and path.name == f"{group.name}.yml", group.name
        suite = yaml.safe_load(path.read_text())
        assert isinstance(suite["expectations"], list) and 2 <= len(suite["expectations"]) <= 5, group.name
        for e in suite["expectations"]:
            assert e["type"].startswith("expect_") and isinstance(e["kwargs"], dict), (group.name, e)
            if "column" in e["kwargs"]:
                assert e["kwargs"]["column"] in group.columns, (group.name, e)


def test_the_generator_is_seeded_and_realistic():
    import generate_data as gen

    start, end = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 3, 1, tzinfo=timezone.utc)
    people, shops = gen.population(7, 300, 20, start)
    assert gen.population(7, 300, 20, start) == (people, shops)
    rows = gen._transactions(gen.random.Random(1), 20_000, 1, people, shops, start, end)
    assert [r["txn_id"] for r in rows] == list(range(1, 20_001))
    assert all(start <= gen._parse(r["created_at"]) < end and r["amount"] > 0 for r in rows)
    fraud = sum(r["is_fraud"] for r in rows) / len(rows)
    large = [r["is_fraud"] for r in rows if r["amount"] > 1000]
    assert 0.003 < fraud < 0.03 and sum(large) / len(large) > 2 * fraud
