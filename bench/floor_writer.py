"""The export floor of workload 3: the same items written by raw parallel BatchWriteItem calls,
boto3 with parameter validation off, 25 items a request, `procs` processes x `threads` threads
(so the client's Python is never the limit on 2 cores: the endpoint is).

Each process loads its share of the items (one JSON item a line) before the clock starts; the
time is from a common start signal to the last process done. Stdlib and boto3 only.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BATCH = 25


def _worker(items_path: str, share: int, procs: int, table: str, endpoint: str, threads: int,
            ready: "mp.Queue", go: "mp.Event", done: "mp.Queue") -> None:
    import boto3
    from botocore.config import Config

    with open(items_path) as f:
        items = [json.loads(line) for i, line in enumerate(f) if i % procs == share]
    batches = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
    client = boto3.session.Session().client("dynamodb", region_name="us-east-1", endpoint_url=endpoint,
                                            config=Config(parameter_validation=False,
                                                          max_pool_connections=threads + 2,
                                                          retries={"max_attempts": 10, "mode": "standard"}))
    client.describe_table(TableName=table)  # connection and credentials resolved before the clock

    def send(batch: list) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in batch]
        delay = 0.05
        while requests:
            answer = client.batch_write_item(RequestItems={table: requests})
            requests = (answer.get("UnprocessedItems") or {}).get(table) or []
            if requests:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    ready.put(len(items))
    go.wait()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, batches))
    done.put(time.monotonic())


def write(items_path: Path, table: str, endpoint: str, procs: int = 2, threads: int = 8) -> tuple[float, int]:
    """(seconds, items) for writing every item of items_path to `table`."""
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_worker, args=(str(items_path), i, procs, table, endpoint, threads, ready, go, done),
                           daemon=True) for i in range(procs)]
    for w in workers:
        w.start()
    try:
        n = sum(ready.get(timeout=300) for _ in workers)
        t0 = time.monotonic()
        go.set()
        end = max(done.get(timeout=3600) for _ in workers)
        return end - t0, n
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()


def create_table(client, table: str) -> None:
    """PAY_PER_REQUEST, partition key pk (S): featurelake's layout."""
    try:
        client.describe_table(TableName=table)
        return
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(TableName=table, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})
