"""The monitoring pieces that need no Spark: REF parsing, the drift metrics, value comparison for
skew, thresholds with overrides, and the HTML page built from a report."""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from featurelake.config import Config, MonitoringConfig
from featurelake.errors import ConfigError, UsageError
from featurelake.monitoring.drift import FeatureDrift, GroupDrift, _js, _ks, _psi, thresholds
from featurelake.monitoring.freshness import GroupFreshness
from featurelake.monitoring.html import render
from featurelake.monitoring.refs import Ref, parse_ref
from featurelake.monitoring.report import MonitorReport, human_duration
from featurelake.monitoring.skew import FeatureSkew, GroupSkew, same


def test_parse_ref_forms():
    assert (parse_ref("v3").kind, parse_ref("v3").version) == ("version", 3)
    assert parse_ref("12").version == 12
    assert parse_ref(None).kind == parse_ref("latest").kind == "latest"
    r = parse_ref("2026-01-01..2026-02-01T12:00:00Z")
    assert r.kind == "time_range" and r.start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert r.end == datetime(2026, 2, 1, 12, tzinfo=timezone.utc)
    assert parse_ref("..2026-01-01").start is None and parse_ref("2026-01-01..").end is None
    assert parse_ref("ts-20260101T000000-abcd1234").kind == "training_set"
    with pytest.raises(UsageError, match="range is empty"):
        parse_ref("2026-02-01..2026-01-01")
    with pytest.raises(UsageError, match="bad time 'yesterday'"):
        parse_ref("yesterday..2026-01-01", "--current")


def test_metrics_on_known_distributions():
    assert _psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0)
    assert _psi([100, 0], [0, 100]) > 10  # the empty bin counts as EPSILON, so it stays finite
    assert _js([5, 5], [50, 50]) == pytest.approx(0, abs=1e-12)
    assert _js([1, 0], [0, 1]) == pytest.approx(1.0)
    p, q = [0.5, 0.5], [0.9, 0.1]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl_p = sum(a * math.log2(a / c) for a, c in zip(p, m))
    kl_q = sum(b * math.log2(b / c) for b, c in zip(q, m))
    want = math.sqrt(kl_p / 2 + kl_q / 2)
    assert _js([50, 50], [90, 10]) == pytest.approx(want)
    ks, pvalue = _ks([10, 0], [0, 10])
    assert ks == 1.0 and pvalue < 1e-3
    assert _ks([3, 4, 5], [6, 8, 10]) == (pytest.approx(0), 1.0)
    assert _js([0, 0], [0, 0]) == 0.0 and _js([0, 0], [3, 1]) == 1.0  # an empty side is all or nothing


def test_ks_and_js_agree_with_scipy_on_random_buckets():
    """Bucket counts stand for samples of the bucket index: the KS statistic must be scipy's
    two-sample statistic on those samples, the JS distance scipy's on the raw counts."""
    np = pytest.importorskip("numpy")
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(7)
    for _ in range(50):
        k = int(rng.integers(2, 12))
        ref, cur = rng.integers(0, 40, k).tolist(), rng.integers(0, 40, k).tolist()
        if not sum(ref) or not sum(cur):
            continue
        d, _p = _ks(ref, cur)
        want = ks_2samp(np.repeat(np.arange(k), ref), np.repeat(np.arange(k), cur)).statistic
        assert abs(d - want) < 1e-9
        assert abs(_js(ref, cur) - jensenshannon(ref, cur, base=2)) < 1e-9


def test_thresholds_and_overrides():
    config = Config(monitoring=MonitoringConfig(features={"g:a": {"psi_threshold": 0.5}, "g:b": {"enabled": False},
                                                         "g:c": {"psi": 1}}))
    assert thresholds(config, "g", "a") == {"psi": 0.5, "ks": 0.1, "js": 0.1}
    assert thresholds(config, "g", "z") == {"psi": 0.2, "ks": 0.1, "js": 0.1}
    assert thresholds(config, "g", "b") is None
    with pytest.raises(ConfigError, match="unknown key 'psi'"):
        thresholds(config, "g", "c")


def test_online_values_compare_up_to_representation():
    t = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert same(1.5, Decimal("1.5")) and same(3, Decimal("3")) and not same(1.5, Decimal("1.6"))
    assert same(t, t) and same(t, int(t.timestamp() * 1000)) and same(t, t.isoformat())
    assert not same(t, t + timedelta(seconds=1))
    assert same(None, None) and not same(None, 0) and not same(0.0, None)
    assert same(True, True) and not same(True, False) and same("a", "a") and not same("a", "b")
    assert same([1.0, 2.0], [Decimal(1), Decimal(2)]) and not same([1.0], [1.0, 2.0])


def _report() -> MonitorReport:
    amount = FeatureDrift("amount", "numeric", "double", {"psi": 0.2, "ks": 0.1, "js": 0.1}, psi=0.9, ks=0.4,
                            plot={"type": "histogram", "edges": [0.0, 1.0, 2.0], "reference": [0.9, 0.1],
                                  "current": [0.2, 0.8]})
    channel = FeatureDrift("channel", "categorical", "string", {"psi": 0.2, "ks": 0.1, "js": 0.1}, psi=0.01,
                             js=0.02, plot={"type": "bars", "categories": ["web", "<script>"],
                                            "reference": [0.5, 0.5], "current": [0.49, 0.51]})
    return MonitorReport("drift", [GroupDrift("payments", Ref("v1", "version", 1), Ref("latest", "latest", 2),
                                                100, 120, [amount, channel])])


def test_report_summary_json_and_html():
    report = _report()
    assert not report.ok and report.alerts == ["payments:amount drifted (PSI 0.900 > 0.2, KS 0.400 > 0.1)"]
    assert "drift: ALERT (1)" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["results"][0]["features"][0]["reasons"]
    page = render(report)
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page and "&lt;script&gt;" in page
    assert page.count('class="plot histogram"') == 1 and page.count('class="plot categories"') == 1
    assert 'class="plot psi"' in page and "ALERT" in page


def test_freshness_and_skew_pages():
    late = GroupFreshness("sessions", timedelta(hours=1), "1h", False, lag=timedelta(days=3),
                          newest_event=datetime(2026, 1, 1, tzinfo=timezone.utc))
    fresh = GroupFreshness("payments", timedelta(days=1), "1d", True, lag=timedelta(hours=2))
    report = MonitorReport("freshness", [late, fresh])
    assert not report.ok and report.alerts == ["sessions is late: newest event 3.0d old > SLA 1h"]
    assert 'class="plot lag"' in render(report) and "2026-01-01 00:00 UTC" in render(report)
    skew = GroupSkew("payments", datetime(2026, 1, 1, tzinfo=timezone.utc), 3, "export-1", 10, 0, 0.0,
                     [FeatureSkew("amount", 10, 1, [{"key": {"id": 7}, "offline": 1.0, "online": 2.0}])])
    page = render(MonitorReport("skew", [skew]))
    assert 'class="plot skew"' in page and "10.0%" in page
    assert human_duration(90) == "1.5m" and human_duration(None) == "-"


def test_every_name_and_note_in_a_page_is_escaped():
    """A group, feature, key or note named like markup must show as text in every report kind."""
    evil = "<img src=x onerror=alert(1)>"
    amount = FeatureDrift(evil, "numeric", "double", {"psi": 0.2}, psi=0.9, ks=0.4, js=0.3,
                          plot={"type": "histogram", "edges": [0.0, 1.0], "reference": [1.0], "current": [1.0]})
    drift = MonitorReport("drift", [GroupDrift(evil, Ref("v1", "version", 1), Ref("latest", "latest", 2), 1, 1,
                                               [amount])])
    skew = GroupSkew(evil, datetime(2026, 1, 1, tzinfo=timezone.utc), 3, evil, 10, 0, 0.0,
                     [FeatureSkew(evil, 10, 1, [{"key": {"id": evil}, "offline": evil, "online": 2.0}])],
                     notes=[evil])
    fresh = MonitorReport("freshness", [GroupFreshness(evil, timedelta(hours=1), evil, False,
                                                       lag=timedelta(days=3), notes=[evil])])
    for report in (drift, MonitorReport("skew", [skew]), fresh):
        page = render(report)
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page, report.check


def test_a_stream_group_shows_its_last_progress_record_instead_of_ingest_and_export():
    stream = {"run_id": "stream-1", "ended_at": datetime(2026, 3, 1, 12, 5, tzinfo=timezone.utc),
              "status": "succeeded", "rows_read": 40, "rows_written": 38, "batches": 3, "late_rows": 2,
              "offsets_behind": 0, "batch_seconds_max": 4.2, "newest_event": "2026-03-01T12:04:00+00:00",
              "error": None}
    r = GroupFreshness("payments", timedelta(minutes=5), "5m", True, lag=timedelta(seconds=70), stream=stream)
    line = r.summary()
    assert "stream succeeded at 2026-03-01 12:05: 3 micro-batches, 40 messages, 2 late, 0 offsets behind" in line
    assert "last export" not in line and r.to_dict()["stream"]["late_rows"] == 2 and r.ok
