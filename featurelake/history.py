"""`featurelake catalog history GROUP`: the Delta versions of a group's offline table (printed
`@3`, the spelling `monitor drift --reference` reads; `v3` is a definition version), newest first,
each with the run that wrote it (OfflineTable.merge tags every commit `run_id=...`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from featurelake import lakeread
from featurelake.offline import commit_rows
from featurelake.records import Run

if TYPE_CHECKING:
    from featurelake.store import FeatureStore


def offline_history(store: "FeatureStore", group: str) -> list[dict]:
    """[{version, timestamp, operation, run_id, rows_written, kind, status, window, group_version}]."""
    commits = offline_commits(store, group)
    if not commits:
        return []
    runs = {r.run_id: r for r in store.catalog.records(Run, lambda r: r.group == group)}
    out = []
    for c in sorted(commits, key=lambda c: c["version"], reverse=True):
        meta = c.get("userMetadata") or ""
        run_id = meta[len("run_id="):] if meta.startswith("run_id=") else None
        run = runs.get(run_id) if run_id else None
        out.append({"version": c["version"], "timestamp": c["timestamp"], "operation": c["operation"],
                    "run_id": run_id, "rows_written": commit_rows(c["operation"], c.get("operationMetrics") or {}),
                    **{k: getattr(run, k) if run else None for k in ("kind", "status", "window", "group_version")}})
    return out


def offline_commits(store: "FeatureStore", group: str) -> list[dict]:
    """The offline table's Delta history, through delta-rs unless the table is a metastore
    table (storage.database) or the storage is one delta-rs does not read here."""
    path, why = lakeread.offline_reason(store.config, group)
    if why:
        return store.offline(group).history()
    store.group(group)  # NotFoundError naming the repository's groups, as the Spark path raises
    return lakeread.history(path, store.config)
