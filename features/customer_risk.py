"""A rule-based risk score per payment, read from customer_txn's offline table.

It shows a group built on another group: ingesting customer_txn first, then this one, reads
only the rows customer_txn added since (Delta change data feed). Its 1d and 7d maxima are the
customer's daily and weekly scores.
"""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from entities import customer
from featurelake.definitions import Aggregation, DeltaSource, Feature, FeatureGroup

customer_txn_table = DeltaSource("customer_txn_table", group="customer_txn", timestamp_column="created_at")


def risk_score(df: DataFrame) -> DataFrame:
    """A logistic score from the payment's flags; the weights mirror the fraud rates seen."""
    logit = (F.lit(-4.5) + F.log1p("amount") * 0.3 + F.col("is_large").cast("double") * 1.2
             + F.col("is_international").cast("double") * 1.0 + F.col("is_night").cast("double") * 0.8)
    score = F.round(1 / (1 + F.exp(-logit)), 4)
    return df.select(
        "customer_id", "created_at",
        score.alias("risk_score"),
        F.when(score >= 0.2, "high").when(score >= 0.05, "medium").otherwise("low").alias("risk_band"),
    )


customer_risk = FeatureGroup(
    "customer_risk", entity=customer, source=customer_txn_table, timestamp_column="created_at",
    transform=risk_score,
    features=[
        Feature("risk_score", "double", "Probability-like risk of the payment, 0 to 1"),
        Feature("risk_band", "string", "low, medium or high"),
    ],
    aggregations=[Aggregation("risk_score", ["max", "avg"], windows=["1d", "7d"])],
    ttl="30d", online=True, owner="risk-team", freshness_sla="2d",
    tags={"domain": "payments", "pii": "false"},
    description="Rule-based payment risk score and its daily and weekly maxima per customer",
    expectations="expectations/customer_risk.yml")
