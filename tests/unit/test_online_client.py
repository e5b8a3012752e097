"""The online item layout and the client's lean paths, without services: key encoding, values
round-tripping to the declared Python types, ttl expiry at the offline rule's boundary, request
signing as botocore's, and bounded retries (against an in-process HTTP stub)."""
from __future__ import annotations

import base64
import json
import math
import threading
import zlib
from datetime import date, datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurelake.errors import JobError, NotFoundError, UsageError
from featurelake.online import codec
from featurelake.online.client import GroupReader, OnlineClient
from featurelake.online.transport import DirectTransport
from featurelake.online.writer import BatchWriter, ItemEncoder


def wire(av):
    """An AttributeValue as botocore sends it (bytes in B) -> as DynamoDB's JSON returns it."""
    def fix(v):
        if isinstance(v, dict):
            return {k: (base64.b64encode(x).decode() if k == "B" else fix(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return json.loads(json.dumps(fix(av)))


def roundtrip(dtype, value):
    return codec.decoder(dtype)(wire(codec.encoder(dtype)(value)))


# ---- keys -------------------------------------------------------------------------------------

def test_pk_of_a_plain_key_reads_as_itself_and_special_characters_are_escaped():
    assert codec.encode_pk(["42"]) == "42"
    assert codec.encode_pk(["a|b"]) == "a%7Cb" and codec.encode_pk(["50%"]) == "50%25"
    assert codec.encode_pk(["1", "x|y"]) == "1|x%7Cy"


@given(st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), min_size=2, max_size=30, unique=True))
def test_pk_encoding_is_injective_and_never_a_reserved_item(pairs):
    pks = [codec.encode_pk(list(p)) for p in pairs]
    assert len(set(pks)) == len(pks)
    singles = [codec.encode_pk([a]) for a, _ in pairs]
    assert codec.META_PK not in pks + singles and codec.LOCK_PK not in pks + singles


def test_key_renderers_coerce_what_callers_pass():
    assert codec.key_renderer("bigint")("42") == "42" == codec.key_renderer("bigint")(42)
    assert codec.key_renderer("string")(42) == "42"
    assert codec.key_renderer("boolean")("TRUE") == "true"
    assert codec.key_renderer("date")("2024-02-29") == "2024-02-29" == codec.key_renderer("date")(date(2024, 2, 29))
    with pytest.raises(ValueError):
        codec.key_renderer("bigint")("abc")
    with pytest.raises(codec.UnsupportedType):
        codec.key_renderer("array<int>")


# ---- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, value", [
    ("double", 3.0), ("double", 0.1), ("double", -1e-300), ("double", 1.7976931348623157e308),
    ("double", 5e-324), ("double", -0.0), ("double", math.inf), ("double", -math.inf), ("float", 0.10000000149011612),
    ("bigint", 2 ** 63 - 1), ("int", -5), ("boolean", False), ("string", ""), ("string", "é€|%\n"),
    ("binary", b""), ("binary", b"\x00\xff"), ("decimal(10,2)", Decimal("12.50")), ("date", date(1969, 12, 31)),
    ("array<string>", ["a", None, ""]), ("array<bigint>", []), ("array<float>", [0.5, 0.10000000149011612]),
    ("array<double>", [1e-310, 2.0]), ("array<double>", [1.0, None]), ("map<string,int>", {"a": 1, "b": None}),
    ("map<bigint,double>", {7: 0.5}), ("struct<a:int,b:string>", {"a": 1, "b": None}),
    ("array<array<int>>", [[1], [], None]),
])
def test_values_come_back_as_the_declared_python_type(dtype, value):
    spark_value = tuple(value.values()) if dtype.startswith("struct") else value
    got = roundtrip(dtype, spark_value)
    assert got == value or (isinstance(value, float) and math.isnan(value) and math.isnan(got))
    assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)


def test_values_as_arrow_hands_them_to_the_export_encode_like_spark_rows():
    """The export's tasks read Arrow batches: maps come as (key, value) pairs, structs as dicts."""
    import pyarrow as pa

    ab = pa.struct([("a", pa.int32()), ("b", pa.string())])
    cases = [  # dtype, the value as Spark's Rows give it, its Arrow type
        ("map<string,int>", {"a": 1, "b": None}, pa.map_(pa.string(), pa.int32())),
        ("struct<a:int,b:string>", (1, None), ab),
        ("array<map<string,int>>", [{"k": 2}, None], pa.list_(pa.map_(pa.string(), pa.int32()))),
        ("map<string,struct<a:int,b:string>>", {"x": (3, "c")}, pa.map_(pa.string(), ab)),
    ]
    for dtype, row_value, arrow_type in cases:
        plain = {"struct<a:int,b:string>": {"a": 1, "b": None},
                 "map<string,struct<a:int,b:string>>": {"x": {"a": 3, "b": "c"}}}.get(dtype, row_value)
        arrow_value = pa.array([plain], type=arrow_type).to_pylist()[0]
        assert arrow_value != row_value  # not already the Row form
        encode = codec.encoder(dtype)
        assert encode(arrow_value) == encode(row_value), dtype


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 1e-130, 1e125, 5e-324]))
def test_the_exports_sized_encoder_gives_the_attribute_and_its_size(v):
    av, size = codec.sized_encoder("double")(v)
    assert av == codec.encoder("double")(v) and size == codec.attribute_size(av)
    mixed = codec.sized_encoder("array<double>")([v, None])
    assert mixed == (codec.encoder("array<double>")([v, None]), codec.attribute_size(mixed[0]))


def test_nan_round_trips_and_out_of_range_doubles_are_strings():
    assert math.isnan(roundtrip("double", math.nan))
    assert codec.encoder("double")(1e300) == {"S": "1e+300"}
    assert codec.encoder("double")(0.25) == {"N": "0.25"}


def test_float_arrays_are_packed_binary_smaller_than_lists():
    packed = codec.encoder("array<float>")([0.1] * 100)
    listed = {"L": [{"N": repr(0.10000000149011612)}] * 100}
    assert "B" in packed and codec.attribute_size(packed) < codec.attribute_size(listed)


@given(st.integers(min_value=-(2 ** 62), max_value=2 ** 62))
def test_epoch_millisecond_text_is_exact(us):
    text = codec.micros_to_ms_text(us)
    assert codec.ms_text_to_micros(text) == us
    assert codec.ms_text_to_micros(str(Decimal(text).normalize())) == us  # as DynamoDB may return it


def test_timestamps_are_utc_aware_and_ntz_naive():
    us = codec.datetime_to_micros(datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc))
    assert roundtrip("timestamp", us) == datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert roundtrip("timestamp_ntz", us) == datetime(2024, 3, 1, 12, 0, 0, 123456)
    assert roundtrip("timestamp", -1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


def test_spark_type_strings_parse():
    assert codec.parse_dtype("map<string,array<struct<a:int,b:decimal(10,2)>>>") == (
        "map", ("string",), ("array", ("struct", (("a", ("int",)), ("b", ("decimal",))))))
    assert codec.export_sql("t", "timestamp") == "unix_micros(CAST(`t` AS TIMESTAMP))"
    with pytest.raises(codec.UnsupportedType):
        codec.export_sql("t", "struct<a:timestamp>")


# ---- items ------------------------------------------------------------------------------------

SPEC = {"format": 1, "group": "g", "group_version": 1, "timestamp_column": "ts", "ttl_s": 3600, "aggregations": True,
        "keys": [{"name": "customer_id", "dtype": "bigint"}, {"name": "m", "dtype": "string"}],
        "features": [{"name": "amount", "dtype": "double"}, {"name": "tags", "dtype": "array<string>"},
                     {"name": "blob", "dtype": "binary"}]}


def test_an_item_has_bookkeeping_and_leaves_nulls_out():
    enc = ItemEncoder({**SPEC, "as_of_ms": "1700000000000.5"})
    item, size, largest, _ = enc((42, "x|y", 1_700_000_000_000_001, 1_700_000_000_000_000, 2.0, None, b"abc"))
    assert item["pk"] == {"S": "42|x%7Cy"} and item["_event_ts"] == {"N": "1700000000000.001"}
    assert item["_expires_at"] == {"N": str(1_700_000_000 + 3600 + 1)}  # rounded up: never deleted early
    assert item["_as_of"] == {"N": "1700000000000.5"} and "tags" not in item and largest == "amount"
    assert size == sum(len(k) + codec.attribute_size(v) for k, v in item.items())
    big = enc((1, "a", 0, 0, 1.0, None, bytes(500_000)))
    assert big[1] > codec.MAX_ITEM_BYTES and big[2] == "blob"


def test_a_row_past_its_ttl_reads_as_none_exactly_at_the_offline_boundary():
    reader = GroupReader("t", SPEC)
    event_us = 1_700_000_000_000_000
    item = {"pk": {"S": "1|a"}, "_event_ts": {"N": codec.micros_to_ms_text(event_us)}, "amount": {"N": "1.5"},
            "_as_of": {"N": "1700000000001"}}
    ttl = 3600 * 1_000_000
    assert reader.row(item, {"customer_id": 1, "m": "a"}, reader.features, True, event_us + ttl) == {
        "customer_id": 1, "m": "a", "amount": 1.5, "tags": None, "blob": None,
        "ts": datetime.fromtimestamp(1_700_000_000, timezone.utc),
        "_as_of": datetime.fromtimestamp(1_700_000_000.001, timezone.utc)}
    assert reader.row(item, {}, reader.features, False, event_us + ttl + 1) is None


def test_keys_are_checked_and_typed():
    reader = GroupReader("t", SPEC)
    assert reader.key({"customer_id": "7", "m": 3}) == ("7|3", {"customer_id": 7, "m": "3"})
    assert reader.key((7, "a"))[0] == "7|a"
    with pytest.raises(UsageError, match=r"lacks \['m'\]"):
        reader.key({"customer_id": 7})
    with pytest.raises(UsageError, match="key types"):
        reader.key({"customer_id": "seven", "m": "a"})
    assert reader.projection(["amount"], False) == {
        "ProjectionExpression": "#k, #e, #f0", "ExpressionAttributeNames": {"#k": "pk", "#e": "_event_ts",
                                                                            "#f0": "amount"}}


def test_clashing_feature_names_are_qualified():
    a, b = GroupReader("ta", {**SPEC, "group": "a"}), GroupReader("tb", {**SPEC, "group": "b"})
    names = OnlineClient._output_names([(a, ["amount", "tags"]), (b, ["amount", "blob"])], [{"m": 1, "blob": 2}], False)
    assert names == {("a", "amount"): "a__amount", ("a", "tags"): "tags", ("b", "amount"): "b__amount",
                     ("b", "blob"): "b__blob"}


# ---- requests ---------------------------------------------------------------------------------

class Creds:
    def __init__(self, token=None):
        self.access_key, self.secret_key, self.token = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token

    def get_frozen_credentials(self):
        return self


@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_signature_is_botocores(monkeypatch, token):
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    stamp = datetime(2024, 5, 6, 7, 8, 9)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: stamp)
    body = b'{"TableName":"t","Key":{"pk":{"S":"1"}}}'
    mine = DirectTransport("http://127.0.0.1:8000", "sa-east-1", Creds(token))._headers(
        "DynamoDB_20120810.GetItem", body, stamp="20240506T070809Z")
    request = AWSRequest("POST", "http://127.0.0.1:8000/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem"})
    signer = botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", Creds().secret_key, token), "dynamodb", "sa-east-1")
    signer.add_auth(request)
    assert mine["Authorization"] == request.headers["Authorization"]


class Stub(BaseHTTPRequestHandler):
    """Answers from a script: a list of (status, body, corrupt_crc)."""
    script: list = []
    seen: list = []

    def do_POST(self):
        self.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status, body, corrupt = self.script.pop(0) if self.script else (200, {}, False)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-crc32", str((zlib.crc32(data) + corrupt) & 0xFFFFFFFF))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Stub.script, Stub.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_throttling_and_bad_checksums_are_retried_then_answered(stub, monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message": "slow"}
    Stub.script = [(400, throttled, False), (200, {"Item": {}}, True), (200, {"Item": {"pk": {"S": "1"}}}, False)]
    transport = DirectTransport(stub, "us-east-1", Creds(), max_attempts=4)
    assert transport.call("GetItem", {"TableName": "t"}, "test") == {"Item": {"pk": {"S": "1"}}}
    assert len(Stub.seen) == 3


def test_retries_are_bounded_and_errors_say_what_to_do(stub, monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    Stub.script = [(500, {"__type": "x#InternalServerError"}, False)] * 3
    with pytest.raises(JobError, match="did not answer after 3 attempts"):
        DirectTransport(stub, "us-east-1", Creds(), max_attempts=3).call("GetItem", {}, "test")
    Stub.script = [(400, {"__type": "x#ResourceNotFoundException", "message": "Requested resource not found"}, False)]
    with pytest.raises(NotFoundError, match="featurelake export"):
        DirectTransport(stub, "us-east-1", Creds()).call("GetItem", {}, "online group 'g'")
    with pytest.raises(JobError, match="did not answer"):  # nothing listens there
        DirectTransport("http://127.0.0.1:9", "us-east-1", Creds(), max_attempts=2,
                        connect_timeout=0.2).call("GetItem", {}, "test")


class RawServer:
    """Answers each request with the next scripted bytes as they are (one connection, or several:
    `connections` counts them), to put the transport's own HTTP reading through its cases."""

    def __init__(self, script):
        import socket

        self.script, self.connections, self.requests = list(script), 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.script:
            conn, _ = self.sock.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                while self.script:
                    head = b"".join(iter(lambda: reader.readline(), b"\r\n"))
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    json.loads(reader.read(length))
                    self.requests += 1
                    answer = self.script.pop(0)
                    conn.sendall(answer)
                    if b"Content-Length: 99" in answer:  # promised more than it sent: hang up
                        break
        self.sock.close()


def ok(body, how="length"):
    data = json.dumps(body).encode()
    if how == "chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:5], data[5:]))
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nx-amz-crc32: %d\r\n\r\n%s" % (len(data), zlib.crc32(data), data)


def test_answers_are_read_off_one_kept_connection_and_a_broken_one_is_replaced(monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    server = RawServer([ok({"a": 1}, "chunked"), ok({"b": 2}), b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{",
                        ok({"c": 3})])
    transport = DirectTransport(server.url, "us-east-1", Creds(), max_attempts=2)
    assert transport.call("GetItem", {}, "test") == {"a": 1}
    assert transport.call("GetItem", {}, "test") == {"b": 2}
    assert transport.call("GetItem", {}, "test") == {"c": 3}  # the cut answer, asked again
    assert (server.requests, server.connections) == (4, 2)
    transport.close()


def test_requests_go_over_tls(tmp_path):
    """What DynamoDB itself speaks: the same reading over an SSL socket, the connection kept."""
    import ssl
    from datetime import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt(2020, 1, 1)).not_valid_after(dt(2100, 1, 1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    Stub.protocol_version, Stub.script, Stub.seen = "HTTP/1.1", [(200, {"Item": {"n": i}}, False) for i in range(3)], []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = DirectTransport(f"https://localhost:{server.server_address[1]}", "us-east-1", Creds(),
                                    verify=str(tmp_path / "cert.pem"))  # trust the test's own CA
        assert [transport.call("GetItem", {"k": i}, "test")["Item"]["n"] for i in range(3)] == [0, 1, 2]
        assert Stub.seen == [{"k": 0}, {"k": 1}, {"k": 2}] and len(transport._conns) == 1
        transport.close()
    finally:
        Stub.protocol_version = "HTTP/1.0"
        server.shutdown()


class FakeTransport:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def call(self, operation, request, what):
        self.calls.append(request)
        return self.answers.pop(0)


def test_unprocessed_keys_are_asked_again_boundedly(monkeypatch):
    monkeypatch.setattr("featurelake.online.client.backoff", lambda *a, **k: 0)
    client = OnlineClient.__new__(OnlineClient)
    client.max_unprocessed_rounds = 3
    reader = GroupReader("t", {**SPEC, "ttl_s": None})
    left = {"t": {"Keys": [{"pk": {"S": "2|b"}}]}}
    client.transport = FakeTransport([{"Responses": {"t": [{"pk": {"S": "1|a"}}]}, "UnprocessedKeys": left},
                                      {"Responses": {"t": [{"pk": {"S": "2|b"}}]}, "UnprocessedKeys": {}}])
    assert len(client._batch_get(reader, ["1|a", "2|b"], reader.features, False, False)) == 2
    assert client.transport.calls[1]["RequestItems"] == left
    client.transport = FakeTransport([{"Responses": {}, "UnprocessedKeys": left}] * 3)
    with pytest.raises(JobError, match="unprocessed after 3 rounds"):
        client._batch_get(reader, ["1|a", "2|b"], reader.features, False, False)


def test_one_key_is_a_get_item_with_the_same_projection():
    client = OnlineClient.__new__(OnlineClient)
    reader = GroupReader("t", {**SPEC, "ttl_s": None})
    client.transport = FakeTransport([{"Item": {"pk": {"S": "1|a"}}}, {}])
    assert client._batch_get(reader, ["1|a"], reader.features[:1], True, False) == [{"pk": {"S": "1|a"}}]
    assert client._batch_get(reader, ["2|b"], reader.features[:1], True, False) == []
    want = {"TableName": "t", "Key": {"pk": {"S": "1|a"}}, "ConsistentRead": True,
            **reader.projection(reader.features[:1], False)}
    assert client.transport.calls[0] == want and "ProjectionExpression" in want


class FakeDynamo:
    def __init__(self, unprocessed_rounds):
        self.rounds, self.calls = unprocessed_rounds, 0

    def call(self, operation, request, what):
        self.calls += 1
        if self.rounds:
            self.rounds -= 1
            return {"UnprocessedItems": {t: reqs[-1:] for t, reqs in request["RequestItems"].items()}}
        return {"UnprocessedItems": {}}


def test_unprocessed_items_are_resent_boundedly(monkeypatch):
    monkeypatch.setattr("featurelake.online.writer.backoff", lambda *a, **k: 0)
    fake = FakeDynamo(unprocessed_rounds=2)
    writer = BatchWriter(fake, "t", concurrency=2, max_rounds=5)
    for i in range(30):
        writer.add({"pk": {"S": str(i)}})
    writer.close()
    assert fake.calls == 2 + 2  # two batches, one of them resent twice
    writer = BatchWriter(FakeDynamo(unprocessed_rounds=99), "t", max_rounds=4)
    writer.add({"pk": {"S": "1"}})
    with pytest.raises(JobError, match="unprocessed after 4 rounds"):
        writer.close()


def test_the_exports_writes_retry_throttling_then_report_it(stub, monkeypatch):
    monkeypatch.setattr("featurelake.online.transport.backoff", lambda *a, **k: 0)
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message": "slow"}
    Stub.script = [(400, throttled, False)] * 3 + [(200, {"UnprocessedItems": {}}, False)]
    writer = BatchWriter(DirectTransport(stub, "us-east-1", Creds(), max_attempts=5), "t")
    writer.add({"pk": {"S": "1"}, "v": {"B": b"\x00\x01"}})
    writer.close()
    sent = [{"PutRequest": {"Item": {"pk": {"S": "1"}, "v": {"B": "AAE="}}}}]  # binary as base64 text
    assert [r["RequestItems"]["t"] for r in Stub.seen] == [sent] * 4
    Stub.script = [(400, throttled, False)] * 3
    writer = BatchWriter(DirectTransport(stub, "us-east-1", Creds(), max_attempts=3), "t")
    writer.add({"pk": {"S": "1"}})
    with pytest.raises(JobError, match="export to t: DynamoDB at .* after 3 attempts .*ProvisionedThroughputExceeded"):
        writer.close()


def test_the_exports_writes_go_through_boto3_when_a_proxy_applies(stub, monkeypatch):
    from featurelake.online import writer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("HTTP_PROXY", stub)  # the stub answers as the proxy would, for any host
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setattr(writer, "_WORKER_CLIENTS", {})
    transport = writer.task_transport("us-east-1", "http://dynamodb.example:8000", pool=2, max_rounds=2)
    assert not isinstance(transport, DirectTransport)
    Stub.script = [(200, {"UnprocessedItems": {}}, False)]
    batch = BatchWriter(transport, "t")
    batch.add({"pk": {"S": "1"}, "v": {"B": b"\x00\x01"}})
    batch.close()
    assert Stub.seen == [{"RequestItems": {"t": [{"PutRequest": {"Item": {"pk": {"S": "1"}, "v": {"B": "AAE="}}}}]}}]


class OnlineTable:
    """A dict-backed table: batch_get_item (projection ignored) and batch_write_item."""

    def __init__(self, items):
        self.items, self.written = {i["pk"]["S"]: i for i in items}, []

    def BatchGetItem(self, RequestItems):
        (table, req), = RequestItems.items()
        return {"Responses": {table: [self.items[k["pk"]["S"]] for k in req["Keys"] if k["pk"]["S"] in self.items]}}

    def BatchWriteItem(self, RequestItems):
        for r in next(iter(RequestItems.values())):
            self.written.append(r["PutRequest"]["Item"]["pk"]["S"])
        return {}

    def call(self, operation, request, what):
        return getattr(self, operation)(request["RequestItems"]) if operation != "GetItem" else {}

    def close(self):
        pass


def test_in_compare_mode_only_rows_newer_than_online_are_written(monkeypatch):
    from featurelake.online import writer

    def version(ev, ing):
        return {"pk": {"S": str(ev)}, "_event_ts": {"N": codec.micros_to_ms_text(ev)},
                "_ingested_ts": {"N": codec.micros_to_ms_text(ing)}}

    online = [{**version(10, 5), "pk": {"S": "1"}}, {**version(10, 5), "pk": {"S": "2"}},
              {**version(10, 5), "pk": {"S": "3"}}]
    table = OnlineTable(online)
    monkeypatch.setattr(writer, "task_transport", lambda *a, **k: table)

    spec = {**SPEC, "keys": [SPEC["keys"][0]], "features": [{"name": "v", "dtype": "bigint"}], "ttl_s": None,
            "table": "t", "region": "us-east-1", "endpoint_url": None, "concurrency": 2, "max_rounds": 3,
            "compare": True}
    rows = [(1, 11, 0, 7),   # newer event: written
            (2, 9, 9, 7),    # older event: kept online
            (3, 10, 6, 7),   # same event, re-ingested later: written
            (4, 1, 1, 7)]    # not online yet: written
    counters = writer.write_partition(iter(rows), spec)
    assert sorted(table.written) == ["1", "3", "4"]
    assert (counters["items"], counters["not_newer"], counters["rows"]) == (3, 1, 4)


def test_a_task_writes_every_row_of_its_arrow_batches_and_returns_one_row_of_counters(monkeypatch):
    import pyarrow as pa

    from featurelake.online import writer

    table = OnlineTable([])
    monkeypatch.setattr(writer, "task_transport", lambda *a, **k: table)
    spec = {**SPEC, "keys": [SPEC["keys"][0]], "features": [{"name": "v", "dtype": "array<float>"}], "ttl_s": None,
            "table": "t", "region": "us-east-1", "endpoint_url": None, "concurrency": 2, "max_rounds": 3}
    n = writer.ROWS_PER_SLICE * 2 + 7  # three slices of the first batch
    batch = pa.RecordBatch.from_pydict({"customer_id": list(range(n)), "_event_us": [10] * n, "_ing_us": [5] * n,
                                        "v": [[float(i), 0.5] for i in range(n)]})
    empty = batch.slice(0, 0)
    out = list(writer.write_batches(iter([batch, empty, batch.slice(0, 3)]), spec))
    assert sorted(map(int, table.written)) == sorted([*range(n), 0, 1, 2])
    (counters,) = pa.Table.from_batches(out).to_pylist()
    assert counters == {"rows": n + 3, "items": n + 3, "bytes": counters["bytes"], "too_large": 0, "not_newer": 0,
                        "messages": []} and counters["bytes"] > 0
    assert writer.merged([counters, counters])["rows"] == 2 * (n + 3)


EXECUTOR_FAILURE = """An error occurred while calling o4121.collectToPython.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 31.0 failed 1 times
org.apache.spark.api.python.PythonException: Traceback (most recent call last):
  File "/lib/featurelake/online/writer.py", line 197, in flush
    raise JobError(f"export to {{self.table}}: ...")
{last}

\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:581)
"""


def test_an_executor_failure_reaches_the_driver_as_its_last_line_and_its_dynamodb_code():
    from featurelake.errors import executor_error
    from featurelake.online.table import THROTTLING, _code

    ours = Exception(EXECUTOR_FAILURE.format(last="featurelake.errors.JobError: export to t: kept refusing writes"))
    assert executor_error(ours) == "export to t: kept refusing writes"
    boto = Exception(EXECUTOR_FAILURE.format(
        last="botocore.exceptions.ClientError: An error occurred (ProvisionedThroughputExceededException) when "
             "calling the BatchWriteItem operation: slow down"))
    assert executor_error(boto).startswith("ClientError: An error occurred (ProvisionedThroughput")
    assert _code(boto) in THROTTLING
    assert executor_error(Exception("plain driver error")) is None


def test_an_increment_goes_to_spark_when_its_commits_do_not_count_their_rows_or_write_too_many():
    """driver_increment reads the change data feed on the driver only when every commit says how
    many rows it wrote (an OPTIMIZE rewrites rows that a feed reader may return) and they add up to
    at most DRIVER_ROWS; otherwise it leaves the increment to Spark before reading anything."""
    from types import SimpleNamespace

    from pyspark.sql.types import LongType, StructField, StructType, TimestampType

    from featurelake.online.snapshot import DRIVER_ROWS, Since, driver_increment

    opened: list = []
    offline = SimpleNamespace(delta_rs=lambda: opened.append(1))  # no table: Spark's, once it is asked
    group = SimpleNamespace(keys=["k"], timestamp_column="ts", ttl=None)
    schema = StructType([StructField("k", LongType()), StructField("ts", TimestampType()),
                         StructField("_ingested_at", TimestampType())])

    def decide(*commits: dict):
        opened.clear()
        result = driver_increment(offline, group, [], schema, list(commits), version=1 + len(commits),
                                  end=datetime.now(timezone.utc), since=Since(1, datetime.now(timezone.utc)))
        return result, bool(opened)

    def commit(operation: str, **metrics: int) -> dict:
        return {"operation": operation, "operationParameters": {},
                "operationMetrics": {k: str(v) for k, v in metrics.items()}}

    assert decide(commit("WRITE", numOutputRows=5), commit("SET TBLPROPERTIES")) == (None, True)  # read
    assert decide(commit("OPTIMIZE", numAddedFiles=1)) == (None, False)
    assert decide(commit("MERGE")) == (None, False)
    assert decide(commit("WRITE", numOutputRows=DRIVER_ROWS), commit("MERGE", numOutputRows=1)) == (None, False)
    assert driver_increment(offline, group, [], schema, [], version=1, end=datetime.now(timezone.utc),
                            since=Since(1, datetime.now(timezone.utc))) == ([], False)  # no commit since
