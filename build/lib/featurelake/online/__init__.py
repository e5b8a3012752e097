"""Online serving: `OnlineClient` reads features at inference time (boto3 and the standard library
only; importing this package never imports pyspark). The Spark side, `featurelake.online.export`,
is imported only by the jobs that export."""
from featurelake.online.client import OnlineClient

__all__ = ["OnlineClient"]
