"""Who the customer is, from the CRM's CSV exports: one row per profile version.

A profile holds from its updated_at until the next version, so it has no ttl, and versions
are rare, so no freshness SLA. The e-mail is tagged pii and allow_online_pii stays off.
"""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from entities import customer
from featurelake.definitions import Feature, FeatureGroup, S3Source

profiles = S3Source(
    "profiles", path="s3a://featurelake-demo/raw/profiles/", format="csv",
    options={"header": "true"}, timestamp_column="updated_at",
    schema="customer_id BIGINT, email STRING, age INT, segment STRING, country STRING, "
           "signup_ts TIMESTAMP, updated_at TIMESTAMP")


def profile_features(df: DataFrame) -> DataFrame:
    """Casts every column (CSV gives strings when no schema is applied) and derives tenure."""
    updated, signup = F.col("updated_at").cast("timestamp"), F.col("signup_ts").cast("timestamp")
    return df.select(
        F.col("customer_id").cast("bigint").alias("customer_id"),
        updated.alias("updated_at"),
        F.col("age").cast("int").alias("age"),
        F.lower("segment").alias("segment"),
        F.upper("country").alias("country"),
        F.lower("email").alias("email"),
        F.lower(F.substring_index("email", "@", -1)).alias("email_domain"),
        signup.alias("signup_ts"),
        F.datediff(updated, signup).alias("tenure_days"),
    )


customer_profile = FeatureGroup(
    "customer_profile", entity=customer, source=profiles, timestamp_column="updated_at",
    transform=profile_features,
    features=[
        Feature("age", "int", "Age in years at the profile's update"),
        Feature("segment", "string", "Commercial segment: basic, gold or platinum"),
        Feature("country", "string", "ISO 3166 country of residence"),
        Feature("email", "string", "Contact e-mail", tags={"pii": "true"}),
        Feature("email_domain", "string", "Domain of the e-mail; free and disposable ones differ in risk"),
        Feature("signup_ts", "timestamp", "When the account was opened"),
        Feature("tenure_days", "int", "Days between sign-up and this profile version"),
    ],
    online=True, owner="crm-team",
    tags={"domain": "customers"},
    description="Customer demographics and account age from the CRM, versioned by update time",
    expectations="expectations/customer_profile.yml")
