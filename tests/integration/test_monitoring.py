"""Monitoring on tiny, deterministic data: statistics in one pass, drift injected and detected (and
not detected without it), freshness of a group whose ingest stopped, lineage and usage, the CLI
exit codes, and the HTML report rendered by headless Chromium."""
from __future__ import annotations

import json
import uuid
import shutil
import struct
import subprocess
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import write_config
from featurelake import monitoring
from featurelake.cli import main
from featurelake.errors import NotFoundError, UsageError
from featurelake.monitoring.stats import MASK

REPO = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
payments = FeatureGroup(
    "payments", entity=customer, timestamp_column="ts",
    source=S3Source("payment_files", path="s3a://bucket/payments/", format="parquet"),
    features=[Feature("amount", "double"), Feature("channel", "string"), Feature("is_night", "boolean"),
              Feature("email", "string", tags={"pii": "true"})],
    aggregations=[Aggregation("amount", ["sum"], windows=["7d"])],
    ttl="30d", online=True, freshness_sla="1d", owner="risk-team")
sessions = FeatureGroup(
    "sessions", entity=customer, timestamp_column="ts",
    source=S3Source("session_files", path="s3a://bucket/sessions/", format="json"),
    features=[Feature("seconds", "double")], online=False, freshness_sla="1h", owner="growth-team")
'''
NOW = datetime.now(timezone.utc).replace(microsecond=0)
SCHEMA = "customer_id bigint, ts timestamp, amount double, channel string, is_night boolean, email string"
N = 200


def batch(first_id: int, start: datetime, span: timedelta, drifted: bool = False) -> list[tuple]:
    """N payments; the same multiset of values in every batch unless drifted (amounts x3 + 200,
    most channels 'crypto'), so that without drift every statistic is identical."""
    rows = []
    for i in range(N):
        amount = 10.0 + (i * 37) % 100
        channel = ["web", "app", "app", "pos"][i % 4]
        if drifted:
            amount, channel = amount * 3 + 200, "crypto" if i % 5 else channel
        rows.append((first_id + i, start + span * i / N, amount, channel, i % 3 == 0, f"user{i}@mail.com"))
    return rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, dynamodb_endpoint):
    """One store for the module: payments batch A, then + B (the same values), then + C (drifted),
    their Delta versions in store.versions; sessions last ingested three days ago; a training set
    that read payments after batch B."""
    from featurelake.store import FeatureStore

    tmp = tmp_path_factory.mktemp("monitoring")
    repo = tmp / "features"
    repo.mkdir()
    (repo / "groups.py").write_text(REPO)
    conf = write_config(tmp, monitoring="monitoring:\n  features:\n    payments:is_night: {psi_threshold: 0.5}",
                        online=f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
                               f"    table_prefix: mon{uuid.uuid4().hex[:8]}_")
    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    offline = store.offline("payments")
    day = timedelta(days=1)
    runs, store.versions = [], []
    for k, (start, drifted) in enumerate([(NOW - 10 * day, False), (NOW - 6 * day, False), (NOW - 3 * day, True)]):
        run_id = f"run-payments-{k}"
        version = offline.merge(spark.createDataFrame(batch(k * N, start, 3 * day - timedelta(hours=3), drifted),
                                                      SCHEMA), run_id)
        store.versions.append(version)
        if k == 1:  # a model trained after batch B
            spine = spark.createDataFrame([(i, NOW - 4 * day) for i in range(0, 2 * N, 40)],
                                          "customer_id bigint, event_ts timestamp")
            store.ts = store.training_set(spine, ["payments:amount_sum_7d", "payments:channel"],
                                          timestamp_column="event_ts")
            store.ts_id = store.ts.id
        runs.append(dict(run_id=run_id, group="payments", group_version=1, kind="ingest", status="succeeded",
                         started_at=start + 3 * day, ended_at=start + 3 * day, rows_written=N,
                         delta_version=version, user="etl"))
    sessions = spark.createDataFrame([(i, NOW - 3 * day - timedelta(minutes=i), float(i)) for i in range(5)],
                                     "customer_id bigint, ts timestamp, seconds double")
    store.offline("sessions").merge(sessions, "run-sessions-0")
    runs.append(dict(run_id="run-sessions-0", group="sessions", group_version=1, kind="ingest", status="succeeded",
                     started_at=NOW - 3 * day, ended_at=NOW - 3 * day, rows_written=5, delta_version=0, user="etl"))
    runs.append(dict(run_id="run-sessions-1", group="sessions", group_version=1, kind="ingest", status="failed",
                     started_at=NOW - 2 * day, ended_at=NOW - 2 * day, error="source down"))
    store.catalog.append("runs", runs)  # one commit
    return store


# ---- statistics -----------------------------------------------------------------------------

@pytest.fixture(params=["driver", "spark"])
def engine(request, monkeypatch):
    """Statistics of a small batch are computed on the driver; of a large one, in three Spark jobs.
    Tests taking this fixture run on both, and expect the same values."""
    from featurelake.monitoring import stats

    if request.param == "spark":
        monkeypatch.setattr(stats, "DRIVER_VALUES", 0)
    return request.param


def test_batch_statistics_read_a_small_batch_once_and_a_large_one_three_times_with_exact_values(lake, engine):
    """Small: its values collected in one scan and described on the driver. Large: every plain
    statistic of every feature in one scan, every sketch in one, histograms and top values in one
    more. A Python filter counts the rows each scan reads (one job per statistic would read it ~30
    times)."""
    from pyspark.sql import functions as F

    spark = lake.spark
    scanned = spark.sparkContext.accumulator(0)

    def counted(_: int) -> bool:
        scanned.add(1)
        return True

    df = spark.createDataFrame([(1, NOW, 1.0, "a", True, "x@y.com"), (2, NOW, 2.0, "a", False, "x@y.com"),
                                (3, NOW, 3.0, "b", None, "z@y.com"), (4, NOW, 4.0, None, True, None),
                                (5, NOW, None, "a", True, "w@y.com")], SCHEMA)
    stats = monitoring.batch_statistics(df.where(F.udf(counted, "boolean")(F.lit(1))), lake.group("payments"))
    assert scanned.value == (5 if engine == "driver" else 3 * 5)

    amount = stats["amount"]
    assert (amount["kind"], amount["count"], amount["non_null"], amount["null_fraction"]) == ("numeric", 5, 4, 0.2)
    assert (amount["min"], amount["max"], amount["mean"]) == (1.0, 4.0, 2.5)
    assert amount["stddev"] == pytest.approx(1.2909944, rel=1e-6)
    assert amount["approx_distinct"] == 4 and amount["quantiles"]["p50"] == 2.0
    assert sum(amount["histogram"]["counts"]) == 4 and len(amount["histogram"]["edges"]) == 21
    assert amount["histogram"]["counts"][0] == 1 and amount["histogram"]["counts"][-1] == 1
    channel = stats["channel"]
    assert channel["kind"] == "categorical" and channel["null_fraction"] == 0.2
    assert channel["top_values"] == [{"value": "a", "count": 3}, {"value": "b", "count": 1}]
    assert stats["is_night"]["top_values"] == [{"value": "true", "count": 3}, {"value": "false", "count": 1}]
    assert stats["email"]["pii"] and {t["value"] for t in stats["email"]["top_values"]} == {MASK}

    monitoring.record_statistics(lake, "run", "run-stats-test", "payments", stats)
    recorded = monitoring.read_statistics(lake, scope="run", scope_id="run-stats-test")
    assert {r["feature"] for r in recorded} == {"amount", "channel", "is_night", "email"}
    assert next(r for r in recorded if r["feature"] == "amount")["stats"]["mean"] == 2.5


def test_a_column_holding_nan_or_infinity_gets_statistics_without_a_histogram(lake, engine):
    df = lake.spark.createDataFrame([(1.0, 2.0), (float("nan"), 3.0), (float("inf"), None)], "a double, b double")
    stats = monitoring.batch_statistics(df)
    assert stats["a"]["non_null"] == 3 and stats["a"]["max"] is None and "histogram" not in stats["a"]
    assert stats["b"]["histogram"]["counts"][0] == 1 and sum(stats["b"]["histogram"]["counts"]) == 2


def test_quantiles_and_histograms_of_a_large_batch_come_from_a_sample_and_the_rest_is_exact(lake):
    df = lake.spark.range(2000).selectExpr("CAST(id AS DOUBLE) AS x", "CAST(id % 7 AS STRING) AS c")
    every, sampled = (monitoring.batch_statistics(df, sample_rows=n) for n in (0, 500))
    assert "sample" not in every["x"] and sum(every["x"]["histogram"]["counts"]) == 2000
    x = sampled["x"]
    assert x["sample"] == {"of": "quantiles, histogram", "fraction": 0.25, "seed": 17}
    assert (x["count"], x["non_null"], x["min"], x["max"], x["mean"]) == (2000, 2000, 0.0, 1999.0, 999.5)
    assert 350 < sum(x["histogram"]["counts"]) < 650 and abs(x["quantiles"]["p50"] - 999.5) < 150
    assert sampled["c"]["top_values"] == every["c"]["top_values"]  # exact counts, every row
    assert sampled["c"]["top_values"][0] == {"value": "0", "count": 286}


def test_training_set_statistics_are_recorded_per_feature(lake):
    stats = monitoring.record_training_set_statistics(lake, lake.ts)
    assert set(stats) == {"payments:amount_sum_7d", "payments:channel"}
    channel = stats["payments:channel"]  # the last spine key had no payment yet at its time
    assert (channel["count"], channel["null_fraction"], channel["kind"]) == (10, 0.1, "categorical")
    assert stats["payments:amount_sum_7d"]["kind"] == "numeric"
    recorded = monitoring.read_statistics(lake, scope="training_set", scope_id=lake.ts_id)
    assert {(r["group"], r["feature"]) for r in recorded} == {("payments", "amount_sum_7d"), ("payments", "channel")}


def test_writing_a_training_set_records_its_statistics_from_the_written_rows(lake, tmp_path):
    """On sessions, not payments: payments' newest training set is the drift tests' default reference."""
    spine = lake.spark.createDataFrame([(i, NOW) for i in range(8)], "customer_id bigint, ts timestamp")
    ts = lake.training_set(spine, ["sessions:seconds"], timestamp_column="ts")
    ts.write(tmp_path / "ts", format="csv")
    recorded = {r["feature"]: r["stats"] for r in monitoring.read_statistics(lake, scope="training_set",
                                                                             scope_id=ts.id)}
    assert set(recorded) == {"seconds"}
    want = ts.to_pandas()["seconds"]
    assert recorded["seconds"]["count"] == 8
    assert recorded["seconds"]["null_fraction"] == pytest.approx(want.isna().mean())
    assert recorded["seconds"]["max"] == pytest.approx(want.max())


def test_a_written_set_records_the_statistics_of_its_own_rows_even_when_appended(lake, tmp_path):
    """Overwriting reads the rows back from the target; appending to it computes them from the set
    again, as the target then holds other rows too."""
    spine = lake.spark.createDataFrame([(i % 5, NOW - timedelta(hours=i)) for i in range(12)],
                                       "customer_id bigint, ts timestamp")
    ts = lake.training_set(spine, ["sessions:seconds"], timestamp_column="ts")
    computed = monitoring.batch_statistics(ts.to_spark(), columns=["seconds"])["seconds"]
    assert computed["count"] == 12 and computed["non_null"] > 0 and "histogram" in computed
    for mode in ("overwrite", "append"):
        ts.write(tmp_path / "ts", mode=mode)
    recorded = monitoring.read_statistics(lake, scope="training_set", scope_id=ts.id)
    assert [{k: v for k, v in r["stats"].items() if k != "column"} for r in recorded] == [computed, computed]
    with pytest.raises(UsageError, match="unknown write mode 'apend'.*append"):
        ts.write(tmp_path / "ts", mode="apend")


def test_the_driver_describes_a_small_batch_as_spark_does(lake, monkeypatch):
    """The same batch both ways (and from its Arrow rows, as a training set built on the driver is
    described): equal values, except that the driver's distinct counts and quantiles are exact
    (Spark's sketches agree with them below 10,000 values and few distinct ones) and its floating
    sums may round differently."""
    from featurelake.monitoring import stats as engine

    rows = [(i % 7 if i % 11 else None, NOW - timedelta(minutes=13 * i), float(i * i % 97) / 8, f"c{i % 5}",
             i % 3 == 0, date(2026, 1, 1 + i % 28), [i]) for i in range(300)] + \
        [(None, None, float("nan"), None, None, None, None)]
    df = lake.spark.createDataFrame(rows, "k int, t timestamp, x double, c string, b boolean, d date, a array<int>")
    on_driver = monitoring.batch_statistics(df)
    assert engine.table_statistics(df.toArrow(), list(on_driver)) == on_driver  # a set built on the driver
    monkeypatch.setattr(engine, "DRIVER_VALUES", 0)
    in_spark = monitoring.batch_statistics(df)
    assert set(on_driver) == set(in_spark) == {"k", "t", "x", "c", "b", "d", "a"}
    for name, want in in_spark.items():
        got = on_driver[name]
        assert set(got) == set(want), name
        for key in ("mean", "stddev"):
            if key in want:
                assert got[key] == (None if want[key] is None else pytest.approx(want[key], rel=1e-12)), (name, key)
        if name != "a":
            exact = len({r[list(on_driver).index(name)] for r in rows} - {None})
            assert got["approx_distinct"] == exact and want["approx_distinct"] == pytest.approx(exact, rel=0.1), name
        rest = ("mean", "stddev", "approx_distinct")
        assert {k: v for k, v in got.items() if k not in rest} == {k: v for k, v in want.items() if k not in rest}, name


# ---- drift ----------------------------------------------------------------------------------

def test_no_drift_between_batches_with_the_same_values(lake):
    a, b, _ = lake.versions
    report = monitoring.drift(lake, "payments", reference=f"@{a}", current=f"@{b}")
    assert report.ok, report.summary()
    result = report["payments"]
    assert (result.reference_rows, result.current_rows) == (N, 2 * N)
    for f in ("amount", "channel", "is_night"):
        assert result.feature(f).psi == pytest.approx(0, abs=1e-9)
    assert result.feature("amount").ks == pytest.approx(0, abs=1e-9)
    assert result.feature("channel").js == pytest.approx(0, abs=1e-9)

    by_time = monitoring.drift(lake, "payments", reference=f"{(NOW - timedelta(days=10)).isoformat()}.."
                               f"{(NOW - timedelta(days=6)).isoformat()}",
                               current=f"{(NOW - timedelta(days=6)).isoformat()}.."
                               f"{(NOW - timedelta(days=3)).isoformat()}")
    assert by_time.ok and by_time["payments"].current_rows == N


def test_injected_drift_is_detected(lake):
    _, b, c = lake.versions
    report = monitoring.drift(lake, "payments", reference=f"@{b}", current=str(c))
    assert not report.ok
    result = report["payments"]
    amount, channel, night = (result.feature(f) for f in ("amount", "channel", "is_night"))
    assert amount.alert and amount.psi > 0.4 and amount.ks == pytest.approx(1 / 3, abs=0.02)
    assert channel.alert and channel.psi > 0.2 and channel.js > 0.1 and "crypto" in channel.plot["categories"]
    assert not night.alert and night.thresholds["psi"] == 0.5  # the per-feature override applies
    assert any("payments:amount drifted" in a for a in report.alerts)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] is False and as_dict["results"][0]["reference"]["version"] == b

    clean = f"..{(NOW - timedelta(days=3)).isoformat()}"
    drifted = f"{(NOW - timedelta(days=3)).isoformat()}.."
    window = monitoring.drift(lake, "payments", reference=clean, current=drifted)["payments"]
    assert window.feature("amount").ks == pytest.approx(1.0) and not window.ok


def test_a_training_set_is_a_reference_and_the_default_one(lake):
    by_id = monitoring.drift(lake, "payments", reference=lake.ts_id)["payments"]
    assert (by_id.reference.version, by_id.current.version) == tuple(lake.versions[1:]) and not by_id.ok
    default = monitoring.drift(lake, "payments")["payments"]
    assert default.reference.training_set == lake.ts_id


def test_bad_references_name_the_fix(lake):
    with pytest.raises(NotFoundError, match=r"has Delta versions @0\.\.@\d"):
        monitoring.drift(lake, "payments", reference="@9")
    with pytest.raises(NotFoundError, match="neither a Delta version"):
        monitoring.drift(lake, "payments", reference="ts-nope")
    with pytest.raises(UsageError, match="no rows"):
        monitoring.drift(lake, "payments", reference="2020-01-01..2020-02-01")
    with pytest.raises(UsageError, match="did not read feature group 'sessions'"):
        monitoring.drift(lake, "sessions", reference=lake.ts_id)


# ---- freshness ------------------------------------------------------------------------------

def test_freshness_alerts_for_the_group_whose_ingest_stopped(lake):
    report = monitoring.freshness(lake)
    assert not report.ok
    sessions, payments = report["sessions"], report["payments"]
    assert sessions.late and sessions.lag > timedelta(days=3) and sessions.last_ingest["run_id"] == "run-sessions-0"
    assert any("run-sessions-1" in n and "failed" in n for n in sessions.notes)
    assert not payments.late and payments.lag < timedelta(hours=4)
    assert monitoring.freshness(lake, ["payments"]).ok
    assert report.alerts == [a for a in report.alerts if a.startswith("sessions is late")]


# ---- lineage and usage ----------------------------------------------------------------------

def test_lineage_lists_the_training_set_that_used_a_feature(lake):
    amount = monitoring.lineage(lake, "payments:amount")  # used through its aggregation amount_sum_7d
    assert [t["id"] for t in amount["training_sets"]] == [lake.ts_id]
    assert amount["affected_features"] == ["amount", "amount_sum_7d"]
    assert lake.ts_id in amount["text"] and "s3 payment_files" in amount["text"]
    assert amount["runs"][0]["succeeded"] == 3 and amount["runs"][0]["last_delta_version"] == lake.versions[-1]
    assert monitoring.lineage(lake, "payments:is_night")["training_sets"] == []
    assert [t["id"] for t in monitoring.lineage(lake, "payments")["training_sets"]] == [lake.ts_id]
    with pytest.raises(NotFoundError, match="did you mean 'amount'"):
        monitoring.lineage(lake, "payments:amonut")


def test_usage_shows_who_read_a_feature(lake):
    feature = monitoring.usage(lake, "payments:channel")  # the training set's audit row names it
    assert [(e["action"], e["object"]) for e in feature["events"]] == [("training_set", "payments")]
    assert lake.ts_id in feature["events"][0]["detail"] and feature["by_user"]
    assert monitoring.usage(lake, "payments:is_night")["events"] == []
    assert monitoring.usage(lake, "payments")["by_action"] == {"training_set": 1}
    assert monitoring.usage(lake, lake.ts_id)["total"] == 1
    assert "training_set" in monitoring.usage(lake, "payments")["text"]


# ---- CLI and HTML ---------------------------------------------------------------------------

def cli(lake, *args: str) -> int:
    return main(["--conf", lake.config.path, "--repo", lake.repo.path, *args])


def test_cli_exit_codes_and_json(lake, capsys, tmp_path):
    a, b, _ = lake.versions
    assert cli(lake, "monitor", "drift", "payments", "--reference", f"@{a}", "--current", f"@{b}") == 0
    assert "drift: OK" in capsys.readouterr().out
    assert cli(lake, "monitor", "drift", "payments", "--reference", f"@{b}", "--json") == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert cli(lake, "monitor", "freshness", "--all", "--report", str(tmp_path / "f.html")) == 1
    assert "sessions" in capsys.readouterr().out and (tmp_path / "f.html").is_file()
    assert cli(lake, "monitor", "freshness", "payments") == 0
    assert cli(lake, "monitor", "drift", "payments", "--reference", "@7") == 2
    assert cli(lake, "catalog", "lineage", "payments:channel") == 0
    assert lake.ts_id in capsys.readouterr().out
    assert cli(lake, "catalog", "usage", "payments") == 0


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("chromium is not installed: apt-get install -y chromium (make setup does it)", pytrace=False)
    return exe


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


def _png_pixels(path: Path) -> tuple[int, int, list[tuple[int, ...]]]:
    """Decodes an 8-bit, non-interlaced RGB(A) PNG with the standard library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), f"unexpected PNG format depth={depth} color={color}"
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, prev, pixels = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [tuple(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


def test_html_report_renders_its_plots_in_headless_chromium(lake, tmp_path):
    page = monitoring.write_html(monitoring.drift(lake, "payments", reference=f"@{lake.versions[1]}"),
                                 tmp_path / "drift.html")
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    dom = _browser(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="plot histogram"') == 1  # amount
    assert dom.stdout.count('class="plot categories"') == 3  # channel, is_night, email
    assert 'class="plot psi"' in dom.stdout and "ALERT" in dom.stdout

    shot = tmp_path / "drift.png"
    out = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri())
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1200, 1800)

    def near(rgb: tuple[int, ...], target: tuple[int, int, int]) -> bool:
        return sum(abs(a - b) for a, b in zip(rgb, target)) < 60

    alert_red = sum(near(p, (0xd6, 0x27, 0x28)) for p in pixels)  # PSI bars above threshold
    blue = sum(p[2] > 150 and p[0] < 150 and p[2] - p[0] > 60 for p in pixels)  # reference bars, any blend
    orange = sum(p[0] > 200 and 90 < p[1] < 200 and p[2] < 120 for p in pixels)  # current bars
    assert len(set(pixels)) > 20, "the screenshot is blank"
    assert alert_red > 200 and blue > 500 and orange > 500, (alert_red, blue, orange)


# ---- skew (last: it exports, which adds to the usage and exports tables) -----------------------

def test_a_tampered_online_item_is_reported_as_skew(lake, capsys):
    import boto3

    from featurelake.online import codec
    from featurelake.online.export import export

    result = export(lake, "payments")
    assert result.ok, result.summary()
    clean = monitoring.skew(lake, "payments", sample=1000)
    r = clean["payments"]
    assert clean.ok, clean.summary()
    assert (r.sampled, r.missing_online, r.export_id) == (3 * N, 0, result.export_id)
    assert {f.name for f in r.features} == {"amount", "channel", "is_night", "amount_sum_7d", "(event time)"}
    assert any("email" in n for n in r.notes)  # PII stays offline, so it is not compared
    fresh = monitoring.freshness(lake, ["payments"])["payments"]
    assert fresh.last_export["export_id"] == result.export_id

    dyn = lake.config.online.dynamodb
    ddb = boto3.client("dynamodb", endpoint_url=dyn.endpoint_url, region_name=dyn.region)

    def pk(customer_id: int) -> dict:
        return {"pk": {"S": codec.encode_pk([codec.key_renderer("bigint")(customer_id)])}}

    ddb.update_item(TableName=result.table_name, Key=pk(7), UpdateExpression="SET amount = :v",
                    ExpressionAttributeValues={":v": {"N": "99999"}})
    ddb.delete_item(TableName=result.table_name, Key=pk(8))
    report = monitoring.skew(lake, "payments", sample=1000)
    assert not report.ok
    r = report["payments"]
    amount = r.feature("amount")
    assert (amount.compared, amount.mismatches) == (3 * N - 1, 1)
    assert amount.examples == [{"key": {"customer_id": 7}, "offline": 69.0, "online": 99999.0}]
    assert r.missing_online == 1 and r.missing_examples == [{"customer_id": 8}]
    assert r.feature("channel").mismatches == 0 and r.feature("amount_sum_7d").mismatches == 0
    assert any("payments:amount differs online for 1/599 keys" in a for a in report.alerts)

    assert cli(lake, "monitor", "skew", "payments", "--sample", "1000", "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["missing_online"] == 1

    assert monitoring.usage(lake, "payments")["by_action"] == {"training_set": 1, "export": 1,
                                                               "create_online_table": 1}
    assert monitoring.usage(lake, "payments:is_night")["by_action"] == {"export": 1}  # exports hold every feature
    exports = monitoring.lineage(lake, "payments:amount")["exports"]
    assert [e["export_id"] for e in exports] == [result.export_id]
