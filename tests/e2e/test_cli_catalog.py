"""The `featurelake` command as a user runs it: help, apply, and the catalogue verbs."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import write_config
from featurelake.cli import main

VERBS = ["apply", "ingest", "export", "training-set", "online", "catalog", "validate", "monitor"]
REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source
merchant = Entity("merchant", join_keys=["merchant_id"], description="A store that accepts payments")
merchant_profile = FeatureGroup(
    "merchant_profile", entity=merchant, timestamp_column="updated_at",
    source=S3Source("merchant_files", path="s3a://bucket/merchants/", format="csv", options={"header": "true"}),
    features=[Feature("category", "string", "Merchant category code"),
              Feature("chargeback_rate", "double", "Share of payments charged back")],
    owner="risk-team", tags={"domain": "payments"}, description="What we know about merchants")
'''


def test_help_lists_every_verb():
    out = subprocess.run([sys.executable, "-m", "featurelake.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for verb in VERBS:
        assert verb in out.stdout


def test_usage_errors_exit_2(capsys):
    assert main(["--conf", "/nonexistent.yaml", "catalog", "list"]) == 2
    assert "config file '/nonexistent.yaml' not found" in capsys.readouterr().err


def test_apply_then_catalog_verbs(tmp_path, spark, capsys):
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "merchants.py").write_text(REPO)
    conf = str(write_config(tmp_path))
    args = ["--conf", conf, "--repo", str(repo)]

    assert main(args + ["apply"]) == 0
    assert "merchant_profile: version 1 (new group)" in capsys.readouterr().out
    assert main(args + ["apply"]) == 0
    assert capsys.readouterr().out.strip() == "no changes"

    assert main(args + ["catalog", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(g["name"], g["version"], g["entity"], g["owner"]) for g in listed] == [
        ("merchant_profile", 1, "merchant", "risk-team")]
    assert [(f["name"], f["dtype"]) for f in listed[0]["features"]] == [
        ("category", "string"), ("chargeback_rate", "double")]

    assert main(args + ["catalog", "show", "merchant_profile"]) == 0
    shown = capsys.readouterr().out
    assert "chargeback_rate" in shown and "Share of payments charged back" in shown and "s3" in shown

    assert main(args + ["catalog", "search", "charged back", "--json"]) == 0
    assert [h["name"] for h in json.loads(capsys.readouterr().out)] == ["merchant_profile:chargeback_rate"]

    assert main(args + ["catalog", "show", "merchant_profil"]) == 2
    assert "did you mean 'merchant_profile'" in capsys.readouterr().err
