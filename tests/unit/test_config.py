"""Config loading: interpolation, unknown keys, and errors that name file, line and key."""
from __future__ import annotations

import pytest

from featurelake.config import load_config
from featurelake.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


def test_the_embedded_default_loads():
    config = load_config("conf/local.yaml", env={})
    assert config.spark.master == "local[2]"
    assert config.online.dynamodb.endpoint_url == "http://127.0.0.1:8000"
    assert config.root.endswith(".featurelake/lake") and config.root.startswith("/")
    assert config.connection("payments").url.startswith("jdbc:sqlite:/")


def test_the_production_example_loads_with_its_variables():
    config = load_config("conf/prod.example.yaml", env={"PAYMENTS_DB_USER": "u", "PAYMENTS_DB_PASSWORD": "p"})
    assert config.root == "s3a://acme-feature-lake/featurelake"
    assert config.connection("payments").password == "p"


def test_environment_variables_are_interpolated_with_defaults(tmp_path):
    path = write(tmp_path, "project: ${NAME}\nonline:\n  dynamodb:\n    region: ${REGION:-eu-west-1}\n")
    config = load_config(path, env={"NAME": "demo"})
    assert config.project == "demo" and config.online.dynamodb.region == "eu-west-1"


def test_a_missing_variable_names_it_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "project: demo\nstorage:\n  root: ${LAKE_ROOT}\n")
    with pytest.raises(ConfigError, match=r"conf.yaml:3: storage.root: environment variable LAKE_ROOT is not set"):
        load_config(path, env={})


def test_unknown_keys_suggest_the_nearest(tmp_path):
    path = write(tmp_path, "project: demo\nstorage:\n  rot: x\n")
    with pytest.raises(ConfigError, match=r"conf.yaml:3: storage.rot: unknown key \(did you mean 'root'\?\)"):
        load_config(path, env={})


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"conf.yaml:2: onlin: unknown key \(did you mean 'online'"):
        load_config(write(tmp_path, "project: demo\nonlin: {}\n"), env={})


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"conf.yaml:\d+: malformed YAML"):
        load_config(write(tmp_path, "project: demo\nstorage: [unclosed\n"), env={})


def test_a_wrong_type_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"conf.yaml:3: monitoring.skew_sample: expected int, found 'many'"):
        load_config(write(tmp_path, "project: demo\nmonitoring:\n  skew_sample: many\n"), env={})


def test_literal_passwords_are_refused(tmp_path):
    text = "connections:\n  pg:\n    url: jdbc:postgresql://h/db\n    password: hunter2\n"
    with pytest.raises(ConfigError, match="passwords come only from the environment") as err:
        load_config(write(tmp_path, text), env={})
    assert "hunter2" not in str(err.value)


def test_a_password_in_the_url_is_refused(tmp_path):
    text = "connections:\n  pg:\n    url: jdbc:postgresql://h/db?user=a&password=hunter2\n"
    with pytest.raises(ConfigError, match=r"conf.yaml:3: connections.pg.url: the JDBC url carries a password") as err:
        load_config(write(tmp_path, text), env={})
    assert "hunter2" not in str(err.value)


def test_a_password_file_is_read_relative_to_the_config_and_never_echoed(tmp_path):
    (tmp_path / "pg.secret").write_text("s3cret-value\nignored\n")
    text = "connections:\n  pg:\n    url: jdbc:postgresql://h/db\n    password_file: {file}\n"
    config = load_config(write(tmp_path, text.format(file="pg.secret")), env={})
    assert config.connection("pg").password == "s3cret-value"
    with pytest.raises(ConfigError, match=r"conf.yaml:4: connections.pg.password_file: cannot read the password "
                                          r"file .*missing.secret.*check the path"):
        load_config(write(tmp_path, text.format(file="missing.secret")), env={})
    both = text.format(file="pg.secret") + "    password: ${PW}\n"
    with pytest.raises(ConfigError, match="password or password_file, not both") as err:
        load_config(write(tmp_path, both), env={"PW": "x"})
    assert "s3cret-value" not in str(err.value)


def test_bad_validation_policy(tmp_path):
    with pytest.raises(ConfigError, match="on_failure must be fail, quarantine or warn"):
        load_config(write(tmp_path, "validation:\n  on_failure: ignore\n"), env={})


def test_commit_lock_reads_yaml_booleans_and_refuses_other_words(tmp_path):
    assert load_config(write(tmp_path, "storage:\n  commit_lock: off\n"), env={}).storage.commit_lock == "off"
    assert load_config(write(tmp_path, "storage:\n  commit_lock: on\n"), env={}).storage.commit_lock == "auto"
    assert load_config(write(tmp_path, "storage:\n  root: /x\n"), env={}).storage.commit_lock == "auto"
    with pytest.raises(ConfigError, match="storage.commit_lock must be auto .* or off .*, not 'dynamo'"):
        load_config(write(tmp_path, "storage:\n  commit_lock: dynamo\n"), env={})


def test_a_negative_statistics_sample_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="statistics_sample_rows must be 0 \\(every row\\) or a number of rows"):
        load_config(write(tmp_path, "monitoring:\n  statistics_sample_rows: -5\n"), env={})


def test_a_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="pass --conf PATH or set FEATURELAKE_CONF"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_connection_suggests(tmp_path):
    config = load_config("conf/local.yaml", env={})
    with pytest.raises(ConfigError, match="did you mean 'payments'"):
        config.connection("payment")


def test_every_key_is_documented():
    import dataclasses
    from pathlib import Path

    from featurelake import config as c

    doc = Path("docs/configuration.md").read_text()
    sections = {"storage": c.StorageConfig, "spark": c.SparkConfig, "s3": c.S3Config,
                "online.dynamodb": c.DynamoDBConfig, "validation": c.ValidationConfig,
                "monitoring": c.MonitoringConfig, "training": c.TrainingConfig,
                "connections.<name>": c.ConnectionConfig}
    keys = [f"{prefix}.{f.name}" for prefix, cls in sections.items() for f in dataclasses.fields(cls)]
    missing = [k for k in keys + ["project"] if f"`{k}`" not in doc]
    assert not missing, f"undocumented config keys: {missing}"
