"""A customer's requests to the app's API, from the web servers' access log lines.

The log is plain text, one request a line (`2026-03-01T10:00:00.000Z customer=42 GET /pay 200 183ms`);
the source's pattern splits it into columns. Lines that do not match (a health checker's, a line cut
short by a rotation) are set aside in the rejected table; the suite bounds their share. A burst of
errors or of slow requests on /login or /pay is what a scripted attack looks like from the server.
"""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from entities import customer
from featurelake.definitions import Feature, FeatureGroup, S3Source

access_logs = S3Source(
    "access_logs", path="s3a://featurelake-demo/raw/access_logs/", format="text",
    pattern=r"(?P<ts>\S+) customer=(?P<customer_id>\d+) (?P<method>[A-Z]+) (?P<path>/\S*) "
            r"(?P<status>\d{3}) (?P<ms>\d+)ms")


def request_features(df: DataFrame) -> DataFrame:
    """Casts the pattern's string columns; the status kept as its class (2xx ... 5xx)."""
    status = F.col("status").cast("int")
    return df.select(
        F.col("customer_id").cast("bigint").alias("customer_id"),
        F.col("ts").cast("timestamp").alias("request_ts"),
        F.col("method"), F.col("path"),
        F.concat(F.substring("status", 1, 1), F.lit("xx")).alias("status_class"),
        F.col("ms").cast("double").alias("latency_ms"),
        (status >= 400).alias("is_error"),
    )


app_access = FeatureGroup(
    "app_access", entity=customer, source=access_logs, timestamp_column="request_ts",
    transform=request_features,
    features=[
        Feature("method", "string", "HTTP method of the request"),
        Feature("path", "string", "The API path requested, such as /pay or /login"),
        Feature("status_class", "string", "The answer's status class: 2xx, 3xx, 4xx or 5xx"),
        Feature("latency_ms", "double", "Time the server took to answer, in milliseconds"),
        Feature("is_error", "boolean", "The answer was a 4xx or 5xx"),
    ],
    online=False, owner="growth-team", freshness_sla="2d",
    tags={"domain": "app", "pii": "false"},
    description="A customer's requests to the app's API, one row per access log line",
    expectations="expectations/app_access.yml")
