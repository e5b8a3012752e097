"""A DynamoDB fault proxy: a real HTTP server process on loopback in front of a DynamoDB endpoint
(dynalite), for tests that must see what featurelake does when DynamoDB throttles or stalls.

    python tests/throttle_proxy.py --target http://127.0.0.1:8000 --port 8001 \
        [--throttle-every 4] [--partial-every 3] [--max-streak 2] [--hold-after N] [--only OPERATION]

or, from a test, `with throttle_proxy.start(target, throttle_every=4) as proxy: ... proxy.url`.

Faults are decided by counting requests per operation (not by chance), so a test knows they happen:
- `--throttle-every N`: every Nth request of each operation is answered 400
  ProvisionedThroughputExceededException and not forwarded (1: every request);
- `--partial-every N`: every Nth BatchWriteItem / BatchGetItem (counting from the first) is forwarded
  with only part of its items, possibly none, and the rest come back as UnprocessedItems /
  UnprocessedKeys, as DynamoDB does when a partition is hot. The withheld items really are not
  written or read: a client that ignores them loses data;
- `--max-streak N`: one request (the same body) is refused at most N times in a row, so a client
  that retries a few times gets through (0: no limit, for a table that never recovers);
- `--only OPERATION` (repeatable): throttle and withhold only in these operations, forward the rest;
- `--hold-after N`: BatchWriteItem requests after the first N wait, unanswered, until GET
  /__release__ (then they are forwarded): an export caught in the middle of its write.

GET /__faults__ answers the counts so far: requests, throttled, partial, withheld (items),
partial:<operation>, writes_forwarded (BatchWriteItem answered by the target), held (waiting now).
Standard library only: it starts in a fraction of a second.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

THROTTLED = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
             "message": "The level of configured provisioned throughput for the table was exceeded. "
                        "Consider increasing your provisioning level with the UpdateTable API."}
BATCH_OPS = ("BatchWriteItem", "BatchGetItem")
HOLD_LIMIT_S = 600.0
"""A held request is dropped (never forwarded) after this long without a release."""


class Faults:
    """Settings, counters and the hold gate, shared by the handler threads."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.random = random.Random(args.seed)
        self.lock = threading.Lock()
        self.per_op: Counter = Counter()
        self.streaks: dict[bytes, int] = {}
        self.counts: Counter = Counter({"requests": 0, "throttled": 0, "partial": 0, "withheld": 0,
                                        "writes_forwarded": 0, "held": 0})
        self.released = threading.Event()
        self.writes_before_hold = 0

    def decide(self, operation: str, body: bytes) -> str:
        """'throttle', 'partial' or 'forward' for one request."""
        key = operation.encode() + b"\0" + body
        with self.lock:
            self.counts["requests"] += 1
            self.per_op[operation] += 1
            n = self.per_op[operation]
            streak = self.streaks.get(key, 0)
            a = self.args
            if a.max_streak and streak >= a.max_streak:
                choice = "forward"
            elif a.only and operation not in a.only:
                choice = "forward"
            elif a.throttle_every and n % a.throttle_every == 0:
                choice = "throttle"
            elif operation in BATCH_OPS and a.partial_every and n % a.partial_every == 1 % a.partial_every:
                choice = "partial"
            else:
                choice = "forward"
            if choice == "forward":
                self.streaks.pop(key, None)
            else:
                self.streaks[key] = streak + 1
                self.counts["throttled" if choice == "throttle" else "partial"] += 1
                if choice == "partial":
                    self.counts[f"partial:{operation}"] += 1
            return choice

    def hold(self, operation: str) -> bool:
        """True when this request must wait for a release (and counts it as held)."""
        if operation != "BatchWriteItem" or self.args.hold_after < 0 or self.released.is_set():
            return False
        with self.lock:
            if self.writes_before_hold < self.args.hold_after:
                self.writes_before_hold += 1
                return False
            self.counts["held"] += 1
            return True

    def keep(self, n: int) -> int:
        """How many of n items a partial answer processes: 0 to n - 1."""
        with self.lock:
            return self.random.randrange(n)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n


def split_request(operation: str, request: dict, faults: Faults) -> tuple[dict, dict]:
    """(the request with only the items to process, the Unprocessed* part to answer with)."""
    forward, unprocessed = {}, {}
    for table, part in request["RequestItems"].items():
        items = part if operation == "BatchWriteItem" else part["Keys"]
        kept = faults.keep(len(items))
        faults.count("withheld", len(items) - kept)
        if operation == "BatchWriteItem":
            if kept:
                forward[table] = items[:kept]
            unprocessed[table] = items[kept:]
        else:
            if kept:
                forward[table] = {**part, "Keys": items[:kept]}
            unprocessed[table] = {**part, "Keys": items[kept:]}
    return {**request, "RequestItems": forward}, unprocessed


def make_handler(target: str, faults: Faults) -> type:
    url = urlsplit(target)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs use it

        def log_message(self, *args: Any) -> None:  # quiet: tests read /__faults__ instead
            pass

        def _answer(self, status: int, body: bytes, request_id: str = "featurelake-test-proxy") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))
                self.send_header("x-amzn-RequestId", request_id)
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timed out, or was killed): nothing to tell it
                self.close_connection = True

        def _forward(self, body: bytes) -> tuple[int, bytes, str]:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host")}
                headers["Host"] = url.netloc
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                return resp.status, resp.read(), resp.getheader("x-amzn-RequestId", "featurelake-test-proxy")
            finally:
                conn.close()

        def do_GET(self) -> None:
            if self.path == "/__release__":
                faults.released.set()
            if self.path in ("/__faults__", "/__release__"):
                with faults.lock:
                    self._answer(200, json.dumps(faults.counts).encode())
            else:
                self._answer(404, b"{}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            if faults.hold(operation):
                released = faults.released.wait(HOLD_LIMIT_S)
                faults.count("held", -1)
                if not released:
                    self.close_connection = True
                    return
            choice = faults.decide(operation, body)
            if choice == "throttle":
                self._answer(400, json.dumps(THROTTLED).encode())
                return
            if choice == "forward":
                status, data, request_id = self._forward(body)
                if operation == "BatchWriteItem" and status == 200:
                    faults.count("writes_forwarded")
                self._answer(status, data, request_id)
                return
            forward, unprocessed = split_request(operation, json.loads(body), faults)
            answer: dict = {"Responses": {}} if operation == "BatchGetItem" else {}
            if forward["RequestItems"]:
                status, data, request_id = self._forward(json.dumps(forward).encode())
                if status != 200:
                    self._answer(status, data, request_id)
                    return
                answer = json.loads(data)
            answer["UnprocessedItems" if operation == "BatchWriteItem" else "UnprocessedKeys"] = unprocessed
            self._answer(200, json.dumps(answer).encode())

    return Handler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="DynamoDB fault proxy for tests")
    p.add_argument("--target", required=True, help="the DynamoDB endpoint to forward to")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--throttle-every", type=int, default=0)
    p.add_argument("--partial-every", type=int, default=0)
    p.add_argument("--max-streak", type=int, default=2)
    p.add_argument("--hold-after", type=int, default=-1, help="-1: never hold")
    p.add_argument("--only", action="append", default=[], help="fault only this operation (repeatable)")
    p.add_argument("--seed", type=int, default=7)
    return p


def main() -> None:
    args = parser().parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.target, Faults(args)))
    server.daemon_threads = True
    server.serve_forever()


# ---- the tests' side ----------------------------------------------------------------------------

class ProxyProcess:
    """A running proxy: .url, .faults(), .release(), .stop(); a context manager."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def faults(self) -> dict:
        return self._get("/__faults__")

    def release(self) -> dict:
        return self._get("/__release__")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "ProxyProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(target: str, *, throttle_every: int = 0, partial_every: int = 0, max_streak: int = 2,
          hold_after: int = -1, only: tuple = (), port: Optional[int] = None, timeout: float = 30.0) -> ProxyProcess:
    """Starts the proxy as its own process on a free loopback port and waits until it answers."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--target", target, "--port", str(port),
           "--throttle-every", str(throttle_every), "--partial-every", str(partial_every),
           "--max-streak", str(max_streak), "--hold-after", str(hold_after),
           *[a for op in only for a in ("--only", op)]]
    proxy = ProxyProcess(subprocess.Popen(cmd, stdin=subprocess.DEVNULL), port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            proxy.faults()
            return proxy
        except OSError:
            if proxy.proc.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"the DynamoDB fault proxy did not start on port {port} "
                                   f"(exit code {proxy.proc.returncode})") from None
            time.sleep(0.05)


if __name__ == "__main__":
    main()
