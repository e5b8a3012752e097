"""Small DynamoDB helpers for the checks: a boto3 client for the bench's dynalite, full scans,
and DynamoDB's item-size rule (what it bills as write units), independent of featurelake."""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Iterator, Optional


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("dynamodb", region_name="us-east-1", endpoint_url=endpoint,
                                          config=Config(retries={"max_attempts": 10, "mode": "standard"}))


def scan(c: Any, table: str, limit: Optional[int] = None) -> Iterator[dict]:
    n = 0
    for page in c.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            yield item
            n += 1
            if limit is not None and n >= limit:
                return


def value_size(av: dict) -> int:
    """Bytes of one attribute value by DynamoDB's sizing rules: strings and binaries their length
    in bytes, numbers about one byte per two significant digits plus one, BOOL/NULL one byte,
    lists and maps 3 bytes plus 1 per element plus the elements (and, in maps, their names)."""
    (kind, v), = av.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = Decimal(v).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + value_size(av) for name, av in item.items())


def size_stats(items: list[dict]) -> dict:
    sizes = [item_size(i) for i in items]
    if not sizes:
        return {"items": 0}
    return {"items": len(sizes), "mean_bytes": sum(sizes) / len(sizes), "max_bytes": max(sizes),
            "write_units_per_item": sum(math.ceil(s / 1024) for s in sizes) / len(sizes)}
