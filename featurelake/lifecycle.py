"""The lifecycle of a definition: plan, apply, backfill, deprecate, rollback.

A group's registered definitions are numbered data versions (what decides the rows it writes);
a change of description, owner, tags or freshness_sla alone is a metadata revision of the same
version. The catalogue's `group_states` says which version is current, whether the group is
deprecated, and which features still wait for a backfill: features added while the offline table
already held rows have no value in those rows, so training sets and exports refuse them until
`featurelake backfill GROUP` has recomputed the history. Changes the stored data cannot follow
(a stored column's type, the keys, the event time column) are refused at apply, registering nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Optional

from featurelake import services
from featurelake.catalog import current_user, describe_changes, feature_rows, group_row, now
from featurelake.errors import UsageError

if TYPE_CHECKING:
    from featurelake.catalog import Catalog
    from featurelake.definitions import FeatureGroup
    from featurelake.repo import Repository
    from featurelake.runs import IngestResult
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake.lifecycle")
METADATA = ("description", "owner", "tags", "freshness_sla")
"""Definition keys that change no row: a change of these alone is a metadata revision."""


def data_part(definition: dict) -> dict:
    """What decides the rows a definition writes: the definition without its metadata."""
    out = {k: v for k, v in definition.items() if k not in METADATA}
    out["entity"] = {k: definition["entity"].get(k) for k in ("name", "join_keys")}
    out["features"] = [{"name": f["name"], "dtype": f["dtype"]} for f in definition.get("features", [])]
    return out


@dataclass
class Change:
    """One group's change: what apply does, and what it means for stored data and its users."""
    group: str
    action: str        # new | data | revision | rollback | unchanged | missing | deprecated | refused | entity
    line: str          # the one-line account apply returns
    version: Optional[int] = None
    revision: int = 0
    offline: str = ""
    online: str = ""
    training_sets: str = ""
    run: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    known: bool = False  # the definition is registered already (a rollback, a revision undone)

    def text(self) -> str:
        lines = [self.line]
        for label, value in (("offline", self.offline), ("online", self.online),
                             ("training sets", self.training_sets)):
            if value:
                lines.append(f"  {label}: {value}")
        if self.run:
            lines.append("  run: " + "; then ".join(f"`{c}`" for c in self.run))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


def plan(catalog: "Catalog", repo: "Repository", offline_exists: Callable[[str], bool]) -> list[Change]:
    """What apply would do, per group (unchanged groups left out), in dependency order."""
    registered: dict[str, list[dict]] = {}
    for row in catalog.rows("groups"):
        registered.setdefault(row["name"], []).append(row)
    states = catalog.states()
    changes = []
    for group in repo.ordered():
        rows = sorted(registered.get(group.name, []), key=lambda r: (r["version"], r.get("revision") or 0))
        change = _plan_group(group, rows, states.get(group.name), offline_exists)
        if change.action != "unchanged":
            changes.append(change)
    for name in sorted(set(states) - set(repo.groups)):
        if states[name]["state"] != "deprecated":
            changes.append(Change(
                name, "missing", f"{name}: registered but not in the repository: apply leaves it registered and "
                                 f"served; run `featurelake deprecate {name}` to retire it",
                version=states[name]["version"],
                offline="kept, with its history", online="still served until deprecated",
                training_sets="past sets keep replaying, deprecated or not",
                run=[f"featurelake deprecate {name}"]))
    return changes


def _plan_group(group: FeatureGroup, rows: list[dict], state: Optional[dict],
                offline_exists: Callable[[str], bool]) -> Change:
    name, new = group.name, group.to_dict()
    online = "a new table, created by the first export" if group.online else "none (online=False)"
    if not rows:
        return Change(name, "new", f"{name}: version 1 (new group)", 1,
                      offline="a new table, created by the first ingest", online=online,
                      training_sets="none yet", run=[f"featurelake ingest {name}"] +
                      ([f"featurelake export {name}"] if group.online else []))
    assert state is not None
    match = next((r for r in rows if r["fingerprint"] == group.fingerprint), None)
    current = next(r for r in rows if r["fingerprint"] == state["fingerprint"])
    if state["state"] == "deprecated":
        return Change(name, "deprecated", f"{name}: deprecated, but still in the repository: apply leaves it "
                                          f"deprecated; remove it from the repository, or run `featurelake rollback "
                                          f"{name} --to {state['version']}` to serve it again",
                      state["version"], run=[f"featurelake rollback {name} --to {state['version']}"])
    if match is not None and match["fingerprint"] == state["fingerprint"]:
        return Change(name, "unchanged", f"{name}: unchanged", state["version"], state["revision"])
    old = json.loads(current["definition"])
    if (match is None and data_part(old) == data_part(new)) or (match is not None and
                                                                 match["version"] == state["version"]):
        revision = match.get("revision") or 0 if match is not None else \
            max(r.get("revision") or 0 for r in rows if r["version"] == state["version"]) + 1
        what = "; ".join(f"{k} changed" for k in METADATA if old.get(k) != new.get(k)) or "feature descriptions changed"
        return Change(name, "revision", f"{name}: version {state['version']} revision {revision} (metadata only: "
                                        f"{what})", state["version"], revision,
                      offline="nothing stored changes", online="nothing changes until the next export",
                      training_sets="unaffected", known=match is not None)
    exists = offline_exists(name)
    if match is not None:  # an earlier definition again: a rollback
        back = json.loads(match["definition"])
        pending = _added(old, back) if exists else []
        return Change(name, "rollback", f"{name}: version {match['version']} current again, a rollback (was "
                                        f"version {state['version']}: {describe_changes(old, back)})",
                      match["version"], match.get("revision") or 0, pending=pending,
                      offline=_offline_text(name, old, back, exists, state["version"]),
                      online=_online_text(group, pending), training_sets=_training_text(state["version"], pending),
                      run=_run(name, group.online, exists, pending, old, back), known=True)
    refusal = _refusal(name, rows, old, new)
    if refusal:
        return Change(name, "refused", f"{name}: refused: {refusal}", state["version"])
    version = max(r["version"] for r in rows) + 1
    pending = _added(old, new) if exists else []
    return Change(name, "data", f"{name}: version {version} ({describe_changes(old, new)})", version,
                  pending=pending, offline=_offline_text(name, old, new, exists, version),
                  online=_online_text(group, pending), training_sets=_training_text(state["version"], pending),
                  run=_run(name, group.online, exists, pending, old, new))


def _added(old: dict, new: dict) -> list[str]:
    before = {f["name"] for f in old["features"]}
    return [f["name"] for f in new["features"] if f["name"] not in before]


def _refusal(name: str, rows: list[dict], old: dict, new: dict) -> str:
    """Why the stored data cannot follow the change, with the fix; empty when it can."""
    if old["entity"]["join_keys"] != new["entity"]["join_keys"]:
        return (f"the entity keys change from {old['entity']['join_keys']} to {new['entity']['join_keys']}, but the "
                f"offline and online tables are keyed on the old ones: define a new group (e.g. '{name}_v2') with "
                f"the new keys, backfill it, and deprecate this one")
    if old["timestamp_column"] != new["timestamp_column"]:
        return (f"the event time column changes from {old['timestamp_column']!r} to {new['timestamp_column']!r}, "
                f"which the stored rows are keyed and partitioned on: alias the new column to "
                f"{old['timestamp_column']!r} in the transform, or define a new group")
    stored: dict[str, str] = {}
    for row in rows:
        for f in json.loads(row["definition"])["features"]:
            stored.setdefault(f["name"], f["dtype"])
    retyped = [(f["name"], stored[f["name"]], f["dtype"]) for f in new["features"]
               if f["name"] in stored and stored[f["name"]] != f["dtype"]]
    if retyped:
        what = ", ".join(f"{n} {a} -> {b}" for n, a, b in retyped)
        first = retyped[0][0]
        return (f"changed type of {what}: the offline table stores {first} as {retyped[0][1]} and cannot hold "
                f"the new type: name the changed feature differently (e.g. '{first}_v2', a new column, then "
                f"`featurelake backfill {name}`), or define a new group")
    return ""


def _offline_text(name: str, old: dict, new: dict, exists: bool, version: int) -> str:
    if not exists:
        return "no table yet: the first ingest writes every column"
    parts = []
    added, removed = _added(old, new), _added(new, old)
    if added:
        parts.append(f"new columns {', '.join(added)}: rows already stored hold no value for them until "
                     f"`featurelake backfill {name}`")
    if removed:
        parts.append(f"columns {', '.join(removed)} stay in the stored rows and their history; new rows leave "
                     f"them empty")
    if _logic_changed(old, new):
        parts.append(f"new rows are computed by version {version}; rows already stored keep the logic that wrote "
                     f"them (column _definition_version) until `featurelake backfill {name}` recomputes them")
    elif not added and not removed:
        parts.append("nothing stored changes")
    return "; ".join(parts)


def _logic_changed(old: dict, new: dict) -> bool:
    """A change to how rows are computed (transform, source, ...), beyond the list of features."""
    ignore = ("features", "aggregations", "online", "allow_online_pii", "ttl")
    return {k: v for k, v in data_part(old).items() if k not in ignore} != \
        {k: v for k, v in data_part(new).items() if k not in ignore}


def _online_text(group: FeatureGroup, pending: list) -> str:
    if not group.online:
        return "none (online=False)"
    if pending:
        return (f"export is refused until {', '.join(pending)} are backfilled (it would serve them empty); the "
                f"online table keeps what the last export wrote")
    return "the next export writes the new definition (a full export when the items' shape changed)"


def _training_text(current: int, pending: list) -> str:
    text = "past sets replay unchanged (each reads the definition and table versions it recorded)"
    if pending:
        text += f"; new sets refuse {', '.join(pending)} until backfilled"
    return text


def _run(name: str, online: bool, exists: bool, pending: list, old: dict, new: dict) -> list[str]:
    if not exists:
        return [f"featurelake ingest {name}"]
    out = [f"featurelake backfill {name}"] if pending or _logic_changed(old, new) else []
    return out + ([f"featurelake export {name}"] if online else [])


def apply(catalog: "Catalog", repo: "Repository", offline_exists: Callable[[str], bool]) -> list[str]:
    """Carries out the plan: new data versions and revisions registered, rollbacks made current,
    entities updated; refused changes raise UsageError before anything is written."""
    changes = plan(catalog, repo, offline_exists)
    refused = [c for c in changes if c.action == "refused"]
    if refused:
        raise UsageError("apply refused, nothing registered:\n" + "\n".join(f"  {c.line}" for c in refused))
    stamp, user = now(), current_user()
    groups: list[dict] = []
    features: list[dict] = []
    revised: list[dict] = []
    states: list[dict] = []
    for c in changes:
        if c.action not in ("new", "data", "revision", "rollback"):
            continue
        group = repo.groups[c.group]
        assert c.version is not None, c  # plan gives a version to every change apply carries out
        if not c.known:
            groups.append(group_row(group, c.version, c.line.split(" (", 1)[-1].rstrip(")"), stamp, user,
                                    c.revision))
            (revised if c.action == "revision" else features).extend(feature_rows(group, c.version))
        states.append({"name": c.group, "version": c.version, "revision": c.revision,
                       "fingerprint": group.fingerprint, "state": "current", "pending": c.pending,
                       "reason": c.action})
    lines = [c.line for c in changes]
    old_entities = {r["name"]: r for r in catalog.rows("entities")}
    entities = []
    for entity in repo.entities.values():
        row = {**entity.to_dict(), "registered_at": stamp}
        old = old_entities.get(entity.name)
        if old is None or {k: old[k] for k in ("join_keys", "description", "owner", "tags")} != \
                {k: row[k] for k in ("join_keys", "description", "owner", "tags")}:
            entities.append(row)
            lines.append(f"entity {entity.name}: {'new' if old is None else 'updated'}")
    catalog.merge("groups", groups, on=["name", "fingerprint"])
    catalog.merge("features", features, on=["group", "version", "name"])
    catalog.merge("features", revised, on=["group", "version", "name"], update=True)
    catalog.merge("entities", entities, on=["name"], update=True)
    if states:
        catalog.record_state(states)
    from featurelake import ondemandregister

    registered = services.register(catalog, repo, stamp, user) + ondemandregister.register(catalog, repo, stamp, user)
    return lines + registered


# ---- the verbs beside apply ------------------------------------------------------------------

def deprecate(store: "FeatureStore", name: str) -> str:
    """Retires a group: it leaves `catalog list`, is refused to new training sets, exports and
    ingests; its tables and the replays of past training sets stay."""
    state = _state(store, name)
    if state["state"] == "deprecated":
        return f"{name}: already deprecated"
    store.catalog.record_state([{**_event(state), "state": "deprecated", "reason": "deprecate"}])
    note = (f"; it is still in the repository {store.repo.path}: remove it there, or the next apply says so"
            if name in store.repo.groups else "")
    return (f"{name}: deprecated (version {state['version']}): no longer listed or served to new training sets "
            f"and exports; past training sets keep replaying; `featurelake rollback {name} --to "
            f"{state['version']}` serves it again{note}")


def rollback(store: "FeatureStore", name: str, to: int) -> str:
    """Makes registered version `to` current (and reinstates a deprecated group). Ingests and
    exports then need the repository's code at that version, which `featurelake apply` of the
    old code does too."""
    state = _state(store, name)
    rows = [r for r in store.catalog.group_versions(name) if r["version"] == int(to)]
    if not rows:
        known = sorted({r["version"] for r in store.catalog.group_versions(name)})
        raise UsageError(f"feature group {name!r} has no version {to}: its versions are {known} "
                         f"(`featurelake catalog show {name}`)")
    row = rows[-1]
    if state["state"] == "current" and state["version"] == row["version"]:
        return f"{name}: version {to} is already current"
    offline = store.offline_by_name(name)
    current = json.loads(next(r for r in store.catalog.group_versions(name)
                              if r["fingerprint"] == state["fingerprint"])["definition"])
    pending = _added(current, json.loads(row["definition"])) if offline.exists() else []
    store.catalog.record_state([{"name": name, "version": row["version"], "revision": row.get("revision") or 0,
                                 "fingerprint": row["fingerprint"], "state": "current", "pending": pending,
                                 "reason": f"rollback from version {state['version']}"}])
    code = store.repo.groups.get(name)
    hint = "" if code is not None and code.fingerprint == row["fingerprint"] else (
        f"; ingest and export run the repository's code, which is not version {to}: bring the code back to "
        f"version {to} (its definition: `featurelake catalog show {name}`)")
    more = f"; run `featurelake backfill {name}` for {', '.join(pending)}" if pending else ""
    return f"{name}: version {to} is current (was {state['version']}){more}{hint}"


def backfill(store: "FeatureStore", name: str, *, start: Optional[datetime] = None,
             end: Optional[datetime] = None, chunk: Optional[str] = None) -> IngestResult:
    """Recomputes the group's history with its current definition, in chunks, resumable (ingest's
    backfill: a rerun skips the chunks done). Without start, from the offline table's first event.
    When the whole stored history was covered, the features waiting for it become usable."""
    from pyspark.sql import functions as F

    from featurelake import ingest
    from featurelake.sources import Window, utc
    from featurelake.spark import one_row

    ctx = ingest._context(store, name)  # refuses stale code, a rollback's other version, a deprecated group
    first = None
    if ctx.table.exists():
        first = one_row(ctx.table.read().agg(F.min(ctx.group.timestamp_column)))[0]
    if start is None:
        if first is None:
            raise UsageError(f"feature group {name!r} has no stored rows to backfill: run `featurelake ingest "
                             f"{name}`, or give --start")
        start = first
    result = ingest._backfill(ctx, Window(utc(start), utc(end) if end else None), chunk or ingest.DEFAULT_CHUNK)
    state = store.catalog.states([name])[name]
    covered = end is None and (first is None or utc(start) <= utc(first))
    if result.ok and state["pending"] and covered:
        store.catalog.record_state([{**_event(state), "pending": [], "reason": f"backfill {result.backfill_id}"}])
        log.info("%s: %s backfilled", name, ", ".join(state["pending"]))
    elif result.ok and state["pending"]:
        log.warning("%s: the backfill did not cover the whole history (from %s to now): %s still wait for one",
                    name, first, ", ".join(state["pending"]))
    return result


def _state(store: "FeatureStore", name: str) -> dict:
    store.catalog.group_versions(name)  # NotFoundError naming the known groups
    return store.catalog.states([name])[name]


def _event(state: dict) -> dict:
    return {k: state[k] for k in ("name", "version", "revision", "fingerprint", "state", "pending")}


def check_served(name: str, state: dict, features: list[str]) -> None:
    """Refuses features that wait for a backfill (their stored rows hold no value)."""
    waiting = [f for f in features if f in state["pending"]]
    if waiting:
        raise UsageError(f"feature group {name!r}: {', '.join(waiting)} (added by version {state['version']}) not "
                         f"backfilled yet: the rows stored before it hold no value. Run `featurelake backfill "
                         f"{name}` first (or leave {', '.join(waiting)} out)")
