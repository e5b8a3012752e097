"""Per-payment features of a customer, with window aggregations of the amount.

The fraud label (is_fraud) stays out on purpose: it is the training target, read from the
transactions table as the spine, never a feature.
"""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from entities import customer
from featurelake.definitions import Aggregation, Feature, FeatureGroup, JdbcSource

transactions = JdbcSource("transactions", connection="payments", table="transactions",
                          timestamp_column="created_at", watermark_column="updated_at")

def payment_features(df: DataFrame) -> DataFrame:
    """One row per payment; night is 00:00-05:59 UTC, international is any currency but BRL."""
    created = F.col("created_at").cast("timestamp")
    return df.select(
        F.col("customer_id").cast("bigint").alias("customer_id"),
        created.alias("created_at"),
        F.col("amount").cast("double").alias("amount"),
        (F.col("amount") > 1000).alias("is_large"),
        (F.col("currency") != "BRL").alias("is_international"),
        (F.hour(created) < 6).alias("is_night"),
        F.col("currency").alias("currency"),
    )


customer_txn = FeatureGroup(
    "customer_txn", entity=customer, source=transactions, timestamp_column="created_at",
    transform=payment_features,
    features=[
        Feature("amount", "double", "Amount of the payment in BRL (foreign ones converted at settlement)"),
        Feature("is_large", "boolean", "Amount above 1000 BRL"),
        Feature("is_international", "boolean", "Paid in a currency other than BRL"),
        Feature("is_night", "boolean", "Made between 00:00 and 05:59 UTC"),
        Feature("currency", "string", "ISO 4217 code of the payment"),
    ],
    aggregations=[Aggregation("amount", ["sum", "count", "avg", "max"], windows=["1d", "7d", "30d"])],
    ttl="30d", online=True, owner="risk-team", freshness_sla="2d",
    tags={"domain": "payments", "pii": "false"},
    description="What a customer has been paying: amounts, and how often large, foreign or at night",
    expectations="expectations/customer_txn.yml")
