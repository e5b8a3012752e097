"""The executor side of the export: rows -> items -> BatchWriteItem, 25 items a request, several
requests in flight per Spark task, UnprocessedItems resent with exponential backoff and jitter,
bounded. boto3, pyarrow and the standard library only (it runs in Spark's Python workers).

Requests are signed here and sent over keep-alive connections (featurelake.online.transport), not
through botocore, whose serializer, hooks and parser cost about 3x the CPU per item: 65-75 vs 21
µs per item of 10 doubles, measured against dynalite (300 requests of 25 items, one thread). That
CPU is taken from the Spark job (and, in the benchmark, from the endpoint on the same cores). A
proxy, when one applies, is reached through boto3.

Each task also checks, every few seconds, that its export still holds the group's export lease
(see featurelake.online.table): a task of an export that lost its lease stops before its next
request instead of overwriting a newer export's items.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Optional

from featurelake.errors import JobError
from featurelake.online import codec
from featurelake.online.transport import open_transport, proxied
from featurelake.retry import backoff

BATCH_WRITE_MAX = 25
MAX_MESSAGES = 20
ROWS_PER_SLICE = 500  # rows turned into Python values at once


def make_client(region: str, endpoint_url: Optional[str], *, pool: int = 10, connect_timeout: float = 2.0,
                read_timeout: float = 10.0, max_attempts: int = 3, session: Any = None,
                verify: Optional[str] = None) -> Any:
    """One low-level boto3 client: parameter validation off (we build well-formed requests, and it
    costs CPU per item), standard retries (throttling, 5xx) bounded, keep-alive connections.
    `verify`: a CA bundle (None: boto3's own, $AWS_CA_BUNDLE included)."""
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    return session.client("dynamodb", region_name=region, endpoint_url=endpoint_url, verify=verify, config=Config(
        parameter_validation=False, connect_timeout=connect_timeout, read_timeout=read_timeout,
        max_pool_connections=pool, tcp_keepalive=True, retries={"max_attempts": max_attempts, "mode": "standard"}))


_WORKER_CLIENTS: dict = {}
_WORKER_CLIENTS_LOCK = threading.Lock()


def task_transport(region: str, endpoint_url: Optional[str], *, pool: int, max_rounds: int,
                   ca_bundle: Optional[str] = None) -> Any:
    """A transport for one Spark task, to close at its end (its connections belong to the task's
    threads). The boto3 session and client behind it are the Python worker's: Spark reuses its
    workers across tasks, and building a client costs ~0.2 s of CPU. Throttling, 5xx and lost
    connections are retried `max_rounds` times with backoff."""
    import boto3

    key = (region, endpoint_url, pool, max_rounds, ca_bundle)
    with _WORKER_CLIENTS_LOCK:
        if key not in _WORKER_CLIENTS:
            session = boto3.session.Session()
            _WORKER_CLIENTS[key] = session, make_client(region, endpoint_url, pool=pool, max_attempts=max_rounds,
                                                        session=session, verify=ca_bundle)
        session, client = _WORKER_CLIENTS[key]
    return open_transport(client, session, direct=not proxied(client.meta.endpoint_url), who="export",
                          fix="configure them for every executor (docs/iam.md)",
                          connect_timeout=2.0, read_timeout=10.0, max_attempts=max_rounds, backoff_base=0.05,
                          backoff_cap=5.0)


COUNTERS = ("rows", "items", "bytes", "too_large", "not_newer")
# One row per Spark task: its counters and at most MAX_MESSAGES error messages.
COUNTERS_SCHEMA = ", ".join(f"{c} long" for c in COUNTERS) + ", messages array<string>"


def merged(counters: Iterable[Any]) -> dict:
    """The tasks' counter rows summed (the first MAX_MESSAGES messages kept)."""
    out: dict = {**{c: 0 for c in COUNTERS}, "messages": []}
    for row in counters:
        for c in COUNTERS:
            out[c] += row[c]
        out["messages"] = (out["messages"] + list(row["messages"]))[:MAX_MESSAGES]
    return out


class ItemEncoder:
    """Row (positional: keys, _event_us, _ing_us, features) -> (item, size, largest feature)."""

    def __init__(self, spec: dict):
        self.group = spec["group"]
        self.key_names = [k["name"] for k in spec["keys"]]
        self.renderers = [codec.key_renderer(k["dtype"]) for k in spec["keys"]]
        nk = len(self.key_names)
        self.event_idx, self.ing_idx = nk, nk + 1
        self.features = [(nk + 2 + i, f["name"], len(f["name"]), codec.sized_encoder(f["dtype"]))
                         for i, f in enumerate(spec["features"])]
        self.as_of = {"N": spec["as_of_ms"]} if spec.get("as_of_ms") else None
        self.ttl_us = int(spec["ttl_s"]) * 1_000_000 if spec.get("ttl_s") else None
        self.base_size = len("pk") + len(codec.EVENT_TS) + len(codec.INGESTED_TS)

    def describe_key(self, row: Any) -> str:
        return ", ".join(f"{k}={row[i]!r}" for i, k in enumerate(self.key_names))

    def __call__(self, row: Any) -> tuple[dict, int, str, int]:
        pk = codec.encode_pk([render(row[i]) for i, render in enumerate(self.renderers)])
        event_us = row[self.event_idx]
        item = {"pk": {"S": pk}, codec.EVENT_TS: {"N": codec.micros_to_ms_text(event_us)},
                codec.INGESTED_TS: {"N": codec.micros_to_ms_text(row[self.ing_idx] or 0)}}
        if self.as_of is not None:
            item[codec.AS_OF] = self.as_of
        if self.ttl_us is not None:
            item[codec.EXPIRES_AT] = {"N": str(-(-(event_us + self.ttl_us) // 1_000_000))}
        size = self.base_size + sum(codec.attribute_size(v) for v in item.values()) + (
            len(codec.AS_OF) if self.as_of else 0) + (len(codec.EXPIRES_AT) if self.ttl_us else 0)
        largest, largest_size = "", 0
        for idx, name, name_size, enc in self.features:
            value = row[idx]
            if value is None:
                continue
            item[name], s = enc(value)
            s += name_size
            size += s
            if s > largest_size:
                largest, largest_size = name, s
        return item, size, largest, largest_size


class BatchWriter:
    """BatchWriteItem with several requests in flight; flat memory (at most `concurrency` batches
    queued); UnprocessedItems resent with backoff, at most `max_rounds` times, then an error.
    `transport`: featurelake.online.transport's (it retries throttling and 5xx itself)."""

    def __init__(self, transport: Any, table: str, *, concurrency: int = 8, max_rounds: int = 10,
                 lease_token: Optional[str] = None, check_every: float = 5.0,
                 items_per_s: Optional[float] = None):
        self.transport, self.table, self.what = transport, table, f"export to {table}"
        self.max_rounds, self.lease_token, self.check_every = max_rounds, lease_token, check_every
        self.items_per_s = items_per_s
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="featurelake-export")
        self.slots = threading.BoundedSemaphore(max(1, concurrency) * 2)
        self.futures: list[Future] = []
        self.batch: list[dict] = []
        self.last_check = 0.0
        self.started = time.monotonic()
        self.sent = 0
        self.error: Optional[BaseException] = None
        self._check_lock = threading.Lock()

    def add(self, item: dict) -> None:
        self.batch.append({"PutRequest": {"Item": item}})
        if len(self.batch) == BATCH_WRITE_MAX:
            self._submit()

    def _submit(self) -> None:
        batch, self.batch = self.batch, []
        if self.items_per_s:  # a gentle rate for provisioned tables (and for tests)
            self.sent += len(batch)
            ahead = self.sent / self.items_per_s - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)
        self.slots.acquire()
        if self.error is not None:  # a batch failed: stop feeding the others
            self.slots.release()
            raise self.error
        future = self.pool.submit(self._write, batch)
        future.add_done_callback(self._done)
        self.futures.append(future)
        if len(self.futures) > 256:  # keep the list short
            self.futures = [f for f in self.futures if not f.done()]

    def _done(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None and self.error is None:
            self.error = future.exception()
        self.slots.release()

    def check_lease(self, force: bool = False) -> None:
        """Stop when this export no longer holds the group's lease (another export took over)."""
        if self.lease_token is None:
            return
        now = time.monotonic()
        if not force and now - self.last_check < self.check_every:
            return
        with self._check_lock:
            if not force and now - self.last_check < self.check_every:
                return
            answer = self.transport.call("GetItem", {"TableName": self.table, "Key": {"pk": {"S": codec.LOCK_PK}},
                                                     "ConsistentRead": True}, self.what)
            item = answer.get("Item") or {}
            if item.get("token", {}).get("S") != self.lease_token:
                raise LeaseLost(f"export to {self.table}: this export lost its lease (now held by "
                                f"{item.get('owner', {}).get('S', 'nobody')}); stopped so as not to overwrite a "
                                f"newer export: rerun the export")
            self.last_check = time.monotonic()

    def _write(self, requests: list[dict]) -> None:
        """One batch; what DynamoDB leaves unprocessed is resent with backoff, `max_rounds` times in all."""
        for attempt in range(self.max_rounds):
            if attempt:
                time.sleep(backoff(attempt, base=0.05, cap=5.0))
            self.check_lease()
            answer = self.transport.call("BatchWriteItem", {"RequestItems": {self.table: requests}}, self.what)
            requests = (answer.get("UnprocessedItems") or {}).get(self.table) or []
            if not requests:
                return
        raise JobError(f"export to {self.table}: DynamoDB left {len(requests)} items unprocessed after "
                       f"{self.max_rounds} rounds with backoff (throttled): raise the table's write capacity, "
                       f"lower online.dynamodb.write_concurrency, or rerun later")

    def close(self) -> None:
        """Sends what is left and waits for every request; raises the first failure."""
        try:
            if self.batch:
                self._submit()
            for f in self.futures:
                f.result()
            if self.error is not None:
                raise self.error
        finally:
            self.abort()

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class LeaseLost(JobError):
    """The export's lease passed to another export."""


def online_versions(transport: Any, table: str, pks: list[str], max_rounds: int = 10) -> dict:
    """pk -> (event µs, ingested µs) of the items online now; strongly consistent (the last export's
    writes must be seen), UnprocessedKeys asked again with backoff, bounded."""
    request = {"Keys": [{"pk": {"S": pk}} for pk in pks], "ConsistentRead": True,
               "ProjectionExpression": "pk, #e, #i",
               "ExpressionAttributeNames": {"#e": codec.EVENT_TS, "#i": codec.INGESTED_TS}}
    found, pending = {}, {table: request}
    for attempt in range(max_rounds):
        if attempt:
            time.sleep(backoff(attempt, base=0.05, cap=5.0))
        answer = transport.call("BatchGetItem", {"RequestItems": pending}, f"export to {table}")
        for item in answer.get("Responses", {}).get(table, []):
            found[item["pk"]["S"]] = (codec.ms_text_to_micros(item[codec.EVENT_TS]["N"]),
                                      codec.ms_text_to_micros(item.get(codec.INGESTED_TS, {}).get("N", "0")))
        pending = answer.get("UnprocessedKeys") or {}
        if not pending:
            return found
    raise JobError(f"export to {table}: could not read the items' versions after {max_rounds} rounds (throttled): "
                   f"raise the table's read capacity, or rerun the export with --full")


def write_batches(batches: Iterable[Any], spec: dict) -> Iterator[Any]:
    """mapInArrow body: the task's rows, from Arrow record batches, written as items; yields one
    row of the task's counters (COUNTERS_SCHEMA). Arrow hands the rows over column by column, for
    less CPU than one pickled Row each (against dynalite on the same cores, that CPU is taken from
    the endpoint). A batch becomes Python values ROWS_PER_SLICE rows at a time: Spark's batches
    are 10,000 rows, and 10,000 embeddings of 1,000 floats are 10M Python objects."""
    import pyarrow as pa

    rows = (row for batch in batches for start in range(0, batch.num_rows, ROWS_PER_SLICE)
            for row in zip(*(column.to_pylist() for column in batch.slice(start, ROWS_PER_SLICE).columns)))
    counters = write_partition(rows, spec)
    yield pa.RecordBatch.from_pylist([counters], schema=pa.schema(
        [(c, pa.int64()) for c in COUNTERS] + [("messages", pa.list_(pa.string()))]))


def write_partition(rows: Iterable[Any], spec: dict) -> dict:
    """Rows (positional, as ItemEncoder reads them) -> items written in batches of 25 with the
    worker's boto3 client; returns the counters. With spec["compare"], an item is written only when
    its row is newer than the key's item online."""
    encoder = ItemEncoder(spec)
    transport = task_transport(spec["region"], spec["endpoint_url"], ca_bundle=spec.get("ca_bundle"),
                               pool=spec["concurrency"] + 2,
                               max_rounds=spec["max_rounds"])
    writer = BatchWriter(transport, spec["table"], concurrency=spec["concurrency"], max_rounds=spec["max_rounds"],
                         lease_token=spec.get("lease_token"), check_every=spec.get("check_every", 5.0),
                         items_per_s=spec.get("items_per_s"))
    local = merged([])
    held: list[tuple] = []  # compare mode: (item, size, version) waiting for the online versions

    def release() -> None:
        online = online_versions(transport, spec["table"], [item["pk"]["S"] for item, _, _ in held])
        for item, size, version in held:
            current = online.get(item["pk"]["S"])
            if current is not None and current >= version:
                local["not_newer"] += 1
                continue
            writer.add(item)
            local["items"] += 1
            local["bytes"] += size
        held.clear()

    try:
        writer.check_lease(force=True)
        for row in rows:
            item, size, largest, largest_size = encoder(row)
            local["rows"] += 1
            if size > codec.MAX_ITEM_BYTES:
                local["too_large"] += 1
                if len(local["messages"]) < MAX_MESSAGES:
                    local["messages"].append(
                        f"group {encoder.group!r} key {encoder.describe_key(row)}: the item is {size:,} bytes, over "
                        f"DynamoDB's 400 KB limit; feature {largest!r} alone is {largest_size:,} bytes: make it "
                        f"smaller (fewer or float32 elements) or leave it out of the online group")
                continue
            if spec.get("compare"):
                held.append((item, size, (row[encoder.event_idx], row[encoder.ing_idx] or 0)))
                if len(held) == 100:
                    release()
                continue
            writer.add(item)
            local["items"] += 1
            local["bytes"] += size
        if held:
            release()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        transport.close()
    return local

