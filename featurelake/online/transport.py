"""How the OnlineClient talks to DynamoDB: JSON in, raw JSON out, bounded retries.

Why not just boto3: on a loopback endpoint botocore spends about 1 ms of CPU per GetItem in its
shape serializer and parser, its event hooks and urllib3, four times what the request needs.
`DirectTransport` signs requests itself (AWS Signature V4: hashlib and hmac) and keeps one
keep-alive `Connection` per thread, closed when the thread ends (a server that retires threads
must not pile up sockets until it runs out of files). boto3 is still where the credentials (the whole provider
chain, refreshed), region and endpoint come from.

Why not http.client either: it writes headers and body in two writes and reads every answer's
headers back through the email package's parser. Against dynalite, one thread, CPU a request:
GetItem 166 -> 58 µs, BatchWriteItem of 25 items of 10 doubles 426 -> 315 µs (4.4 µs an item
less for the export's writers). `Connection` writes a request in one write and reads the answer's
few headers itself.

`BotocoreTransport` runs the same requests through a boto3 client: used when the caller hands us
its own client, or when an HTTP(S) proxy applies to the endpoint (`Connection` does not do
proxies). It still skips botocore's response parsing: a `before-parse` hook keeps the raw body.

TLS is botocore's: the client's own `verify` (its `verify=`, `AWS_CA_BUNDLE`, the profile's or
featurelake's `ca_bundle`, else certifi's bundle) and `client_cert` make the SSL context, read
off the client once. A certificate that fails verification is a configuration error, raised at
once: retrying cannot fix it.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import select
import socket
import ssl
import threading
import time
import urllib.request
import weakref
import zlib
from typing import Any, Optional, Union
from urllib.parse import SplitResult, quote, urlsplit

from featurelake.errors import ConfigError, FeaturelakeError, JobError, NotFoundError, UsageError
from featurelake.retry import backoff

TARGET = "DynamoDB_20120810."
RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError", "ServiceUnavailable", "LimitExceededException",
             "TransactionInProgressException", "InternalFailure"}
LOCAL_SHORTAGES = {
    errno.EMFILE: "this process is out of file descriptors: raise `ulimit -n` or close clients it no longer "
                  "uses (OnlineClient.close())",
    errno.ENFILE: "the machine is out of file descriptors: raise fs.file-max or find the process holding them",
    errno.ENOBUFS: "the machine is out of socket buffers: fewer connections at once, or more memory",
    errno.ENOMEM: "the machine is out of memory for sockets",
}
"""Errors of this process or machine, not of the endpoint: reported as such, at once."""
_SIGNED = "content-type;host;x-amz-date;x-amz-target"
_SIGNED_TOKEN = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"


def service_error(code: str, message: str, what: str) -> FeaturelakeError:
    """A DynamoDB error answer -> a featurelake error that says what to do."""
    if code == "ResourceNotFoundException":
        return NotFoundError(f"{what}: DynamoDB says {message or 'the table does not exist'}: run "
                             f"`featurelake export GROUP` to create the online table, and check table_prefix, "
                             f"region and endpoint_url")
    if code in ("ValidationException", "SerializationException"):
        return UsageError(f"{what}: DynamoDB refused the request: {message}")
    if code in ("UnrecognizedClientException", "AccessDeniedException", "InvalidSignatureException",
                "MissingAuthenticationTokenException", "ExpiredTokenException"):
        return JobError(f"{what}: DynamoDB refused the credentials ({code}): {message}; grant the "
                        f"DynamoDB actions docs/iam.md lists on the tables")
    return JobError(f"{what}: DynamoDB error {code}: {message}")


class AnswerError(JobError):
    """DynamoDB's endpoint answered something that is not DynamoDB's: `status` keeps its HTTP status."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


def _json_object(data: bytes) -> Optional[dict]:
    """The JSON object in `data`, or None for anything else (not JSON, not an object, too deep)."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _base64(value: Any) -> str:
    """JSON for what json cannot write: binary attributes (B), which the export's items hold as
    bytes (botocore's form), travel as base64 text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


MAX_BODY = 64 << 20
"""Bytes an answer may carry: a BatchGetItem answers at most 16 MB of items, which as JSON (binary
attributes in base64) stays well under this. More is not DynamoDB: refused before it is read."""
MAX_HEADERS = 100
MAX_LINE = 65536
MAX_INTERIM = 10


class BadAnswer(ValueError):
    """An answer that breaks HTTP or the limits above: not retried (asking again gets the same)."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class Connection:
    """One keep-alive HTTP/1.1 connection to the endpoint: POST out in one write, the answer's
    status, headers and body back. A lost connection raises OSError, an unreadable answer
    BadAnswer; either way (any exception at all) the connection is closed, as a half-read answer
    would otherwise be read as the next one's."""

    def __init__(self, hostname: str, port: int, *, context: Optional[ssl.SSLContext], connect_timeout: float,
                 read_timeout: float):
        sock = socket.create_connection((hostname, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=hostname)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock, self.reader, self.read_timeout = sock, sock.makefile("rb"), read_timeout
        self._poll = select.poll()  # select.select refuses descriptors over 1023
        self._poll.register(sock, select.POLLIN)
        self.open = True
        # closed when dropped: a thread's connection goes with the thread (threading.local lets go of it)
        self._finalizer = weakref.finalize(self, _close_quietly, self.reader, sock)

    def stale(self) -> bool:
        """True when the server closed the kept connection (node's 5 s keep-alive) or sent what
        no request asked for: one poll, no wait. Over TLS a readable socket may only hold a
        session ticket, which a non-blocking read consumes."""
        if not self._poll.poll(0):
            return False
        if isinstance(self.sock, ssl.SSLSocket):
            try:
                self.sock.setblocking(False)
                self.sock.recv(1)  # b"": closed; bytes: unasked for; either way the connection goes
            except ssl.SSLWantReadError:
                return False
            except OSError:
                pass
            finally:
                if self.open:
                    self.sock.settimeout(self.read_timeout)
        return True

    def post(self, head: bytes, body: bytes) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body). A server that answers HTTP/1.0 or says
        `Connection: close` leaves the connection closed (`open` False)."""
        try:
            self.sock.sendall(head + body)
            for _ in range(MAX_INTERIM + 1):
                version, status = self._status_line()
                headers = self._headers(status)
                if not 100 <= status < 200:
                    break
            else:
                raise BadAnswer(f"more than {MAX_INTERIM} interim (1xx) answers", status)
            data = self._body(status, headers)
            if version == b"HTTP/1.0" or headers.get("connection", "").lower() == "close":
                self.close()
            return status, headers, data
        except BaseException:
            self.close()
            raise

    def _line(self, status: Optional[int]) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadAnswer(f"a header line longer than {MAX_LINE} bytes", status)
        return line

    def _status_line(self) -> tuple[bytes, int]:
        line = self._line(None)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise ConnectionError(f"not an HTTP answer: {line[:80]!r}" if line
                                  else "the endpoint closed the connection")
        return parts[0], int(parts[1])

    def _headers(self, status: int) -> dict:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line(status)
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ConnectionError("the endpoint closed the connection mid-answer")
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        raise BadAnswer(f"more than {MAX_HEADERS} headers", status)

    def _body(self, status: int, headers: dict) -> bytes:
        if status in (204, 304):
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked(status)
        if "content-length" in headers:
            length = headers["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise BadAnswer(f"a malformed Content-Length: {length[:40]!r}", status)
            if len(length) > 12 or int(length) > MAX_BODY:
                raise BadAnswer(f"a body of {length[:40]} bytes, over the {MAX_BODY >> 20} MiB limit", status)
            return self._exactly(int(length))
        data = self.reader.read(MAX_BODY + 1)  # the body runs to the end of the connection
        headers["connection"] = "close"
        if len(data) > MAX_BODY:
            raise BadAnswer(f"a body over the {MAX_BODY >> 20} MiB limit", status)
        return data

    def _exactly(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise ConnectionError(f"the endpoint closed the connection after {len(data)} of {n} bytes")
        return data

    def _chunked(self, status: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._line(status).split(b";", 1)[0].strip()
            if not size_text:
                raise ConnectionError("the endpoint closed the connection mid-answer")
            try:
                size = int(size_text, 16) if len(size_text) <= 12 else MAX_BODY + 1
            except ValueError:
                raise BadAnswer(f"a malformed chunk size: {size_text[:40]!r}", status) from None
            total += size
            if size < 0 or total > MAX_BODY:
                raise BadAnswer(f"a chunked body over the {MAX_BODY >> 20} MiB limit", status)
            if size == 0:
                for _ in range(MAX_HEADERS + 1):  # trailers
                    if self._line(status) in (b"\r\n", b"\n", b""):
                        return b"".join(chunks)
                raise BadAnswer(f"more than {MAX_HEADERS} trailers", status)
            chunks.append(self._exactly(size))
            self._exactly(2)

    def close(self) -> None:
        self.open = False
        self._finalizer()


def _close_quietly(*parts: Any) -> None:
    for part in parts:
        try:
            part.close()
        except OSError:
            pass


_CONTEXTS: dict[tuple, ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(verify: Union[bool, str, None] = True, client_cert: Union[str, tuple, None] = None) -> ssl.SSLContext:
    """The SSL context botocore would use: `verify` False skips verification, a path is the CA
    bundle, True is certifi's (botocore's default). Shared per setting: building one reads the
    bundle (milliseconds), and an export builds a transport per Spark task."""
    key = (verify, client_cert)
    context = _CONTEXTS.get(key)
    if context is None:
        from botocore.httpsession import get_cert_path

        try:
            if verify is False:
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=get_cert_path(True if verify is None else verify))
            if client_cert:
                cert, key_file = (client_cert, None) if isinstance(client_cert, str) else client_cert
                context.load_cert_chain(cert, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS settings for DynamoDB (ca_bundle {verify!r}, client_cert {client_cert!r}) "
                              f"cannot be loaded: {exc}: point AWS_CA_BUNDLE or online.dynamodb.ca_bundle at a "
                              f"readable PEM file") from None
        with _CONTEXTS_LOCK:
            context = _CONTEXTS.setdefault(key, context)
    return context


def tls_failure(exc: ssl.SSLCertVerificationError, endpoint: str, what: str) -> ConfigError:
    """A certificate the client does not trust -> the one error that says how to trust it."""
    reason = getattr(exc, "verify_message", None) or str(exc)
    return ConfigError(f"{what}: the TLS certificate of DynamoDB at {endpoint} failed verification ({reason}): "
                       f"if the endpoint (or a proxy in the way) uses your own certificate authority, set "
                       f"AWS_CA_BUNDLE or online.dynamodb.ca_bundle (OnlineClient(ca_bundle=...)) to its PEM "
                       f"bundle")


def canonical_host(url: SplitResult) -> str:
    """The Host header botocore signs: the host in lower case, IPv6 in brackets, the port only when
    it is not the scheme's default, never the userinfo."""
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if url.port is not None and url.port != {"http": 80, "https": 443}.get(url.scheme):
        host = f"{host}:{url.port}"
    return host


def _remove_dot_segments(path: str) -> str:
    """The path SigV4 signs (RFC 3986's dot segments removed, empty segments too, as AWS asks)."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts) + ("/" if path.endswith("/") and parts else "")


class DirectTransport:
    """Signed JSON requests over one keep-alive connection per thread."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any, *, connect_timeout: float = 1.0,
                 read_timeout: float = 2.0, max_attempts: int = 4, backoff_base: float = 0.025,
                 backoff_cap: float = 1.0, verify: Union[bool, str, None] = True,
                 client_cert: Union[str, tuple, None] = None, deadline: Optional[float] = None):
        """`verify`, `client_cert`: as botocore's (see tls_context). `deadline`: seconds a call may
        take in all, resends and backoff included (None: max_attempts x the timeouts bound it)."""
        url = urlsplit(endpoint_url)
        self.endpoint_url = endpoint_url
        self.https = url.scheme == "https"
        self.hostname = url.hostname or ""
        self.port = url.port or (443 if self.https else 80)
        self.host = canonical_host(url)
        self.path = url.path or "/"  # botocore posts to the endpoint's own path
        self._canonical_path = quote(_remove_dot_segments(self.path), safe="/~")
        self.region, self.credentials = region, credentials
        self.connect_timeout, self.read_timeout, self.max_attempts = connect_timeout, read_timeout, max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.deadline = deadline
        self.resends = 0
        """Requests sent again (lost connection, throttling, 5xx, timeout) since the transport was made:
        a service can export it as a metric; a growing count is the first sign of saturation."""
        self._resends_lock = threading.Lock()
        self._keys: dict[tuple, bytes] = {}
        self._ssl = tls_context(verify, client_cert) if self.https else None
        self._local = threading.local()  # each thread's Connection, closed when its thread ends
        self._conns: weakref.WeakSet[Connection] = weakref.WeakSet()  # the live ones, for close()
        self._conns_lock = threading.Lock()

    def _connection(self, left: Optional[float] = None) -> Connection:
        """This thread's connection; `left`: seconds to the call's deadline, which then bounds each wait."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.open and conn.stale():
            conn.close()  # closed by the server while kept: reconnect, no attempt spent
        if conn is None or not conn.open:
            conn = Connection(self.hostname, self.port, context=self._ssl,
                              connect_timeout=self.connect_timeout if left is None else min(self.connect_timeout, left),
                              read_timeout=self.read_timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.add(conn)
        if left is not None:
            conn.sock.settimeout(min(self.read_timeout, left))
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, "dynamodb", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one day, one secret: nothing piles up
        return key

    def _head(self, target: str, body: bytes) -> bytes:
        """The request line and headers of a signed POST of `body`."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in self._headers(target, body).items())
        return f"POST {self.path} HTTP/1.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode()

    def _headers(self, target: str, body: bytes, stamp: Optional[str] = None) -> dict:
        """SigV4 headers for a POST of `body` (stamp: YYYYMMDDTHHMMSSZ, default now)."""
        creds = self.credentials.get_frozen_credentials()
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        token = f"x-amz-security-token:{creds.token}\n" if creds.token else ""
        signed = _SIGNED_TOKEN if creds.token else _SIGNED
        canonical = (f"POST\n{self._canonical_path}\n\ncontent-type:application/x-amz-json-1.0\nhost:{self.host}\n"
                     f"x-amz-date:{stamp}\n{token}x-amz-target:{target}\n\n{signed}\n"
                     f"{hashlib.sha256(body).hexdigest()}")
        scope = f"{day}/{self.region}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(creds.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {"Host": self.host, "Content-Type": "application/x-amz-json-1.0", "X-Amz-Date": stamp,
                   "X-Amz-Target": target,
                   "Authorization": f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}"}
        if creds.token:
            headers["X-Amz-Security-Token"] = creds.token
        return headers

    def call(self, operation: str, request: dict, what: str) -> dict:
        """One DynamoDB operation; retries connection failures, throttling and 5xx with backoff,
        within the deadline when there is one."""
        body = json.dumps(request, separators=(",", ":"), default=_base64).encode()
        target = TARGET + operation
        last = ""
        end = None if self.deadline is None else time.monotonic() + self.deadline
        left: Optional[float] = None
        for attempt in range(self.max_attempts):
            if attempt:
                pause = backoff(attempt, self.backoff_base, self.backoff_cap)
                if end is not None and time.monotonic() + pause >= end:
                    raise self._late(what, attempt, last)
                time.sleep(pause)
                with self._resends_lock:
                    self.resends += 1
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise self._late(what, attempt, last)
            try:
                status, headers, data = self._connection(left).post(self._head(target, body), body)
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise tls_failure(exc, self.endpoint_url, what) from None
            except BadAnswer as exc:
                self._drop()
                raise AnswerError(f"{what}: DynamoDB at {self.endpoint_url} sent an answer that is not DynamoDB's "
                                  f"({'HTTP ' + str(exc.status) + ' with ' if exc.status else ''}{exc}): check "
                                  f"endpoint_url, and any proxy or load balancer in the way", exc.status) from None
            except OSError as exc:
                self._drop()
                if exc.errno in LOCAL_SHORTAGES:
                    raise JobError(f"{what}: no request to DynamoDB at {self.endpoint_url} could be made: "
                                   f"{LOCAL_SHORTAGES[exc.errno]} ({errno.errorcode[exc.errno]})") from None
                last = f"{type(exc).__name__}: {exc}"
                continue
            except BaseException:
                self._drop()
                raise
            answer, last = self._answer(status, headers, data, what)
            if answer is not None:
                return answer
        if end is not None and time.monotonic() >= end:
            raise self._late(what, self.max_attempts, last)
        raise JobError(f"{what}: DynamoDB at {self.endpoint_url} did not answer after {self.max_attempts} attempts "
                       f"(last: {last}): check that the endpoint is up, or raise its capacity if throttled")

    def _late(self, what: str, attempts: int, last: str) -> JobError:
        return JobError(f"{what}: DynamoDB at {self.endpoint_url} gave no answer within the call's {self.deadline:g} s "
                        f"deadline ({attempts} attempt{'s' if attempts != 1 else ''} made; last: {last or 'none'}): "
                        f"check that the endpoint is up, or raise its capacity if throttled")

    def _answer(self, status: int, headers: dict, data: bytes, what: str) -> tuple[Optional[dict], str]:
        """(the answer, "") or (None, why to ask again); raises what asking again cannot fix."""
        if status == 200:
            crc = headers.get("x-amz-crc32")
            if crc is not None:
                if not (crc.isascii() and crc.isdigit() and len(crc) <= 10):
                    raise self._unreadable(status, f"a malformed x-amz-crc32 header {crc[:40]!r}", what)
                if zlib.crc32(data) & 0xFFFFFFFF != int(crc):
                    return None, "response failed its CRC32 check"
            answer = _json_object(data)
            if answer is None:
                raise self._unreadable(status, f"a body that is not a JSON object: {data[:80]!r}", what)
            return answer, ""
        err = _json_object(data)
        if err is None:
            if status >= 500 or status == 429:
                return None, f"HTTP {status}: {data[:80]!r}"
            raise self._unreadable(status, f"a body that is not DynamoDB's JSON: {data[:80]!r}", what)
        code = str(err.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP {status}"
        message = str(err.get("message") or err.get("Message") or "")
        if code in RETRYABLE or status >= 500:
            return None, f"{code}: {message}"
        raise service_error(code, message, what)

    def _unreadable(self, status: int, detail: str, what: str) -> "AnswerError":
        return AnswerError(f"{what}: DynamoDB at {self.endpoint_url} answered HTTP {status} with {detail}: is "
                           f"something else answering there (a proxy, a load balancer, a captive portal)? check "
                           f"endpoint_url and the proxy settings", status)

    def close(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            conn.close()


class BotocoreTransport:
    """The same calls through a botocore client (its config, retries and proxies)."""

    _local = threading.local()

    def __init__(self, client: Any):
        self.client = client
        client.meta.events.register("before-parse.dynamodb", BotocoreTransport._keep_raw_body,
                                    unique_id="featurelake-raw-body")

    @staticmethod
    def _keep_raw_body(response_dict: dict, customized_response_dict: dict, **_: Any) -> None:
        if getattr(BotocoreTransport._local, "raw", False) and response_dict.get("status_code") == 200:
            customized_response_dict["_featurelake_raw"] = response_dict["body"]
            response_dict["body"] = b"{}"

    def call(self, operation: str, request: dict, what: str) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        self._local.raw = True
        try:
            parsed = self.client._make_api_call(operation, request)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise service_error(err.get("Code", "?"), err.get("Message", ""), what) from None
        except BotoCoreError as exc:
            raise JobError(f"{what}: {exc}") from None
        finally:
            self._local.raw = False
        raw = parsed.get("_featurelake_raw")
        if raw is None:
            return parsed
        answer = _json_object(raw)
        if answer is None:
            raise AnswerError(f"{what}: DynamoDB at {self.client.meta.endpoint_url} answered HTTP 200 with a body "
                              f"that is not a JSON object: {raw[:80]!r}: check endpoint_url and the proxy settings",
                              200)
        return answer

    def close(self) -> None:
        pass


def open_transport(client: Any, session: Any, *, direct: bool, who: str, fix: str = "configure them",
                   **options: Any) -> Any:
    """`client`'s endpoint, region, TLS settings and credentials (else `session`'s), with requests
    signed here (`direct`) or sent through the client itself: when a proxy applies (the client's
    own or the environment's; `Connection` does not speak to proxies), or when the client's
    credentials or TLS settings cannot be read. `options` go to DirectTransport."""
    if not direct or getattr(client.meta.config, "proxies", None) or proxied(client.meta.endpoint_url):
        return BotocoreTransport(client)
    verify = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_verify", None)
    if not isinstance(verify, (bool, str)) and client.meta.endpoint_url.startswith("https"):
        return BotocoreTransport(client)  # a botocore that keeps its TLS settings elsewhere: let it apply them
    credentials = _client_credentials(client)
    if credentials is None and session is None:
        return BotocoreTransport(client)  # whatever this client signs with, botocore knows it
    credentials = credentials or session.get_credentials()
    if credentials is None:
        raise JobError(f"{who}: no AWS credentials found (environment, ~/.aws, instance role): {fix}")
    return DirectTransport(client.meta.endpoint_url, client.meta.region_name, credentials,
                           verify=verify if isinstance(verify, (bool, str)) else True,
                           client_cert=getattr(client.meta.config, "client_cert", None), **options)



def _client_credentials(client: Any) -> Any:
    """The credentials a botocore client signs with (refreshable ones refresh as they do for it).
    botocore offers no public accessor: `_get_credentials` is read when present, else None."""
    getter = getattr(client, "_get_credentials", None)
    try:
        return getter() if callable(getter) else None
    except Exception:  # noqa: BLE001 - a botocore that changed it: fall back, never fail here
        return None


def proxied(endpoint_url: str) -> bool:
    """True when the environment routes this endpoint through a proxy."""
    url = urlsplit(endpoint_url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(url.scheme)) and not urllib.request.proxy_bypass(url.hostname or "")
