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
    """Registers the repository's on-demand features; one line per change. New code, request,
    inputs or outputs make the next version; owner, description and tags are updated in place; a
    definition seen before (a rollback) matches its registered version."""
    if not repo.on_demand:
        return []
    by_name: dict[str, list[dict]] = {}
    for row in catalog.rows("on_demand"):
        by_name.setdefault(row["name"], []).append(row)
    rows, changes = [], []
    for feature in sorted(repo.on_demand.values(), key=lambda f: f.name):
        versions = sorted(by_name.get(feature.name, []), key=lambda r: r["version"])
        match = next((v for v in versions if v["fingerprint"] == feature.fingerprint), None)
        if match is not None:
            meta = catalog_row(feature, match["version"], match["changes"], stamp, user)
            if any(match[k] != meta[k] for k in ("owner", "description", "tags")):
                rows.append({**meta, "registered_at": match["registered_at"], "registered_by": match["registered_by"]})
                changes.append(f"on-demand {feature.name}: metadata updated (version {match['version']})")
            continue
        version = versions[-1]["version"] + 1 if versions else 1
        what = _describe(versions[-1], feature) if versions else "new on-demand feature"
        rows.append(catalog_row(feature, version, what, stamp, user))
        changes.append(f"on-demand {feature.name}: version {version} ({what})")
    catalog.merge("on_demand", rows, on=["name", "fingerprint"], update=True)
    return changes


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
