"""App sessions of a customer, from the mobile and web apps' nested JSON events.

Account takeover shows here before it shows in payments: failed logins, foreign IPs, short
sessions that go straight to a payment or an account change.
"""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from entities import customer
from featurelake.definitions import Aggregation, Feature, FeatureGroup, S3Source

app_events = S3Source(
    "app_events", path="s3a://featurelake-demo/raw/events/", format="json",
    schema="event_id STRING, customer STRUCT<id: BIGINT, country: STRING>, "
           "event STRUCT<type: STRING, ts: TIMESTAMP, started_at: TIMESTAMP, page_views: INT, "
           "failed_logins: INT>, device STRUCT<type: STRING, os: STRING, app_version: STRING>, "
           "geo STRUCT<ip_country: STRING>")


def session_features(df: DataFrame) -> DataFrame:
    """Flattens the nested event into one row per session, ending at event.ts."""
    ended, started = F.col("event.ts").cast("timestamp"), F.col("event.started_at").cast("timestamp")
    return df.select(
        F.col("customer.id").cast("bigint").alias("customer_id"),
        ended.alias("event_ts"),
        F.col("event.type").alias("event_type"),
        F.col("device.type").isin("mobile", "tablet").alias("is_mobile"),
        (F.unix_timestamp(ended) - F.unix_timestamp(started)).cast("double").alias("session_seconds"),
        F.col("event.page_views").cast("int").alias("page_views"),
        F.col("event.failed_logins").cast("int").alias("failed_logins"),
        (F.col("geo.ip_country") != F.col("customer.country")).alias("is_foreign_ip"),
    )


customer_sessions = FeatureGroup(
    "customer_sessions", entity=customer, source=app_events, timestamp_column="event_ts",
    transform=session_features,
    features=[
        Feature("event_type", "string", "What the session did: browse, payment or account_change"),
        Feature("is_mobile", "boolean", "From a phone or tablet"),
        Feature("session_seconds", "double", "Length of the session"),
        Feature("page_views", "int", "Screens viewed in the session"),
        Feature("failed_logins", "int", "Failed login attempts before the session started"),
        Feature("is_foreign_ip", "boolean", "IP located outside the customer's country"),
    ],
    aggregations=[Aggregation("session_seconds", ["count", "avg"], windows=["1d", "7d"]),
                  Aggregation("failed_logins", ["sum", "max"], windows=["1d", "7d"])],
    ttl="7d", online=True, owner="growth-team", freshness_sla="2d",
    tags={"domain": "app", "pii": "false"},
    description="How a customer uses the app: session length, device, failed logins, foreign IPs",
    expectations="expectations/customer_sessions.yml")
