"""The demo feature repository and its data generator, without services: the repository loads,
covers every source kind, and every suite is well formed and names real columns."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from featurelake.definitions import DeltaSource, HttpSource, JdbcSource, KafkaSource, S3Source
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
    assert any(isinstance(s, S3Source) and s.format == "text" and s.pattern for s in sources)  # log lines
    assert any(isinstance(s, HttpSource) and s.watermark_param and s.cursor for s in sources)  # a paged API
    assert [g.name for g in repo.groups.values() if g.streamed] == ["customer_live"]  # make demo's stage 8
    assert isinstance(repo.group("customer_live").source, KafkaSource)
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


def test_the_generator_writes_access_logs_with_a_few_malformed_lines_the_pattern_refuses(repo):
    import re

    import generate_data as gen

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    people, _ = gen.population(7, 100, 5, start)
    lines = gen._access_lines(gen.random.Random(3), people, start, start + gen.timedelta(days=30))
    again = gen._access_lines(gen.random.Random(3), people, start, start + gen.timedelta(days=30))
    pattern = re.compile(repo.group("app_access").source.pattern)
    bad = [line for line in lines if not pattern.fullmatch(line)]
    assert lines == again and len(lines) == 303 and len(bad) == 3, bad
    day = gen._access_lines(gen.random.Random(3), people, start, start + gen.timedelta(days=1))
    assert all(pattern.fullmatch(line) for line in day)  # a small append stays within the suite's mostly


def test_the_demo_api_pages_the_generated_scores_by_cursor_past_updated_since():
    import demo_api
    import generate_data as gen

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    _, shops = gen.population(7, 10, 4, start)
    scores = gen._scores(7, shops, start, start + gen.timedelta(days=2, hours=4))
    assert len(scores) == 4 * 3 and scores == gen._scores(7, shops, start, start + gen.timedelta(days=2, hours=4))
    assert all(0 <= s["score"] <= 100 and s["band"] in ("low", "medium", "high") for s in scores)
    first = demo_api.page(scores, None, None, 5)
    second = demo_api.page(scores, None, first["next_cursor"], 5)
    third = demo_api.page(scores, None, second["next_cursor"], 5)
    assert [len(p["data"]) for p in (first, second, third)] == [5, 5, 2] and "next_cursor" not in third
    since = sorted(s["updated_at"] for s in scores)[7]
    newer = demo_api.page(scores, since, None, 100)["data"]
    assert len(newer) == 4 and all(s["updated_at"] > since for s in newer)
