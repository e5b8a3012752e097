"""The demo's live stage: payments sent to Kafka while `stream` runs, and the time each takes to
be readable through OnlineClient (from the producer's send to the first read that returns it or
a newer payment of the same customer)."""
from __future__ import annotations

import json
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional

CHANNELS = ("app", "web", "pos")


@dataclass
class Live:
    """What the watcher saw: each payment's latency (s), the payments never seen, and the watched
    customer's online row each time it changed."""
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    unseen: int = 0
    changes: list[dict] = field(default_factory=list)

    def percentile(self, q: float) -> Optional[float]:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@contextmanager
def streaming(store: Any, group: str, trigger: str = "500ms", start_timeout: float = 300.0) -> Iterator[dict]:
    """`store.stream(group)` in a thread of this process, entered once its first trigger has run;
    stopped between micro-batches on exit. Yields a dict that holds the StreamResult ("result")
    after the exit, whose error, if any, is raised."""
    stop, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["result"] = store.stream(group, trigger=trigger, until=stop)
        except BaseException as exc:  # raised in the caller's thread below
            outcome["error"] = exc

    streamer = threading.Thread(target=run, name=f"stream-{group}", daemon=True)
    streamer.start()
    name, started = f"featurelake_stream_{group}", time.monotonic()
    try:
        while not any(q.name == name and q.lastProgress for q in store.spark.streams.active):
            if not streamer.is_alive() or time.monotonic() - started > start_timeout:
                raise outcome.get("error") or RuntimeError(f"the stream of {group} did not start within "
                                                           f"{start_timeout:g} s")
            time.sleep(0.5)
        yield outcome
    finally:
        stop.set()
        streamer.join()
    if "error" in outcome:
        raise outcome["error"]


def ensure_topic(servers: str, topic: str, partitions: int = 2) -> None:
    import socket

    from confluent_kafka.admin import AdminClient, NewTopic

    host, _, port = servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SystemExit(f"the Kafka broker at {servers} does not answer ({exc}): start it with "
                         f"`make services-up` (or `python scripts/services.py up kafka`)") from None

    admin = AdminClient({"bootstrap.servers": servers})
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    try:
        future.result(30)
    except Exception as exc:  # KafkaException: TOPIC_ALREADY_EXISTS on a second run is fine
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def warm_up(servers: str, topic: str, client: Any, group: str, key: int, timeout: float = 300.0) -> float:
    """One payment sent and waited for online: the process's first micro-batch pays the JVM's
    warm-up (tens of seconds here), which the steady latency should not include. -> seconds."""
    from confluent_kafka import Producer

    from featurelake.errors import NotFoundError

    at = datetime.now(timezone.utc)
    body = {"payment_id": int(time.time() * 1000) * 1000 - 1, "customer_id": key, "amount": 1.0, "channel": "app",
            "created_at": at.isoformat().replace("+00:00", "Z")}
    producer = Producer({"bootstrap.servers": servers})
    producer.produce(topic, key=str(key), value=json.dumps(body))
    producer.flush(30)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            row = client.get(group, {"customer_id": key}, with_event_time=True)
        except NotFoundError:
            row = None
        if row is not None and _instant(row["created_at"]) >= at:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"a payment sent to {topic} was not online in {group} within {timeout:g} s")


def produce(servers: str, topic: str, keys: list[int], seconds: float, rate: float,
            sent: dict[int, list[tuple[datetime, float]]], lock: threading.Lock, seed: int = 7) -> int:
    """Sends `rate` payments a second for `seconds`, each stamped now; records (created_at, sent at)
    per customer of `sent`'s keys (those the watcher reads). Returns how many were sent."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "linger.ms": 5})
    first_id = int(time.time() * 1000) * 1000  # unique across runs of the demo
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        customer = rng.choice(keys)
        at = datetime.now(timezone.utc)
        body = {"payment_id": first_id + n, "customer_id": customer, "amount": round(rng.lognormvariate(4.5, 1.0), 2),
                "channel": rng.choice(CHANNELS), "created_at": at.isoformat().replace("+00:00", "Z")}
        if customer in sent:
            with lock:
                sent[customer].append((at, time.time()))
        producer.produce(topic, key=str(customer), value=json.dumps(body))
        producer.poll(0)
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
    if producer.flush(30):
        raise RuntimeError(f"Kafka at {servers} did not take every payment within 30 s")
    return n


def watch(client: Any, group: str, keys: list[int], watched: Optional[int], seconds: float, rate: float,
          servers: str, topic: str, drain: float = 60.0, tracked: Optional[list[int]] = None,
          say: Callable[[str], None] = print) -> Live:
    """Produces to `keys` for `seconds` and reads the `tracked` customers' online rows (default
    all) every 0.2 s until each payment sent to them is seen (or `drain` s after the last send);
    prints the `watched` customer's row when it changes."""
    from featurelake.errors import NotFoundError

    live, lock = Live(), threading.Lock()
    tracked = keys if tracked is None else tracked
    sent: dict[int, list[tuple[datetime, float]]] = {k: [] for k in tracked}
    done = threading.Event()

    def send() -> None:
        try:
            live.sent = produce(servers, topic, keys, seconds, rate, sent, lock)
        finally:
            done.set()

    producer = threading.Thread(target=send, name="demo-producer", daemon=True)
    producer.start()
    last_seen: Optional[dict] = None
    deadline: Optional[float] = None
    while True:
        try:
            rows = client.get_many(group, [{"customer_id": k} for k in tracked], with_event_time=True)
        except NotFoundError:  # no micro-batch has created the online table yet
            rows = [None] * len(tracked)
        now = time.time()
        for key, row in zip(tracked, rows):
            if row is None:
                continue
            online_at = _instant(row["created_at"])
            with lock:
                pending = sent[key]
                live.latencies += [now - at_sent for at, at_sent in pending if at <= online_at]
                sent[key] = [(at, at_sent) for at, at_sent in pending if at > online_at]
            if key == watched and row != last_seen:
                last_seen = row
                live.changes.append(row)
                windows = "".join(f", {row[c]} payments for {row[s]:.2f} in the last {w}"
                                  for w, c, s in (("5m", "amount_count_5m", "amount_sum_5m"),
                                                  ("1h", "amount_count_1h", "amount_sum_1h")) if row.get(c))
                say(f"   {datetime.now(timezone.utc):%H:%M:%S} customer {key}: payment {row['payment_id']} of "
                    f"{row['amount']:.2f} via {row['channel']} (made {_instant(row['created_at']):%H:%M:%S}){windows}")
        if done.is_set():
            deadline = deadline or time.monotonic() + drain
            with lock:
                waiting = sum(len(v) for v in sent.values())
            if not waiting or time.monotonic() > deadline:
                live.unseen = waiting
                break
        time.sleep(0.2)
    producer.join()
    return live


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
