"""docs/adding-a-feature-group.md followed literally, as a newcomer would: its module and suite
written where it says, each `featurelake` command of steps 3-7 run in order with the output it
shows, then its Python blocks (online read, training set) run as printed. Only the config
differs: the test's own lake and services instead of conf/local.yaml's fixed ports."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import uuid
from datetime import datetime, timezone

import pytest

from conftest import ROOT, write_config
from featurelake.cli import main
from guides import FENCE, language, title

GUIDE = ROOT / "docs" / "adding-a-feature-group.md"


def blocks_between(start: str, end: str) -> list[tuple[str, str]]:
    """(info string, code) of each block between two of the guide's headings, in order."""
    text = GUIDE.read_text()
    part = text[text.index(start):text.index(end)]
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(part)]


@pytest.fixture(scope="module")
def project(tmp_path_factory, spark, s3_endpoint, dynamodb_endpoint):
    """What the guide starts from, `make demo` run once, made small: a copy of the demo repository
    over the demo's generated data (a seeded month), applied, the groups the guide's later steps
    read ingested, customer_txn exported."""
    import generate_data
    from featurelake.config import load_config
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("guide")
    shutil.copytree(ROOT / "features", tmp / "features", ignore=shutil.ignore_patterns("__pycache__"))
    conf = write_config(tmp, s3=f"s3:\n  endpoint_url: {s3_endpoint}\n  path_style: true\n  region: us-east-1",
                        connections='connections:\n  payments: {url: "jdbc:sqlite:payments.db"}',
                        online=f"online:\n  dynamodb:\n    endpoint_url: {dynamodb_endpoint}\n"
                               f"    table_prefix: guide{uuid.uuid4().hex[:6]}_")
    generate_data.generate(load_config(conf), seed=7, customers=100, merchants=20, days=30, txns=1000,
                           now=datetime.now(timezone.utc), reset=True)
    store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.apply()
    for name in ("customer_txn", "merchant_risk"):
        assert store.ingest(name).ok
    assert store.export("customer_txn").ok
    return tmp, conf


def test_following_the_adding_a_feature_group_guide(project, capsys, monkeypatch):
    tmp, conf = project
    # The guide's own group, step by step; "Other kinds of source" shows sources the project has not got.
    blocks = blocks_between("\n## 1.", "\n### Other kinds of source") + blocks_between("\n## 2.", "\n## 8.")
    written = [t for info, code in blocks if (t := title(info)) and (tmp / t).write_text(code) is not None]
    assert written == ["features/merchant_activity.py", "features/expectations/merchant_activity.yml"]

    ran = []
    for i, (info, code) in enumerate(blocks):
        if language(info) != "sh":
            continue
        for line in code.splitlines():
            if not line.startswith("featurelake "):
                continue  # make services-up, activating the venv: the test has done both
            args = shlex.split(line)[1:]
            code_ = main(["--conf", str(conf), "--repo", str(tmp / "features"), *args])
            out = capsys.readouterr().out
            assert code_ == 0, (line, out)
            shown_info, shown = blocks[i + 1]
            if language(shown_info) == "json":
                got = json.loads(out)
                assert set(got) == set(json.loads(shown)) and got["merchant_id"] == 1, out
                assert got["amount_count_7d"] >= 0 and got["_as_of"] > got["created_at"]
            else:  # the shown line up to its first number (counts, times and ids vary)
                prefix = re.split(r"\d", shown.splitlines()[0])[0]
                assert out.startswith(prefix), (line, prefix, out)
            ran.append(args[0])
    assert ran == ["validate", "apply", "catalog", "ingest", "export", "online"]

    monkeypatch.chdir(tmp)  # the Python blocks name conf/local.yaml: point them at the test's config
    python = [code.replace('"conf/local.yaml"', repr(str(conf)))
              for info, code in blocks + blocks_between("\n## 8.", "\n## 9.")
              if language(info) == "python" and not title(info)]
    assert len(python) == 2
    scope: dict = {}
    for code in python:
        exec(compile(code, str(GUIDE), "exec"), scope)
    ts = scope["ts"]
    frame = ts.to_pandas()
    assert len(frame) > 0 and {"amount_sum_7d", "is_international", "chargeback_rate_30d"} <= set(frame.columns)
    assert frame["amount"].notna().all(), "each payment sees itself, as of its own time"



CONCEPTS = ROOT / "docs" / "concepts.md"


def test_following_the_lifecycle_example_in_concepts(project, capsys, spark):
    """docs/concepts.md's worked example of a definition's lifecycle walked as printed: each version
    of its module written where it says, each command run, its output starting as shown (up to the
    first number), and the backfill's rows checked: every row holds the added feature and the
    version that computed it."""
    tmp, conf = project
    text = CONCEPTS.read_text()
    part = text[text.index("### A worked example"):]
    part = part[:part.index("\n## ")]
    blocks = [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(part)]
    ran = []
    for i, (info, code) in enumerate(blocks):
        if title(info):
            (tmp / title(info)).write_text(code)
        elif language(info) == "sh":
            [line] = [c for c in code.splitlines() if c.startswith("featurelake ")]
            args = shlex.split(line)[1:]
            code_ = main(["--conf", str(conf), "--repo", str(tmp / "features"), *args])
            out = capsys.readouterr().out
            assert code_ == 0, (line, out)
            prefix = re.split(r"\d", blocks[i + 1][1].splitlines()[0])[0]
            assert out.startswith(prefix), (line, prefix, out)
            ran.append(args[0])
            if args[0] == "backfill":
                rows = spark.read.format("delta").load(str(tmp / "lake" / "offline" / "payment_sizes"))
                assert rows.count() > 0 and rows.where("is_large IS NULL").count() == 0
                assert {r[0] for r in rows.select("_definition_version").distinct().collect()} == {2}
    assert ran == ["plan", "apply", "ingest", "plan", "apply", "backfill", "apply", "rollback", "deprecate"]
