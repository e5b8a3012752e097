"""The CLI's own parsing and error printing, without Spark: several `--key`s for `online get`,
Delta versions @N in drift refs, and a Spark error printed as one line unless --verbose."""
from __future__ import annotations

import pytest

from featurelake import cli
from featurelake.errors import UsageError
from featurelake.monitoring.refs import parse_ref

JAVA_TRACE = ("An error occurred while calling o123.collect.\n: org.apache.spark.SparkException: Job aborted: "
              "disk on fire\n" + "\n".join(f"\tat org.apache.spark.Thing{i}.run(Thing.scala:{i})" for i in range(90)))


def test_online_keys_a_repeated_name_starts_the_next_key():
    assert cli.online_keys(["customer_id=1"]) == [{"customer_id": 1}]
    assert cli.online_keys(["id=1", "id=2", "id=x"]) == [{"id": 1}, {"id": 2}, {"id": "x"}]
    assert cli.online_keys(["a=1", "b=2", "a=3", "b=4"]) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    with pytest.raises(UsageError, match="same columns"):
        cli.online_keys(["a=1", "b=2", "a=3"])
    with pytest.raises(UsageError, match="--key customer_id=42"):
        cli.online_keys([])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        cli.online_keys(["customer_id"])


def test_delta_versions_are_spelt_with_an_at_and_the_old_v_still_reads():
    assert (parse_ref("@3").kind, parse_ref("@3").version) == ("version", 3)
    assert parse_ref("v3").version == 3 and parse_ref("@3").describe() == "Delta version @3"
    assert parse_ref("@x").kind == "training_set"  # not a version: named as an unknown training set later


def _failing(args):
    raise RuntimeError(JAVA_TRACE)


def test_a_spark_error_is_one_line_and_the_trace_comes_only_with_verbose(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "cmd_apply", _failing)
    (tmp_path / "spark.log").write_text("Spark said a lot\n")
    monkeypatch.setenv("FEATURELAKE_SPARK_LOG", str(tmp_path / "spark.log"))
    assert cli.main(["apply"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # not the 90 lines of Java trace
    assert err[0] == "featurelake: error: An error occurred while calling o123.collect."
    assert "--verbose" in err[1] and "spark.log" in err[1]
    with pytest.raises(RuntimeError):
        cli.main(["--verbose", "apply"])
