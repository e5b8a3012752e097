"""Governance views over the catalogue: lineage (where a group or feature comes from and what
uses it) and usage (who did what with it, from the `usage` audit table).

A feature's dependents include its window aggregations (amount -> amount_sum_7d): changing
amount changes them, so a training set that read only amount_sum_7d is affected too."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from featurelake.errors import NotFoundError, did_you_mean
from featurelake.monitoring.refs import table_versions
from featurelake.monitoring.report import jsonable, short_time

if TYPE_CHECKING:
    from featurelake.store import FeatureStore

MAX_ROWS = 200
GROUP_WIDE = ("export",)
"""Usage actions on a group that involve every one of its features."""


def split_name(name: str) -> tuple[str, Optional[str]]:
    """'group' | 'group:feature' | 'group:*' -> (group, feature or None)."""
    group, _, feature = name.partition(":")
    return group, (feature if feature and feature != "*" else None)


def lineage(store: "FeatureStore", name: str) -> dict:
    """sources -> group versions -> ingest runs -> exports and training sets, and the reverse:
    which training sets, exports and downstream groups use the group or feature."""
    catalog = store.catalog
    service = _service_versions(store, name)
    if service:
        return service_lineage(store, service)
    if store.catalog.exists("on_demand"):
        rows = store.catalog.rows("on_demand", lambda r: r["name"] == name.partition(":")[0])
        if rows:
            return on_demand_lineage(store, sorted(rows, key=lambda r: r["version"]))
    group, feature = split_name(name)
    versions = catalog.group_versions(group)  # NotFoundError naming the known groups
    feats = catalog.rows("features", lambda f: f["group"] == group)
    by_version: dict[int, set] = {}
    for f in feats:
        by_version.setdefault(f["version"], set()).add(f["name"])
    affected = _dependents(versions, feature, feats) if feature else None
    latest = versions[-1]
    source = json.loads(latest["source"])
    out: dict[str, Any] = {
        "name": name, "group": group, "feature": feature, "affected_features": sorted(affected or []),
        "source": source, "upstream_groups": [source["group"]] if source.get("group") else [],
        "downstream_groups": _downstream(store, group),
        "versions": [{"version": v["version"], "registered_at": v["registered_at"], "registered_by": v["registered_by"],
                      "changes": v["changes"], "fingerprint": v["fingerprint"],
                      "has_feature": None if affected is None else bool(affected & by_version.get(v["version"], set()))}
                     for v in versions],
        "runs": _runs(store, group),
        "exports": _exports(store, group),
        "training_sets": _training_sets(store, group, affected),
        "services": _services_using(store, group, affected),
        "on_demand": _on_demand_using(store, group, feature),
    }
    out = jsonable(out)
    out["text"] = _lineage_text(out)
    return out


def _dependents(versions: list[dict], feature: str, feats: list[dict]) -> set:
    names = {f["name"] for f in feats}
    if feature not in names:
        raise NotFoundError(f"feature {feature!r} is not in any registered version of group "
                            f"{versions[-1]['name']!r}{did_you_mean(feature, names)}")
    out = {feature}
    for v in versions:
        for agg in json.loads(v["definition"]).get("aggregations", []):
            if agg["column"] == feature:
                out.update(f"{feature}_{fn}_{w}" for fn in agg["functions"] for w in agg["windows"])
    return out


def _downstream(store: "FeatureStore", group: str) -> list[str]:
    from featurelake.catalog import latest_groups

    return sorted(g["name"] for g in latest_groups(store.catalog) if g["source"].get("group") == group)


def _runs(store: "FeatureStore", group: str) -> list[dict]:
    """Per group version: successful runs, the Delta versions they wrote, the last one."""
    from featurelake.records import WROTE, Run

    by_version: dict[Any, list[Run]] = {}
    for r in store.catalog.records(Run, lambda r: r.group == group):
        by_version.setdefault(r.group_version, []).append(r)
    out = []
    for version in sorted(by_version, key=lambda v: (v is not None, v)):  # nulls first, as Spark sorts
        runs = by_version[version]
        ok = [r for r in runs if r.status in WROTE]
        written = [r.delta_version for r in ok if r.delta_version is not None]
        ended = [r.ended_at for r in runs if r.ended_at is not None]
        started = [r for r in runs if r.started_at is not None]  # a tie goes to the later row, as in Spark
        out.append({"group_version": version, "runs": len(runs), "succeeded": len(ok),
                    "first_delta_version": min(written, default=None), "last_delta_version": max(written, default=None),
                    "last_ended_at": max(ended, default=None),
                    "last_run_id": sorted(started, key=lambda r: r.started_at.timestamp() if r.started_at else 0.0)
                    [-1].run_id if started else None})
    return out


def _exports(store: "FeatureStore", group: str) -> list[dict]:
    cols = ["export_id", "group_version", "from_version", "to_version", "as_of", "items_written", "status",
            "table_name", "user"]
    from featurelake.records import Export

    rows = _newest([vars(e) for e in store.catalog.records(Export, lambda e: e.group == group)], "as_of")
    return [{c: r[c] for c in cols} for r in rows[:MAX_ROWS]]


def _newest(rows: list[dict], column: str) -> list[dict]:
    """Newest first, rows without a value last (Spark's desc_nulls_last)."""
    dated = sorted((r for r in rows if r[column] is not None), key=lambda r: r[column], reverse=True)
    return dated + [r for r in rows if r[column] is None]


def _training_sets(store: "FeatureStore", group: str, affected: Optional[set]) -> list[dict]:
    """Training sets that read the group (or, for a feature, that or its aggregations)."""
    from featurelake.records import TrainingSetManifest

    prefix = f"{group}:"

    def reads(m: TrainingSetManifest) -> bool:
        return any(x.startswith(prefix) or x == group for x in m.features or []) or group in (m.table_versions or {})

    manifests = {m.id: m for m in store.catalog.records(TrainingSetManifest, reads)}
    out = []
    for row in _newest([{"id": m.id, "created_at": m.created_at} for m in manifests.values()], "created_at"):
        m = manifests[row["id"]]
        refs = [x for x in m.features or [] if x.startswith(prefix) or x == group]
        used = [x for x in refs if affected is None or x == f"{group}:*" or x[len(prefix):] in affected]
        if affected is not None and not used:
            continue
        out.append({"id": m.id, "created_at": m.created_at, "user": m.user, "features": used or refs,
                    "group_version": (m.group_versions or {}).get(group),
                    "table_version": table_versions(m).get(group)})
    return out[:MAX_ROWS]


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) and text else text or {}
    except ValueError:
        return {}


def _lineage_text(p: dict) -> str:
    src = p["source"]
    where = ", ".join(f"{k}={v}" for k, v in src.items()
                      if k not in ("kind", "name", "options", "schema") and v not in (None, "", {}))
    lines = [f"lineage of {p['name']}"]
    if p["feature"] and len(p["affected_features"]) > 1:
        lines.append(f"  affects: {', '.join(p['affected_features'])}")
    lines.append(f"  source: {src.get('kind')} {src.get('name')} ({where}) -> {p['group']}")
    if p["upstream_groups"]:
        lines.append(f"  upstream groups: {', '.join(p['upstream_groups'])}")
    lines.append("  group versions:")
    for v in p["versions"]:
        mark = "" if v["has_feature"] is None else "  [has it]" if v["has_feature"] else "  [without it]"
        lines.append(f"    v{v['version']} {short_time(v['registered_at'])} by {v['registered_by']}: "
                     f"{v['changes']}{mark}")
    lines.append("  ingest runs:" if p["runs"] else "  ingest runs: none recorded")
    for r in p["runs"]:
        lines.append(f"    v{r['group_version']}: {r['succeeded']}/{r['runs']} succeeded, Delta versions "
                     f"@{r['first_delta_version']}..@{r['last_delta_version']}, last {short_time(r['last_ended_at'])}")
    lines.append(f"  exports ({len(p['exports'])}):" if p["exports"] else "  exports: none")
    for e in p["exports"]:
        lines.append(f"    {e['export_id']} {e['status']} group v{e['group_version']} Delta "
                     f"@{e['from_version']}..@{e['to_version']} as of {short_time(e['as_of'])} -> {e['table_name']}")
    if p.get("on_demand"):
        lines.append("  on-demand features reading it: " + ", ".join(f"{n} v{v}" for n, v in p["on_demand"].items()))
    lines.append(f"  training sets ({len(p['training_sets'])}):" if p["training_sets"] else "  training sets: none")
    for t in p["training_sets"]:
        lines.append(f"    {t['id']} {short_time(t['created_at'])} by {t['user']}: {', '.join(t['features'])} "
                     f"(group v{t['group_version']}, Delta version @{t['table_version']})")
    lines.append(f"  downstream groups: {', '.join(p['downstream_groups']) or 'none'}")
    lines.append(f"  feature services: {', '.join(f'{s} v{v}' for s, v in p['services'].items()) or 'none'}")
    return "\n".join(lines)


# ---- feature services -------------------------------------------------------------------------

def _service_versions(store: "FeatureStore", name: str) -> list[dict]:
    """The registered versions of the service `name` names ('service:NAME', or a bare NAME that is
    a service and not a group), oldest first; [] when it names no service."""
    from featurelake.services import service_name

    catalog, wanted = store.catalog, service_name(name)
    if wanted is None and (":" in name or not catalog.exists("feature_services")
                           or catalog.rows("groups", lambda r: r["name"] == name)):
        return []
    rows = catalog.rows("feature_services", lambda r: r["name"] == (wanted or name))
    if wanted is not None and not rows:
        known = [r["name"] for r in catalog.rows("feature_services")]
        raise NotFoundError(f"feature service {wanted!r} is not in the catalogue{did_you_mean(wanted, known)}: "
                            f"define it in the repository and run `featurelake apply`")
    return sorted(rows, key=lambda r: r["version"])


def _services_using(store: "FeatureStore", group: str, affected: Optional[set]) -> dict[str, int]:
    """{service: latest version} for the services whose latest version reads the group (or one of
    the affected features, directly or through group:*)."""
    if not store.catalog.exists("feature_services"):
        return {}
    latest: dict[str, dict] = {}
    for r in store.catalog.rows("feature_services"):
        if r["name"] not in latest or r["version"] > latest[r["name"]]["version"]:
            latest[r["name"]] = r
    out = {}
    for name in sorted(latest):
        refs = [ref.split(":", 1) for ref in latest[name]["features"]]
        if any(g == group and (affected is None or f == "*" or f in affected) for g, f in refs):
            out[name] = latest[name]["version"]
    return out


def _on_demand_using(store: "FeatureStore", group: str, feature: Optional[str]) -> dict[str, int]:
    """{on-demand feature: latest version} for those whose latest version reads the group (or the feature)."""
    if not store.catalog.exists("on_demand"):
        return {}
    latest: dict[str, dict] = {}
    for r in store.catalog.rows("on_demand"):
        if r["name"] not in latest or r["version"] > latest[r["name"]]["version"]:
            latest[r["name"]] = r
    return {n: r["version"] for n, r in sorted(latest.items())
            if any(ref.split(":")[0] == group and (feature is None or ref.split(":")[1] == feature)
                   for ref in r["inputs"])}


def on_demand_lineage(store: "FeatureStore", versions: list[dict]) -> dict:
    """inputs (group features) and request fields -> the on-demand feature's versions -> the training
    sets that computed it."""
    latest, name = versions[-1], versions[-1]["name"]
    sets = []
    from featurelake.records import TrainingSetManifest

    for m in store.catalog.records(TrainingSetManifest):
        used = ((m.options or {}).get("on_demand") or {}).get(name)
        if used:
            sets.append({"id": m.id, "created_at": m.created_at, "user": m.user, "on_demand_version": used["version"]})
    sets = sorted(sets, key=lambda t: t["created_at"], reverse=True)[:MAX_ROWS]
    out = jsonable({
        "name": name, "on_demand": name, "owner": latest["owner"], "description": latest["description"],
        "inputs": list(latest["inputs"]), "request": json.loads(latest["request"]),
        "outputs": [f["name"] for f in json.loads(latest["outputs"])],
        "versions": [{"version": v["version"], "registered_at": v["registered_at"], "registered_by": v["registered_by"],
                      "changes": v["changes"], "inputs": list(v["inputs"])} for v in versions],
        "training_sets": sets})
    lines = [f"lineage of on-demand feature {name}" + (f" (owner {out['owner']})" if out["owner"] else ""),
             f"  inputs: {', '.join(out['inputs'])}", f"  request fields: {', '.join(out['request'])}",
             f"  outputs: {', '.join(out['outputs'])}", "  versions:"]
    lines += [f"    v{v['version']} {short_time(v['registered_at'])} by {v['registered_by']}: {v['changes']}"
              for v in out["versions"]]
    lines.append(f"  training sets ({len(sets)}):" if sets else "  training sets: none")
    lines += [f"    {t['id']} {short_time(t['created_at'])} by {t['user']} (on-demand v{t['on_demand_version']})"
              for t in sets]
    out["text"] = "\n".join(lines)
    return out


def service_lineage(store: "FeatureStore", versions: list[dict]) -> dict:
    """A service's versions (the feature list of each), the groups it reads, and the training
    sets built from it."""
    from pyspark.sql import functions as F

    latest, name = versions[-1], versions[-1]["name"]
    sets = []
    if store.catalog.exists("training_sets"):
        df = store.catalog.read("training_sets").where(F.col("options").contains(f'"{name}"'))
        for r in df.orderBy(F.col("created_at").desc()).limit(MAX_ROWS).collect():
            used = (_json(r["options"]) or {}).get("services") or {}
            if name in used:
                sets.append({"id": r["id"], "created_at": r["created_at"], "user": r["user"],
                             "service_version": used[name]})
    out = jsonable({
        "name": f"service:{name}", "service": name, "owner": latest["owner"], "description": latest["description"],
        "tags": latest["tags"], "features": latest["features"], "groups": latest["groups"],
        "versions": [{"version": v["version"], "registered_at": v["registered_at"], "registered_by": v["registered_by"],
                      "changes": v["changes"], "features": v["features"]} for v in versions],
        "training_sets": sets})
    lines = [f"lineage of feature service {name}" + (f" (owner {out['owner']})" if out["owner"] else ""),
             f"  features: {', '.join(out['features'])}", f"  groups: {', '.join(out['groups'])}", "  versions:"]
    lines += [f"    v{v['version']} {short_time(v['registered_at'])} by {v['registered_by']}: {v['changes']}"
              for v in out["versions"]]
    lines.append(f"  training sets ({len(sets)}):" if sets else "  training sets: none")
    lines += [f"    {t['id']} {short_time(t['created_at'])} by {t['user']} (service v{t['service_version']})"
              for t in out["training_sets"]]
    out["text"] = "\n".join(lines)
    return out


def usage(store: "FeatureStore", name: str) -> dict:
    """Audit events about a group, feature, training set or export, newest first, with counts
    by action and by user. Matches the object itself and JSON details that mention it."""
    group, feature = split_name(name)

    def about(r: dict) -> bool:
        obj, detail = r["object"], r["detail"] or ""
        if feature:  # the feature itself, a use of its whole group (an export), a group event naming it
            return (obj == name or f'"{name}"' in detail or obj == f"{group}:*" or f'"{group}:*"' in detail
                    or (obj == group and (f'"{feature}"' in detail or r["action"] in GROUP_WIDE)))
        return obj == name or (obj or "").startswith(f"{name}:") or f'"{name}"' in detail or f"{name}:" in detail

    rows = store.catalog.rows("usage", about)
    events = _newest(rows, "ts")[:MAX_ROWS]
    by_action: dict[str, int] = {}
    by_user: dict[str, int] = {}
    for r in rows:
        by_action[r["action"]] = by_action.get(r["action"], 0) + 1
        by_user[r["user"]] = by_user.get(r["user"], 0) + 1
    out = jsonable({"name": name, "events": events, "by_action": by_action, "by_user": by_user,
                    "total": sum(by_action.values())})
    lines = [f"usage of {name}: {out['total']} events"
             + (f" ({', '.join(f'{a} {n}' for a, n in sorted(by_action.items()))})" if by_action else "")]
    if by_user:
        lines.append("  by user: " + ", ".join(f"{u} {n}" for u, n in sorted(by_user.items(), key=lambda x: -x[1])))
    for e in out["events"]:
        lines.append(f"  {short_time(e['ts'])}  {e['user']:<12} {e['action']:<18} {e['object']}  {_short(e['detail'])}")
    if not events:
        lines.append("  nothing recorded: training sets, exports and online-table creation record their use")
    out["text"] = "\n".join(lines)
    return out


def _short(detail: Optional[str], width: int = 100) -> str:
    text = detail or ""
    return text if len(text) <= width else text[:width - 3] + "..."
