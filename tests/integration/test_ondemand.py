"""Request-time features end to end: a training set computes them from the spine's request columns
and the point-in-time inputs, the OnlineClient computes them from DynamoDB (dynalite) rows and the
request, and the two agree value for value, nulls and types included (hypothesis)."""
from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from conftest import write_config
from featurelake import monitoring
from featurelake.errors import DefinitionError, OnDemandError, UsageError
from featurelake.online import OnlineClient

GROUPS = '''
from featurelake import Aggregation, DeltaSource, Entity, Feature, FeatureGroup

customer = Entity("customer", join_keys=["customer_id"])
nowhere = DeltaSource("nowhere", path="/nonexistent/source", timestamp_column="ts")
acct = FeatureGroup(
    "acct", entity=customer, source=nowhere, timestamp_column="ts",
    features=[Feature("balance", "double"), Feature("visits", "bigint"), Feature("opened_at", "timestamp"),
              Feature("vip", "boolean"), Feature("tier", "string")],
    aggregations=[Aggregation("balance", ["avg"], windows=["30d"])])
'''
CONTEXT = '''
from featurelake import Feature, on_demand

@on_demand(request={"amount": "double", "at": "timestamp", "channel": "string"},
           inputs=["acct:balance", "acct:visits", "acct:opened_at", "acct:vip"],
           outputs=[Feature("amount_over_balance", "double"), Feature("minutes_open", "double"),
                    Feature("next_visit", "bigint"), Feature("channel_vip", "string"),
                    Feature("is_big", "boolean")], owner="risk-team")
def ctx(df):
    """How a payment compares with the account."""
    return df.assign(amount_over_balance=df.amount / df.balance,
                     minutes_open=(df["at"] - df.opened_at).dt.total_seconds() / 60,
                     next_visit=df.visits + 1,
                     channel_vip=df.channel + ":" + df.vip.astype(str),
                     is_big=df.amount > 1000)
'''
TREND = '''
from featurelake import Feature, on_demand

@on_demand(request={"amount": "double"}, inputs=["acct:balance_avg_30d", "acct:tier"],
           outputs=[Feature("amount_over_avg", "double"), Feature("tier_amount", "string")])
def trend(df):
    """A payment against the 30-day average balance (a window input), and the tier (a plain one)."""
    return df.assign(amount_over_avg=df.amount / df.balance_avg_30d,
                     tier_amount=df.tier + "/" + df.amount.astype(str))
'''
SCHEMA = ("customer_id bigint, ts timestamp, balance double, visits bigint, opened_at timestamp, vip boolean, "
          "tier string")
NOW = datetime.now(timezone.utc).replace(microsecond=0)
IDS = itertools.count(1000)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint):
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("ondemand")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(GROUPS)
    (tmp / "features" / "context.py").write_text(CONTEXT)
    (tmp / "features" / "trend.py").write_text(TREND)
    conf = write_config(tmp, online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: "
                                   f"{dynamodb_endpoint}\n    table_prefix: t{uuid.uuid4().hex[:8]}_")
    store = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    store.conf_path, store.repo_path = conf, tmp / "features"
    store.applied = store.apply()
    rows = [(1, NOW - timedelta(days=2), 100.0, 3, NOW - timedelta(days=400), True, "gold"),
            (1, NOW - timedelta(days=1), 200.0, 4, NOW - timedelta(days=400), True, "gold"),
            (2, NOW - timedelta(days=1), None, None, None, None, None)]
    store.offline("acct").merge(spark.createDataFrame(rows, SCHEMA), "r1")
    store.export("acct")
    return store


@pytest.fixture(scope="module")
def client(lake):
    with OnlineClient.from_config(lake.conf_path, repo=str(lake.repo_path)) as c:
        yield c


def spine(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "event_ts", "amount", "at", "channel"])


def test_apply_registers_the_feature_and_the_catalogue_shows_it(lake):
    from featurelake import ondemand
    from featurelake.monitoring import lineage

    assert "on-demand ctx: version 1 (new on-demand feature)" in lake.applied
    listed = next(r for r in ondemand.latest(lake.catalog) if r["name"] == "ctx")
    assert (listed["name"], listed["version"], listed["owner"]) == ("ctx", 1, "risk-team")
    assert listed["inputs"] == ["acct:balance", "acct:visits", "acct:opened_at", "acct:vip"]
    assert ondemand.show(lake.catalog, "ctx")["code"].startswith("@on_demand(")
    assert lineage(lake, "acct")["on_demand"] == {"ctx": 1, "trend": 1}
    assert lake.apply() == []  # nothing changed: no new version


def test_training_set_computes_it_from_the_spine_and_point_in_time_inputs(lake, monkeypatch):
    at = NOW - timedelta(hours=1)
    rows = spine([(1, NOW - timedelta(days=1, hours=12), 50.0, at, "web"),
                  (1, NOW, 2000.0, at, "app"), (2, NOW, 5.0, at, "web"), (3, NOW, None, at, "web")])
    ts = lake.training_set(rows, features=["acct:tier", "ctx:*"])
    assert ts.local_rows() is not None  # a set this small: the driver engine runs the function
    got = ts.to_pandas()
    assert list(got.columns) == ["customer_id", "event_ts", "amount", "at", "channel", "tier",
                                 "amount_over_balance", "minutes_open", "next_visit", "channel_vip", "is_big"]
    assert got["amount_over_balance"].tolist()[:2] == [0.5, 10.0]  # as of the first row, balance was 100
    assert got["next_visit"].tolist()[:2] == [4, 5]
    assert got["minutes_open"][1] == (at - (NOW - timedelta(days=400))).total_seconds() / 60
    assert got["channel_vip"].tolist()[:2] == ["web:True", "app:True"]
    assert got["is_big"].tolist()[:2] == [False, True]
    assert got["amount_over_balance"][2:].isna().all() and got["next_visit"][2:].isna().all()  # no balance: null
    spec = ts.manifest["options"]["on_demand"]["ctx"]
    assert spec["version"] == 1 and spec["outputs"][-1] == ["is_big", "is_big", "boolean"]
    replay = lake.load_training_set(ts.id).to_pandas()
    pd.testing.assert_frame_equal(replay, got)
    monkeypatch.setattr(lake.config.training, "driver_max_rows", 0)  # the Spark engine: mapInArrow
    on_spark = lake.training_set(rows, features=["acct:tier", "ctx:*"])
    assert on_spark.local_rows() is None
    pd.testing.assert_frame_equal(on_spark.to_pandas(), got, check_exact=True)
    monkeypatch.undo()
    # its statistics (recorded by write() when monitoring.statistics is on, off in this lake) cover
    # the request-time outputs as name:output, and none of the inputs read only for them
    monitoring.record_training_set_statistics(lake, ts)
    stats = monitoring.read_statistics(lake, scope="training_set", scope_id=ts.id)
    assert sorted((r["group"], r["feature"]) for r in stats) == sorted(
        [("acct", "tier")] + [("ctx", o) for o in ("amount_over_balance", "minutes_open", "next_visit",
                                                   "channel_vip", "is_big")])


def test_one_output_asked_and_names_that_clash(lake):
    ts = lake.training_set(spine([(1, NOW, 10.0, NOW, "web")]).assign(is_big=True), features=["ctx:is_big"])
    got = ts.to_pandas()
    assert list(got.columns)[-2:] == ["is_big", "ctx__is_big"] and got["ctx__is_big"].tolist() == [False]


def test_a_missing_request_column_is_a_usage_error_naming_it(lake):
    with pytest.raises(UsageError, match=r"on-demand feature 'ctx' needs request field \['channel'\]"):
        lake.training_set(spine([(1, NOW, 10.0, NOW, "web")]).drop(columns=["channel"]), features=["ctx:*"])


def test_a_changed_function_is_refused_at_replay_and_a_failing_one_names_the_row(lake, client, tmp_path):
    from featurelake.store import FeatureStore

    ts = lake.training_set(spine([(1, NOW, 10.0, NOW, "web")]), features=["ctx:*"])
    repo = tmp_path / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(GROUPS)
    (repo / "context.py").write_text(CONTEXT.replace("df.amount > 1000", "df.amount.astype(int) > 1000"))
    changed = FeatureStore.from_config(lake.conf_path, repo=repo, spark=lake.spark)
    with pytest.raises(UsageError, match="on-demand feature 'ctx' changed since the set was built with its version 1"):
        changed.load_training_set(ts.id)
    with pytest.raises(UsageError, match="run `featurelake apply` first"):
        changed.training_set(spine([(1, NOW, 10.0, NOW, "web")]), features=["ctx:*"])
    assert "on-demand ctx: version 2 (code changed)" in changed.apply()
    failing = spine([(1, NOW, 10.0, NOW, "web"), (2, NOW, None, NOW, "app")])
    raised = r"on-demand feature 'ctx' \(offline, training set .*\): the function raised at row \d .*customer_id=2.*" \
             r"IntCastingNaNError"
    sets = len(lake.catalog.rows("training_sets"))
    with pytest.raises(OnDemandError, match=raised):  # the driver engine: when the set is built, nothing registered
        changed.training_set(failing, features=["ctx:*"])
    assert len(lake.catalog.rows("training_sets")) == sets
    changed.config.training.driver_max_rows = 0  # the Spark engine: when the rows are computed
    built = changed.training_set(failing, features=["ctx:*"])
    with pytest.raises(OnDemandError, match=raised):
        built.to_pandas()
    bad = OnlineClient.from_config(lake.conf_path, repo=str(repo))
    with pytest.raises(OnDemandError, match=r"on-demand feature 'ctx' \(online\): the function raised at row 0 "
                                            r"\(entity row \{'customer_id': 2\}"):
        bad.get_features([{"customer_id": 2}], ["ctx:*"], request={"amount": None, "at": NOW, "channel": "x"})
    assert "on-demand ctx: version 1" not in lake.apply()  # the old code matches version 1 again: a rollback


def test_an_input_naming_an_unknown_feature_is_refused_when_the_repository_loads(tmp_path):
    from featurelake.repo import load_repository

    (tmp_path / "groups.py").write_text(GROUPS)
    (tmp_path / "context.py").write_text(CONTEXT.replace("acct:visits", "acct:visit"))
    with pytest.raises(DefinitionError, match=r"input 'acct:visit': group 'acct' has no feature 'visit' "
                                              r"\(did you mean 'visits'"):
        load_repository(tmp_path)


def test_online_computes_it_from_fetched_rows_and_the_request(client):
    at = NOW - timedelta(hours=1)
    rows = client.get_features([{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 99}], ["ctx:*", "acct:tier"],
                               request=[{"amount": 50, "at": at, "channel": "web"},
                                        {"amount": 5.0, "at": at, "channel": "app"},
                                        {"amount": 5.0, "at": at, "channel": "app"}])
    assert rows[0] == {"customer_id": 1, "tier": "gold", "amount_over_balance": 0.25,
                       "minutes_open": (at - (NOW - timedelta(days=400))).total_seconds() / 60,
                       "next_visit": 5, "channel_vip": "web:True", "is_big": False}
    assert rows[1]["amount_over_balance"] is None and rows[1]["next_visit"] is None
    assert rows[2]["tier"] is None and rows[2]["channel_vip"] == "app:None"
    with pytest.raises(UsageError, match="needs request field 'channel', missing for entity row 0"):
        client.get_features([{"customer_id": 1}], ["ctx:*"], request={"amount": 1.0, "at": at})
    with pytest.raises(UsageError, match="'amount'.*does not fit type 'double'"):
        client.get_features([{"customer_id": 1}], ["ctx:*"], request={"amount": "ten", "at": at, "channel": "x"})


def test_get_many_of_a_request_time_feature_gives_its_outputs_per_key(client):
    at = NOW - timedelta(hours=1)
    request = {"amount": 50.0, "at": at, "channel": "web"}
    many = client.get_many("ctx", [{"customer_id": 1}, {"customer_id": 2}], request=request)
    assert many == client.get_features([{"customer_id": 1}, {"customer_id": 2}], ["ctx:*"], request=request)
    assert many[0]["amount_over_balance"] == 0.25 and many[1]["amount_over_balance"] is None
    with pytest.raises(UsageError, match="takes keys as mappings"):
        client.get_many("ctx", [1], request=request)
    with pytest.raises(UsageError, match="request= is for request-time features; 'acct' is a feature group"):
        client.get_many("acct", [{"customer_id": 1}], request=request)


def _plain(v):
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=timezone.utc)  # Spark's collect gives UTC instants naive (session in UTC)
    return v


MAYBE = st.one_of  # noqa: E305
FLOATS = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3))
INSTANTS = st.integers(-10**6, 10**6).map(lambda s: NOW - timedelta(days=30, seconds=s))
ENTITY = st.tuples(
    st.tuples(st.none() | FLOATS, st.none() | st.integers(-10**9, 10**9), st.none() | INSTANTS,
              st.none() | st.booleans()),
    st.fixed_dictionaries({"amount": st.none() | FLOATS | st.integers(-1000, 1000), "at": st.none() | INSTANTS,
                           "channel": st.none() | st.text(max_size=5)}))


def test_offline_and_online_values_are_equal(lake, client, spark):
    """Hypothesis draws 25 examples of entities (offline values, nulls included, and a request);
    they are batched into one offline write, one export and one training set, and each example's
    entities are read online in one call: every output is equal, type included."""
    drawn: list[list] = []

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(st.lists(ENTITY, min_size=1, max_size=4))
    def collect(entities):
        drawn.append(entities)

    collect()
    examples = [[(next(IDS), values, request) for values, request in entities] for entities in drawn]
    flat = [e for example in examples for e in example]
    lake.offline("acct").merge(spark.createDataFrame(
        [(k, NOW - timedelta(hours=2), *values, "t") for k, values, _ in flat], SCHEMA), "hypothesis")
    lake.export("acct")
    frame = pd.DataFrame([{"customer_id": k, "event_ts": NOW, **r} for k, _, r in flat])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["amount"] = frame["amount"].astype("float64")
    offline = {r["customer_id"]: r.asDict() for r in lake.training_set(frame, features=["ctx:*"]).to_spark().collect()}
    outputs = ["amount_over_balance", "minutes_open", "next_visit", "channel_vip", "is_big"]
    for example in examples:
        online = client.get_features([{"customer_id": k} for k, _, _ in example], ["ctx:*"],
                                     request=[r for _, _, r in example])
        for (k, values, request), row in zip(example, online):
            want = {o: _plain(offline[k][o]) for o in outputs}
            have = {o: row[o] for o in outputs}
            assert have == want and [type(v) for v in have.values()] == [type(v) for v in want.values()], \
                (values, request)
    # the monitor replays that training set's requests through both paths and finds them equal
    report = monitoring.skew(lake, "ctx", client=client, sample=10_000)
    assert report.ok and report["ctx"].sampled == len(flat), report.summary()
    assert {f.name: f.compared for f in report["ctx"].features} == {o: len(flat) for o in outputs}


def test_skew_of_a_request_time_feature_finds_a_wrong_online_input(lake, client, tmp_path, capsys):
    """Offline (mapInArrow over the rows each input's export reached, window inputs by the rule)
    against online (get_features over DynamoDB items), for requests from the newest training set
    that computed it or from a file; a tampered item shows as skew of the outputs it feeds."""
    import boto3

    from featurelake.cli import main
    from featurelake.online import codec

    with pytest.raises(UsageError, match="no training set has computed on-demand feature 'trend' yet.*--requests"):
        monitoring.skew(lake, "trend")
    with pytest.raises(UsageError, match="--requests is for request-time features; 'acct' is a feature group"):
        monitoring.skew(lake, "acct", requests=str(tmp_path))
    lake.training_set(pd.DataFrame({"customer_id": [1, 2, 3], "event_ts": [NOW] * 3, "amount": [300.0, 1.0, 2.0]}),
                      features=["trend:*"])
    clean = monitoring.skew(lake, "trend", client=client)
    r = clean["trend"]
    assert clean.ok, clean.summary()
    assert (r.sampled, r.missing_online) == (3, 0)  # customer 3 has no row offline nor online: not missing
    assert [(f.name, f.compared, f.mismatches) for f in r.features] == [("amount_over_avg", 3, 0),
                                                                         ("tier_amount", 3, 0)]

    dyn = lake.config.online.dynamodb
    ddb = boto3.client("dynamodb", endpoint_url=dyn.endpoint_url, region_name=dyn.region)
    key = {"pk": {"S": codec.encode_pk([codec.key_renderer("bigint")(1)])}}
    table = f"{dyn.table_prefix}acct"
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET tier = :v",
                    ExpressionAttributeValues={":v": {"S": "platinum"}})
    try:
        requests = tmp_path / "requests.csv"
        requests.write_text("customer_id,amount\n1,300\n2,1\n")
        conf = ["--conf", str(lake.conf_path), "--repo", str(lake.repo_path)]
        assert main([*conf, "monitor", "skew", "trend", "--requests", str(requests), "--json"]) == 1
        out = json.loads(capsys.readouterr().out)["results"][0]
        tier = next(f for f in out["features"] if f["name"] == "tier_amount")
        assert (out["sampled"], tier["compared"], tier["mismatches"]) == (2, 2, 1)
        assert tier["examples"] == [{"key": {"customer_id": 1}, "offline": "gold/300.0", "online": "platinum/300.0"}]
        assert next(f for f in out["features"] if f["name"] == "amount_over_avg")["mismatches"] == 0
    finally:
        ddb.update_item(TableName=table, Key=key, UpdateExpression="SET tier = :v",
                        ExpressionAttributeValues={":v": {"S": "gold"}})


def test_the_catalogue_verbs_show_it_without_a_jvm_read(lake, capsys):
    """Runs after the training sets above: catalog list/show/lineage read through delta-rs."""
    from featurelake.cli import main

    base = ["--conf", str(lake.conf_path), "--repo", str(lake.repo_path), "catalog"]
    assert main([*base, "list"]) == 0
    listed = capsys.readouterr().out
    assert "acct " in listed and "ctx" in listed and "on-demand" in listed and "from acct:balance" in listed
    assert main([*base, "show", "ctx"]) == 0
    shown = capsys.readouterr().out
    assert "request fields: amount double, at timestamp, channel string" in shown and "is_big" in shown
    assert main([*base, "lineage", "ctx"]) == 0
    lineage = capsys.readouterr().out
    assert "inputs: acct:balance, acct:visits, acct:opened_at, acct:vip" in lineage
    assert "training sets (" in lineage and "(on-demand v1)" in lineage
    used = monitoring.usage(lake, "ctx")  # each training set that computed it, replays included
    assert used["by_action"]["training_set"] >= 3 and used["by_action"]["training_set_replay"] == 1
    assert all(e["object"] == "ctx" for e in used["events"])


SERVE = '''
import importlib.util, json, sys
from datetime import datetime, timezone
from featurelake.online import OnlineClient

spec = importlib.util.spec_from_file_location("context", sys.argv[1])
context = importlib.util.module_from_spec(spec)
spec.loader.exec_module(context)
client = OnlineClient(table_prefix=sys.argv[2], region="us-east-1", endpoint_url=sys.argv[3], on_demand=[context.ctx])
rows = client.get_features([{"customer_id": 1}], ["ctx:*", "acct:tier"],
                           request={"amount": 50.0, "at": datetime(2026, 1, 1, tzinfo=timezone.utc), "channel": "web"})
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[4].split(",")))
print(json.dumps({"rows": rows, "heavy": heavy}))
'''


def test_the_online_helper_installs_and_serves_without_spark(lake, client, tmp_path):
    """A scoring service's install: the package without its `spark` extra, in a clean virtualenv,
    serves a group's features and a request-time feature from DynamoDB with neither Spark, Delta nor
    Great Expectations installed; a Spark verb there says which extra to install."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from featurelake.cli import SPARK_SIDE

    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"  # pip builds in the source tree: a copy keeps the checkout clean
    shutil.copytree(repo / "featurelake", src / "featurelake", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python]
    subprocess.run([*pip, "install", "--quiet", str(src)], check=True, capture_output=True)
    installed = {p["name"].lower() for p in json.loads(subprocess.run([*pip, "list", "--format", "json"],
                                                                      check=True, capture_output=True).stdout)}
    assert {"featurelake", "boto3", "pandas", "pyarrow"} <= installed
    assert not installed & {"pyspark", "delta-spark", "great-expectations", "deltalake", "scipy", "py4j"}

    dyn = lake.config.online.dynamodb
    served = subprocess.run([python, "-c", SERVE, str(lake.repo_path / "context.py"), dyn.table_prefix,
                             dyn.endpoint_url, ",".join(SPARK_SIDE)], capture_output=True, text=True, cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    answer = json.loads(served.stdout)
    assert answer["heavy"] == []
    want = client.get_features([{"customer_id": 1}], ["ctx:*", "acct:tier"],
                               request={"amount": 50.0, "at": datetime(2026, 1, 1, tzinfo=timezone.utc),
                                        "channel": "web"})
    assert answer["rows"] == want and want[0]["amount_over_balance"] == 0.25

    refused = subprocess.run([str(venv / "bin" / "featurelake"), "--conf", str(lake.conf_path), "catalog", "list"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2
    assert "needs featurelake's Spark side" in refused.stderr and "pip install 'featurelake[spark]'" in refused.stderr
