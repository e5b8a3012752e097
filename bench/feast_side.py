"""Feast's side of the benchmarks. Runs inside bench/.venv-feast (Feast 0.67, its Spark offline
store and DynamoDB online store), never imports featurelake, and answers one JSON command per
line on stdin with one JSON line on stdout (everything else it or Spark prints goes to stderr).

    {"cmd": "setup", "dir": ..., "dynamodb_endpoint": ..., "spark_conf": {...}, "views": [...]}
    {"cmd": "hist", "spine": PATH, "refs": [...], "out": PATH}           -> {"seconds"}
    {"cmd": "materialize", "views": [...], "start": ISO, "end": ISO}      -> {"seconds", "peak_rss_*"}
    {"cmd": "materialize_incremental", "views": [...], "end": ISO}       -> {"seconds", ...}
    {"cmd": "online", "refs": [...], "key": "customer_id", "requests": [[k, ...], ...]}
                                                   -> {"latencies_ms": [...], "cpu_s": ...}
    {"cmd": "online_values", "refs": [...], "key": ..., "keys": [...]}  -> {"rows": {...}}
    {"cmd": "push_setup", "dir": ..., "dynamodb_endpoint": ..., "batch_path": PATH}
    {"cmd": "push", "events": PATH, "chunk": N}                           -> {"seconds"}
    {"cmd": "quit"}

The feature repository is built in `dir` through Feast's Python API (FeatureStore.apply), with
the feature_store.yaml of issue 7: offline store spark (local[2], 8 shuffle partitions, the
given driver memory), online store dynamodb at the bench's dynalite.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta

_OUT = sys.stdout  # main() points it at the real stdout, and stdout at stderr


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


class Peak:
    """Peak RSS of this Python process, and of it plus its children (the Spark JVM), every 50 ms."""

    def __enter__(self):
        self.py = self.total = 0
        self._sample()
        self.py_start, self.total_start = self.py, self.total
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        me = os.getpid()
        py = _rss(me)
        total, todo = py, _children(me)
        while todo:
            pid = todo.pop()
            total += _rss(pid)
            todo += _children(pid)
        self.py, self.total = max(self.py, py), max(self.total, total)

    def _loop(self):
        self._sample()
        while not self._stop.wait(0.05):
            self._sample()

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class FeastSide:
    def __init__(self):
        self.store = None
        self.views = {}

    # ---- setup ---------------------------------------------------------------------------------

    def setup(self, dir: str, dynamodb_endpoint: str, spark_conf: dict, views: list, project: str = "bench") -> dict:
        from feast import Entity, FeatureStore, FeatureView, Field, ValueType
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
        from feast.types import Float64, Int64
        import yaml

        t0 = time.perf_counter()
        os.makedirs(dir, exist_ok=True)
        config = {
            "project": project,
            "registry": os.path.join(dir, "registry.db"),
            "provider": "local",
            "offline_store": {"type": "spark", "spark_conf": spark_conf},
            "online_store": {"type": "dynamodb", "region": "us-east-1", "endpoint_url": dynamodb_endpoint},
            "entity_key_serialization_version": 3,
        }
        with open(os.path.join(dir, "feature_store.yaml"), "w") as f:
            yaml.safe_dump(config, f)
        self.store = FeatureStore(repo_path=dir)
        entities, objects = {}, []
        for v in views:
            ents = []
            for e in v["entities"]:
                if e["name"] not in entities:
                    entities[e["name"]] = Entity(name=e["name"], join_keys=e["join_keys"], value_type=ValueType.INT64)
                    objects.append(entities[e["name"]])
                ents.append(entities[e["name"]])
            source = SparkSource(name=f"{v['name']}_source", path=v["path"], file_format="parquet",
                                 timestamp_field="event_ts")
            keys = [k for e in v["entities"] for k in e["join_keys"]]
            schema = [Field(name=k, dtype=Int64) for k in keys] + [Field(name=f, dtype=Float64) for f in v["features"]]
            fv = FeatureView(name=v["name"], entities=ents, ttl=timedelta(days=v.get("ttl_days") or 0),
                             schema=schema, source=source, online=v.get("online", True))
            objects += [source, fv]
            self.views[v["name"]] = fv
        self.store.apply(objects)
        return {"seconds": time.perf_counter() - t0}

    # ---- workload 1: get_historical_features -------------------------------------------------

    def spark(self):
        from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
            get_spark_session_or_start_new_with_repoconfig)
        return get_spark_session_or_start_new_with_repoconfig(self.store.config.offline_store)

    def warm(self) -> dict:
        t0 = time.perf_counter()
        spark = self.spark()
        spark.range(10).count()
        return {"seconds": time.perf_counter() - t0, "spark": spark.version}

    def hist(self, spine: str, refs: list, out: str) -> dict:
        """The spine as a Spark DataFrame (the Spark offline store's fastest entity_df: no pandas
        upload), get_historical_features, the result written to parquet."""
        spark = self.spark()
        t0 = time.perf_counter()
        entity_df = spark.read.parquet(spine)
        job = self.store.get_historical_features(entity_df=entity_df, features=refs)
        job.to_spark_df().write.mode("overwrite").parquet(out)
        return {"seconds": time.perf_counter() - t0}

    # ---- workload 3: materialize -------------------------------------------------------------

    def materialize(self, views: list, start: str, end: str) -> dict:
        self.spark()
        with Peak() as peak:
            t0 = time.perf_counter()
            self.store.materialize(start_date=datetime.fromisoformat(start), end_date=datetime.fromisoformat(end),
                                   feature_views=views)
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "peak_rss_python": peak.py, "peak_rss_total": peak.total,
                "rss_growth_python": peak.py - peak.py_start, "rss_growth_total": peak.total - peak.total_start}

    def materialize_incremental(self, views: list, end: str) -> dict:
        self.spark()
        with Peak() as peak:
            t0 = time.perf_counter()
            self.store.materialize_incremental(end_date=datetime.fromisoformat(end), feature_views=views)
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "peak_rss_python": peak.py, "peak_rss_total": peak.total,
                "rss_growth_python": peak.py - peak.py_start, "rss_growth_total": peak.total - peak.total_start}

    # ---- workload 4: get_online_features -----------------------------------------------------

    def online(self, refs: list, key: str, requests: list) -> dict:
        """Each request: get_online_features for its entity keys, as a dict (what a model reads)."""
        lat = []
        get = self.store.get_online_features
        cpu0 = time.process_time()
        for keys in requests:
            t0 = time.perf_counter()
            get(features=refs, entity_rows=[{key: k} for k in keys]).to_dict()
            lat.append((time.perf_counter() - t0) * 1000)
        return {"latencies_ms": lat, "cpu_s": time.process_time() - cpu0}

    def online_values(self, refs: list, key: str, keys: list) -> dict:
        got = self.store.get_online_features(features=refs, entity_rows=[{key: k} for k in keys]).to_dict()
        return {"rows": got}

    def table_names(self, views: list) -> dict:
        from feast.infra.online_stores.dynamodb import _get_table_name

        cfg = self.store.config
        return {"tables": {v: _get_table_name(cfg.online_store, cfg, self.views[v]) for v in views}}

    # ---- workload 6: push ---------------------------------------------------------------------

    def push_setup(self, dir: str, dynamodb_endpoint: str, batch_path: str) -> dict:
        """A second repository for the push path: a push source over Feast's file offline store
        (whose offline_write_batch exists; the Spark store's does not) and DynamoDB online."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        import yaml
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
        from feast.types import Float64, Int64, String

        os.makedirs(dir, exist_ok=True)
        schema = pa.schema([("payment_id", pa.int64()), ("customer_id", pa.int64()), ("amount", pa.float64()),
                            ("channel", pa.string()), ("event_ts", pa.timestamp("us", tz="UTC"))])
        pq.write_table(schema.empty_table(), batch_path)
        config = {"project": "benchpush", "registry": os.path.join(dir, "registry.db"), "provider": "local",
                  "offline_store": {"type": "file"},
                  "online_store": {"type": "dynamodb", "region": "us-east-1", "endpoint_url": dynamodb_endpoint},
                  "entity_key_serialization_version": 3}
        with open(os.path.join(dir, "feature_store.yaml"), "w") as f:
            yaml.safe_dump(config, f)
        self.push_store = FeatureStore(repo_path=dir)
        customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
        batch = FileSource(name="live_batch", path=batch_path, timestamp_field="event_ts")
        push = PushSource(name="live_push", batch_source=batch)
        view = FeatureView(name="live", entities=[customer], ttl=timedelta(0), source=push, online=True,
                           schema=[Field(name="customer_id", dtype=Int64), Field(name="payment_id", dtype=Int64),
                                   Field(name="amount", dtype=Float64), Field(name="channel", dtype=String)])
        self.push_store.apply([customer, batch, push, view])
        return {}

    def push(self, events: str, chunk: int) -> dict:
        """The payments pushed in order, `chunk` at a time, to the online and the offline store."""
        import pandas as pd
        from feast.data_source import PushMode

        df = pd.read_parquet(events)
        t0 = time.perf_counter()
        for i in range(0, len(df), chunk):
            self.push_store.push("live_push", df.iloc[i:i + chunk], to=PushMode.ONLINE_AND_OFFLINE)
        return {"seconds": time.perf_counter() - t0}

    def versions(self) -> dict:
        import feast
        import pyspark
        return {"feast": feast.__version__, "pyspark": pyspark.__version__, "python": sys.version.split()[0]}


def main() -> int:
    global _OUT
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed to stdout (libraries, Spark, warnings) goes to stderr
    sys.stdout = sys.stderr
    side = FeastSide()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            _OUT.write(json.dumps({"ok": True}) + "\n")
            break
        try:
            answer = {"ok": True, **getattr(side, cmd)(**request)}
        except Exception as exc:  # the caller decides; the server keeps serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        _OUT.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
