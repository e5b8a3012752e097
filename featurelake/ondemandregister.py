"""`featurelake apply`'s registration of the repository's request-time features in the catalogue
table `on_demand`: a new version when what decides the values changes, metadata updated in place.
Only `apply` needs it; featurelake.ondemand keeps the definition, the computing and the catalogue
reads (versions, latest, show).
"""
from __future__ import annotations

import json
from typing import Any

from featurelake.ondemand import OnDemandFeature


def catalog_row(feature: OnDemandFeature, version: int, changes: str, stamp: Any, user: str) -> dict:
    return {"name": feature.name, "version": version, "fingerprint": feature.fingerprint,
            "request": json.dumps(feature.request), "inputs": feature.inputs, "groups": feature.groups,
            "outputs": json.dumps([f.to_dict() for f in feature.outputs]), "code": feature.code_text,
            "owner": feature.owner, "description": feature.description,
            "tags": {k: str(v) for k, v in feature.tags.items()}, "changes": changes,
            "registered_at": stamp, "registered_by": user}


def register(catalog: Any, repo: Any, stamp: Any, user: str) -> list[str]:
    """Registers the repository's on-demand features (featurelake.catalog.register_versions): new
    code, request, inputs or outputs make the next version."""
    from featurelake.catalog import register_versions

    return register_versions(catalog, "on_demand", repo.on_demand.values(), label="on-demand",
                             first="new on-demand feature", row=lambda f, version, what: catalog_row(
                                 f, version, what, stamp, user), describe=_describe)


def _describe(old: dict, new: OnDemandFeature) -> str:
    parts = []
    if old["code"] != new.code_text:
        parts.append("code changed")
    if json.loads(old["request"]) != new.request:
        parts.append("request fields changed")
    if list(old["inputs"]) != new.inputs:
        parts.append("inputs changed")
    if [(f["name"], f["dtype"]) for f in json.loads(old["outputs"])] != [(f.name, f.dtype) for f in new.outputs]:
        parts.append("outputs changed")
    return "; ".join(parts) or "definition changed"
