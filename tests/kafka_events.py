"""Topics and events for the streaming tests, through a real Kafka client (confluent-kafka)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def create_topic(servers: str, partitions: int = 2) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"payments_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})  # held: the future needs its handle alive
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    return topic


def produce(servers: str, topic: str, messages: list, decode: bool = True) -> list[tuple]:
    """Sends (key, text) messages in order; returns (text, partition, offset) of each, as delivered
    (the value as bytes with decode=False: binary messages, Avro)."""
    from confluent_kafka import Producer

    delivered: list = []
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "linger.ms": 5})
    for key, text in messages:
        producer.produce(topic, key=key, value=text,
                         on_delivery=lambda err, msg: delivered.append((msg.value(), msg.partition(), msg.offset())
                                                                       if err is None else err))
    assert producer.flush(30) == 0
    assert all(isinstance(d, tuple) for d in delivered), delivered
    return [(v.decode() if v is not None and decode else v, p, o) for v, p, o in delivered]


def event(customer_id: int, amount: float, at: datetime, channel: str = "web") -> tuple[str, str]:
    """A payment as the producer sends it: keyed by customer, JSON, its time in ISO 8601 UTC."""
    body = {"customer_id": customer_id, "amount": amount,
            "created_at": at.isoformat().replace("+00:00", "Z"), "channel": channel}
    return str(customer_id), json.dumps(body)


def windowed_oracle(events: list[dict], windows: dict, functions: tuple = ("sum", "count", "max")) -> "pd.DataFrame":
    """The brute-force oracle of a windowed group: per key, as of its newest event t, the newest row
    (amount, channel) and each function of amount over (t - w, t] for each window {"1h": Timedelta};
    events are one per (key, time), the later message winning."""
    import pandas as pd

    df = pd.DataFrame(events).drop_duplicates(["customer_id", "created_at"], keep="last")
    out = {}
    for cid, rows in df.groupby("customer_id"):
        t = rows["created_at"].max()
        last = rows[rows["created_at"] == t].iloc[-1]
        item = {"created_at": t, "amount": last["amount"], "channel": last["channel"]}
        for name, w in windows.items():
            inside = rows[(rows["created_at"] > t - w) & (rows["created_at"] <= t)]["amount"]
            item.update({f"amount_{f}_{name}": {"sum": inside.sum(), "count": len(inside), "max": inside.max()}[f]
                         for f in functions})
        out[int(cid)] = item
    return pd.DataFrame.from_dict(out, orient="index").sort_index()
