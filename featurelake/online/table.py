"""A group's DynamoDB table as the export's driver sees it: created when missing, its metadata item,
and the export lease that makes exports of one group take turns.

Why a lease: an export must never replace a newer event with an older one. DynamoDB can refuse an
older write only per item (PutItem with a ConditionExpression); measured against dynalite on this
machine that is 600-900 items/s against 3,100 for BatchWriteItem, because every item becomes a
request (see featurelake.online.export). So exports write unconditionally with BatchWriteItem,
and instead take turns: an export first takes the group's lease (a conditional PutItem on the
item `%lock`), and only then fixes its end time and reads the offline table's newest version.
Each export therefore writes data at least as new as every export before it. The lease is
renewed by the driver; every task re-checks it every few seconds and stops when it is gone. When
a lease expires without being released (its driver died), the next export waits for the dead
export's in-flight requests to drain before writing (at once when the owner ran in local mode on
this host and its process is gone).
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from typing import Any, Optional

from featurelake.errors import JobError
from featurelake.online import codec

log = logging.getLogger("featurelake.online")
_TTL_WARNED: set = set()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _code(exc: Exception) -> str:
    """DynamoDB's error code, also when boto3 raised it in an executor (then it is in the text)."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code:
        return code
    found = re.search(r"An error occurred \((\w+)\)", str(exc))
    return found.group(1) if found else ""


THROTTLING = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
              "LimitExceededException"}


def refusal(client: Any, exc: Exception) -> str:
    """Where the request went and, for throttling, what to do: appended to a DynamoDB error."""
    where = f" (DynamoDB at {client.meta.endpoint_url})"
    if _code(exc) in THROTTLING:
        return (f"{where}: still throttled after the SDK's retries: rerun later, or raise the table's "
                f"capacity or the account's request limits")
    return where


def ensure_table(client: Any, table: str, *, ttl: bool, wait_s: float = 300.0) -> bool:
    """Creates the table when missing (on-demand billing, pk a string), waits for ACTIVE, and enables
    DynamoDB TTL on `_expires_at` for a group with a ttl. Returns True when it created the table."""
    created = False
    try:
        status = client.describe_table(TableName=table)["Table"]["TableStatus"]
    except Exception as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise JobError(f"online table {table}: cannot describe it: {exc}{refusal(client, exc)}") from None
        try:
            client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                Tags=[{"Key": "featurelake", "Value": "online"}])
            created = True
        except Exception as exc2:
            if _code(exc2) != "ResourceInUseException":  # another export created it just now
                raise JobError(f"online table {table}: cannot create it: {exc2}{refusal(client, exc2)}: check the "
                               f"IAM policy (dynamodb:CreateTable on the prefix) or create it yourself") from None
        status = "CREATING"
    deadline = time.monotonic() + wait_s
    while status != "ACTIVE":
        if time.monotonic() > deadline:
            raise JobError(f"online table {table} is still {status} after {wait_s:.0f}s: retry later")
        time.sleep(0.05 if created else 0.5)
        status = client.describe_table(TableName=table)["Table"]["TableStatus"]
    if ttl and (created or not _ttl_enabled(client, table)):
        enable_ttl(client, table)
    return created


def _ttl_enabled(client: Any, table: str) -> bool:
    try:
        status = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"]
        return status in ("ENABLED", "ENABLING")
    except Exception:
        return False


def enable_ttl(client: Any, table: str) -> Optional[str]:
    """DynamoDB TTL on `_expires_at`. Returns a note when the endpoint cannot (dynalite has no
    UpdateTimeToLive): expired items then stay, and the client still reads them as None."""
    try:
        client.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": codec.EXPIRES_AT})
        return None
    except Exception as exc:
        code = _code(exc)
        note = (f"online table {table}: DynamoDB TTL not enabled ({code or exc}); expired items are hidden "
                f"by the OnlineClient but not deleted")
        if code == "UnknownOperationException":  # the endpoint has no TTL at all (dynalite): said once, not a fault
            endpoint = getattr(getattr(client, "meta", None), "endpoint_url", "")
            if endpoint not in _TTL_WARNED:
                _TTL_WARNED.add(endpoint)
                log.info("DynamoDB at %s has no TTL (UpdateTimeToLive unknown, as in dynalite): expired items are "
                         "hidden by the OnlineClient but not deleted", endpoint)
        elif table not in _TTL_WARNED:
            _TTL_WARNED.add(table)
            log.warning(note)
        return note


def read_meta(client: Any, table: str) -> Optional[dict]:
    """The metadata item: {"spec": {...}, "last": {...} or None}, or None when absent."""
    item = client.get_item(TableName=table, Key={"pk": {"S": codec.META_PK}}, ConsistentRead=True).get("Item")
    if not item or "spec" not in item:
        return None
    last = item.get("last_export", {}).get("S")
    return {"spec": json.loads(item["spec"]["S"]), "last": json.loads(last) if last else None,
            "group_version": int(item.get("group_version", {}).get("N", "0")),
            "fingerprint": item.get("fingerprint", {}).get("S"), "filling": filling(item)}


def filling(item: dict) -> bool:
    """The metadata item says the table holds no finished export yet (see write_meta)."""
    return bool(item.get("filling", {}).get("BOOL", False))


def write_meta(client: Any, table: str, spec: dict, last: Optional[dict], fingerprint: str, *,
               filling: bool = False) -> None:
    """Writes the metadata item, unless the table already holds a newer definition of the group
    (an export from older code must not take the table back). `filling`: the table holds no
    finished export yet (a new table, or a lost one being written again), so that a reader does
    not take a key missing meanwhile for a key without a row."""
    item = {"pk": {"S": codec.META_PK}, "spec": {"S": json.dumps(spec, sort_keys=True)},
            "group": {"S": spec["group"]}, "group_version": {"N": str(spec["group_version"])},
            "fingerprint": {"S": fingerprint}, "updated_ms": {"N": str(_now_ms())}}
    if last is not None:
        item["last_export"] = {"S": json.dumps(last, sort_keys=True, default=str)}
    if filling:
        item["filling"] = {"BOOL": True}
    try:
        client.put_item(TableName=table, Item=item,
                        ConditionExpression="attribute_not_exists(pk) OR group_version <= :v",
                        ExpressionAttributeValues={":v": {"N": str(spec["group_version"])}})
    except Exception as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            raise JobError(f"online table {table} holds a newer version of group {spec['group']!r} than this "
                           f"code's version {spec['group_version']}: export from the latest definitions "
                           f"(`featurelake apply` first)") from None
        raise


class Lease:
    """The group's export lease (item `%lock`): taken before the export reads anything, renewed by a
    daemon thread, released at the end."""

    def __init__(self, client: Any, table: str, owner: str, *, lease_s: float = 30.0, wait_s: float = 900.0,
                 grace_s: float = 45.0, local_mode: bool = True, pk: str = codec.LOCK_PK,
                 kind: str = "export lease", wait_setting: str = "online.dynamodb.lock_wait_s"):
        """`pk`, `kind` and `wait_setting`: the item, the word for it and the setting to raise in
        messages; other leases (featurelake.commitlock) reuse this one's rules."""
        self.client, self.table, self.owner = client, table, owner
        self.pk, self.kind, self.wait_setting = pk, kind, wait_setting
        self.lease_s, self.wait_s, self.grace_s, self.local_mode = lease_s, wait_s, grace_s, local_mode
        self.token = uuid.uuid4().hex
        self.lost = False
        self.waited_s = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _item(self) -> dict:
        now = _now_ms()
        return {"pk": {"S": self.pk}, "token": {"S": self.token}, "owner": {"S": self.owner},
                "host": {"S": socket.gethostname()}, "pid": {"N": str(os.getpid())},
                "local": {"BOOL": self.local_mode}, "acquired_ms": {"N": str(now)},
                "expires_ms": {"N": str(now + int(self.lease_s * 1000))}}

    def _holder(self) -> Optional[dict]:
        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": self.pk}},
                                    ConsistentRead=True).get("Item")
        if not item:
            return None
        return {k: (v.get("S") if "S" in v else v.get("BOOL") if "BOOL" in v else int(v["N"])) for k, v in item.items()}

    def _dead_here(self, holder: dict) -> bool:
        """The holder ran in local mode on this host and its process is gone: its tasks died with it."""
        if not holder.get("local") or holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder.get("pid", 0)), 0)
            return False
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False

    def acquire(self) -> "Lease":
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                old = self.client.put_item(
                    TableName=self.table, Item=self._item(), ReturnValues="ALL_OLD",
                    ConditionExpression="attribute_not_exists(pk) OR expires_ms < :now",
                    ExpressionAttributeValues={":now": {"N": str(_now_ms())}}).get("Attributes")
                if old:  # an expired lease nobody released: its writes may still be in flight
                    expired = {k: (v.get("S") if "S" in v else v.get("BOOL") if "BOOL" in v else int(v.get("N", 0)))
                               for k, v in old.items()}
                    pause = 2.0 if self._dead_here(expired) else self.grace_s
                    log.warning("%s: took over the expired %s of %s; waiting %.0fs for its writes to "
                                "drain", self.table, self.kind, expired.get("owner"), pause)
                    time.sleep(pause)
                break
            except Exception as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            holder = self._holder()
            if holder and self._dead_here(holder) and self._take_from_dead(holder):
                time.sleep(2.0)  # its JVM and Python workers stop within moments of it
                break
            if time.monotonic() - start > self.wait_s:
                until = time.strftime("%H:%M:%S", time.gmtime((holder or {}).get("expires_ms", 0) / 1000))
                raise JobError(f"{self.table} {self.pk}: {(holder or {}).get('owner')} (on "
                               f"{(holder or {}).get('host')}) has held the {self.kind} for over "
                               f"{self.wait_s:.0f}s (renewed until {until} UTC): wait for it to finish, or "
                               f"raise {self.wait_setting}")
            attempt += 1
            time.sleep(min(2.0, 0.1 * attempt) * (0.5 + (uuid.uuid4().int % 100) / 100))
        self.waited_s = time.monotonic() - start
        self._thread = threading.Thread(target=self._renew, name=f"featurelake-lease-{self.table}", daemon=True)
        self._thread.start()
        return self

    def _take_from_dead(self, holder: dict) -> bool:
        try:
            self.client.put_item(TableName=self.table, Item=self._item(),
                                 ConditionExpression="#t = :t", ExpressionAttributeNames={"#t": "token"},
                                 ExpressionAttributeValues={":t": {"S": str(holder.get("token"))}})
            log.warning("%s: took over the %s of %s, whose process is gone", self.table, self.kind,
                        holder.get("owner"))
            return True
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.client.update_item(
                    TableName=self.table, Key={"pk": {"S": self.pk}},
                    UpdateExpression="SET expires_ms = :e", ConditionExpression="#t = :t",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={":e": {"N": str(_now_ms() + int(self.lease_s * 1000))},
                                               ":t": {"S": self.token}})
            except Exception as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    self.lost = True
                    log.error("%s: the %s was taken by another holder", self.table, self.kind)
                    return
                log.warning("%s: could not renew the %s (will retry): %s", self.table, self.kind, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": self.pk}},
                                    ConditionExpression="#t = :t", ExpressionAttributeNames={"#t": "token"},
                                    ExpressionAttributeValues={":t": {"S": self.token}})
        except Exception as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                log.warning("%s: could not release the %s (it expires by itself): %s", self.table, self.kind, exc)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
