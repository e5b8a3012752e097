"""The catalogue: Delta tables under <storage.root>/_catalog/ recording every definition version,
run, export, training set and use. Plain Delta, so any Spark SQL reads it."""
from __future__ import annotations

import getpass
import json
import os
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, TypeVar, cast

from featurelake.commitlock import committing
from featurelake.records import RECORDS, R, Record, Usage, ddl
from featurelake.errors import JobError, NotFoundError, did_you_mean
from featurelake.retry import retry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.config import Config
    from featurelake.definitions import FeatureGroup
    from featurelake.repo import Repository

T = TypeVar("T")

# Delta's default, a checkpoint every 10 commits, cost each one-row catalogue commit 0.14-0.2 s on
# average (a checkpoint is ~2 s of Spark jobs); reading a log of 99 uncheckpointed commits took as
# long as one just checkpointed (0.58 vs 0.55 s, cold).
CHECKPOINT_INTERVAL = "100"

SCHEMAS = {
    "entities": "name string, join_keys array<string>, description string, owner string, "
                "tags map<string,string>, registered_at timestamp",
    "groups": "name string, version int, fingerprint string, entity string, keys array<string>, "
              "timestamp_column string, source_kind string, source string, ttl string, online boolean, "
              "owner string, tags map<string,string>, description string, definition string, changes string, "
              "registered_at timestamp, registered_by string, revision int",
    # what each group is now, one row per event (apply, metadata revision, rollback, deprecate, backfill
    # done): the last row of a group says its current version and revision, whether it is deprecated,
    # and which features still wait for `featurelake backfill`
    "group_states": "name string, version int, revision int, fingerprint string, state string, "
                    "pending array<string>, at timestamp, user string, reason string",
    "features": "group string, version int, name string, dtype string, description string, "
                "tags map<string,string>, kind string",
    "feature_services": "name string, version int, fingerprint string, features array<string>, "
                        "groups array<string>, owner string, description string, tags map<string,string>, "
                        "changes string, registered_at timestamp, registered_by string",
    # request-time features (featurelake.ondemand): one row per registered version
    "on_demand": "name string, version int, fingerprint string, request string, inputs array<string>, "
                 "groups array<string>, outputs string, code string, owner string, description string, "
                 "tags map<string,string>, changes string, registered_at timestamp, registered_by string",
}


SCHEMAS.update({table: ddl(record) for table, record in RECORDS.items()})  # runs, exports, ...


def now() -> datetime:
    return datetime.now(timezone.utc)


def current_user() -> str:
    """Who did it: FEATURELAKE_USER, else the OS user."""
    try:
        return os.environ.get("FEATURELAKE_USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def new_id(prefix: str) -> str:
    return f"{prefix}-{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def with_retry(action: Callable[[], T], what: str, attempts: int = 8) -> T:
    """Delta's optimistic concurrency: a commit that lost a race is retried from the start."""
    def lost_race(exc: Exception) -> bool:  # delta.exceptions.* arrive as Py4J/Spark errors too
        name = type(exc).__name__ + str(exc)[:400]
        return any(s in name for s in ("Concurrent", "ProtocolChanged", "MetadataChanged"))

    return retry(action, attempts=attempts, retryable=lost_race, base=0.2, cap=10.0,
                 give_up=lambda exc: JobError(f"{what}: another writer kept winning the Delta commit after "
                                              f"{attempts} attempts; try again"))


class Catalog:
    """Reads and writes the catalogue tables. Rows are read through delta-rs (lakeread), without
    a JVM; the SparkSession, which writes, is built on first use when `spark` is a getter."""

    def __init__(self, spark: "SparkSession | Callable[[], SparkSession]", root: str,
                 config: Optional["Config"] = None):
        self._spark, self.root, self.config = spark, root.rstrip("/"), config

    @property
    def spark(self) -> "SparkSession":
        if callable(self._spark) and not hasattr(self._spark, "sparkContext"):
            self._spark = self._spark()
        return cast("SparkSession", self._spark)

    def path(self, table: str) -> str:
        return f"{self.root}/_catalog/{table}"

    def _spark_reason(self) -> Optional[str]:
        """Why rows are read with Spark here (logged once), or None: through delta-rs."""
        if not hasattr(self, "_why"):
            from featurelake import lakeread

            self._why = lakeread.spark_reason(self.root)
            if self._why:
                lakeread.fallback(self.path(""), self._why)
        return self._why

    def exists(self, table: str) -> bool:
        if not self._spark_reason():
            from featurelake import lakeread

            return lakeread.open_table(self.path(table), self.config) is not None
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.path(table))

    def read(self, table: str, version: Optional[int] = None) -> "DataFrame":
        """The table as a DataFrame (empty with the right schema when nothing was written yet)."""
        if not self.exists(table):
            return self._frame(table, [])
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(table))

    def rows(self, table: str, where: "str | Callable[[dict], bool] | None" = None) -> list[dict]:
        """The rows where a Python predicate holds (read through delta-rs, no JVM), or where a
        Spark SQL condition holds (read with Spark)."""
        if not isinstance(where, str) and not self._spark_reason():
            from featurelake import lakeread

            return lakeread.rows(self.path(table), self.config, where)
        df = self.read(table)
        if isinstance(where, str):
            df = df.where(where)
        elif where is not None:
            return [r for r in (x.asDict(recursive=True) for x in df.collect()) if where(r)]
        return [r.asDict(recursive=True) for r in df.collect()]

    def _frame(self, table: str, rows: Iterable[dict]) -> "DataFrame":
        """The rows parsed from one JSON literal in the JVM, in one task: createDataFrame sends them
        through a Python worker (0.2 s of each 0.5 s catalogue commit), and a literal per value
        takes seconds to plan at a hundred rows."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import ArrayType, StructType, _parse_datatype_string

        spark = self.spark  # built first (when lazy): the DDL parser below needs the JVM
        schema = cast(StructType, _parse_datatype_string(SCHEMAS[table]))  # every SCHEMAS entry is a struct
        text = json.dumps([{n: r.get(n) for n in schema.fieldNames()} for r in rows], default=_json_time)
        parsed = F.from_json(F.lit(text), ArrayType(schema), {"mode": "FAILFAST"})
        return spark.range(0, 1, 1, 1).select(F.inline(parsed))

    def _writer(self, df: "DataFrame") -> Any:
        """Appends; a table this creates checkpoints its log every CHECKPOINT_INTERVAL commits and
        keeps no column statistics (its readers read it whole; a one-row commit 0.20 -> 0.17 s).
        Delta ignores both options on an existing table."""
        return df.write.format("delta").mode("append").option("delta.checkpointInterval", CHECKPOINT_INTERVAL) \
            .option("delta.dataSkippingNumIndexedCols", "0")

    def append(self, table: str, rows: list[dict]) -> None:
        """Blind appends never conflict with other writers; columns added to SCHEMAS later are
        added to an existing table (mergeSchema)."""
        if rows:
            frame = self._frame(table, rows)
            with committing(self.config, self.path(table), f"catalogue table {table}"):
                self._writer(frame).option("mergeSchema", "true").save(self.path(table))

    def merge(self, table: str, rows: list[dict], on: list[str], update: bool = False) -> None:
        """Inserts rows whose `on` columns are new (and updates the others when asked), atomically."""
        if not rows:
            return
        source = self._frame(table, rows)
        with committing(self.config, self.path(table), f"catalogue table {table}"):
            self._merge(table, source, on, update)

    def _merge(self, table: str, source: "DataFrame", on: list[str], update: bool) -> None:
        from delta.tables import DeltaTable

        if not self.exists(table):
            try:
                self._writer(source.limit(0)).save(self.path(table))
            except Exception as exc:  # a concurrent first writer created it: fine
                if "Concurrent" not in type(exc).__name__ + str(exc) and "already exists" not in str(exc):
                    raise
        cond = " AND ".join(f"t.`{c}` = s.`{c}`" for c in on)
        m = DeltaTable.forPath(self.spark, self.path(table)).alias("t").merge(source.alias("s"), cond) \
            .withSchemaEvolution()  # columns added to SCHEMAS later (groups.revision)
        if update:
            m = m.whenMatchedUpdateAll()
        m.whenNotMatchedInsertAll().execute()

    def add(self, *records: Record) -> None:
        """Records of one append-only table (featurelake.records), in one commit."""
        tables = {r.table for r in records}
        if len(tables) > 1:
            raise ValueError(f"one commit holds one table's records, not {sorted(tables)}")
        if records:
            table = records[0].table
            with_retry(lambda: self.append(table, [r.to_row() for r in records]), f"catalogue table {table}")

    def records(self, kind: type[R], where: Optional[Callable[[R], bool]] = None) -> list[R]:
        """The table's records (read without a JVM where delta-rs can), those where `where` holds."""
        found = [kind.from_row(row) for row in self.rows(kind.table)]
        return [r for r in found if where(r)] if where else found

    def audit(self, action: str, obj: str, detail: Any = None) -> None:
        self.audit_many(action, [(obj, detail)])

    def audit_many(self, action: str, items: list[tuple[str, Any]]) -> None:
        """Several usage rows (object, detail) in one commit, e.g. one per group a training set read."""
        stamp, user = now(), current_user()
        self.add(*[Usage(stamp, user, action, obj, detail) for obj, detail in items])

    # ---- definitions -------------------------------------------------------------------------

    def apply(self, repo: "Repository", offline_exists: Optional[Callable[[str], bool]] = None) -> list[str]:
        """Registers the repository (see lifecycle.apply); returns one line per change (empty when
        nothing changed). Raises UsageError, registering nothing, when a change cannot be carried out."""
        from featurelake.lifecycle import apply

        return with_retry(lambda: apply(self, repo, offline_exists or self._offline_path_exists),
                          "featurelake apply")

    def _offline_path_exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, f"{self.root}/offline/{name}")

    def states(self, names: Optional[list[str]] = None, rows: Optional[list[dict]] = None) -> dict[str, dict]:
        """Per registered group, what it is now: version, revision, fingerprint, state (current or
        deprecated) and pending (features waiting for a backfill). A group registered before states
        were recorded is its newest version, current. `rows`: the groups' rows, when already read."""
        where = (lambda r: r["name"] in names) if names else None
        out: dict[str, dict] = {}
        for row in self.rows("groups", where) if rows is None else rows:
            order = (row["version"], row.get("revision") or 0)
            if row["name"] not in out or order > (out[row["name"]]["version"], out[row["name"]]["revision"]):
                out[row["name"]] = {"name": row["name"], "version": row["version"], "revision": order[1],
                                    "fingerprint": row["fingerprint"], "state": "current", "pending": [],
                                    "at": row["registered_at"], "reason": "registered"}
        for event in sorted(self.rows("group_states", where), key=lambda e: e["at"]):
            out[event["name"]] = {**event, "revision": event["revision"] or 0, "pending": list(event["pending"] or [])}
        return out

    def record_state(self, rows: list[dict]) -> None:
        """Appends state events (see SCHEMAS["group_states"]), all in one commit."""
        stamp, user = now(), current_user()
        rows = [{"at": stamp, "user": user, "pending": [], **r} for r in rows]
        with_retry(lambda: self.append("group_states", rows), "catalogue table group_states")

    def group_versions(self, name: str) -> list[dict]:
        every = self.rows("groups")
        rows = sorted((r for r in every if r["name"] == name), key=lambda r: (r["version"], r.get("revision") or 0))
        if not rows:
            known = sorted({r["name"] for r in every})
            raise NotFoundError(f"feature group {name!r} is not in the catalogue at {self.path('groups')}"
                                f"{did_you_mean(name, known)}: run `featurelake apply` first")
        return rows

    def version_of(self, group: "FeatureGroup") -> int:
        """The registered version of the group's current code, which must be the current one."""
        return self.versions_of([group])[group.name]

    def versions_of(self, groups: list["FeatureGroup"]) -> dict[str, int]:
        """version_of for several groups, in one read of the catalogue."""
        return {name: state["version"] for name, state in self.current(groups).items()}

    def current(self, groups: list["FeatureGroup"]) -> dict[str, dict]:
        """The state (see states) of each group, checked against its code: refused when the code was
        not applied, is not the current version (after a rollback), or the group is deprecated."""
        from featurelake.errors import UsageError

        names = [g.name for g in groups]
        rows = self.rows("groups", lambda r: r["name"] in names)
        prints = {(g.name, g.fingerprint) for g in groups}
        found = {r["name"]: int(r["version"]) for r in rows if (r["name"], r["fingerprint"]) in prints}
        states = self.states(names, rows)
        for group in groups:
            if group.name not in found:
                raise UsageError(f"feature group {group.name!r} changed since the last `featurelake apply` "
                                 f"(or was never applied): run `featurelake apply` first")
            state, mine = states[group.name], found[group.name]
            if state["state"] == "deprecated":
                raise UsageError(f"feature group {group.name!r} is deprecated: it is not served to new training "
                                 f"sets, exports or ingests (past training sets still replay); to serve it again "
                                 f"run `featurelake rollback {group.name} --to {state['version']}`")
            if mine != state["version"]:
                raise UsageError(f"feature group {group.name!r}: the repository's code is version {mine}, but "
                                 f"version {state['version']} is current: run `featurelake apply` to make version "
                                 f"{mine} current again (a rollback), or bring the code back to version "
                                 f"{state['version']}")
        return {n: states[n] for n in names}


def _json_time(value: Any) -> str:
    """Datetimes as ISO 8601 with their offset (a naive one is local time, as Spark takes it)."""
    if isinstance(value, datetime):
        return value.astimezone().isoformat() if value.tzinfo is None else value.isoformat()
    raise TypeError(f"{type(value).__name__} {value!r} cannot be stored in the catalogue")


def group_row(group: "FeatureGroup", version: int, changes: str, stamp: datetime, user: str,
              revision: int = 0) -> dict:
    return {"name": group.name, "version": version, "revision": revision, "fingerprint": group.fingerprint,
            "entity": group.entity.name, "keys": group.keys, "timestamp_column": group.timestamp_column,
            "source_kind": group.source.kind, "source": json.dumps(group.source.to_dict(), sort_keys=True),
            "ttl": group.ttl_text, "online": group.online, "owner": group.owner,
            "tags": {k: str(v) for k, v in group.tags.items()}, "description": group.description,
            "definition": json.dumps(group.to_dict(), sort_keys=True, default=str), "changes": changes,
            "registered_at": stamp, "registered_by": user}


def feature_rows(group: "FeatureGroup", version: int) -> list[dict]:
    rows = [{"group": group.name, "version": version, "name": f.name, "dtype": f.dtype,
             "description": f.description, "tags": {k: str(v) for k, v in f.tags.items()}, "kind": "feature"}
            for f in group.features]
    for agg in group.aggregations:
        base = group.feature(agg.column)
        for name, fn, window, _ in agg.outputs():
            dtype = "bigint" if fn in ("count", "approx_count_distinct") else \
                base.dtype if fn in ("min", "max", "last") else "double"
            rows.append({"group": group.name, "version": version, "name": name, "dtype": dtype,
                         "description": f"{fn} of {agg.column} over the last {window}",
                         "tags": {k: str(v) for k, v in base.tags.items()}, "kind": "aggregation"})
    return rows


def register_versions(catalog: "Catalog", table: str, objects: Iterable[Any], *, label: str, first: str,
                      row: Callable[[Any, int, str], dict], describe: Callable[[dict, Any], str]) -> list[str]:
    """Registers named definitions versioned by fingerprint (feature services, request-time
    features) in `table`; one line per change. A definition seen before (a rollback) matches its
    registered version; a new one is the next version, `describe(latest row, definition)` saying
    what changed (`first` for a version 1); owner, description and tags are updated in place.
    `row(obj, version, changes)` is the table's row, stamped now."""
    objects = sorted(objects, key=lambda o: o.name)
    if not objects:
        return []
    by_name: dict[str, list[dict]] = {}
    for old in catalog.rows(table):
        by_name.setdefault(old["name"], []).append(old)
    rows, changes = [], []
    for obj in objects:
        versions = sorted(by_name.get(obj.name, []), key=lambda r: r["version"])
        match = next((v for v in versions if v["fingerprint"] == obj.fingerprint), None)
        if match is not None:
            meta = row(obj, match["version"], match["changes"])
            if any(match[k] != meta[k] for k in ("owner", "description", "tags")):
                rows.append({**meta, "registered_at": match["registered_at"], "registered_by": match["registered_by"]})
                changes.append(f"{label} {obj.name}: metadata updated (version {match['version']})")
            if match["version"] != versions[-1]["version"]:
                changes.append(f"{label} {obj.name}: matches registered version {match['version']} "
                               f"(latest is {versions[-1]['version']})")
            continue
        version = versions[-1]["version"] + 1 if versions else 1
        what = describe(versions[-1], obj) if versions else first
        rows.append(row(obj, version, what))
        changes.append(f"{label} {obj.name}: version {version} ({what})")
    catalog.merge(table, rows, on=["name", "fingerprint"], update=True)
    return changes


def describe_changes(old: dict, new: dict) -> str:
    """A short, human account of what differs between two group definitions."""
    parts = []
    old_f = {f["name"]: f for f in old.get("features", [])}
    new_f = {f["name"]: f for f in new.get("features", [])}
    if set(new_f) - set(old_f):
        parts.append("added " + ", ".join(sorted(set(new_f) - set(old_f))))
    if set(old_f) - set(new_f):
        parts.append("removed " + ", ".join(sorted(set(old_f) - set(new_f))))
    retyped = [n for n in set(old_f) & set(new_f) if old_f[n]["dtype"] != new_f[n]["dtype"]]
    if retyped:
        parts.append("changed type of " + ", ".join(sorted(retyped)))
    for key in sorted(set(old) | set(new)):
        if key != "features" and old.get(key) != new.get(key):
            parts.append(f"{key} changed")
    return "; ".join(parts) or "definition changed"


# ---- discovery: what `featurelake catalog ...` shows ------------------------------------------

def latest_groups(catalog: Catalog, include_deprecated: bool = False) -> list[dict]:
    """The current version of every group (deprecated ones too when asked), with its features."""
    states = catalog.states()
    rows = {r["fingerprint"]: r for r in catalog.rows("groups")}
    features: dict[tuple, list] = {}
    for f in catalog.rows("features"):
        features.setdefault((f["group"], f["version"]), []).append(f)
    out = []
    for name in sorted(states):
        state = states[name]
        if state["state"] == "deprecated" and not include_deprecated:
            continue
        row = rows[state["fingerprint"]]
        out.append({**describe_group(row, features.get((name, row["version"]), [])),
                    "deprecated": state["state"] == "deprecated"})
    return out


def describe_group(row: dict, features: list[dict]) -> dict:
    definition = json.loads(row["definition"])
    order = {n: i for i, n in enumerate(f["name"] for f in definition["features"])}
    return {"name": row["name"], "version": row["version"], "revision": row.get("revision") or 0,
            "entity": row["entity"], "keys": row["keys"],
            "timestamp_column": row["timestamp_column"], "source": json.loads(row["source"]),
            "ttl": row["ttl"], "online": row["online"], "owner": row["owner"], "tags": row["tags"],
            "description": row["description"], "registered_at": row["registered_at"],
            "registered_by": row["registered_by"], "changes": row["changes"],
            "features": [{k: f[k] for k in ("name", "dtype", "description", "tags", "kind")}
                         for f in sorted(features, key=lambda f: (f["kind"] != "feature",
                                                                   order.get(f["name"], 0), f["name"]))]}


def show_group(catalog: Catalog, name: str, version: Optional[int] = None) -> dict:
    rows = catalog.group_versions(name)
    state = catalog.states([name])[name]
    row = next((r for r in rows if r["fingerprint"] == state["fingerprint"]), rows[-1]) if version is None else \
        next((r for r in reversed(rows) if r["version"] == version), None)
    if row is None:
        raise NotFoundError(f"feature group {name!r} has no version {version}: versions are "
                            f"{[r['version'] for r in rows]}")
    feats = catalog.rows("features", lambda f: f["group"] == name and f["version"] == row["version"])
    out = describe_group(row, feats)
    out["state"], out["pending_backfill"] = state["state"], state["pending"]
    out["versions"] = [{"version": r["version"], "revision": r.get("revision") or 0,
                        "registered_at": r["registered_at"], "changes": r["changes"],
                        "registered_by": r["registered_by"]} for r in rows]
    return out


def search(catalog: Catalog, text: str) -> list[dict]:
    """Groups and features whose name, description, owner or tags contain the text."""
    needle = text.lower()
    hits = []
    for g in latest_groups(catalog):
        hay = " ".join([g["name"], g["description"] or "", g["owner"] or "", json.dumps(g["tags"])]).lower()
        if needle in hay:
            hits.append({"kind": "group", "name": g["name"], "description": g["description"]})
        for f in g["features"]:
            if needle in " ".join([f["name"], f["description"] or "", json.dumps(f["tags"])]).lower():
                hits.append({"kind": "feature", "name": f"{g['name']}:{f['name']}", "dtype": f["dtype"],
                             "description": f["description"]})
    return hits
