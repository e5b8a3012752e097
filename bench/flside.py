"""featurelake's side of the benchmarks: a feature repository over the bench data, a config
pointing at the bench's dynalite, the FeatureStore, and the offline tables loaded (untimed).

Groups (all keyed as in the data, event time `event_ts`):
  cust, merch, pair     workload 1: 10 double features each, ttl 90d
  txn, txn2x            workload 2: `amount` with sum/count/avg/max over 1d, 7d and 30d
  profile               workloads 3 and 4: 10 double features, no ttl (exported)
  wide                  workload 4: 50 double features, no ttl (exported)
  ing_v, ing_nv         workload 5: the same ingest with and without the 10-expectation suite
  ing_bad               workload 5: a batch that must fail the suite
"""
from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from bench.data import N_FEATURES, WIDE_FEATURES, Data
from bench.scales import TTL_DAYS, Scale

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from featurelake.store import FeatureStore

WINDOWS = ["1d", "7d", "30d"]
AGG_FUNCTIONS = ["sum", "count", "avg", "max"]
AGG_FEATURES = [f"amount_{fn}_{w}" for fn in AGG_FUNCTIONS for w in WINDOWS]

SUITE = """\
# workload 5: ten expectations, as a feature repository declares them
expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {column: customer_id}
  - type: expect_column_values_to_not_be_null
    kwargs: {column: event_ts}
  - type: expect_column_values_to_not_be_null
    kwargs: {column: amount}
  - type: expect_column_values_to_be_between
    kwargs: {column: amount, min_value: 0, max_value: 100000}
  - type: expect_column_values_to_be_in_set
    kwargs: {column: currency, value_set: [BRL, USD, EUR]}
  - type: expect_column_values_to_be_in_set
    kwargs: {column: channel, value_set: [web, app, pos]}
  - type: expect_column_values_to_be_between
    kwargs: {column: n_items, min_value: 1, max_value: 50}
  - type: expect_column_mean_to_be_between
    kwargs: {column: amount, min_value: 40000, max_value: 60000}
  - type: expect_column_max_to_be_between
    kwargs: {column: amount, min_value: 0, max_value: 100000}
  - type: expect_table_row_count_to_be_between
    kwargs: {min_value: 1, max_value: 100000000}
"""
SUITE_SIZE = 10


def repo_source(data: Data, extra: Optional[Data] = None) -> str:
    """The definitions module. `extra`: the x4 data of workload 1's growth variant (groups cust4, ...)."""
    def feats(prefix: str, n: int = N_FEATURES) -> str:
        return "[" + ", ".join(f"Feature('{prefix}{i}', 'double')" for i in range(n)) + "]"

    def src(name: str, d: Data = data, dataset: Optional[str] = None) -> str:
        return f"S3Source({name!r}, path={str(d.root / (dataset or name))!r}, format='parquet')"

    text = f"""
    from featurelake import Aggregation, Entity, Feature, FeatureGroup, S3Source
    customer = Entity("customer", join_keys=["customer_id"])
    merchant = Entity("merchant", join_keys=["merchant_id"])
    pair_e = Entity("pair", join_keys=["customer_id", "merchant_id"])
    cust = FeatureGroup("cust", entity=customer, source={src('cust')}, timestamp_column="event_ts",
                        features={feats('c_f')}, ttl="{TTL_DAYS}d")
    merch = FeatureGroup("merch", entity=merchant, source={src('merch')}, timestamp_column="event_ts",
                         features={feats('m_f')}, ttl="{TTL_DAYS}d")
    pair = FeatureGroup("pair", entity=pair_e, source={src('pair')}, timestamp_column="event_ts",
                        features={feats('p_f')}, ttl="{TTL_DAYS}d")
    AGGS = [Aggregation("amount", {AGG_FUNCTIONS!r}, windows={WINDOWS!r})]
    txn = FeatureGroup("txn", entity=customer, source={src('txn')}, timestamp_column="event_ts",
                       features=[Feature("amount", "double")], aggregations=AGGS)
    txn2x = FeatureGroup("txn2x", entity=customer, source={src('txn2x')}, timestamp_column="event_ts",
                         features=[Feature("amount", "double")], aggregations=AGGS)
    profile = FeatureGroup("profile", entity=customer, source={src('profile')}, timestamp_column="event_ts",
                           features={feats('f')})
    wide = FeatureGroup("wide", entity=customer, source={src('wide')}, timestamp_column="event_ts",
                        features={feats('w', WIDE_FEATURES)})
    ING = [Feature("txn_id", "bigint"), Feature("amount", "double"), Feature("currency", "string"),
           Feature("channel", "string"), Feature("n_items", "int"), Feature("is_large", "boolean")]
    ing_v = FeatureGroup("ing_v", entity=customer, source={src('ing_v', dataset='ingest')},
                         timestamp_column="event_ts", features=ING, expectations="expectations/ingest.yml")
    ing_nv = FeatureGroup("ing_nv", entity=customer, source={src('ing_nv', dataset='ingest')},
                          timestamp_column="event_ts", features=ING)
    ing_bad = FeatureGroup("ing_bad", entity=customer, source={src('ing_bad', dataset='ingest_bad')},
                           timestamp_column="event_ts", features=ING, expectations="expectations/ingest.yml",
                           validation="quarantine")
    """
    if extra is not None:
        text += f"""
    cust4 = FeatureGroup("cust4", entity=customer, source={src('cust4', extra, 'cust')},
                         timestamp_column="event_ts", features={feats('c_f')}, ttl="{TTL_DAYS}d")
    """
    return textwrap.dedent(text)


def write_project(work: Path, data: Data, dynamodb_endpoint: Optional[str], *, extra: Optional[Data] = None,
                  table_prefix: Optional[str] = None) -> tuple[Path, Path]:
    """(config path, repo path) of a fresh featurelake project under `work`."""
    repo = work / "features"
    (repo / "expectations").mkdir(parents=True, exist_ok=True)
    (repo / "bench_groups.py").write_text(repo_source(data, extra))
    (repo / "expectations" / "ingest.yml").write_text(SUITE)
    prefix = table_prefix or f"bench_{uuid.uuid4().hex[:6]}_"
    online = (f"online:\n  dynamodb:\n    region: us-east-1\n    endpoint_url: {dynamodb_endpoint}\n"
              f"    table_prefix: {prefix}\n" if dynamodb_endpoint else "")
    conf = work / "conf.yaml"
    conf.write_text(f"project: bench\nstorage:\n  root: {work / 'lake'}\n"
                    f"spark:\n  master: local[2]\n  conf:\n    spark.sql.shuffle.partitions: 8\n"
                    f"validation:\n  on_failure: quarantine\n{online}")
    return conf, repo


def spark_session(scale: Scale) -> "SparkSession":
    """featurelake's session, built the way featurelake builds it, with the conf of issue 7
    (local[2], 8 shuffle partitions; driver memory per scale, the same on Feast's side)."""
    from featurelake.config import Config, SparkConfig
    from featurelake.spark import get_spark

    return get_spark(Config(spark=SparkConfig(master="local[2]", app_name="featurelake-bench", conf={
        "spark.sql.shuffle.partitions": "8", "spark.driver.memory": scale.driver_memory})))


def open_store(conf: Path, repo: Path, spark: "SparkSession") -> "FeatureStore":
    from featurelake.store import FeatureStore

    store = FeatureStore.from_config(conf, repo=repo, spark=spark)
    store.apply()
    return store


def load_offline(store: "FeatureStore", group: str, path: Path, run_id: Optional[str] = None) -> Optional[int]:
    """The data set's rows into the group's offline table (its first write, or a MERGE after)."""
    df = store.spark.read.parquet(str(path))
    return store.offline(group).merge(df, run_id or f"bench-load-{uuid.uuid4().hex[:8]}")
