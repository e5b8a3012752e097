"""The validation gate on real Spark DataFrames: a passing batch, a failing one whose failures say
what was observed, and the one-pass engine agreeing with Great Expectations itself."""
from __future__ import annotations

from datetime import datetime

import pytest

from featurelake.validation import validate_batch

ROWS = [  # customer_id, amount, currency, email, created_at
    (1, 10.0, "BRL", "a@x.com", datetime(2024, 1, 1)),
    (2, 250.5, "USD", "b@y.org", datetime(2024, 1, 2)),
    (3, 99.0, "BRL", "c@z.net", datetime(2024, 1, 3)),
    (4, 0.5, "EUR", "d@w.io", datetime(2024, 1, 4)),
]
SCHEMA = "customer_id bigint, amount double, currency string, email string, created_at timestamp"

GOOD_SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0, "max_value": 1000}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "currency", "value_set": ["BRL", "USD", "EUR"]}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "email", "regex": "^[^@]+@[^@]+$"}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 100}},
    {"type": "expect_column_to_exist", "kwargs": {"column": "created_at"}},
    {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "amount", "type_": "DoubleType"}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "amount", "min_value": 50, "max_value": 100}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "currency", "min_value": 3,
                                                                      "max_value": 3}},  # not compiled: GE runs it
]

BAD_ROWS = ROWS + [
    (4, -5.0, "XXX", "not-an-email", datetime(2024, 1, 5)),
    (None, 2000.0, None, None, datetime(2024, 1, 6)),
]


@pytest.fixture
def good(spark):
    return spark.createDataFrame(ROWS, SCHEMA)


@pytest.fixture
def bad(spark):
    return spark.createDataFrame(BAD_ROWS, SCHEMA)


def by_type(result, etype, column=None):
    return next(r for r in result.results if r["expectation"] == etype and (column is None or r["column"] == column))


def test_passing_batch(good):
    result = validate_batch(good, GOOD_SUITE, group="customer_txn")
    try:
        assert result.success, result.summary_lines()
        assert result.failures == [] and result.summary_lines() == []
        assert result.statistics["evaluated_expectations"] == len(GOOD_SUITE)
        assert result.statistics["successful_expectations"] == len(GOOD_SUITE)
        assert result.statistics["rows"] == 4
        assert result.statistics["engines"] == {"spark": 9, "great_expectations": 1}
        assert result.persisted and good.is_cached  # left for the write; the caller unpersists
        assert by_type(result, "expect_column_mean_to_be_between")["observed_value"] == pytest.approx(90.0)
        assert result.to_dict()["success"] is True
    finally:
        good.unpersist()


def test_no_suite_is_success(good):
    result = validate_batch(good, None)
    assert result.success and result.results == [] and not result.persisted and not good.is_cached


def test_failing_batch_reports_what_was_observed(bad):
    suite = GOOD_SUITE + [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount_brl"}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "customer_id", "type_": "StringType"}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 5}, "severity": "warning"},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "currency", "regex": "([A-Z"}},
    ]
    result = validate_batch(bad, suite, group="customer_txn", persist=False)
    assert not result.success and not result.persisted
    failed = {(f["expectation"], f["column"]): f for f in result.failures}

    assert failed[("expect_column_values_to_not_be_null", "customer_id")]["unexpected_count"] == 1
    unique = failed[("expect_column_values_to_be_unique", "customer_id")]
    assert unique["unexpected_count"] == 2 and unique["partial_unexpected_list"] == [4, 4]
    between = failed[("expect_column_values_to_be_between", "amount")]
    assert between["unexpected_count"] == 2 and sorted(between["partial_unexpected_list"]) == [-5.0, 2000.0]
    assert between["element_count"] == 6 and between["unexpected_percent"] == pytest.approx(100 * 2 / 6)
    in_set = failed[("expect_column_values_to_be_in_set", "currency")]
    assert in_set["unexpected_count"] == 1 and in_set["missing_count"] == 1
    assert in_set["partial_unexpected_list"] == ["XXX"]
    assert failed[("expect_column_values_to_match_regex", "email")]["partial_unexpected_list"] == ["not-an-email"]
    assert failed[("expect_column_mean_to_be_between", "amount")]["observed_value"] == pytest.approx(2355 / 6)
    assert failed[("expect_column_values_to_be_of_type", "customer_id")]["observed_value"] == "LongType"
    missing = failed[("expect_column_values_to_not_be_null", "amount_brl")]
    assert "column 'amount_brl' is not in the batch (did you mean 'amount'" in missing["error"]
    warning = failed[("expect_table_row_count_to_equal", None)]
    assert warning["severity"] == "warning" and warning["observed_value"] == 6
    bad_regex = failed[("expect_column_values_to_match_regex", "currency")]  # not Java regex: GE reports it
    assert bad_regex["engine"] == "great_expectations" and bad_regex["error"].startswith("PatternSyntaxException: ")

    lines = result.summary_lines()
    assert len(lines) == len(result.failures) == 10
    assert ("expect_column_values_to_be_between(amount, min_value=0, max_value=1000): 2 unexpected of 6 rows "
            "(33.33%), e.g. [") in "\n".join(lines)
    assert "expect_table_row_count_to_equal(value=5) [warning]: observed 6" in lines
    assert str(result.error()).startswith("customer_txn: 10 of 14 expectations failed\n  - ")
    assert result.statistics["unsuccessful_expectations"] == 10


def test_warning_only_failures_pass_the_batch(good):
    suite = [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}, "severity": "warning"}]
    result = validate_batch(good, suite, persist=False)
    assert result.success and len(result.failures) == 1


def test_one_pass_engine_agrees_with_great_expectations(bad):
    suite = GOOD_SUITE + [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "amount", "min_value": 0.5, "strict_min": True, "mostly": 0.5}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email", "mostly": 0.8}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "customer_id", "value_set": [1, 2, 3]}},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "amount", "max_value": 1000}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "nope"}},
    ]
    fast = validate_batch(bad, suite, engine="auto")
    ge = validate_batch(bad, suite, engine="ge")
    bad.unpersist()
    assert fast.statistics["engines"] == {"spark": len(suite) - 1, "great_expectations": 1}
    assert ge.statistics["engines"] == {"great_expectations": len(suite)}
    for f, g in zip(fast.results, ge.results):
        what = (f["expectation"], f["kwargs"])
        assert f["expectation"] == g["expectation"] and f["success"] == g["success"], what
        for key in ("element_count", "unexpected_count", "missing_count"):
            assert f[key] == g[key], (what, key)
        for key in ("unexpected_percent", "observed_value"):
            assert f[key] == pytest.approx(g[key]) if isinstance(g[key], float) else f[key] == g[key], (what, key)
        if not g["success"] and g["partial_unexpected_list"] is not None:  # examples: for failures only
            mine, theirs = f["partial_unexpected_list"], g["partial_unexpected_list"]
            assert sorted(map(repr, mine)) == sorted(map(repr, theirs)), what
    assert fast.success == ge.success is False
