"""The OnlineClient in a server that retires its threads (against dynalite): each thread's kept
connection goes with the thread, so short-lived threads do not pile up sockets until the process
runs out of files."""
from __future__ import annotations

import gc
import os
import threading
import uuid

from featurelake.online import OnlineClient
from featurelake.online.transport import DirectTransport


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_short_lived_threads_leave_no_sockets_behind(dynamodb_endpoint):
    client = OnlineClient(endpoint_url=dynamodb_endpoint, region="us-east-1")
    assert isinstance(client.transport, DirectTransport)
    table = f"threads_{uuid.uuid4().hex[:8]}"
    client.boto_client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    client.boto_client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.1})
    request = {"TableName": table, "Key": {"pk": {"S": "absent"}}}
    assert client.transport.call("GetItem", request, "t") == {}
    before = open_sockets()
    answers, errors = [], []

    def one_request():
        try:
            answers.append(client.transport.call("GetItem", request, "t"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(0, 300, 20):  # a server's worker threads: a few at a time, each short-lived
        threads = [threading.Thread(target=one_request) for _thread in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    gc.collect()
    assert errors == [] and answers == [{}] * 300
    assert open_sockets() - before <= 3
    assert len(client.transport._conns) <= 3
    assert client.transport.call("GetItem", request, "t") == {}  # the main thread's connection is still kept
    client.close()
