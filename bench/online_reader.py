"""Workload 4's reader: featurelake's OnlineClient and raw boto3, in a process of their own (no
Spark, nothing else running), so that time.process_time() is the client's CPU and nothing else.
Same protocol as feast_side.py: one JSON command a line on stdin, one JSON answer on stdout.

    {"cmd": "setup", "endpoint": URL, "table_prefix": "bench_..._"}
    {"cmd": "featurelake", "group": "profile", "requests": [[k, ...], ...]} -> {"latencies_ms", "cpu_s"}
    {"cmd": "boto3", "table": NAME, "requests": [[k, ...], ...]}            -> {"latencies_ms", "cpu_s"}
    {"cmd": "featurelake_on_demand", "group": "profile", "requests": ...}    -> {"latencies_ms", "cpu_s"}
    {"cmd": "featurelake_values" | "boto3_values", ..., "keys": [...]}      -> {"rows": {key: {...}}}
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

_OUT = sys.stdout  # main() points it at the real stdout, and stdout at stderr


class Reader:
    def setup(self, endpoint: str, table_prefix: str) -> dict:
        import boto3

        from featurelake.definitions import Feature
        from featurelake.online import OnlineClient
        from featurelake.ondemand import OnDemandFeature

        # one vectorised request-time feature over two of the profile group's fetched features
        self.on_demand = OnDemandFeature(
            lambda df: df.assign(amount_over_f0=df.amount / df.f0, f0_plus_f1=df.f0 + df.f1),
            request={"amount": "double"}, inputs=["profile:f0", "profile:f1"], name="bench_context",
            outputs=[Feature("amount_over_f0", "double"), Feature("f0_plus_f1", "double")])
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.fl = OnlineClient(table_prefix=table_prefix, region="us-east-1", endpoint_url=endpoint,
                               on_demand=[self.on_demand])
        # raw boto3 as a user would write it: the default client (keep-alive pool, standard config)
        self.raw = boto3.session.Session().client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        return {}

    def featurelake(self, group: str, requests: list) -> dict:
        """get_features(entity rows, ["group:*"]): the call a model makes, typed values back."""
        lat, refs, get = [], [f"{group}:*"], self.fl.get_features
        cpu0 = time.process_time()
        for keys in requests:
            t0 = time.perf_counter()
            get([{"customer_id": k} for k in keys], refs)
            lat.append((time.perf_counter() - t0) * 1000)
        return {"latencies_ms": lat, "cpu_s": time.process_time() - cpu0}

    def featurelake_on_demand(self, group: str, requests: list) -> dict:
        """The same call plus the request-time feature: its inputs come with the group's read, and
        the function runs in this process (pandas) on every request."""
        lat, refs, get = [], [f"{group}:*", "bench_context:*"], self.fl.get_features
        cpu0 = time.process_time()
        for keys in requests:
            t0 = time.perf_counter()
            get([{"customer_id": k} for k in keys], refs, request={"amount": 100.0})
            lat.append((time.perf_counter() - t0) * 1000)
        return {"latencies_ms": lat, "cpu_s": time.process_time() - cpu0}

    def _raw_get(self, table: str, keys: list) -> list:
        if len(keys) == 1:
            item = self.raw.get_item(TableName=table, Key={"pk": {"S": str(keys[0])}}).get("Item")
            return [item] if item else []
        items, pending = [], {table: {"Keys": [{"pk": {"S": str(k)}} for k in keys]}}
        while pending:
            answer = self.raw.batch_get_item(RequestItems=pending)
            items += answer["Responses"].get(table, [])
            pending = answer.get("UnprocessedKeys") or {}
        return items

    def boto3(self, table: str, requests: list) -> dict:
        """GetItem (1 key) or BatchGetItem (more), raw attribute values back: the floor."""
        lat, get = [], self._raw_get
        cpu0 = time.process_time()
        for keys in requests:
            t0 = time.perf_counter()
            get(table, keys)
            lat.append((time.perf_counter() - t0) * 1000)
        return {"latencies_ms": lat, "cpu_s": time.process_time() - cpu0}

    def featurelake_values(self, group: str, keys: list) -> dict:
        rows = self.fl.get_features([{"customer_id": k} for k in keys], [f"{group}:*"])
        return {"rows": {str(k): r for k, r in zip(keys, rows)}}

    def boto3_values(self, table: str, keys: list) -> dict:
        out = {}
        for item in self._raw_get(table, keys):
            out[item["pk"]["S"]] = {k: float(v["N"]) for k, v in item.items() if "N" in v}
        return {"rows": out}


def main() -> int:
    global _OUT
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed to stdout (libraries, Spark, warnings) goes to stderr
    sys.stdout = sys.stderr
    reader = Reader()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            _OUT.write(json.dumps({"ok": True}) + "\n")
            break
        try:
            answer = {"ok": True, **getattr(reader, cmd)(**request)}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        _OUT.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
