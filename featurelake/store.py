"""FeatureStore: the one object notebooks and jobs hold. It owns the config, the repository, the
SparkSession and the catalogue, and hands each verb to the module of its concept."""
from __future__ import annotations

import functools
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar, Union

from featurelake.catalog import Catalog
from featurelake.config import Config, load_config
from featurelake.repo import Repository, load_repository

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurelake.definitions import FeatureGroup
    from featurelake.offline import OfflineTable

F = TypeVar("F", bound=Callable[..., Any])


def at_utc(method: F) -> F:
    """A FeatureStore verb runs with the session at UTC (its time semantics) and leaves the
    caller's session as it found it. A session featurelake builds itself is UTC for its life."""
    @functools.wraps(method)
    def call(self: "FeatureStore", *args: Any, **kwargs: Any) -> Any:
        if self._spark is None:
            sql = sys.modules.get("pyspark.sql")  # never imported: there is no session to mind
            if sql is None or sql.SparkSession.getActiveSession() is None:
                return method(self, *args, **kwargs)
        from featurelake.spark import in_utc

        with in_utc(self.spark):
            return method(self, *args, **kwargs)
    return call  # type: ignore[return-value]


class FeatureStore:
    def __init__(self, config: Config, repo: Union[Repository, str, Path, None] = "features",
                 spark: Optional["SparkSession"] = None):
        self.config = config
        self._repo_arg = None if isinstance(repo, Repository) else repo
        self._repo: Optional[Repository] = repo if isinstance(repo, Repository) else None
        self._spark = spark
        self._catalog: Optional[Catalog] = None

    @classmethod
    def from_config(cls, path: Union[str, Path, None] = None, repo: Union[str, Path, None] = "features",
                    spark: Optional["SparkSession"] = None) -> "FeatureStore":
        """The config file (default conf/local.yaml or $FEATURELAKE_CONF) and the feature repository.
        A relative repo path is taken from the current directory, then from the project directory."""
        config = load_config(path)
        if repo is not None and not Path(repo).is_dir() and Path(config.base_dir, repo).is_dir():
            repo = Path(config.base_dir, repo)
        return cls(config, repo, spark)

    @property
    def repo(self) -> Repository:
        if self._repo is None:
            self._repo = load_repository(self._repo_arg or "features")
        return self._repo

    @property
    def spark(self) -> "SparkSession":
        """The session in use: an active one is reused, else one is built from the config."""
        if self._spark is None:
            from featurelake.spark import get_spark

            self._spark = get_spark(self.config)
        return self._spark

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            # A getter: reads go through delta-rs, and only a write builds the SparkSession.
            self._catalog = Catalog(lambda: self.spark, self.config.root, self.config)
        return self._catalog

    def group(self, name: str) -> "FeatureGroup":
        return self.repo.group(name)

    def offline(self, name: str) -> "OfflineTable":
        from featurelake.offline import OfflineTable

        return OfflineTable(self.spark, self.config, self.group(name))

    def offline_by_name(self, name: str) -> "OfflineTable":
        """A group's table for reading, whether or not the repository still defines the group."""
        from featurelake.offline import OfflineTable

        return OfflineTable.for_name(self.spark, self.config, name)

    # ---- verbs -------------------------------------------------------------------------------

    def plan(self) -> list:
        """What apply would change (lifecycle.Change per group): what each change does to the offline
        table, the online table and past training sets, and what to run after it."""
        from featurelake.lifecycle import plan

        return plan(self.catalog, self.repo, self._offline_exists)

    @at_utc
    def apply(self) -> list[str]:
        """Registers the repository's definitions; returns what changed (empty: nothing). A change
        the stored data cannot follow (a column's type, the keys) raises UsageError, registering nothing."""
        return self.catalog.apply(self.repo, self._offline_exists)

    def _offline_exists(self, name: str) -> bool:
        return self.offline_by_name(name).exists()

    @at_utc
    def backfill(self, group: str, *, start: Optional[datetime] = None, end: Optional[datetime] = None,
                 chunk: Optional[str] = None) -> Any:
        """Recomputes the group's history with its current definition (new or changed features), in
        chunks, resumable; from the first stored event unless start is given."""
        from featurelake.lifecycle import backfill

        return backfill(self, group, start=start, end=end, chunk=chunk)

    @at_utc
    def deprecate(self, group: str) -> str:
        """Retires a group: not listed, not served to new training sets or exports; replays go on."""
        from featurelake.lifecycle import deprecate

        return deprecate(self, group)

    @at_utc
    def rollback(self, group: str, to: int) -> str:
        """Makes registered version `to` the current one."""
        from featurelake.lifecycle import rollback

        return rollback(self, group, to)

    @at_utc
    def ingest(self, group: str, *, start: Optional[datetime] = None, end: Optional[datetime] = None,
               from_quarantine: Optional[str] = None, chunk: Optional[str] = None) -> Any:
        """source -> transform -> validate -> offline table, for new data only (or the event-time
        window [start, end), in chunks of `chunk`, default 7d)."""
        from featurelake.ingest import ingest

        return ingest(self, group, start=start, end=end, from_quarantine=from_quarantine, chunk=chunk)

    @at_utc
    def stream(self, group: str, *, trigger: str = "1s", available_now: bool = False,
               timeout: Optional[float] = None, until: Any = None) -> Any:
        """A Kafka-fed group kept current offline and online, exactly once: until stopped (Ctrl-C,
        or `until`, a threading.Event, set), for `timeout` seconds, or with `available_now` until
        what the topic holds is processed."""
        from featurelake.streaming import stream

        return stream(self, group, trigger=trigger, available_now=available_now, timeout=timeout, until=until)

    @at_utc
    def validate(self, group: str, *, start: Optional[datetime] = None, end: Optional[datetime] = None) -> Any:
        """Runs the group's suite on its pending source window, writing nothing."""
        from featurelake.ingest import validate_only

        return validate_only(self, group, start=start, end=end)

    @at_utc
    def export(self, group: str, *, full: bool = False) -> Any:
        """offline -> DynamoDB, only keys that changed since the last export unless full."""
        from featurelake.online.export import export

        return export(self, group, full=full)

    @at_utc
    def training_set(self, spine: Any, features: Sequence[str], timestamp_column: str = "event_ts",
                     full_names: bool = False) -> Any:
        """A point-in-time correct training set for the spine's rows."""
        from featurelake.training import build_training_set

        refs = [features] if isinstance(features, str) else list(features)
        return build_training_set(self, spine, refs, timestamp_column=timestamp_column,
                                  full_names=full_names)

    @at_utc
    def load_training_set(self, training_set_id: str) -> Any:
        """The same rows as when the training set was built, by time travel."""
        from featurelake.training import load_training_set

        return load_training_set(self, training_set_id)

    @at_utc
    def read_offline(self, group: str, version: Optional[int] = None,
                     timestamp: Union[str, datetime, None] = None) -> "DataFrame":
        return self.offline(group).read(version=version, timestamp=timestamp)
