"""The objects a feature repository declares: entities, sources, feature groups.

Plain, keyword-friendly objects: no SparkSession at import time, every argument checked at
construction so that a bad definition fails when the repository loads, naming the object. The
sources are declared in featurelake.sourcedefs and the argument checks in featurelake.defchecks;
both are re-exported here, where repositories import them from.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
import textwrap
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional, Sequence, Union

# the checks and the sources re-exported: repositories, features/ and tests import them from here
from featurelake.defchecks import IDENTIFIER, top_level_parts  # noqa: F401
from featurelake.defchecks import check_dtype, check_identifier, parse_duration
from featurelake.errors import DefinitionError, did_you_mean
from featurelake.sourcedefs import DeltaSource, HttpSource, JdbcSource, KafkaSource, S3Source, Source  # noqa: F401
from featurelake.sourcedefs import split_schema  # noqa: F401

AGGREGATE_FUNCTIONS = ("sum", "count", "avg", "min", "max", "stddev", "last", "approx_count_distinct")


def _code_text(fn: Any) -> str:
    """The transform as text: its source when available, so that editing it makes a new version."""
    if fn is None or isinstance(fn, str):
        return fn or ""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return fn.__code__.co_code.hex() if hasattr(fn, "__code__") else repr(fn)


class Entity:
    """A thing features describe, identified by one or more join keys (customer_id, merchant_id)."""

    def __init__(self, name: str, *, join_keys: Sequence[str], description: str = "",
                 owner: str = "", tags: Optional[dict] = None):
        self.name = check_identifier(name, "entity")
        if isinstance(join_keys, str) or not join_keys:
            raise DefinitionError(f"entity {name!r}: join_keys must be a non-empty list, e.g. ['{name}_id']")
        self.join_keys = [check_identifier(k, f"entity {name!r} join key") for k in join_keys]
        self.description, self.owner, self.tags = description, owner, dict(tags or {})

    def to_dict(self) -> dict:
        return {"name": self.name, "join_keys": self.join_keys, "description": self.description,
                "owner": self.owner, "tags": self.tags}

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={self.join_keys})"


def output_name(owner: str, feature: str, *, full: bool = False, shared: bool = False) -> str:
    """The column a feature gets in a training set or a get_features row: its own name, or
    `owner__feature` (its group's or request-time feature's name first) when asked for (full
    names) or when the name is shared (another group, a spine or entity column has it)."""
    return f"{owner}__{feature}" if full or shared else feature


def is_pii(tags: Mapping[str, Any]) -> bool:
    """The one PII rule: a `pii` tag of true, 1 or yes (any case) on a feature or a group."""
    return str(tags.get("pii", "false")).lower() in ("true", "1", "yes")


class Feature:
    """One declared column of a group, with its Spark SQL dtype."""

    def __init__(self, name: str, dtype: str, description: str = "", *, tags: Optional[dict] = None):
        self.name = check_identifier(name, "feature")
        self.dtype = check_dtype(dtype, f"feature {name!r}")
        self.description, self.tags = description, dict(tags or {})

    @property
    def pii(self) -> bool:
        return is_pii(self.tags)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "description": self.description, "tags": self.tags}

    def __repr__(self) -> str:
        return f"Feature({self.name!r}, {self.dtype!r})"


class Aggregation:
    """Window aggregations of one feature column, named <column>_<function>_<window>."""

    def __init__(self, column: str, functions: Sequence[str], *, windows: Sequence[str]):
        self.column = check_identifier(column, "aggregation column")
        if isinstance(functions, str) or not functions:
            raise DefinitionError(f"aggregation of {column!r}: functions must be a non-empty list")
        for f in functions:
            if f not in AGGREGATE_FUNCTIONS:
                raise DefinitionError(f"aggregation of {column!r}: unknown function {f!r}"
                                      f"{did_you_mean(f, AGGREGATE_FUNCTIONS)}")
        if isinstance(windows, str) or not windows:
            raise DefinitionError(f"aggregation of {column!r}: windows must be a non-empty list such as ['1d', '7d']")
        self.functions = list(functions)
        self.windows = {w: parse_duration(w, f"aggregation of {column!r} window") for w in windows}

    def feature_names(self) -> list[str]:
        return [f"{self.column}_{f}_{w}" for f in self.functions for w in self.windows]

    def outputs(self) -> list[tuple[str, str, str, timedelta]]:
        """(feature name, function, window text, window) for every output."""
        return [(f"{self.column}_{f}_{w}", f, w, d) for f in self.functions for w, d in self.windows.items()]

    def to_dict(self) -> dict:
        return {"column": self.column, "functions": self.functions, "windows": list(self.windows)}


Transform = Union[Callable[[Any], Any], str, None]
DEFAULT_LATENESS = "1h"
"""How late a stream's event may be before the run counts it late (FeatureGroup allowed_lateness)."""


class FeatureGroup:
    """Features of one entity computed by one transform from one source, stored as one offline
    table (Delta) and, when online, one DynamoDB table."""

    def __init__(self, name: str, *, entity: Entity, source: Source, timestamp_column: str,
                 features: Sequence[Feature], transform: Transform = None,
                 aggregations: Sequence[Aggregation] = (), ttl: Optional[str] = None, online: bool = True,
                 owner: str = "", tags: Optional[dict] = None, description: str = "",
                 expectations: Optional[str] = None, validation: Optional[str] = None,
                 freshness_sla: Optional[str] = None, allow_online_pii: bool = False,
                 on_bad_file: str = "quarantine", allowed_lateness: Optional[str] = None):
        self.name = check_identifier(name, "feature group")
        where = f"feature group {name!r}"
        if not isinstance(entity, Entity):
            raise DefinitionError(f"{where}: entity must be an Entity, found {type(entity).__name__}")
        if not isinstance(source, Source):
            raise DefinitionError(f"{where}: source must be an S3Source, JdbcSource, DeltaSource, HttpSource or "
                                  f"KafkaSource, found {type(source).__name__}")
        if not features or not all(isinstance(f, Feature) for f in features):
            raise DefinitionError(f"{where}: features must be a non-empty list of Feature(...)")
        if transform is not None and not (callable(transform) or isinstance(transform, str)):
            raise DefinitionError(f"{where}: transform must be a function of a DataFrame or a SQL string")
        if on_bad_file not in ("quarantine", "fail"):
            raise DefinitionError(f"{where}: on_bad_file must be quarantine (a file that cannot be read or lacks "
                                  f"a column is set aside alone) or fail (all or nothing), not {on_bad_file!r}")
        if validation not in (None, "fail", "quarantine", "warn"):
            raise DefinitionError(f"{where}: validation must be fail, quarantine or warn, not {validation!r}")
        self.entity, self.source, self.transform = entity, source, transform
        self.timestamp_column = check_identifier(timestamp_column, f"{where} timestamp column")
        self.features = list(features)
        self.aggregations = list(aggregations)
        self.ttl = parse_duration(ttl, f"{where} ttl") if ttl is not None else None
        self.ttl_text = ttl
        self.freshness_sla = parse_duration(freshness_sla, f"{where} freshness_sla") if freshness_sla else None
        self.freshness_sla_text = freshness_sla
        self.online, self.owner, self.tags, self.description = online, owner, dict(tags or {}), description
        self.expectations, self.validation, self.allow_online_pii = expectations, validation, allow_online_pii
        self.on_bad_file = on_bad_file
        # a stream's events older than its newest minus this are counted late (still written offline)
        if allowed_lateness is not None and not isinstance(source, KafkaSource):
            raise DefinitionError(f"{where}: allowed_lateness applies to a group over a KafkaSource (a stream); "
                                  f"this group reads a {source.kind} source: remove allowed_lateness=")
        self.allowed_lateness_text = allowed_lateness
        self.allowed_lateness = parse_duration(allowed_lateness or DEFAULT_LATENESS, f"{where} allowed_lateness")
        self._check()

    def _check(self) -> None:
        where = f"feature group {self.name!r}"
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"{where}: duplicate feature names {dupes}: each feature needs its own name")
        reserved = set(self.keys) | {self.timestamp_column}
        clash = sorted(reserved & set(names))
        if clash:
            raise DefinitionError(f"{where}: {clash} is a key or the timestamp, not a feature: remove it "
                                  f"from features=")
        for agg in self.aggregations:
            if agg.column not in names:
                raise DefinitionError(f"{where}: aggregation over undeclared column {agg.column!r}"
                                      f"{did_you_mean(agg.column, names)}: declare it as a Feature first")
        agg_names = [n for a in self.aggregations for n in a.feature_names()]
        both = sorted(set(agg_names) & set(names) | {n for n in agg_names if agg_names.count(n) > 1})
        if both:
            raise DefinitionError(f"{where}: duplicate feature names {both} between features and aggregations")
        if self.transform is None and isinstance(self.source, KafkaSource):
            fields = self.source.fields
            missing = [c for c in self.columns if c not in fields]
            if missing:
                raise DefinitionError(f"{where}: without a transform the columns come from the messages of source "
                                      f"{self.source.name!r}, whose fields are {fields}: {missing} missing; "
                                      f"declare them in the source's schema= or add a transform that makes them")
        if isinstance(self.transform, str):
            words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.transform))
            missing = [c for c in [*self.keys, self.timestamp_column] if c not in words]
            if missing and "*" not in self.transform:
                raise DefinitionError(f"{where}: the SQL transform does not produce {missing}: select the "
                                      f"entity keys {self.keys} and the timestamp {self.timestamp_column!r}")

    @property
    def keys(self) -> list[str]:
        return self.entity.join_keys

    @property
    def feature_names(self) -> list[str]:
        """Declared features then aggregation outputs, in declaration order."""
        return [f.name for f in self.features] + [n for a in self.aggregations for n in a.feature_names()]

    @property
    def columns(self) -> list[str]:
        """What the offline table holds besides bookkeeping: keys, event time, declared features."""
        return [*self.keys, self.timestamp_column, *[f.name for f in self.features]]

    @property
    def pii_features(self) -> set[str]:
        """Features and aggregation outputs holding personal data: every one when the group is
        tagged pii, else the tagged features and the aggregations over them."""
        if is_pii(self.tags):
            return set(self.feature_names)
        tagged = {f.name for f in self.features if f.pii}
        return tagged | {n for a in self.aggregations if a.column in tagged for n in a.feature_names()}

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise DefinitionError(f"unknown feature {name!r} in group {self.name!r}"
                              f"{did_you_mean(name, self.feature_names)}")

    @property
    def transform_text(self) -> str:
        return _code_text(self.transform)

    def to_dict(self) -> dict:
        """Everything that defines the group's output; its hash is the group's fingerprint."""
        return {"name": self.name, "entity": self.entity.to_dict(), "source": self.source.to_dict(),
                "timestamp_column": self.timestamp_column, "features": [f.to_dict() for f in self.features],
                "aggregations": [a.to_dict() for a in self.aggregations], "ttl": self.ttl_text,
                "transform": self.transform_text, "online": self.online, "owner": self.owner,
                "tags": self.tags, "description": self.description, "expectations": self.expectations,
                "validation": self.validation, "freshness_sla": self.freshness_sla_text,
                "allow_online_pii": self.allow_online_pii,
                **({"on_bad_file": self.on_bad_file} if self.on_bad_file != "quarantine" else {}),
                **({"allowed_lateness": self.allowed_lateness_text} if self.allowed_lateness_text else {})}

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def streamed(self) -> bool:
        """Fed by a Kafka topic through `featurelake stream`, not by `ingest`."""
        return isinstance(self.source, KafkaSource)

    @property
    def upstream_groups(self) -> list[str]:
        return [self.source.group] if isinstance(self.source, DeltaSource) and self.source.group else []

    def __repr__(self) -> str:
        return f"FeatureGroup({self.name!r}, entity={self.entity.name!r}, features={self.feature_names})"


SERVICE_PREFIX = "service"


def check_reference(ref: Any, where: str) -> tuple[str, str]:
    """'group:feature' or 'group:*' -> (group, feature); anything else is a DefinitionError."""
    parts = ref.split(":") if isinstance(ref, str) else []
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DefinitionError(f"{where}: bad feature reference {ref!r}: write group:feature or group:*")
    return parts[0].strip(), parts[1].strip()


class FeatureService:
    """A named list of feature references one model uses (Feast's FeatureService, Databricks'
    FeatureSpec). Training sets and online reads ask for it as "service:<name>"; the catalogue
    gives every distinct feature list a new version, and a training set records the version."""

    def __init__(self, name: str, *, features: Sequence[str], owner: str = "", description: str = "",
                 tags: Optional[dict] = None):
        self.name = check_identifier(name, "feature service")
        where = f"feature service {name!r}"
        if isinstance(features, str) or not features:
            raise DefinitionError(f"{where}: features must be a non-empty list of references such as "
                                  f"['customer_txn:*', 'merchant_risk:chargeback_rate_30d']")
        refs = [":".join(check_reference(ref, where)) for ref in features]
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise DefinitionError(f"{where}: references {dupes} are listed twice: list each once")
        self.features = refs
        self.owner, self.description, self.tags = owner, description, dict(tags or {})

    @property
    def groups(self) -> list[str]:
        """The groups the service reads, in order of first mention."""
        return list(dict.fromkeys(ref.split(":")[0] for ref in self.features))

    def to_dict(self) -> dict:
        return {"name": self.name, "features": self.features, "owner": self.owner,
                "description": self.description, "tags": self.tags}

    @property
    def fingerprint(self) -> str:
        """Of the feature list alone: owner, description and tags are metadata, not a new version."""
        return hashlib.sha256(json.dumps(self.features).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r}, features={self.features})"
