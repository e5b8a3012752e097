"""featurelake: a feature store on Spark, Delta Lake and DynamoDB.

    from featurelake import FeatureStore
    store = FeatureStore.from_config("conf/local.yaml", repo="features/")
    store.apply(); store.ingest("customer_txn"); store.export("customer_txn")
    ts = store.training_set(spine_df, features=["customer_txn:*"], timestamp_column="event_ts")

Definitions (Entity, FeatureGroup, ...) live in modules of the feature repository. The online
helper, `featurelake.online.OnlineClient`, needs only boto3.
"""
from featurelake.definitions import (Aggregation, DeltaSource, Entity, Feature, FeatureGroup, FeatureService,
                                     HttpSource, JdbcSource, KafkaSource, S3Source)
from featurelake.errors import FeaturelakeError
from featurelake.ondemand import OnDemandFeature, on_demand
from featurelake.store import FeatureStore

__all__ = ["Aggregation", "DeltaSource", "Entity", "Feature", "FeatureGroup", "FeatureService", "FeatureStore",
           "FeaturelakeError", "HttpSource", "JdbcSource", "KafkaSource", "OnDemandFeature", "S3Source", "on_demand"]
__version__ = "0.1.0"
