"""Expectation suites load with GE's own checks, and every mistake names the file, line and fix.

No SparkSession here: only YAML, GE's expectation registry and its pydantic models."""
from __future__ import annotations

from pathlib import Path

import pytest

from featurelake.errors import DefinitionError, ValidationFailed
from featurelake.validation import ValidationResult, check_suite, load_suite

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "customer_txn.yml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, **kw) -> str:
    with pytest.raises(DefinitionError) as info:
        load_suite(write(tmp_path, text), **kw)
    return str(info.value)


def test_loads_ge_serialized_form(tmp_path):
    suite = load_suite(write(tmp_path, """
# a comment
expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {column: customer_id}
  - type: expect_column_values_to_be_between
    kwargs: {column: amount, min_value: 0, max_value: 100000, mostly: 0.99}
    meta: {owner: risk}
  - type: expect_table_row_count_to_be_between
    kwargs: {min_value: 1}
    severity: warning
"""))
    assert suite == [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "amount", "min_value": 0, "max_value": 100000, "mostly": 0.99},
         "meta": {"owner": "risk"}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}, "severity": "warning"},
    ]


def test_every_demo_suite_loads():
    files = sorted((REPO / "features" / "expectations").glob("*.yml"))
    assert files
    for path in files:
        assert load_suite(path), path


def test_empty_file_is_an_empty_suite(tmp_path):
    assert load_suite(write(tmp_path, "# nothing yet\n")) == []
    assert load_suite(write(tmp_path, "expectations: []\n")) == []


def test_unknown_type_names_file_line_and_nearest(tmp_path):
    msg = error_of(tmp_path, """expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {column: customer_id}
  - type: expect_column_values_to_be_betwen
    kwargs: {column: amount, min_value: 0}
""")
    assert "customer_txn.yml:4: expectation 2" in msg
    assert "unknown expectation type 'expect_column_values_to_be_betwen'" in msg
    assert "did you mean 'expect_column_values_to_be_between'" in msg


def test_malformed_yaml_names_file_and_line(tmp_path):
    msg = error_of(tmp_path, """expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {column: customer_id
  - type: expect_column_values_to_be_between
""")
    assert "customer_txn.yml:4:" in msg and "malformed YAML" in msg


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(DefinitionError, match=r"nope\.yml not found: create it"):
        load_suite(tmp_path / "nope.yml")


def test_bad_kwargs_are_named(tmp_path):
    msg = error_of(tmp_path, """expectations:
  - type: expect_column_values_to_be_between
    kwargs: {column: amount, mn_value: 0, max_value: 10}
""")
    assert "customer_txn.yml:2: expectation 1 (expect_column_values_to_be_between)" in msg
    assert "mn_value: unknown argument (did you mean 'min_value'" in msg

    msg = error_of(tmp_path, """expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {}
""")
    assert "column: required argument is missing" in msg

    msg = error_of(tmp_path, """expectations:
  - type: expect_column_values_to_be_between
    kwargs: {column: amount}
""")
    assert "min_value and max_value cannot both be None" in msg


def test_structure_errors(tmp_path):
    assert "a mapping with an `expectations:` list" in error_of(tmp_path, "- type: x\n")
    assert "did you mean 'expectations'" in error_of(tmp_path, "expectation:\n  - type: x\n")
    assert "unknown key 'kwarg' (did you mean 'kwargs'" in error_of(
        tmp_path, "expectations:\n  - type: expect_column_to_exist\n    kwarg: {column: a}\n")
    assert "`type:` is missing" in error_of(tmp_path, "expectations:\n  - kwargs: {column: a}\n")
    assert "severity 'fatal'" in error_of(
        tmp_path, "expectations:\n  - type: expect_column_to_exist\n    kwargs: {column: a}\n    severity: fatal\n")


def test_columns_are_checked_against_the_group(tmp_path):
    path = write(tmp_path, "expectations:\n  - type: expect_column_values_to_not_be_null\n"
                           "    kwargs: {column: amout}\n")
    with pytest.raises(DefinitionError, match=r"column 'amout' is not an output of the group \(did you mean 'amount'"):
        load_suite(path, columns=["customer_id", "created_at", "amount"])


def test_list_suites_get_the_same_checks():
    assert check_suite([{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}])
    with pytest.raises(DefinitionError, match="expectation 1: unknown expectation type"):
        check_suite([{"type": "expect_colum_to_exist", "kwargs": {"column": "a"}}])


def test_summary_lines_and_error():
    failures = [
        {"expectation": "expect_column_values_to_be_between", "column": "amount",
         "kwargs": {"column": "amount", "min_value": 0}, "severity": "critical", "success": False,
         "observed_value": None, "element_count": 4, "unexpected_count": 1, "unexpected_percent": 25.0,
         "missing_count": 0, "partial_unexpected_list": [-5.0], "error": None, "engine": "spark"},
        {"expectation": "expect_table_row_count_to_be_between", "column": None,
         "kwargs": {"min_value": 10}, "severity": "critical", "success": False, "observed_value": 4,
         "element_count": 4, "unexpected_count": None, "unexpected_percent": None, "missing_count": None,
         "partial_unexpected_list": None, "error": None, "engine": "spark"},
    ]
    result = ValidationResult(success=False, failures=failures, group="customer_txn",
                              statistics={"evaluated_expectations": 3, "unsuccessful_expectations": 2})
    assert result.summary_lines() == [
        "expect_column_values_to_be_between(amount, min_value=0): 1 unexpected of 4 rows (25%), e.g. [-5.0]",
        "expect_table_row_count_to_be_between(min_value=10): observed 4",
    ]
    err = result.error("run-1")
    assert isinstance(err, ValidationFailed) and err.run_id == "run-1" and len(err.failures) == 2
    assert str(err).startswith("customer_txn: 2 of 3 expectations failed (run run-1)")
