"""HttpSource against a real local HTTP server on a free port (issue 25): next-link, cursor and
page-number pagination, the last run's watermark passed to the API, 429 with Retry-After, a 500
then success, a timeout, a malformed page, and a token that appears in no log, error, catalogue
row or plan. A failed run writes nothing and the next one asks from the same watermark."""
from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import write_config
from json_api import JsonHandler, start
from featurelake.errors import JobError

TOKEN = "tok-7f3a9c1e-very-secret"

REPO = '''
from pyspark.sql import functions as F
from featurelake import Entity, Feature, FeatureGroup, HttpSource

currency = Entity("currency", join_keys=["id"])
SCHEMA = "id bigint, updated_at string, rate double"


def cast(df):
    return df.select("id", F.to_timestamp("updated_at").alias("ts"), "rate")


def group(name, source):
    return FeatureGroup(name, entity=currency, source=source, timestamp_column="ts", transform=cast,
                        features=[Feature("rate", "double")])


linked = group("linked", HttpSource("rates_linked", connection="api", path="/rates", records="data", next_link="next",
                                    watermark_param="updated_since", watermark_column="updated_at", schema=SCHEMA))
cursored = group("cursored", HttpSource("rates_cursored", connection="api", path="/cursor", records="items.list",
                                        cursor="meta.next_cursor", watermark_param="updated_since",
                                        watermark_column="updated_at", schema=SCHEMA))
paged = group("paged", HttpSource("rates_paged", connection="api", path="/pages", page_param="page",
                                  watermark_param="updated_since", watermark_column="updated_at", schema=SCHEMA))
'''


class Api:
    """The state of the fake rates API: its records, the requests it saw, faults to play."""

    def __init__(self):
        self.records, self.seen, self.faults = [], [], []

    def add(self, *rows):
        self.records += [{"id": i, "updated_at": t, "rate": r} for i, t, r in rows]


def serve(api: Api):
    class Handler(JsonHandler):
        def do_GET(self):
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            api.seen.append((url.path, q, self.headers.get("Authorization")))
            fault = api.faults.pop(0) if api.faults else None
            if fault == "429":
                return self.answer(429, b"slow down", {"Retry-After": "1"})
            if fault == "500":
                return self.answer(500, b"oops")
            if fault == "sleep":
                time.sleep(1.5)
            if fault == "garbage":
                return self.answer(200, b"<html>not json</html>")
            if fault == "echo401":
                return self.answer(401, f"bad credentials: {self.headers.get('Authorization')}".encode())
            rows = sorted((r for r in api.records if r["updated_at"] > q.get("updated_since", "")),
                          key=lambda r: (r["updated_at"], r["id"]))
            if url.path == "/rates":
                start = int(q.get("offset", 0))
                more = start + 2 < len(rows)
                since = f"&updated_since={q['updated_since']}" if "updated_since" in q else ""
                body = {"data": rows[start:start + 2], "next": f"/rates?offset={start + 2}{since}" if more else None}
            elif url.path == "/cursor":
                start = int(q.get("cursor", "0"))
                body = {"items": {"list": rows[start:start + 2]},
                        "meta": {"next_cursor": str(start + 2) if start + 2 < len(rows) else None}}
            else:
                page = int(q["page"])
                body = rows[(page - 1) * 2:page * 2]
            self.answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    return start(Handler)


@pytest.fixture(scope="module")
def api():
    state = Api()
    server = serve(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark, api):
    from featurelake.store import FeatureStore

    os.environ["FL_TEST_API_TOKEN"] = TOKEN
    tmp = tmp_path_factory.mktemp("http")
    (tmp / "features").mkdir()
    (tmp / "features" / "groups.py").write_text(REPO)
    conf = write_config(tmp, connections=(
        "connections:\n  api: {base_url: '" + api.url + "', token: '${FL_TEST_API_TOKEN}', retries: 3, "
        "backoff: 0.1, timeout: 1, rate_limit: 50, headers: {X-Team: risk}}"))
    s = FeatureStore.from_config(conf, repo=tmp / "features", spark=spark)
    s.apply()
    return s


def rates(store, group):
    return {r.id: r.rate for r in store.read_offline(group).collect()}


def test_next_link_pages_and_the_watermark_make_each_run_read_only_what_is_new(store, api, caplog):
    caplog.set_level(logging.DEBUG)
    api.add((1, "2024-05-01T10:00:00Z", 5.0), (2, "2024-05-01T10:00:01Z", 5.1), (3, "2024-05-01T10:00:02Z", 5.2),
            (4, "2024-05-01T10:00:03Z", 5.3), (5, "2024-05-01T10:00:04Z", 5.4))
    api.seen.clear()
    first = store.ingest("linked")
    assert first.ok and (first.rows_read, first.rows_written) == (5, 5), first.summary()
    assert [q for _, q, _ in api.seen] == [{}, {"offset": "2"}, {"offset": "4"}]
    assert {auth for _, _, auth in api.seen} == {f"Bearer {TOKEN}"}
    assert first.watermark == "2024-05-01T10:00:04Z"

    api.add((1, "2024-05-01T11:00:00Z", 6.0), (6, "2024-05-01T11:00:01Z", 6.1))
    api.seen.clear()
    second = store.ingest("linked")
    assert api.seen[0][1] == {"updated_since": "2024-05-01T10:00:04Z"}  # the last run's watermark
    assert (second.rows_read, second.rows_written) == (2, 2), second.summary()
    assert rates(store, "linked")[6] == 6.1 and len(store.read_offline("linked").collect()) == 7

    third = store.ingest("linked")
    assert third.ok and third.rows_read == 0 and third.watermark == "2024-05-01T11:00:01Z"
    staging = os.path.join(store.config.root, "_staging")
    assert not os.path.exists(staging) or os.listdir(staging) == []  # staged pages are deleted

    # the token is nowhere: logs, catalogue rows (definitions and runs), the plan
    assert TOKEN not in caplog.text
    for table in ("groups", "runs"):
        assert TOKEN not in json.dumps(store.catalog.rows(table), default=str)
    assert TOKEN not in json.dumps([str(c) for c in store.plan()], default=str)


def test_cursor_pages_survive_a_429_with_retry_after_and_a_500(store, api):
    api.seen.clear()
    api.faults[:] = ["429", "500"]
    began = time.monotonic()
    result = store.ingest("cursored")
    assert result.ok and result.rows_written == 7, result.summary()
    assert time.monotonic() - began >= 1.0  # waited as Retry-After said
    assert [q for _, q, _ in api.seen][:4] == [{}, {}, {}, {"cursor": "2"}]


def test_a_malformed_page_or_a_timeout_writes_nothing_and_the_next_run_asks_from_the_same_watermark(store, api):
    api.seen.clear()
    api.faults[:] = [None, "garbage"]  # page 1 fine, page 2 is not JSON
    with pytest.raises(JobError, match="page 2 of .*/pages is not JSON") as info:
        store.ingest("paged")
    assert "nothing was written" in str(info.value)
    assert not store.offline("paged").exists() or rates(store, "paged") == {}

    api.faults[:] = ["sleep", "sleep", "sleep"]  # every attempt outlasts the 1 s timeout
    with pytest.raises(JobError, match=r"failed after 3 attempt\(s\): no answer within 1s"):
        store.ingest("paged")

    api.records[:] = [r for r in api.records if r["updated_at"] < "2024-05-01T11"]
    api.seen.clear()
    ok = store.ingest("paged")
    assert api.seen[0][1] == {"page": "1"}  # no successful run yet: no watermark
    assert ok.ok and ok.rows_written == 5 and ok.watermark == "2024-05-01T10:00:04Z"

    api.add((7, "2024-05-02T00:00:00Z", 7.0))
    api.faults[:] = ["garbage"]
    with pytest.raises(JobError):
        store.ingest("paged")
    api.seen.clear()
    store.ingest("paged")
    assert api.seen[0][1] == {"page": "1", "updated_since": "2024-05-01T10:00:04Z"}  # as before the failure
    assert rates(store, "paged")[7] == 7.0


def test_a_server_that_echoes_the_token_in_an_error_does_not_leak_it(store, api):
    api.faults[:] = ["echo401"]
    with pytest.raises(JobError, match="HTTP 401") as info:
        store.ingest("linked")
    assert TOKEN not in str(info.value) and "***" in str(info.value) and "token" in str(info.value)
    assert TOKEN not in json.dumps(store.catalog.rows("runs"), default=str)
