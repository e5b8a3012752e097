"""The direct transport's edges, against local servers on real sockets: TLS trust (a private CA,
AWS_CA_BUNDLE, ca_bundle), Host and path signed as botocore signs them, kept connections the
server closed, hostile answers, per-thread connections, local resource errors and deadlines."""
from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import zlib
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from featurelake.errors import ConfigError, FeaturelakeError
from featurelake.online.transport import DirectTransport


class Creds:
    access_key, secret_key, token = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None

    def get_frozen_credentials(self):
        return self


def answer(body, status=200, extra=b""):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nx-amz-crc32: %d\r\n%s\r\n%s"
            % (status, len(data), zlib.crc32(data), extra, data))


class Server:
    """A raw socket server: each connection (TLS-wrapped when `tls` is an SSLContext) is handed to
    `handle(conn, reader)`. `connections` counts connections, `requests` the requests read by
    `read_request`; `accepted[fileno]` is a connection's number (1, 2, ...) in the order accepted."""

    def __init__(self, handle, tls=None):
        self.handle, self.tls = handle, tls
        self.connections, self.requests, self.errors = 0, [], []
        self.accepted: dict[int, int] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted[conn.fileno()] = self.connections
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn, conn.makefile("rb") as reader:
                self.handle(self, conn, reader)
        except (OSError, ValueError) as exc:
            self.errors.append(exc)

    def read_request(self, reader):
        """One request's (head, body), or None at the end of the connection."""
        head = b"".join(iter(lambda: reader.readline(), b"\r\n"))
        if not head:
            return None
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = reader.read(length)
        self.requests.append((head, body))
        return head, body

    def close(self):
        self.sock.close()


def scripted(answers):
    """A handler answering each request with the next of `answers` on the same connection."""
    answers = list(answers)

    def handle(server, conn, reader):
        while answers and server.read_request(reader) is not None:
            conn.sendall(answers.pop(0))
    return handle


def by_connection(*answers):
    """A handler answering every request on the n-th connection accepted with `answers[n - 1]`,
    whichever connection's thread runs first."""
    def handle(server, conn, reader):
        answer = answers[server.accepted[conn.fileno()] - 1]
        while server.read_request(reader) is not None:
            conn.sendall(answer)
    return handle


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for localhost: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(1).not_valid_before(datetime(2020, 1, 1)).not_valid_after(datetime(2100, 1, 1))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(built.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def tls_server(cert, answers):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    return Server(scripted(answers), tls=context)


# ---- 1. certificates ----------------------------------------------------------------------------

def test_an_untrusted_certificate_is_one_clear_error_never_retried(cert, monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    server = tls_server(cert, [answer({"Item": {}})] * 4)
    endpoint = f"https://localhost:{server.port}"
    with pytest.raises(ConfigError, match="AWS_CA_BUNDLE") as caught:
        DirectTransport(endpoint, "us-east-1", Creds(), max_attempts=4).call("GetItem", {}, "online group 'g'")
    assert endpoint in str(caught.value) and "did not answer" not in str(caught.value)
    assert "online group 'g'" in str(caught.value) and "certificate" in str(caught.value)
    assert server.connections == 1 and server.requests == []
    server.close()


def test_the_ca_bundle_and_aws_ca_bundle_are_trusted(cert, monkeypatch):
    from featurelake.online import OnlineClient

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    server = tls_server(cert, [answer({"Item": {"n": i}}) for i in range(4)])
    endpoint = f"https://localhost:{server.port}"
    client = OnlineClient(endpoint_url=endpoint, region="us-east-1", ca_bundle=str(cert[0]))
    assert isinstance(client.transport, DirectTransport)
    assert [client.transport.call("GetItem", {}, "t")["Item"]["n"] for _ in range(2)] == [0, 1]
    client.close()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert[0]))
    client = OnlineClient(endpoint_url=endpoint, region="us-east-1")
    assert isinstance(client.transport, DirectTransport)
    assert client.transport.call("GetItem", {}, "t")["Item"]["n"] == 2
    client.close()
    server.close()


def test_a_missing_ca_bundle_names_itself(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.pem"):
        DirectTransport("https://localhost:1", "us-east-1", Creds(), verify=str(tmp_path / "nowhere.pem"))


def test_the_config_carries_ca_bundle_relative_to_the_project(tmp_path):
    from featurelake.config import Config

    config = Config(base_dir=str(tmp_path))
    assert config.ca_bundle() is None
    config.online.dynamodb.ca_bundle = "conf/ca.pem"
    assert config.ca_bundle() == str(Path(tmp_path, "conf/ca.pem").resolve())



# ---- 2. Host and path ---------------------------------------------------------------------------

def random_endpoint(rnd):
    scheme = rnd.choice(["http", "https"])
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
    host = rnd.choice([
        lambda: ".".join("".join(rnd.choice(letters) for _ in range(rnd.randint(1, 12))).strip("-") or "h"
                         for _ in range(rnd.randint(1, 4))),
        lambda: ".".join(str(rnd.randint(0, 255)) for _ in range(4)),
        lambda: rnd.choice(["[::1]", "[FE80::1]", "[2001:DB8::a:B]"]),
        lambda: rnd.choice(["DynamoDB.US-East-1.AmazonAWS.com", "LOCALHOST"]),
    ])()
    port = rnd.choice(["", ":80", ":443", f":{rnd.randint(1, 65535)}"])
    userinfo = rnd.choice(["", "", "user@", "user:secret@"])
    segments = ["prefix", "a", "B", ".", "..", "", "x-y_z", "~me", "a%20b", "c+d", "v1.2", "%7E"]
    path = rnd.choice(["", "/"]) or "/" + "/".join(rnd.choice(segments) for _ in range(rnd.randint(0, 5)))
    return f"{scheme}://{userinfo}{host}{port}{path}"


def test_host_path_and_signature_are_botocores_on_random_requests(monkeypatch):
    """What AWS checks: the same canonical request as botocore's signer, Host header included,
    over random hosts, ports, userinfo, paths, bodies, times, regions and session tokens."""
    import random

    import botocore.auth
    from botocore.awsrequest import create_request_object, prepare_request_dict
    from botocore.credentials import Credentials

    rnd = random.Random(27)
    for _ in range(300):
        endpoint, region = random_endpoint(rnd), rnd.choice(["us-east-1", "eu-west-3", "ap-southeast-2"])
        token = rnd.choice([None, "token/" + str(rnd.random())])
        target = "DynamoDB_20120810." + rnd.choice(["GetItem", "BatchGetItem", "BatchWriteItem"])
        body = json.dumps({"k": [rnd.random() for _ in range(rnd.randint(0, 20))], "s": chr(rnd.randint(32, 0x2FFF))},
                          separators=(",", ":")).encode()
        when = datetime(rnd.randint(2015, 2040), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
                        rnd.randint(0, 59), rnd.randint(0, 59))
        creds = Creds()
        creds.token = token
        mine = DirectTransport(endpoint, region, creds, verify=False)
        headers = mine._headers(target, body, stamp=when.strftime("%Y%m%dT%H%M%SZ"))
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, when=when, **k: when)
        request_dict = {"url_path": "/", "query_string": "", "method": "POST", "body": body, "context": {},
                        "headers": {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}}
        prepare_request_dict(request_dict, endpoint)
        request = create_request_object(request_dict)
        botocore.auth.SigV4Auth(Credentials(creds.access_key, creds.secret_key, token), "dynamodb", region
                                ).add_auth(request)
        assert headers["Host"] == botocore.auth._host_from_url(request.url), endpoint
        assert mine._head(target, body).startswith(f"POST {urlsplit(request.url).path} HTTP/1.1\r\n".encode())
        assert headers["Authorization"] == request.headers["Authorization"], endpoint


def test_an_endpoint_path_and_host_go_on_the_wire():
    server = Server(scripted([answer({"ok": 1})]))
    transport = DirectTransport(f"http://user@LOCALHOST:{server.port}/dynamo/prefix", "us-east-1", Creds())
    assert transport.call("GetItem", {}, "t") == {"ok": 1}
    head = server.requests[0][0].decode()
    assert head.startswith("POST /dynamo/prefix HTTP/1.1\r\n") and f"Host: localhost:{server.port}\r\n" in head
    transport.close()
    server.close()


# ---- 3. kept connections and hostile answers ---------------------------------------------------

def test_a_kept_connection_the_server_closed_is_replaced_without_spending_an_attempt():
    closed = threading.Event()

    def one_then_close(server, conn, reader):
        server.read_request(reader)
        conn.sendall(answer({"n": server.connections}))
        conn.shutdown(socket.SHUT_RDWR)  # node's keep-alive timeout, early
        closed.set()

    server = Server(one_then_close)
    transport = DirectTransport(f"http://127.0.0.1:{server.port}", "us-east-1", Creds(), max_attempts=1)
    for n in (1, 2, 3):
        closed.clear()
        assert transport.call("GetItem", {}, "t") == {"n": n}
        assert closed.wait(5)
    assert server.connections == 3 and len(server.requests) == 3
    transport.close()
    server.close()


def test_a_kept_tls_connection_the_server_closed_is_replaced(cert):
    closed = threading.Event()

    def one_then_close(server, conn, reader):
        server.read_request(reader)
        conn.sendall(answer({"n": server.connections}))
        reader.close()
        conn.close()
        closed.set()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    server = Server(one_then_close, tls=context)
    transport = DirectTransport(f"https://localhost:{server.port}", "us-east-1", Creds(), max_attempts=1,
                                verify=str(cert[0]))
    for n in (1, 2, 3):
        closed.clear()
        assert transport.call("GetItem", {}, "t") == {"n": n}
        assert closed.wait(5)
    assert server.connections == 3
    transport.close()
    server.close()


HOSTILE = {
    "non-JSON 200": (answer(b"<html>hello</html>"), 200),
    "JSON that is not an object": (answer(b"[1, 2]"), 200),
    "JSON nested past the recursion limit": (answer(b"[" * 100_000 + b"]" * 100_000), 200),
    "malformed CRC32 header": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-amz-crc32: zz\r\n\r\n{}", 200),
    "non-JSON error body": (answer(b"Bad Request", status=400), 400),
    "a proxy's HTML 403": (answer(b"<html><body>Access denied by policy</body></html>", status=403), 403),
    "a body too large to read": (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n{}", 200),
    "a negative length": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}", 200),
    "a huge chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n{}", 200),
    "a malformed chunk size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}", 200),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"Content-Length: 2\r\n\r\n{}", 200),
    "a header line too long": (b"HTTP/1.1 200 OK\r\nX-A: " + b"b" * 70_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
                               200),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_answer_is_one_featurelake_error_naming_the_endpoint_and_status(case, monkeypatch):
    from featurelake.online.transport import AnswerError

    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    raw, status = HOSTILE[case]
    server = Server(scripted([raw, answer({"ok": 1})]))
    endpoint = f"http://127.0.0.1:{server.port}"
    transport = DirectTransport(endpoint, "us-east-1", Creds(), max_attempts=3)
    with pytest.raises(AnswerError) as caught:
        transport.call("GetItem", {}, "online group 'g'")
    assert caught.value.status == status and f"HTTP {status}" in str(caught.value)
    assert endpoint in str(caught.value) and "online group 'g'" in str(caught.value)
    assert len(server.requests) == 1  # not asked again
    assert transport.call("GetItem", {}, "t") == {"ok": 1}  # and the transport still works
    transport.close()
    server.close()


def test_interim_answers_are_skipped_and_5xx_html_is_retried(monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    server = Server(scripted([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                              + answer({"a": 1}), answer(b"<html>bad gateway</html>", status=502), answer({"b": 2})]))
    transport = DirectTransport(f"http://127.0.0.1:{server.port}", "us-east-1", Creds(), max_attempts=2)
    assert transport.call("GetItem", {}, "t") == {"a": 1}
    assert transport.call("GetItem", {}, "t") == {"b": 2}
    assert len(server.requests) == 3
    transport.close()
    server.close()


def test_an_exception_inside_a_request_drops_the_connection(monkeypatch):
    """A request cut by an exception of any kind (here: a KeyboardInterrupt while the answer is
    read) must not leave its answer to be read as the next request's. Each connection has its own
    answer, so a reused connection would give the first one."""
    from featurelake.online import transport as module

    server = Server(by_connection(answer({"first": 1}), answer({"second": 2})))
    transport = DirectTransport(f"http://127.0.0.1:{server.port}", "us-east-1", Creds(), max_attempts=1)
    real = module.Connection._status_line

    def interrupted(self):
        monkeypatch.setattr(module.Connection, "_status_line", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(module.Connection, "_status_line", interrupted)
    with pytest.raises(KeyboardInterrupt):
        transport.call("GetItem", {}, "t")
    assert transport.call("GetItem", {}, "t") == {"second": 2}
    assert server.connections == 2
    transport.close()
    server.close()


# ---- 5. local resource errors ----------------------------------------------------------------

def test_running_out_of_file_descriptors_is_reported_as_this_process_problem(tmp_path):
    """In a child process with a low file limit, every descriptor taken: the error says so, and
    does not send the user to check the endpoint."""
    import subprocess
    import sys

    script = '''
import os, resource, sys
from featurelake.errors import JobError
from featurelake.online.transport import DirectTransport
class Creds:
    access_key, secret_key, token = "a", "b", None
    def get_frozen_credentials(self):
        return self
transport = DirectTransport("http://127.0.0.1:9", "us-east-1", Creds(), max_attempts=4)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:
    transport.call("GetItem", {}, "online group 'g'")
except JobError as exc:
    print(exc)
'''
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": root})
    assert "out of file descriptors" in out.stdout and "ulimit -n" in out.stdout and "EMFILE" in out.stdout, out
    assert "check that the endpoint is up" not in out.stdout


# ---- 6. a total deadline per call -----------------------------------------------------------

def slow(delays):
    """A handler answering each request after the next of `delays` seconds."""
    delays = list(delays)

    def handle(server, conn, reader):
        import time

        while server.read_request(reader) is not None:
            time.sleep(delays.pop(0) if delays else 0)
            conn.sendall(answer({"n": len(server.requests)}))
    return handle


def test_a_call_ends_at_its_deadline_and_says_how_many_attempts_it_made():
    import time

    server = Server(slow([5] * 20))
    transport = DirectTransport(f"http://127.0.0.1:{server.port}", "us-east-1", Creds(), read_timeout=0.25,
                                max_attempts=10, deadline=0.6)
    started = time.monotonic()
    with pytest.raises(FeaturelakeError, match=r"within the call's 0.6 s deadline \(\d attempts made") as caught:
        transport.call("GetItem", {}, "online group 'g'")
    took = time.monotonic() - started
    # two reads time out (2 x 0.25 s); the call gives up once the next pause would cross 0.6 s,
    # so it may end a little before the deadline, never long after it (10 attempts would be 2.5 s;
    # the margin is for a loaded machine's scheduling)
    assert 0.45 < took < 1.5, took
    attempts = int(str(caught.value).split("deadline (")[1].split()[0])
    assert 2 <= attempts <= 3 and len(server.requests) == attempts and transport.resends == attempts - 1
    transport.close()
    server.close()


def test_a_slow_answer_is_asked_again_and_counted_within_the_deadline(monkeypatch):
    from featurelake.online import OnlineClient

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = Server(slow([1.0, 0]))
    client = OnlineClient(endpoint_url=f"http://127.0.0.1:{server.port}", region="us-east-1", read_timeout=0.2,
                          deadline=2.0)
    assert client.transport.call("GetItem", {}, "t") == {"n": 2}
    assert client.resends == 1
    client.close()
    server.close()


# ---- 7. the caller's own client ------------------------------------------------------------

def test_a_callers_client_signs_with_its_own_credentials_and_keeps_its_proxies(monkeypatch):
    import boto3
    from botocore.config import Config

    from featurelake.online import OnlineClient
    from featurelake.online.transport import BotocoreTransport

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMTHECHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain")
    server = Server(scripted([answer({"Item": {}})]))
    endpoint = f"http://127.0.0.1:{server.port}"
    own = boto3.session.Session(aws_access_key_id="AKIDOFTHECLIENT", aws_secret_access_key="own",
                                region_name="eu-west-1").client("dynamodb", endpoint_url=endpoint)
    client = OnlineClient(client=own, transport="direct")
    assert isinstance(client.transport, DirectTransport)
    assert client.transport.call("GetItem", {}, "t") == {"Item": {}}
    head = server.requests[0][0].decode()
    assert "Credential=AKIDOFTHECLIENT/" in head and "/eu-west-1/dynamodb/" in head and "AKIDFROMTHECHAIN" not in head
    client.close()
    server.close()
    proxied = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1").client(
        "dynamodb", endpoint_url=endpoint, config=Config(proxies={"http": "http://proxy.example:3128"}))
    assert isinstance(OnlineClient(client=proxied, transport="direct").transport, BotocoreTransport)
