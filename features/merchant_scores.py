"""A merchant's risk score from the partner scoring API, read page by page over HTTP.

The partner rescores every merchant daily; each run asks the API only for the scores updated
since the last one it read (`updated_since`), following its cursor from page to page. The
bearer token comes from the environment through the config's `merchant_api` connection.
"""
from entities import merchant
from featurelake.definitions import Feature, FeatureGroup, HttpSource

scores_api = HttpSource(
    "merchant_scores_api", connection="merchant_api", path="/v1/merchant-scores", params={"limit": 100},
    records="data", cursor="next_cursor", watermark_param="updated_since", watermark_column="updated_at",
    schema="merchant_id bigint, score double, band string, scored_at string, updated_at string")

merchant_scores = FeatureGroup(
    "merchant_scores", entity=merchant, source=scores_api, timestamp_column="scored_at",
    transform="""
        SELECT CAST(merchant_id AS BIGINT) AS merchant_id,
               CAST(scored_at AS TIMESTAMP) AS scored_at,
               CAST(score AS DOUBLE) AS risk_score,
               band AS risk_band,
               score >= 70 AS is_high_risk
        FROM merchant_scores_api
    """,
    features=[
        Feature("risk_score", "double", "The partner's risk score, 0 (safe) to 100"),
        Feature("risk_band", "string", "The partner's band for it: low, medium or high"),
        Feature("is_high_risk", "boolean", "A score of 70 or more"),
    ],
    ttl="3d", online=True, owner="risk-team", freshness_sla="2d",
    tags={"domain": "payments", "pii": "false"},
    description="The partner scoring API's daily risk score of each merchant",
    expectations="expectations/merchant_scores.yml")
