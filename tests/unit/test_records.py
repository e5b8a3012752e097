"""The catalogue's records: one declaration per table, from which the Spark schema comes, and a
round trip through a table's row that keeps JSON fields as Python values."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from featurelake.catalog import SCHEMAS, Catalog
from featurelake.records import RECORDS, Export, Run, RunStatus, Statistic, TrainingSetManifest, Usage, ddl

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


def test_each_append_only_table_takes_its_schema_from_its_record():
    assert set(RECORDS) == {"runs", "exports", "training_sets", "usage", "statistics"}
    for table, record in RECORDS.items():
        assert SCHEMAS[table] == ddl(record)
    assert ddl(Run).startswith("run_id string, group string, group_version int, kind string, status string, "
                               "started_at timestamp, ended_at timestamp, duration_s double, window string, "
                               "rows_read bigint")
    assert "features array<string>, group_versions string" in ddl(TrainingSetManifest)  # JSON fields are text


def test_a_record_round_trips_through_a_row_with_its_json_fields_as_values():
    run = Run("r1", "payments", 2, status=RunStatus.SUCCEEDED, started_at=NOW, rows_written=5,
              params={"window": "2026-12-01"}, validation=[{"type": "not_null", "ok": True}])
    row = run.to_row()
    assert row["params"] == '{"window": "2026-12-01"}' and row["validation"].startswith('[{"ok": true')
    assert Run.from_row(row) == run
    manifest = TrainingSetManifest("ts-1", NOW, features=["payments:*"], table_versions={"payments": 3},
                                   options={"on_demand": {}})
    assert TrainingSetManifest.from_row({**manifest.to_row(), "a_column_added_later": 1}) == manifest
    assert Export.from_row({"export_id": "e", "group": "g"}).status == "failed"  # an older table's missing columns
    assert Usage.from_row(Usage(NOW, "ana", "export", "payments", None).to_row()).detail is None


def test_one_commit_holds_one_tables_records():
    with pytest.raises(ValueError, match=r"one commit holds one table's records, not \['runs', 'statistics'\]"):
        Catalog(lambda: None, "/tmp/x").add(Run("r", "g"), Statistic("run", "r", "g", "f", NOW, {}))
