#!/usr/bin/env python3
"""Why the online client reads one key with GetItem: one-key GetItem, one-key BatchGetItem and
boto3's get_item on the same items of 50 numbers, against dynalite on loopback, taking turns by
blocks of 1,000 reads. Prints p50, p99 and max per way. Measures, changes nothing.

    .venv/bin/python bench/probe_getitem.py
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def main(blocks: int = 6, reads: int = 1000, items: int = 2000) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    import boto3
    import services
    from bench import floor_writer
    from featurelake.online.transport import open_transport
    from featurelake.online.writer import make_client

    dyn = services.start_dynalite()
    try:
        client = make_client("us-east-1", dyn.url)
        floor_writer.create_table(client, "probe")
        transport = open_transport(client, boto3.session.Session(), direct=True, who="probe")
        rnd = random.Random(1)

        def item(i: int) -> dict:
            return {"pk": {"S": f"k{i}"}, **{f"w{j}": {"N": repr(rnd.random())} for j in range(50)}}

        for start in range(0, items, 25):
            puts = [{"PutRequest": {"Item": item(i)}} for i in range(start, start + 25)]
            transport.call("BatchWriteItem", {"RequestItems": {"probe": puts}}, "probe")
        ways = {
            "GetItem": lambda pk: transport.call("GetItem", {"TableName": "probe", "Key": {"pk": {"S": pk}}}, "probe"),
            "BatchGetItem": lambda pk: transport.call(
                "BatchGetItem", {"RequestItems": {"probe": {"Keys": [{"pk": {"S": pk}}]}}}, "probe"),
            "boto3 get_item": lambda pk: client.get_item(TableName="probe", Key={"pk": {"S": pk}}),
        }
        latencies: dict = {name: [] for name in ways}
        for block in range(blocks):
            keys = [f"k{rnd.randrange(items)}" for _ in range(reads)]
            for name in (list(ways) if block % 2 == 0 else list(ways)[::-1]):
                for pk in keys[:20]:  # warm the connection
                    ways[name](pk)
                for pk in keys:
                    t0 = time.perf_counter()
                    ways[name](pk)
                    latencies[name].append((time.perf_counter() - t0) * 1000)
        for name, ms in latencies.items():
            ms.sort()
            print(f"{name}: p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[int(0.99 * (len(ms) - 1))]:.2f} ms, "
                  f"max {ms[-1]:.2f} ms ({len(ms):,} reads)")
    finally:
        dyn.stop()


if __name__ == "__main__":
    main()
