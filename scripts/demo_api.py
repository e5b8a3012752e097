#!/usr/bin/env python3
"""The demo's merchant scoring API: a small JSON HTTP service the `merchant_scores` group reads.

It stands for a partner's risk-scoring API. The records are those scripts/generate_data.py wrote
to the data file (read again on every request, so a newer batch shows without a restart, and
the same seed gives the same answers). GET /v1/merchant-scores answers pages of `limit` records
in (updated_at, merchant_id) order, those strictly after `updated_since` when given, as
{"data": [...], "next_cursor": "..."} (no next_cursor on the last page). Every request but
GET /health needs `Authorization: Bearer <token>`, the token taken from the environment
variable FEATURELAKE_DEMO_API_TOKEN. Stdlib only: scripts/services.py starts it in a subprocess.

    python scripts/demo_api.py --port 8088 --data .featurelake/merchant_scores.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TOKEN_ENV = "FEATURELAKE_DEMO_API_TOKEN"
PAGE_SIZE = 100


def page(records: list[dict], since: str | None, cursor: str | None, limit: int) -> dict:
    """One page of the records updated after `since`, from the offset the cursor names."""
    todo = sorted((r for r in records if since is None or r["updated_at"] > since),
                  key=lambda r: (r["updated_at"], r["merchant_id"]))
    start = int(cursor or 0)
    body: dict = {"data": todo[start:start + limit]}
    if start + limit < len(todo):
        body["next_cursor"] = str(start + limit)
    return body


def handler(data: Path, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: object) -> None:  # the log shows paths, never the token
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def reply(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urlsplit(self.path)
            if url.path == "/health":
                return self.reply(200, {"status": "ok"})
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self.reply(401, {"error": "a valid bearer token is required"})
            if url.path != "/v1/merchant-scores":
                return self.reply(404, {"error": f"no such resource {url.path}"})
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                records = json.loads(data.read_text()) if data.exists() else []
                limit = max(1, min(int(query.get("limit", PAGE_SIZE)), 1000))
                body = page(records, query.get("updated_since"), query.get("cursor"), limit)
            except ValueError as exc:
                return self.reply(400, {"error": str(exc)})
            self.reply(200, body)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="the JSON list of records generate_data.py wrote")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"error: set {TOKEN_ENV}: the token every request must bear", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((args.host, args.port), handler(Path(args.data), token))
    print(f"demo API on http://{args.host}:{args.port}, records from {args.data}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
