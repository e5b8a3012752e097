"""A table being filled by its first export (or a lost table being written again) is not a table
without rows: a key not found there fails the read, naming the export to wait for, instead of
answering None for a key that may arrive a moment later. Against dynalite, with the metadata item
written as the export writes it."""
from __future__ import annotations

import uuid

import boto3
import pytest

from featurelake.errors import NotExportedYet
from featurelake.online import OnlineClient, client as client_module
from featurelake.online.table import ensure_table, read_meta, write_meta

SPEC = {"format": 1, "group": "acct", "group_version": 1, "keys": [{"name": "customer_id", "dtype": "bigint"}],
        "features": [{"name": "balance", "dtype": "double"}], "timestamp_column": "ts", "ttl_s": None,
        "aggregations": False}


def test_a_key_missing_while_the_table_fills_is_not_exported_yet(dynamodb_endpoint, monkeypatch):
    prefix = f"f{uuid.uuid4().hex[:8]}_"
    ddb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    table = f"{prefix}acct"
    ensure_table(ddb, table, ttl=False)
    write_meta(ddb, table, SPEC, None, "fp", filling=True)  # the export's first write, before any item
    assert read_meta(ddb, table)["filling"] is True
    client = OnlineClient(table_prefix=prefix, region="us-east-1", endpoint_url=dynamodb_endpoint)
    with pytest.raises(NotExportedYet, match=r"online group 'acct' .* is being filled by its first export .* "
                                             r"Wait for `featurelake export acct` to finish"):
        client.get("acct", {"customer_id": 1})
    with pytest.raises(NotExportedYet):
        client.get_features([{"customer_id": 1}], ["acct:*"])

    write_meta(ddb, table, SPEC, {"export_id": "e1", "to_version": 3}, "fp")  # the export's last write
    monkeypatch.setattr(client_module, "FILL_RECHECK_S", 0.0)
    client.reader("acct").loaded_at -= 1.0  # a second later: the client looks at the metadata again
    assert client.get("acct", {"customer_id": 1}) is None  # now it is "no row for this key"
    assert read_meta(ddb, table)["filling"] is False

    # The table is lost and written again while the client still holds the old metadata.
    write_meta(ddb, table, SPEC, None, "fp", filling=True)
    with pytest.raises(NotExportedYet):
        client.get("acct", {"customer_id": 2})
