"""What window features cost a stream's micro-batch: the same events go to two topics, read by
two groups alike but for window aggregations (the second reads its batch keys' rows back from
the offline table, featurelake.streamwindows); each round sends a batch to both and runs each
stream once with --available-now (one micro-batch), alternating which goes first. Prints each
micro-batch's phases and the medians.

    PYTHONPATH=.:scripts:tests .venv/bin/python bench/stream_windows.py [--rounds 5] [--events 500] [--keys 200]

Starts its own broker and dynalite on free ports; the lake is a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

GROUPS = '''
from featurelake import Aggregation, Entity, Feature, FeatureGroup, KafkaSource

customer = Entity("customer", join_keys=["customer_id"])
SCHEMA = "customer_id bigint, amount double, created_at timestamp, channel string"
FEATURES = [Feature("amount", "double"), Feature("channel", "string")]
plain = FeatureGroup("plain", entity=customer, timestamp_column="created_at", features=FEATURES, ttl="365d",
                     source=KafkaSource("plain_src", connection="events", topic="{plain}", schema=SCHEMA))
windowed = FeatureGroup("windowed", entity=customer, timestamp_column="created_at", features=FEATURES, ttl="365d",
                        source=KafkaSource("win_src", connection="events", topic="{windowed}", schema=SCHEMA),
                        aggregations=[Aggregation("amount", ["sum", "count", "max"], windows=["1h", "1d", "7d"])])
'''


def main() -> None:
    import services
    from kafka_events import create_topic, event, produce

    from featurelake.store import FeatureStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=500, help="events per micro-batch")
    ap.add_argument("--keys", type=int, default=200)
    args = ap.parse_args()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    dynamo, kafka = services.start_dynalite(), services.start_kafka()
    try:
        root = Path(tempfile.mkdtemp(prefix="bench_stream_windows_"))
        topics = {"plain": create_topic(kafka.bootstrap_servers), "windowed": create_topic(kafka.bootstrap_servers)}
        (root / "features").mkdir()
        (root / "features" / "groups.py").write_text(GROUPS.format(**topics))
        conf = root / "conf.yaml"
        conf.write_text(f"project: bench\nstorage:\n  root: {root / 'lake'}\nspark:\n  master: local[2]\n"
                        f"monitoring:\n  statistics: false\nconnections:\n  events: {{bootstrap_servers: "
                        f"\"{kafka.bootstrap_servers}\"}}\nonline:\n  dynamodb:\n    region: us-east-1\n"
                        f"    endpoint_url: {dynamo.url}\n    table_prefix: bench_\n")
        store = FeatureStore.from_config(conf, repo=root / "features")
        store.apply()
        rnd, now = random.Random(6), datetime.now(timezone.utc)
        seconds: dict[str, list] = {"plain": [], "windowed": []}
        for i in range(args.rounds):
            messages = [event(rnd.randrange(args.keys), float(rnd.randrange(1, 100)),
                              now - timedelta(minutes=rnd.randrange(0, 14 * 24 * 60)) + timedelta(minutes=i))
                        for _ in range(args.events)]
            for topic in topics.values():
                produce(kafka.bootstrap_servers, topic, messages)
            order = ["plain", "windowed"] if i % 2 == 0 else ["windowed", "plain"]
            for name in order:
                t0 = time.monotonic()
                result = store.stream(name, available_now=True)
                took = time.monotonic() - t0
                phases = result.phase_seconds
                print(f"round {i} {name:<9} {result.rows_read} events, {result.items_written} items: micro-batch "
                      f"{sum(phases.values()):.2f}s ({', '.join(f'{k} {v:.2f}s' for k, v in phases.items())}); "
                      f"stream call {took:.1f}s", flush=True)
                if i:  # the first round warms the JVM and creates the tables
                    seconds[name].append(phases)
        for name, runs in seconds.items():
            if runs:
                total = statistics.median(sum(p.values()) for p in runs)
                online = statistics.median(p.get("online", 0.0) for p in runs)
                print(f"median {name:<9} micro-batch {total:.2f}s, of which online {online:.2f}s "
                      f"({len(runs)} rounds of {args.events} events over {args.keys} keys)")
    finally:
        kafka.stop()
        dynamo.stop()


if __name__ == "__main__":
    main()
