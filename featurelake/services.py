"""Feature services: a model's named list of feature references (definitions.FeatureService).

Where a service is used:
- the repository checks its references when it loads (so `apply` refuses a bad one, naming it);
- `apply` registers it in the catalogue table `feature_services`, a new version whenever its
  feature list changes (owner, description and tags are updated in place);
- `training_set(spine, features="service:NAME")` expands it and records NAME and its version in
  the manifest;
- the online side: every export of a group writes the services that read the group into one small
  DynamoDB table, `<table_prefix>-services` (a `-` no group name can hold), one item per service,
  so `OnlineClient.get_features(rows, "service:NAME")` needs neither Spark nor the repository.

Nothing here imports pyspark: the online client imports `services_table` and `SERVICE_PREFIX`.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from featurelake.definitions import SERVICE_PREFIX, FeatureService, check_reference
from featurelake.errors import DefinitionError, NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from featurelake.catalog import Catalog
    from featurelake.definitions import FeatureGroup
    from featurelake.repo import Repository
    from featurelake.store import FeatureStore

__all__ = ["SERVICE_PREFIX", "check_services", "expand", "register", "versions", "publish", "services_table"]


def services_table(table_prefix: str) -> str:
    return f"{table_prefix}-services"


def service_name(ref: Any) -> str | None:
    """'service:NAME' -> NAME; None for any other reference."""
    if isinstance(ref, str) and ref.partition(":")[0].strip() == SERVICE_PREFIX and ":" in ref:
        return ref.partition(":")[2].strip()
    return None


def check_services(repo: "Repository") -> None:
    """Every reference of every service names a group of the repository and one of its features."""
    if repo.services and SERVICE_PREFIX in repo.groups:
        raise DefinitionError(f"feature group {SERVICE_PREFIX!r}: the name is taken by references to feature "
                              f"services ('{SERVICE_PREFIX}:NAME'): rename the group")
    for service in repo.services.values():
        where = f"feature service {service.name!r}"
        for ref in service.features:
            group_name, feature = check_reference(ref, where)
            if group_name not in repo.groups:
                raise DefinitionError(f"{where}: reference {ref!r} names unknown feature group {group_name!r}"
                                      f"{did_you_mean(group_name, repo.groups)}: fix the service's features=")
            names = repo.groups[group_name].feature_names
            if feature != "*" and feature not in names:
                raise DefinitionError(f"{where}: reference {ref!r}: group {group_name!r} has no feature "
                                      f"{feature!r}{did_you_mean(feature, names)}: fix the service's features=")


def expand(repo: "Repository", refs: Sequence[Any]) -> tuple[list, list[FeatureService]]:
    """References with each 'service:NAME' replaced by the service's own references (each
    reference once), and the services used, in order."""
    flat: list = []
    used: list[FeatureService] = []
    for ref in refs:
        name = service_name(ref)
        if name is None:
            if isinstance(ref, FeatureService):
                raise UsageError(f"pass the feature service as the reference '{SERVICE_PREFIX}:{ref.name}', "
                                 f"not the object")
            flat += [ref] if ref not in flat else []
            continue
        if name not in repo.services:
            raise NotFoundError(f"unknown feature service {name!r} in reference {ref!r}"
                                f"{did_you_mean(name, repo.services)}: define FeatureService({name!r}, ...) in "
                                f"the repository and run `featurelake apply`")
        service = repo.services[name]
        if service not in used:
            used.append(service)
        flat += [r for r in service.features if r not in flat]
    return flat, used


# ---- the catalogue --------------------------------------------------------------------------

def service_row(service: FeatureService, version: int, changes: str, stamp: datetime, user: str) -> dict:
    return {"name": service.name, "version": version, "fingerprint": service.fingerprint,
            "features": service.features, "groups": service.groups, "owner": service.owner,
            "description": service.description, "tags": {k: str(v) for k, v in service.tags.items()},
            "changes": changes, "registered_at": stamp, "registered_by": user}


def register(catalog: "Catalog", repo: "Repository", stamp: datetime, user: str) -> list[str]:
    """Registers the repository's services (featurelake.catalog.register_versions): a feature
    list seen before matches its registered version, a new one is the next version."""
    from featurelake.catalog import register_versions

    return register_versions(catalog, "feature_services", repo.services.values(), label="service", first="new service",
                             row=lambda s, version, what: service_row(s, version, what, stamp, user),
                             describe=lambda old, s: _describe(old["features"], s.features))


def _describe(old: Sequence[str], new: Sequence[str]) -> str:
    added, removed = [r for r in new if r not in old], [r for r in old if r not in new]
    parts = (["added " + ", ".join(added)] if added else []) + (["removed " + ", ".join(removed)] if removed else [])
    return "; ".join(parts) or "reordered features"


def versions(catalog: "Catalog", services: Sequence[FeatureService]) -> dict[str, int]:
    """The registered version of each service's current feature list."""
    if not services:
        return {}
    found = {(r["name"], r["fingerprint"]): int(r["version"]) for r in catalog.rows("feature_services")}
    out = {}
    for service in services:
        if (service.name, service.fingerprint) not in found:
            raise UsageError(f"feature service {service.name!r} changed since the last `featurelake apply` "
                             f"(or was never applied): run `featurelake apply` first")
        out[service.name] = found[(service.name, service.fingerprint)]
    return out


# ---- online ---------------------------------------------------------------------------------

def publish(store: "FeatureStore", group: "FeatureGroup", client: Any) -> list[str]:
    """Writes the services that read the group to `<table_prefix>-services` (created when missing),
    each as {name, version, features}: what OnlineClient.get_features reads for 'service:NAME'.
    Returns notes for the export's summary: a service changed since `apply`, or one DynamoDB
    refused, is not published, and the export, already written, still succeeds."""
    from featurelake.errors import root_message
    from featurelake.online.table import ensure_table

    using = [s for s in store.repo.services.values() if group.name in s.groups]
    if not using:
        return []
    registered = {(r["name"], r["fingerprint"]): int(r["version"]) for r in store.catalog.rows("feature_services")}
    table = services_table(store.config.online.dynamodb.table_prefix)
    notes = []
    for service in using:
        version = registered.get((service.name, service.fingerprint))
        if version is None:
            notes.append(f"feature service {service.name} changed since the last apply: not published "
                         f"(run `featurelake apply`, then export again)")
            continue
        spec = {"name": service.name, "version": version, "features": service.features}
        try:
            ensure_table(client, table, ttl=False)
            client.put_item(TableName=table, Item={"pk": {"S": service.name}, "spec": {"S": json.dumps(spec)}})
        except Exception as exc:  # boto3's errors: the group's own export is done and stays done
            notes.append(f"feature service {service.name} not published to {table}: {root_message(exc)} "
                         f"(allow dynamodb:CreateTable/PutItem on it, then export again)")
            continue
        notes.append(f"feature service {service.name} version {version} published to {table}")
    return notes
