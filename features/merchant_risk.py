"""A merchant's chargeback exposure, from the acquirer's daily report.

The report already counts the last 30 days, so the rate is a plain column: computing it here
from raw chargebacks would need rows older than each incremental batch.
"""
from entities import merchant
from featurelake.definitions import Feature, FeatureGroup, JdbcSource

chargeback_reports = JdbcSource("chargeback_reports", connection="payments", table="chargeback_reports",
                                timestamp_column="created_at", watermark_column="updated_at")

# Card schemes put a merchant under monitoring above about 1% of payments charged back.
merchant_risk = FeatureGroup(
    "merchant_risk", entity=merchant, source=chargeback_reports, timestamp_column="created_at",
    transform="""
        SELECT CAST(merchant_id AS BIGINT) AS merchant_id,
               CAST(created_at AS TIMESTAMP) AS created_at,
               CAST(txn_count_30d AS BIGINT) AS txn_count_30d,
               CAST(chargeback_count_30d AS BIGINT) AS chargeback_count_30d,
               chargeback_count_30d / GREATEST(txn_count_30d, 1) AS chargeback_rate_30d,
               chargeback_amount_30d / GREATEST(txn_amount_30d, 0.01) AS chargeback_amount_ratio_30d,
               chargeback_count_30d >= 3 AND chargeback_count_30d / GREATEST(txn_count_30d, 1) > 0.01
                 AS is_monitored
        FROM chargeback_reports
    """,
    features=[
        Feature("txn_count_30d", "bigint", "Payments accepted in the 30 days to the report date"),
        Feature("chargeback_count_30d", "bigint", "Chargebacks received in the same 30 days"),
        Feature("chargeback_rate_30d", "double", "Chargebacks per payment over 30 days"),
        Feature("chargeback_amount_ratio_30d", "double", "Charged-back amount per amount accepted, 30 days"),
        Feature("is_monitored", "boolean", "Above the schemes' 1% threshold with at least 3 chargebacks"),
    ],
    ttl="7d", online=True, owner="risk-team", freshness_sla="3d",
    tags={"domain": "payments", "pii": "false"},
    description="How often a merchant's payments come back as chargebacks, per the daily acquirer report",
    expectations="expectations/merchant_risk.yml")
