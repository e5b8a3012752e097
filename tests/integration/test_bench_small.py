"""featurelake's side of every benchmark workload (bench/, issue 7) at a tiny scale, checked
against the brute-force oracles: correctness only, no timing, no Feast. If a workload's code
path breaks, `make bench` would report a time for a wrong answer; this catches it first.

The data are bench's own generators (seeded) at the `tiny` scale, in a temporary folder.
"""
from __future__ import annotations

import pytest

from bench.common import Context
from bench.data import Data
from bench.scales import SCALES
from bench.workloads import w1_training, w2_windows, w3_export, w5_ingest

TINY = SCALES["tiny"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, spark, dynamodb_endpoint):
    from bench import flside

    work = tmp_path_factory.mktemp("bench")
    data = Data(TINY, root=work / "data")
    conf, repo = flside.write_project(work / "project", data, dynamodb_endpoint)
    store = flside.open_store(conf, repo, spark)
    return Context(scale=TINY, data=data, work=work, spark=spark, store=store, dynamodb_endpoint=dynamodb_endpoint,
                   runs=1, check_oracle=True, variants=False, log=lambda msg: None)


@pytest.mark.parametrize("groups", [["cust"], ["cust", "merch", "pair"]], ids=["one_group", "three_groups"])
def test_w1_training_set_equals_the_oracle(ctx, groups):
    w1_training.load(ctx, groups, ctx.data)
    out = ctx.work / "w1" / "_".join(groups)
    w1_training.featurelake_side(ctx.store, ctx.data.path("spine"), groups, out)
    assert w1_training.spine_columns_kept(ctx.spark, out) == []
    check = w1_training.check_against_oracle(ctx.data, out, groups)
    assert check["ok"], check
    assert check["rows"] == TINY.spine


def test_w2_window_aggregations_equal_the_oracle(ctx):
    from bench.flside import load_offline

    load_offline(ctx.store, "txn", ctx.data.path("txn"))
    out = ctx.work / "w2" / "txn"
    w2_windows.featurelake_side(ctx.store, ctx.data.path("spine"), "txn", out)
    check = w2_windows.check_against_oracle(ctx.data, out, "txn")
    assert check["ok"], check


def test_w3_export_full_then_incremental_equals_the_newest_rows(ctx):
    w3_export.ensure_loaded(ctx)
    table = f"{ctx.store.config.online.dynamodb.table_prefix}{w3_export.GROUP}"
    _, result, _ = w3_export.featurelake_export(ctx.store, full=True)
    assert result.items_written == TINY.export_keys
    check = w3_export.check_featurelake_table(ctx.dynamodb_endpoint, table, w3_export.expected_rows(ctx))
    assert check["ok"], check

    changed = w3_export.change_keys(ctx, 0)
    _, result, _ = w3_export.featurelake_export(ctx.store, full=False)
    assert result.mode == "incremental"
    assert len(changed) <= result.items_written < TINY.export_keys
    check = w3_export.check_featurelake_table(ctx.dynamodb_endpoint, table, w3_export.expected_rows(ctx))
    assert check["ok"], check
    ctx.state["profile_exported"] = True


def test_w4_online_reads_return_the_newest_rows(ctx):
    import pandas as pd

    from bench import oracle
    from bench.online_reader import Reader
    from bench.workloads import w4_online

    w3_export.ensure_exported(ctx, None)
    w4_online.ensure_wide(ctx, None)
    reader = Reader()
    reader.setup(ctx.dynamodb_endpoint, ctx.store.config.online.dynamodb.table_prefix)
    wide = oracle.newest(pd.read_parquet(ctx.data.path("wide")), ["customer_id"]).set_index("customer_id")
    cases = [("profile", [f"f{i}" for i in range(10)], w3_export.expected_rows(ctx), TINY.export_keys),
             ("wide", [f"w{i}" for i in range(50)], wide, TINY.wide_keys)]
    for group, features, expected, n_keys in cases:
        keys = list(range(0, n_keys, max(1, n_keys // 40)))
        got = reader.featurelake_values(group, keys)["rows"]
        raw = reader.boto3_values(f"{ctx.store.config.online.dynamodb.table_prefix}{group}", keys)["rows"]
        for k in keys:
            assert got[str(k)] is not None, (group, k)
            assert {f: got[str(k)][f] for f in features} == expected.loc[k, features].to_dict(), (group, k)
            assert {f: raw[str(k)][f] for f in features} == expected.loc[k, features].to_dict(), (group, k)
        for requests in ([[1]] * 3, [keys[:100]] * 2):  # the timed loops run and answer
            table = f"{ctx.store.config.online.dynamodb.table_prefix}{group}"
            for side in (reader.featurelake(group, requests), reader.boto3(table, requests)):
                assert len(side["latencies_ms"]) == len(requests) and side["cpu_s"] >= 0


def test_w5_ingest_validates_writes_everything_and_quarantines_a_bad_batch(ctx):
    store = w5_ingest.fresh_store(ctx, "test")
    source = ctx.spark.read.parquet(str(ctx.data.path("ingest")))
    _, result = w5_ingest.ingest(store, "ing_v")
    assert result.ok and result.rows_written == TINY.ingest_rows, result.summary()
    assert w5_ingest.check_written(store, "ing_v", source)["ok"]
    check = w5_ingest.check_validation(store, result.run_id)
    assert check["ok"], check
    bad = w5_ingest.check_bad_batch(ctx)
    assert bad["ok"], bad
