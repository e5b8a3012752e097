"""The data contract's settings and reporting without Spark: the plausible event-time range in the
config, the all-or-nothing option of a group, and a run summary that says what was set aside."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from featurelake import Entity, Feature, FeatureGroup, S3Source
from featurelake.config import load_config
from featurelake.errors import ConfigError, DefinitionError
from featurelake.runs import IngestResult

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def write(tmp_path, text):
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


def test_the_plausible_event_time_range_defaults_to_1990_until_a_day_ahead(tmp_path):
    config = load_config(write(tmp_path, "project: t\n"), env={})
    assert config.validation.event_time.bounds(NOW) == (datetime(1990, 1, 1, tzinfo=timezone.utc),
                                                        NOW + timedelta(days=1))


def test_the_plausible_event_time_range_is_configurable(tmp_path):
    path = write(tmp_path, "project: t\nvalidation:\n  event_time:\n    max_ahead: 2h\n    min: 2015-06-01\n")
    low, high = load_config(path, env={}).validation.event_time.bounds(NOW)
    assert (low, high) == (datetime(2015, 6, 1, tzinfo=timezone.utc), NOW + timedelta(hours=2))


@pytest.mark.parametrize("line, word", [("max_ahead: 1 day", "'1 day'"), ("min: someday", "someday")])
def test_a_bad_event_time_range_is_a_config_error_naming_it(tmp_path, line, word):
    path = write(tmp_path, f"project: t\nvalidation:\n  event_time:\n    {line}\n")
    with pytest.raises(ConfigError, match=rf"validation\.event_time: .*{word}.*max_ahead: 1d"):
        load_config(path, env={})


def group(**kw):
    return FeatureGroup("g", entity=Entity("e", join_keys=["id"]), timestamp_column="ts",
                        features=[Feature("v", "double")], source=S3Source("s", path="/x", format="csv"), **kw)


def test_on_bad_file_is_quarantine_or_fail_and_the_default_keeps_the_fingerprint():
    assert group().on_bad_file == "quarantine" and "on_bad_file" not in group().to_dict()
    assert group(on_bad_file="fail").fingerprint != group().fingerprint
    with pytest.raises(DefinitionError, match=r"'g': on_bad_file must be quarantine .* or fail .*'skip'"):
        group(on_bad_file="skip")


def test_the_summary_line_counts_what_the_contract_set_aside_and_says_notes_once():
    r = IngestResult(group="g", run_id="run-1", status="warned", rows_read=10, rows_written=5, rows_quarantined=2,
                     rows_rejected=1, rows_out_of_range=2, duplicates_collapsed=2, files_empty=1,
                     files_rejected=[{"file": "s3a://b/c.csv", "kind": "columns", "reason": "has no column 'fare'"}])
    r.note("column 'ts' holds times without a time zone: taken as UTC")
    r.note("column 'ts' holds times without a time zone: taken as UTC")
    head, *rest = r.summary().splitlines()
    for part in ("1 rejected", "2 out of the event-time range", "2 duplicates collapsed", "1 file(s) rejected",
                 "1 empty file(s)"):
        assert part in head, head
    assert rest == ["  - file s3a://b/c.csv has no column 'fare': set aside",
                    "  note: column 'ts' holds times without a time zone: taken as UTC"]
    assert r.contract()["rows_out_of_range"] == 2 and "rows_quarantined" not in r.contract()
    assert IngestResult(group="g", run_id="r").contract() == {}, "a clean run records no contract entry"
