"""Request-time features of a payment: how it compares with the customer's recent spending and how
old the account is, computed when the payment arrives (online) and for every labelled payment of a
training set (offline) by the same function.

This module imports only featurelake: a scoring service can import it (or load
the repository) without pyspark.
"""
from featurelake import Feature, on_demand


@on_demand(request={"payment_amount": "double", "event_ts": "timestamp"},
           inputs=["customer_txn:amount_avg_30d", "customer_txn:amount_max_30d", "customer_profile:signup_ts"],
           outputs=[Feature("amount_over_avg_30d", "double", "The payment over the customer's 30-day average"),
                    Feature("amount_over_max_30d", "double", "The payment over the customer's 30-day maximum"),
                    Feature("account_age_days", "double", "Days between sign-up and the payment")],
           owner="risk-team")
def payment_context(df):
    """A payment against the customer's own history: a sudden large amount on a young account is
    the classic pattern of a stolen card."""
    return df.assign(amount_over_avg_30d=df.payment_amount / df.amount_avg_30d,
                     amount_over_max_30d=df.payment_amount / df.amount_max_30d,
                     account_age_days=(df.event_ts - df.signup_ts).dt.total_seconds() / 86400)
