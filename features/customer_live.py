"""Payments as they happen, from the wallet's Kafka topic: the stream keeps each customer's
newest payment and its last 5 minutes and hour online within seconds (`featurelake stream
customer_live`; `make demo` stage 8 produces the events)."""
from entities import customer
from featurelake.definitions import Aggregation, Feature, FeatureGroup, KafkaSource

payment_events = KafkaSource(
    "payment_events", connection="events", topic="payments.live", timestamp_column="created_at",
    schema="payment_id bigint, customer_id bigint, amount double, channel string, created_at timestamp",
    starting_offsets="earliest")

customer_live = FeatureGroup(
    "customer_live", entity=customer, source=payment_events, timestamp_column="created_at",
    features=[
        Feature("payment_id", "bigint", "Id of the customer's newest payment"),
        Feature("amount", "double", "Amount of the customer's newest payment in BRL"),
        Feature("channel", "string", "Where it was made: app, web or pos"),
    ],
    aggregations=[Aggregation("amount", ["sum", "count", "max"], windows=["5m", "1h"])],
    ttl="30d", online=True, allowed_lateness="10m", owner="risk-team", freshness_sla="1h",
    tags={"domain": "payments", "pii": "false"},
    description="The customer's payment of a moment ago and its last 5 minutes and hour, from the payments topic",
    expectations="expectations/customer_live.yml")
