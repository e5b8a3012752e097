"""Feature services: the features a model reads, asked for by name in training sets
(`features="service:fraud_model"`) and online (`client.get_features(rows, "service:fraud_model")`)."""
from featurelake.definitions import FeatureService

fraud_model = FeatureService(
    "fraud_model", features=["customer_txn:*", "merchant_risk:chargeback_rate_30d"], owner="risk-team",
    description="Features of the card-fraud model", tags={"model": "fraud"})
