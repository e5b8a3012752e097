"""The SparkSession is the caller's: featurelake's verbs run at UTC and put the caller's time zone
and settings back; what they compute does not depend on the zone the caller works in."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

REPO = '''
from featurelake import Entity, Feature, FeatureGroup, S3Source
customer = Entity("customer", join_keys=["customer_id"])
plain = FeatureGroup("plain", entity=customer, source=S3Source("files", path="s3a://bucket/none/"),
                     timestamp_column="ts", features=[Feature("v", "bigint")], online=False)
'''
ZONE = "America/Sao_Paulo"  # UTC-3: 01:00 UTC on the 2nd is still the 1st there
ARROW = "spark.sql.execution.arrow.pyspark.enabled"


def test_verbs_run_at_utc_and_leave_the_callers_session_as_it_was(make_store, spark, tmp_path):
    store = make_store({"groups.py": REPO})
    store.apply()
    before = {k: spark.conf.get(k, None) for k in ("spark.sql.session.timeZone", ARROW)}
    spark.conf.set("spark.sql.session.timeZone", ZONE)
    spark.conf.set(ARROW, "false")
    try:
        event = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
        rows = spark.createDataFrame([(1, event, 10)], "customer_id bigint, ts timestamp, v bigint")
        store.offline("plain").merge(rows, "run-tz")
        assert spark.conf.get("spark.sql.session.timeZone") == ZONE
        dates = {r[0] for r in store.read_offline("plain").select("_event_date").collect()}
        assert [str(d) for d in dates] == ["2026-03-02"]  # the UTC date, not São Paulo's 1st

        spine = pd.DataFrame({"customer_id": [1, 1], "event_ts": pd.to_datetime(
            ["2026-03-02T00:30:00Z", "2026-03-02T02:00:00Z"], utc=True)})
        ts = store.training_set(spine, ["plain:v"])
        assert spark.conf.get("spark.sql.session.timeZone") == ZONE and spark.conf.get(ARROW) == "false"
        rows = ts.to_pandas()
        assert rows["v"].tolist()[0] is pd.NA or pd.isna(rows["v"].tolist()[0])  # before the event
        assert rows["v"].tolist()[1] == 10
        assert str(rows["event_ts"].dt.tz) == "UTC" and rows["event_ts"].iloc[1] == pd.Timestamp("2026-03-02T02:00Z")
        out = ts.write(str(tmp_path / "set.csv"), format="csv")
        text = "".join(p.read_text() for p in (tmp_path / "set.csv").glob("*.csv"))
        assert "2026-03-02T02:00:00.000Z" in text, text  # written as UTC instants
        assert out and spark.conf.get("spark.sql.session.timeZone") == ZONE and spark.conf.get(ARROW) == "false"
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
