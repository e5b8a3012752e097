"""What `--reference` and `--current` name: a slice of a group's offline table.

- `@3`: the table as of Delta version 3 (time travel). `@` marks a Delta version of the offline
  table everywhere (`catalog history` prints them so); `v3` is a definition version
  (`catalog list/show`). The old `v3` and `3` are still read as `@3`, with a warning;
- `2026-01-01..2026-02-01`: rows of the latest version whose event time is in [start, end)
  (either side may be left open: `2026-01-01..`);
- a training set id: the table at the Delta version the training set read, that is the data
  the model could learn from; when both REFs are training sets, their rows instead (the values
  each set holds, window features included: `training_set_rows`);
- nothing or `latest`: the latest version.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from featurelake.errors import NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from featurelake.records import TrainingSetManifest
    from pyspark.sql import DataFrame

    from featurelake.store import FeatureStore

_VERSION = re.compile(r"^@(\d+)$")
_OLD_VERSION = re.compile(r"^[vV]?(\d+)$")
log = logging.getLogger("featurelake.monitoring")
_warned: set = set()


@dataclass
class Ref:
    text: str
    kind: str  # latest | version | time_range | training_set | training_set_rows | frame (a DataFrame)
    version: Optional[int] = None
    start: Optional[datetime] = None
    end: Optional[datetime] = None
    training_set: Optional[str] = None

    def describe(self) -> str:
        if self.kind == "version":
            return f"Delta version @{self.version}"
        if self.kind == "time_range":
            start = self.start.isoformat() if self.start else "the beginning"
            end = self.end.isoformat() if self.end else "now"
            return f"event time {start} .. {end}" + (f" (@{self.version})" if self.version is not None else "")
        if self.kind == "frame":
            return self.text
        if self.kind == "training_set":
            return f"training set {self.training_set} (@{self.version})"
        if self.kind == "training_set_rows":
            return f"the rows of training set {self.training_set}"
        return f"latest (@{self.version})"

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "version": self.version, "start": self.start,
                "end": self.end, "training_set": self.training_set, "description": self.describe()}


def parse_time(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: bad time {text!r}: use ISO 8601 such as 2026-01-31 or "
                         f"2026-01-31T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_ref(text: Optional[str], what: str = "--reference") -> Ref:
    """The REF's form, without touching Spark; a training set id is checked when resolved."""
    if text is None or text.strip().lower() in ("", "latest"):
        return Ref(text or "latest", "latest")
    text = text.strip()
    m = _VERSION.match(text)
    if m:
        return Ref(text, "version", version=int(m.group(1)))
    m = _OLD_VERSION.match(text)
    if m:
        if (what, text) not in _warned:  # drift parses a REF once per group: say it once
            _warned.add((what, text))
            log.warning("%s %s: write Delta versions as @%s (vN is a definition version, as in `catalog "
                        "list`); %s is read as @%s for now", what, text, m.group(1), text, m.group(1))
        return Ref(text, "version", version=int(m.group(1)))
    if ".." in text:
        left, right = text.split("..", 1)
        start = parse_time(left, what) if left.strip() else None
        end = parse_time(right, what) if right.strip() else None
        if start and end and start >= end:
            raise UsageError(f"{what} {text!r}: the range is empty: write START..END with START before END")
        return Ref(text, "time_range", start=start, end=end)
    return Ref(text, "training_set", training_set=text)


def resolve(store: "FeatureStore", group: str, ref: Ref, what: str = "--reference") -> "DataFrame":
    """The rows the REF names, filling in ref.version; errors say which versions or ids exist."""
    from pyspark.sql import functions as F

    table = store.offline(group)
    latest = table.version()
    if latest is None:
        raise NotFoundError(f"feature group {group!r} has no offline table yet: run `featurelake ingest {group}`")
    if ref.kind == "training_set":
        ref.version = training_set_version(store, group, ref.training_set or "")
    elif ref.kind != "version":
        ref.version = latest
    if ref.version is None or not 0 <= ref.version <= latest:
        raise NotFoundError(f"{what} {ref.text!r}: feature group {group!r} has Delta versions @0..@{latest}")
    df = table.read(version=ref.version)
    ts = F.col(store.group(group).timestamp_column)
    if ref.start is not None:
        df = df.where(ts >= F.lit(ref.start).cast("timestamp"))
    if ref.end is not None:
        df = df.where(ts < F.lit(ref.end).cast("timestamp"))
    return df


def training_set_rows(store: "FeatureStore", group: str, ref: Ref) -> "DataFrame":
    """The rows of a training set (its replay), the group's columns named as the group's features,
    window features included: what the model saw, not the table it was read from."""
    from pyspark.sql import functions as F

    from featurelake.monitoring.stats import _outputs

    name = ref.training_set or ""
    ref.version = training_set_version(store, group, name)  # the clear errors first
    ref.kind = "training_set_rows"
    ts = store.load_training_set(name)
    outputs = [o for plan in ts.manifest["options"]["plan"] for o in _outputs(plan)]
    mine = [(o, r.split(":", 1)[1]) for o, r in zip(outputs, ts.manifest["features"]) if r.split(":", 1)[0] == group]
    return ts.to_spark().select(*[F.col(f"`{o}`").alias(f) for o, f in mine])


def training_set_versions(store: "FeatureStore", training_set_id: str) -> dict[str, int]:
    """group -> Delta version the training set read, from its manifest in the catalogue."""
    from featurelake.records import TrainingSetManifest

    every = store.catalog.records(TrainingSetManifest)
    found = [m for m in every if m.id == training_set_id]
    if not found:
        raise NotFoundError(f"{training_set_id!r} is neither a Delta version (@3), a time range "
                            f"(2026-01-01..2026-02-01) nor a known training set id"
                            f"{did_you_mean(training_set_id, [m.id for m in every])}")
    return table_versions(found[0])


def training_set_version(store: "FeatureStore", group: str, training_set_id: str) -> int:
    """The Delta version of the group that the training set read."""
    versions = training_set_versions(store, training_set_id)
    if group not in versions:
        raise UsageError(f"training set {training_set_id!r} did not read feature group {group!r} "
                         f"(it read {sorted(versions) or 'nothing'}): pick a training set that used it")
    return int(versions[group])


def table_versions(manifest: "TrainingSetManifest") -> dict[str, int]:
    """group -> Delta version a training set read."""
    value = manifest.table_versions or {}
    out = {}
    for group, v in value.items():
        if isinstance(v, dict):  # {"version": 3, "path": ...}
            v = v.get("version", v.get("delta_version"))
        if v is not None:
            out[group] = int(v)
    return out
