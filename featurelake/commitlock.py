"""Concurrent Delta commits on S3: one writer at a time per table, by a lease in DynamoDB.

Why: Delta's commit is "write the next N.json only if it does not exist yet". HDFS, local disks
and Azure do that atomically; S3 through open-source Delta's default log store does not, so two
drivers committing to one table at the same moment can both write version N, and one commit is
silently lost. Delta's own remedy (the DynamoDB log store jar) is not something every cluster
has; featurelake already depends on DynamoDB and already holds a lease there for exports. So
when a table lives on S3 (s3a://, s3://), every featurelake commit to it runs under a lease whose
item is the table's path, in the table `<online.dynamodb.table_prefix>delta-commits` (created
when missing; the `-` keeps it apart from any group's online table). Two jobs that commit to the
same table take turns; a job whose driver died is taken over from (at once on the same host,
after the lease expires elsewhere). `storage.commit_lock: off` turns it off, for a log store
that is already safe (Databricks, or io.delta:delta-storage-s3-dynamodb configured).
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

from featurelake.errors import JobError

if TYPE_CHECKING:
    from featurelake.config import Config

log = logging.getLogger("featurelake.commitlock")
TABLE_SUFFIX = "delta-commits"
_ready: set = set()  # lock tables known to exist, per (endpoint, table)
_ready_lock = threading.Lock()


def on_s3(path: str) -> bool:
    return path.startswith(("s3a://", "s3://", "s3n://"))


def lock_table(config: "Config") -> str:
    return f"{config.online.dynamodb.table_prefix}{TABLE_SUFFIX}"


@contextmanager
def committing(config: Optional["Config"], path: str, who: str) -> Iterator[None]:
    """Holds the table's commit lease around a Delta write (read, decide, commit) when the table
    is on S3 and storage.commit_lock is auto; otherwise (or without a config) does nothing."""
    if config is None or config.storage.commit_lock == "off" or not on_s3(path):  # load_config checked it
        yield
        return
    from featurelake.online.table import Lease

    dyn = config.online.dynamodb
    client, table = _client(config), lock_table(config)
    _ensure(client, table, dyn.endpoint_url)
    lease = Lease(client, table, who, lease_s=dyn.lease_s, wait_s=dyn.lock_wait_s, pk=path.rstrip("/"),
                  kind="commit lease", wait_setting="online.dynamodb.lock_wait_s")
    try:
        lease.acquire()
    except JobError:  # waited too long for another job: its own message
        raise
    except Exception as exc:
        raise JobError(f"commit to {path}: cannot take its commit lease in DynamoDB table {table} "
                       f"({type(exc).__name__}: {exc}); featurelake serializes commits to tables on S3 there. "
                       f"Check online.dynamodb (endpoint, credentials, dynamodb:PutItem on the table), or set "
                       f"storage.commit_lock: off if your Delta log store is already safe for several "
                       f"writers") from None
    held = time.time()
    try:
        yield
    finally:
        lease.release()
        log.debug("commit lease on %s held from %.6f to %.6f by %s", path, held, time.time(), who)
    if lease.lost:
        raise JobError(f"commit to {path}: its commit lease expired during the write and passed to another job "
                       f"(the renewal could not reach DynamoDB); check the table's history "
                       f"(`featurelake catalog history`), then run the job again")


def _client(config: "Config") -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    dyn = config.online.dynamodb
    return boto3.session.Session().client("dynamodb", region_name=dyn.region, endpoint_url=dyn.endpoint_url,
                                          config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}))


def _ensure(client: Any, table: str, endpoint: Any) -> None:
    from featurelake.online.table import ensure_table

    key = (endpoint, table)
    with _ready_lock:
        if key in _ready:
            return
    ensure_table(client, table, ttl=False)
    with _ready_lock:
        _ready.add(key)
