"""Topics and events for the streaming tests, through a real Kafka client (confluent-kafka)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime


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
