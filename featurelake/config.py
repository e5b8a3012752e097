"""conf/*.yaml -> a typed Config.

Every value may use ``${ENV_VAR}`` (or ``${ENV_VAR:-default}``); a missing variable is an error
naming it. Unknown keys are rejected with the nearest valid key, and every error names the
file, the line and the key path. Relative paths are resolved against the project directory:
the folder holding ``conf/`` (or the config file's own folder when it is not in ``conf/``).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from featurelake.errors import ConfigError, DefinitionError, did_you_mean

DEFAULT_CONF = "conf/local.yaml"
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class StorageConfig:
    root: str = ".featurelake/lake"
    """Where offline tables, quarantine and the catalogue live: a path, s3a://... or dbfs:/..."""
    database: Optional[str] = None
    """When set, offline tables are metastore tables <database>.<group> (Unity Catalog, Glue)."""
    commit_lock: str = "auto"
    """auto: commits to tables on S3 take turns by a DynamoDB lease (see featurelake.commitlock);
    off: the Delta log store is already safe for several writers."""


@dataclass
class SparkConfig:
    master: str = "local[2]"
    """Ignored when a SparkSession already exists (Databricks, a notebook, spark-submit)."""
    app_name: str = "featurelake"
    conf: dict = field(default_factory=dict)
    """Extra Spark settings, applied when featurelake builds the session."""
    packages: list = field(default_factory=list)
    """Extra Maven coordinates added to spark.jars.packages."""


@dataclass
class ConnectionConfig:
    url: str = ""
    """JDBC URL: jdbc:postgresql://host:port/db or jdbc:sqlite:path."""
    user: Optional[str] = None
    password: Optional[str] = None
    """Only from the environment: password: ${PAYMENTS_PASSWORD}."""
    password_file: Optional[str] = None
    """Or a file holding it (a mounted secret); its first line is the password."""
    driver: Optional[str] = None
    """JDBC driver class; inferred from the URL for PostgreSQL and SQLite."""
    properties: dict = field(default_factory=dict)
    retries: int = 3
    """Attempts before a connection failure becomes an error."""
    base_url: Optional[str] = None
    """An HTTP API (HttpSource): https://host/prefix; its sources' paths are relative to it."""
    headers: dict = field(default_factory=dict)
    """HTTP headers sent with every request (not secrets: use token, or user and password)."""
    token: Optional[str] = None
    """HTTP bearer token, only from the environment: token: ${RATES_TOKEN}. Never logged or stored."""
    rate_limit: Optional[float] = None
    """HTTP requests per second at most; none for no limit."""
    timeout: float = 30.0
    """Seconds to wait for an HTTP connection and for each answer."""
    backoff: float = 1.0
    """Seconds before the first HTTP retry (429, 5xx, timeout); doubled each time, capped at 60,
    unless the answer's Retry-After says otherwise."""
    bootstrap_servers: Optional[str] = None
    """A Kafka cluster (KafkaSource): host:port[,host:port...]. Its client settings other than
    the ones below go in `properties` (as Kafka names them: ssl.truststore.location, ...)."""
    security_protocol: Optional[str] = None
    """Kafka: PLAINTEXT (the default), SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: Optional[str] = None
    """Kafka SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with user and password (from the environment)."""


@dataclass
class S3Config:
    endpoint_url: Optional[str] = None
    """Absent for AWS itself; http://127.0.0.1:9000 for the local moto server."""
    path_style: bool = False
    region: Optional[str] = None


@dataclass
class DynamoDBConfig:
    region: str = "us-east-1"
    endpoint_url: Optional[str] = None
    """Absent for AWS itself; http://127.0.0.1:8000 for the local dynalite."""
    table_prefix: str = "featurelake_"
    write_concurrency: int = 8
    """BatchWriteItem requests in flight per Spark task during an export."""
    lease_s: float = 30.0
    """An export's lease on its group's table, renewed while it runs (exports of a group take turns)."""
    lock_wait_s: float = 900.0
    """How long an export waits for another export of the same group before giving up."""
    ca_bundle: Optional[str] = None
    """PEM file of the certificate authorities to trust for the endpoint (absent: $AWS_CA_BUNDLE,
    the AWS profile's ca_bundle, else certifi's bundle, as boto3)."""
    deadline: Optional[float] = None
    """Seconds an OnlineClient request may take in all, resends included (absent: bounded only by
    max_attempts x the timeouts)."""


@dataclass
class OnlineConfig:
    dynamodb: DynamoDBConfig = field(default_factory=DynamoDBConfig)


@dataclass
class EventTimeConfig:
    """The plausible event times: a row outside [min, now + max_ahead] is quarantined, not
    written (a clock error or a placeholder date, which would make freshness lie)."""

    max_ahead: str = "1d"
    min: str = "1990-01-01"

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        from featurelake.definitions import parse_duration

        low = datetime.fromisoformat(self.min)
        return ((low if low.tzinfo else low.replace(tzinfo=timezone.utc)),
                now + parse_duration(self.max_ahead, 'max_ahead'))


@dataclass
class ValidationConfig:
    on_failure: str = "quarantine"
    """fail | quarantine | warn; a group may override it with FeatureGroup(validation=...)."""
    event_time: EventTimeConfig = field(default_factory=EventTimeConfig)


@dataclass
class MonitoringConfig:
    psi_threshold: float = 0.2
    ks_threshold: float = 0.1
    js_threshold: float = 0.1
    features: dict = field(default_factory=dict)
    """Per-feature overrides: {"customer_txn:amount": {"psi_threshold": 0.3}}."""
    skew_sample: int = 1000
    skew_threshold: float = 0.0
    """Largest share of sampled keys whose online value may differ before `monitor skew` alerts."""
    statistics: bool = True
    """Record statistics of every batch an ingest writes and of every training set written."""
    statistics_sample_rows: int = 100_000
    """Quantiles and histograms of a larger batch come from a sample of about this many rows
    (0: every row); counts, nulls, min, max, mean, stddev and top values are always exact."""


@dataclass
class TrainingConfig:
    max_pandas_rows: int = 1_000_000
    """to_pandas() refuses larger training sets: use to_spark() or write() instead."""
    driver_max_rows: int = 1_000_000
    """A training set whose spine and tables hold fewer rows is built on the driver (localset);
    0 always uses Spark."""


@dataclass
class Config:
    project: str = "featurelake"
    storage: StorageConfig = field(default_factory=StorageConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    connections: dict = field(default_factory=dict)
    """name -> ConnectionConfig."""
    s3: S3Config = field(default_factory=S3Config)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    path: Optional[str] = None
    base_dir: str = "."

    def ca_bundle(self) -> Optional[str]:
        """online.dynamodb.ca_bundle as a path boto3 can open (relative: to the project directory)."""
        bundle = self.online.dynamodb.ca_bundle
        return self.resolve(os.path.expanduser(bundle)) if bundle else None

    def resolve(self, path: str) -> str:
        """A relative local path made absolute against the project directory."""
        if re.match(r"^[a-z][a-z0-9+.-]*:", path) or os.path.isabs(path):
            return path
        return str(Path(self.base_dir, path).resolve())

    @property
    def root(self) -> str:
        return self.resolve(self.storage.root)

    def lake(self, *parts: str) -> str:
        """A path in the lake under storage.root (offline/<group>, _catalog/<table>, quarantine/<group>,
        rejected/<group>, training_sets/<id>, _checkpoints/<group>): the one place its layout is joined."""
        return "/".join([self.root.rstrip("/"), *parts])

    def connection(self, name: str) -> ConnectionConfig:
        if name not in self.connections:
            raise ConfigError(f"unknown connection {name!r} in {self.path}{did_you_mean(name, self.connections)}: "
                              f"add it under 'connections:'")
        return self.connections[name]


def load_config(path: Union[str, Path, None] = None, env: Optional[Mapping[str, str]] = None) -> Config:
    """Read, interpolate and check a config file."""
    path = Path(path or os.environ.get("FEATURELAKE_CONF") or DEFAULT_CONF)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found: pass --conf PATH or set FEATURELAKE_CONF")
    env = os.environ if env is None else env
    text = path.read_text()
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    loader = _Loader(str(path), env)
    raw = loader.value(node, "") if node is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping of sections (project, storage, ...)")
    config = Config() if node is None else loader.build(Config, raw, node, "")  # an empty file: the defaults
    config.path = str(path)
    parent = path.resolve().parent
    config.base_dir = str(parent.parent if parent.name == "conf" else parent)
    config.connections = {name: _absolute_sqlite(config, c) for name, c in config.connections.items()}
    lock = str(config.storage.commit_lock).lower()  # YAML reads a bare off as false, on as true
    config.storage.commit_lock = {"false": "off", "true": "auto"}.get(lock, lock)
    if config.storage.commit_lock not in ("auto", "off"):
        raise ConfigError(f"{path}: storage.commit_lock must be auto (a DynamoDB lease around each commit to a table "
                          f"on S3) or off (the Delta log store is already safe for several writers), "
                          f"not {config.storage.commit_lock!r}")
    if config.validation.on_failure not in ("fail", "quarantine", "warn"):
        raise ConfigError(f"{path}: validation.on_failure must be fail, quarantine or warn, "
                          f"not {config.validation.on_failure!r}")
    try:
        config.validation.event_time.bounds(datetime.now(timezone.utc))
    except (ValueError, DefinitionError) as exc:
        raise ConfigError(f"{path}: validation.event_time: {exc}; write e.g. max_ahead: 1d and min: 1990-01-01"
                          ) from None
    if config.monitoring.statistics_sample_rows < 0:
        raise ConfigError(f"{path}: monitoring.statistics_sample_rows must be 0 (every row) or a number of rows, "
                          f"not {config.monitoring.statistics_sample_rows}")
    return config


def _absolute_sqlite(config: Config, conn: ConnectionConfig) -> ConnectionConfig:
    if conn.url.startswith("jdbc:sqlite:"):
        conn.url = "jdbc:sqlite:" + config.resolve(conn.url[len("jdbc:sqlite:"):])
    return conn


class _Loader:
    """Turns a YAML node tree into dataclasses, remembering lines for messages."""

    def __init__(self, path: str, env: Any):
        self.path, self.env = path, env

    def where(self, node: yaml.Node, key: str) -> str:
        return f"{self.path}:{node.start_mark.line + 1}: {key}"

    def value(self, node: yaml.Node, key: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {k.value: self.value(v, f"{key}.{k.value}".lstrip(".")) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v, key) for v in node.value]
        if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and "${" in node.value:
            return self.interpolate(node, key)
        return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value

    def interpolate(self, node: yaml.ScalarNode, key: str) -> Any:
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise ConfigError(f"{self.where(node, key)}: environment variable {name} is not set: "
                              f"export {name}=... or give a default with ${{{name}:-value}}")
        text = _ENV_REF.sub(sub, node.value)
        return yaml.safe_load(text) if node.style is None and text != "" else text

    def child(self, node: Optional[yaml.Node], name: str) -> Optional[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == name:
                    return v
        return None

    def build(self, cls: type, raw: dict, node: yaml.Node, prefix: str) -> Any:
        hints = get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls) if f.name not in ("path", "base_dir")}
        kwargs = {}
        for name, value in raw.items():
            key = f"{prefix}.{name}".lstrip(".")
            sub = self.child(node, name) or node
            if name not in fields:
                raise ConfigError(f"{self.where(sub, key)}: unknown key{did_you_mean(name, fields)}")
            kwargs[name] = self.convert(hints[name], value, sub, key)
        if cls is ConnectionConfig:
            pw = self.child(node, "password")
            if "password=" in str(kwargs.get("url", "")).lower():
                raise ConfigError(f"{self.where(self.child(node, 'url') or node, prefix + '.url')}: the JDBC url "
                                  f"carries a password: move it to password: ${{SOME_ENV_VAR}} or password_file")
            token = self.child(node, "token")
            if token is not None and "${" not in str(token.value):
                raise ConfigError(f"{self.where(token, prefix + '.token')}: tokens come only from the environment: "
                                  f"write token: ${{SOME_ENV_VAR}}")
            if pw is not None and "${" not in str(pw.value):
                raise ConfigError(f"{self.where(pw, prefix + '.password')}: passwords come only from the "
                                  f"environment or a file: write password: ${{SOME_ENV_VAR}} or password_file: PATH")
            if kwargs.get("password_file"):
                kwargs["password"] = self.read_secret(kwargs, node, prefix)
            if not kwargs.get("url") and not kwargs.get("base_url") and not kwargs.get("bootstrap_servers"):
                raise ConfigError(f"{self.where(node, prefix)}: a connection needs a url (jdbc:...) or, for an "
                                  f"HTTP API, a base_url (https://...), or, for Kafka, bootstrap_servers (host:port)")
            if kwargs.get("bootstrap_servers"):
                self.check_kafka(kwargs, node, prefix)
        return cls(**kwargs)

    def check_kafka(self, kwargs: dict, node: yaml.Node, prefix: str) -> None:
        """A Kafka connection: a known security protocol and SASL mechanism, SASL with a user and a
        password, and no secret among the plain `properties`."""
        protocol = str(kwargs.get("security_protocol") or "PLAINTEXT").upper()
        where = self.where(self.child(node, "security_protocol") or node, prefix + ".security_protocol")
        if protocol not in KAFKA_PROTOCOLS:
            raise ConfigError(f"{where}: unknown Kafka security protocol {protocol!r}"
                              f"{did_you_mean(protocol, KAFKA_PROTOCOLS)}")
        mechanism = kwargs.get("sasl_mechanism")
        if protocol.startswith("SASL"):
            if str(mechanism or "").upper() not in KAFKA_SASL:
                raise ConfigError(f"{where}: {protocol} needs sasl_mechanism: one of {', '.join(KAFKA_SASL)}")
            if not kwargs.get("user") or not kwargs.get("password"):
                raise ConfigError(f"{where}: {protocol} needs user and password (password: ${{SOME_ENV_VAR}})")
        elif mechanism:
            raise ConfigError(f"{where}: sasl_mechanism is set but the protocol is {protocol}: use SASL_SSL "
                              f"(or SASL_PLAINTEXT)")
        props = self.child(node, "properties")
        for key in kwargs.get("properties") or {}:
            raw = self.child(props, key)
            if any(w in str(key).lower() for w in ("password", "jaas", "secret")) and \
                    (raw is None or "${" not in str(raw.value)):
                raise ConfigError(f"{self.where(raw or node, f'{prefix}.properties.{key}')}: secrets come only from "
                                  f"the environment: write {key}: ${{SOME_ENV_VAR}}")

    def read_secret(self, kwargs: dict, node: yaml.Node, prefix: str) -> str:
        """The first line of password_file (relative to the config's folder); never echoed."""
        where = self.where(self.child(node, "password_file") or node, prefix + ".password_file")
        if kwargs.get("password"):
            raise ConfigError(f"{where}: give password or password_file, not both")
        path = Path(self.path).parent / kwargs["password_file"]
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the password file {str(path)!r} ({exc.strerror}): "
                              f"check the path and its permissions") from None
        if not lines or not lines[0]:
            raise ConfigError(f"{where}: the password file {str(path)!r} is empty")
        return lines[0]

    def convert(self, hint: Any, value: Any, node: yaml.Node, key: str) -> Any:
        if get_origin(hint) is Union:
            if value is None:
                return None
            hint = next(a for a in get_args(hint) if a is not type(None))
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{self.where(node, key)}: expected a mapping, found {value!r}")
            return self.build(hint, value, node, key)
        if key == "connections":
            if not isinstance(value, dict):
                raise ConfigError(f"{self.where(node, key)}: expected a mapping of connection names")
            return {n: self.build(ConnectionConfig, v or {}, self.child(node, n) or node, f"{key}.{n}")
                    for n, v in value.items()}
        expected: dict[Any, Any] = {dict: dict, list: list, bool: bool, int: int, float: (int, float),
                                    str: (str, int, float, date)}
        want = expected.get(hint if isinstance(hint, type) else get_origin(hint) or object, object)
        if value is not None and not isinstance(value, want) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{self.where(node, key)}: expected {getattr(hint, '__name__', hint)}, "
                              f"found {value!r}")
        return str(value) if hint is str and value is not None else value
