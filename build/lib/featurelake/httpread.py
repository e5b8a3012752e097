"""Reads an HttpSource: a JSON API fetched page by page on the driver with `requests`.

Each page's records are appended as JSON lines to a staging file in the lake
(<root>/_staging/<source>-<id>.jsonl), one page in memory at a time, and Spark reads that file:
the driver's memory stays flat in the number of records. The staging file is deleted after the
run. The API is asked only for what is new: the watermark recorded by the last successful run
(the highest `watermark_column` it read) is passed as `watermark_param`. A run that fails on any
page writes nothing and records no watermark, so the next run asks from the same one.

Requests keep to the connection's rate limit; a 429, a 5xx, a timeout or a refused connection is
retried (`retries` attempts in all) after the answer's Retry-After, or after an exponential
backoff. The token and password are sent in headers only and are redacted from every message.
"""
from __future__ import annotations

import email.utils
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urljoin

from featurelake.errors import DefinitionError, JobError
from featurelake.retry import retry
from featurelake.spark import jvm

if TYPE_CHECKING:
    import requests
    from pyspark.sql import SparkSession

    from featurelake.config import ConnectionConfig
    from featurelake.definitions import HttpSource

log = logging.getLogger("featurelake.ingest")
MAX_WAIT = 60.0
"""Seconds at most between two attempts, whatever Retry-After asks."""


class _Api:
    """One connection's session: auth, headers, rate limit, timeouts, bounded retries."""

    def __init__(self, name: str, conn: "ConnectionConfig"):
        import requests

        if not conn.base_url:
            raise DefinitionError(f"connection {name!r} has no base_url: an HttpSource needs one "
                                  f"(connections: {name}: {{base_url: https://...}})")
        self.name, self.conn = name, conn
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **{k: str(v) for k, v in conn.headers.items()}})
        if conn.token:
            self.session.headers["Authorization"] = f"Bearer {conn.token}"
        elif conn.user:
            self.session.auth = (conn.user, conn.password or "")
        self._next_at = 0.0

    def redact(self, text: str) -> str:
        for secret in (self.conn.token, self.conn.password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _pace(self) -> None:
        if self.conn.rate_limit:
            wait = self._next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._next_at = time.monotonic() + 1.0 / float(self.conn.rate_limit)

    def get(self, url: str, params: dict) -> "requests.Response":
        import requests

        attempts = max(1, int(self.conn.retries))
        where = url + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")

        def once() -> "requests.Response":
            self._pace()
            try:
                answer = self.session.get(url, params=params, timeout=self.conn.timeout)
            except requests.Timeout:
                raise _Transient(f"no answer within {self.conn.timeout:g}s (connection timeout:)") from None
            except requests.ConnectionError as exc:
                raise _Transient(f"cannot connect ({type(exc).__name__})") from None
            if answer.status_code == 429 or answer.status_code >= 500:
                raise _Transient(f"HTTP {answer.status_code}", _retry_after(answer))
            if answer.status_code >= 400:
                hint = ": check the connection's token or user and password" if answer.status_code in (401, 403) else ""
                raise JobError(self.redact(f"connection {self.name!r}: GET {where} answered HTTP {answer.status_code} "
                                           f"{answer.text[:200]!r}{hint}; nothing was written, the next run asks "
                                           f"from the same watermark"))
            return answer

        def give_up(exc: Exception) -> Exception:
            return JobError(self.redact(f"connection {self.name!r}: GET {where} failed after {attempts} attempt(s): "
                                        f"{exc}; nothing was written, the next run asks from the same watermark. "
                                        f"Check that the API is up, or raise the connection's retries/timeout"))

        def said(exc: Exception, attempt: int) -> None:
            log.warning("%s", self.redact(f"connection {self.name!r}: GET {where}: {exc}; attempt {attempt} of "
                                          f"{attempts} failed, retrying"))

        return retry(once, attempts=attempts, retryable=lambda exc: isinstance(exc, _Transient), give_up=give_up,
                     base=self.conn.backoff, cap=MAX_WAIT, wait=lambda exc: getattr(exc, "retry_after", None),
                     on_retry=said)


class _Transient(Exception):
    """A failure worth another attempt (429, 5xx, a timeout, a refused connection), with the
    server's Retry-After when it gave one."""

    def __init__(self, reason: str, retry_after: Optional[float] = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(answer: Any) -> Optional[float]:
    """Retry-After in seconds: a number of seconds, or an HTTP date."""
    value = answer.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return (email.utils.parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None


def dig(answer: Any, dotted: Optional[str]) -> Any:
    """The value at a dotted path of a JSON answer; None when a step is missing."""
    for step in (dotted.split(".") if dotted else []):
        if not isinstance(answer, dict):
            return None
        answer = answer.get(step)
    return answer


def fetch(source: "HttpSource", api: _Api, since: Optional[str], write: Callable[[bytes], None]) -> int:
    """Every page's records, as JSON lines, through write (one call per page); the number of records."""
    url = urljoin(api.conn.base_url.rstrip("/") + "/", source.path.lstrip("/"))  # type: ignore[union-attr]
    params: dict = dict(source.params)
    if since is not None and source.watermark_param:
        params[source.watermark_param] = since
    if source.page_param:
        params[source.page_param] = source.first_page
    total, seen = 0, set()
    for page in range(1, source.max_pages + 1):
        answer = api.get(url, params)
        try:
            body = answer.json()
        except ValueError:
            raise JobError(api.redact(f"source {source.name!r}: page {page} of {url} is not JSON "
                                      f"({answer.text[:120]!r}); nothing was written, the next run asks from the "
                                      f"same watermark")) from None
        records = body if source.records is None else dig(body, source.records)
        if not isinstance(records, list):
            keys = ", ".join(body) if isinstance(body, dict) else type(body).__name__
            raise JobError(api.redact(f"source {source.name!r}: page {page} of {url} has no list of records at "
                                      f"{source.records or 'its top level'!r} (found: {keys}); fix records= or the "
                                      f"API; nothing was written")) from None
        if records:
            write(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records))
            total += len(records)
        if source.next_link:
            following = (answer.links.get("next", {}).get("url") if source.next_link == "Link"
                         else dig(body, source.next_link))
            if not following:
                return total
            url, params = urljoin(answer.url, following), {}
        elif source.cursor:
            following = dig(body, source.cursor)
            if following in (None, "") or not records:
                return total
            params = {**params, source.cursor_param: following}
        elif source.page_param:
            if not records:
                return total
            params = {**params, source.page_param: params[source.page_param] + 1}
        else:
            return total
        key = (url, json.dumps(params, sort_keys=True, default=str))
        if key in seen:
            raise JobError(f"source {source.name!r}: the API sent page {page}'s next page again ({url}); "
                           f"check next_link=/cursor= of the source; nothing was written")
        seen.add(key)
    raise JobError(f"source {source.name!r}: more than max_pages={source.max_pages} pages; raise max_pages= if the "
                   f"API really has that many; nothing was written")


def stage(spark: "SparkSession", source: "HttpSource", name: str, conn: "ConnectionConfig", since: Optional[str],
          path: str) -> tuple[str, int]:
    """Fetches the new records into a staging JSON-lines file in the lake: (its path, records).
    On any failure the partial file is deleted."""
    hpath = jvm(spark).org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(hpath, True)
    api = _Api(name, conn)
    try:
        count = fetch(source, api, since, lambda chunk: out.write(bytearray(chunk)))
        out.close()
    except BaseException:
        out.close()
        fs.delete(hpath, False)
        raise
    finally:
        api.session.close()
    return path, count


def read_http(spark: "SparkSession", store: Any, source: "HttpSource", since: Optional[str],
              window: Any) -> Any:
    """The records the API has past the watermark `since` (all of them for a window, cut to it),
    as a SourceBatch whose cleanup deletes the staging file."""
    from featurelake.sources import SourceBatch, delete_path, prefilter

    since = None if window else since
    path, count = stage(spark, source, source.connection, store.config.connection(source.connection), since,
                        store.config.lake("_staging", f"{source.name}-{uuid.uuid4().hex[:12]}.jsonl"))

    def done() -> None:
        delete_path(spark, path)

    asked = f"{source.watermark_param} = {since}" if since is not None and source.watermark_param else "all records"
    if count == 0:
        done()
        return SourceBatch(None, window.text() if window else f"{asked}: nothing new", watermark=since)
    reader = spark.read
    if source.schema:
        reader = reader.schema(source.schema)
    df = reader.json(path)
    wm = source.watermark_column
    if wm and wm not in df.columns:
        done()
        raise DefinitionError(f"source {source.name!r}: watermark column {wm!r} is in no record of the API's answers "
                              f"(fields: {', '.join(df.columns)})")
    if window:
        return SourceBatch(prefilter(df, source.timestamp_column, window), window.text(), cleanup=done)
    return SourceBatch(df, asked, watermark=since, watermark_column=wm, cleanup=done)
