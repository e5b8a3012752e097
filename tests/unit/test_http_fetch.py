"""The HTTP page reader against a real local server (a thread on a free port), without Spark:
the Link header, basic auth, the rate limit, Retry-After as an HTTP date, a refused request."""
from __future__ import annotations

import base64
import email.utils
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from json_api import JsonHandler, start

from featurelake import HttpSource
from featurelake.config import ConnectionConfig
from featurelake.errors import JobError
from featurelake.httpread import _Api, fetch


@pytest.fixture
def server():
    seen, faults = [], []

    class Handler(JsonHandler):
        def do_GET(self):
            seen.append((time.monotonic(), self.path, self.headers.get("Authorization")))
            fault = faults.pop(0) if faults else None
            if fault == "429":
                when = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
                return self.answer(429, b"{}", {"Retry-After": when})
            if fault == "403":
                return self.answer(403, b'{"error": "forbidden"}')
            page = int(self.path.rsplit("=", 1)[1]) if "page=" in self.path else 1
            link = {"Link": f'</items?page={page + 1}>; rel="next"'} if page < 3 else {}
            self.answer(200, json.dumps([{"n": page}]).encode(), link)

    httpd = start(Handler)
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen, faults
    httpd.shutdown()


def run(url, **conn):
    source = HttpSource("items", connection="api", path="/items", next_link="Link")
    chunks: list = []
    api = _Api("api", ConnectionConfig(base_url=url, **{"retries": 3, "backoff": 0.05, "timeout": 2, **conn}))
    count = fetch(source, api, None, chunks.append)
    return count, [json.loads(line) for c in chunks for line in c.splitlines()]


def test_link_header_pages_with_basic_auth_at_the_rate_limit(server):
    url, seen, _ = server
    count, records = run(url, user="svc", password="pw-secret", rate_limit=10)
    assert count == 3 and records == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [p for _, p, _ in seen] == ["/items", "/items?page=2", "/items?page=3"]
    assert {a for _, _, a in seen} == {"Basic " + base64.b64encode(b"svc:pw-secret").decode()}
    assert seen[-1][0] - seen[0][0] >= 0.18  # 10 requests per second at most: 3 requests span 0.2 s


def test_retry_after_as_an_http_date_is_honoured(server):
    url, seen, faults = server
    faults.append("429")
    began = time.monotonic()
    assert run(url)[0] == 3
    assert time.monotonic() - began >= 1.0 and len(seen) == 4  # an HTTP date has whole seconds


def test_a_refused_request_is_not_retried_and_says_to_check_the_credentials(server):
    url, seen, faults = server
    faults.append("403")
    with pytest.raises(JobError, match="answered HTTP 403 .* check the connection's token or user and password"):
        run(url, token="t0k3n-secret")
    assert len(seen) == 1 and seen[0][2] == "Bearer t0k3n-secret"
