"""Shared fixtures: one SparkSession per test session (local[2], few partitions, UI off), and a
fresh config with its own storage root per test that asks for one."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["service_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def spark(s3_endpoint):
    """One session for the whole run, able to reach the test S3 server through s3a."""
    from featurelake.config import Config, S3Config, SparkConfig
    from featurelake.spark import get_spark

    config = Config(spark=SparkConfig(master="local[2]", conf={
        "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4",
        "spark.driver.memory": "2g", "spark.databricks.delta.snapshotPartitions": "1"}),
        s3=S3Config(endpoint_url=s3_endpoint, path_style=True, region="us-east-1"))
    session = get_spark(config)
    yield session
    session.stop()


def write_config(tmp_path: Path, **sections: str) -> Path:
    """A config file under tmp_path with storage in tmp_path; sections override YAML blocks.
    Statistics of written batches are off unless a test gives its own monitoring block: they
    cost a Spark job per write, and test_ingest and test_monitoring check them."""
    blocks = {
        "project": "project: test",
        "storage": f"storage:\n  root: {tmp_path / 'lake'}",
        "spark": "spark:\n  master: local[2]",
        "monitoring": "monitoring:\n  statistics: false",
    }
    blocks.update(sections)
    path = tmp_path / "conf.yaml"
    path.write_text("\n".join(blocks.values()) + "\n")
    return path


@pytest.fixture
def make_store(tmp_path, spark):
    """Builds a FeatureStore over tmp_path with a repository of the given modules' text."""
    from featurelake.store import FeatureStore

    def make(modules: dict[str, str] | None = None, repo: Path | None = None, **sections: str) -> FeatureStore:
        if repo is None:
            repo = tmp_path / "features"
            repo.mkdir(exist_ok=True)
            for name, text in (modules or {}).items():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                (repo / name).write_text(text)
        return FeatureStore.from_config(write_config(tmp_path, **sections), repo=repo, spark=spark)

    return make


def pytest_collection_modifyitems(config, items):
    """Cluster tests (marker `cluster`) take minutes and need the cores to themselves: a run
    without -m leaves them out; `make test-cluster` (pytest -m cluster) runs them."""
    if config.option.markexpr:
        return
    cluster = [item for item in items if item.get_closest_marker("cluster")]
    if cluster:
        config.hook.pytest_deselected(items=cluster)
        items[:] = [item for item in items if not item.get_closest_marker("cluster")]
