"""pytest plugin: real local services (dynalite, moto, PostgreSQL, a Kafka broker, the demo's scoring API) for
the integration and end-to-end tests.

Load with `pytest_plugins = ["service_fixtures"]`. Each fixture starts its service once per
session on a free port (so parallel runs and a running `make services-up` never collide) and
stops it at the end. A service that cannot start is an error, never a skip: a green run must
mean the code really talked to DynamoDB, S3 and PostgreSQL APIs.
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import services
except ImportError:  # scripts/ not on pythonpath (e.g. `pytest -p service_fixtures` by hand)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import services

AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}


def _aws_test_credentials() -> None:
    """boto3 refuses to sign without credentials; fake ones keep real AWS unreachable by accident."""
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)


def _start(start, **kwargs):
    try:
        return start(**kwargs)
    except services.ServiceError as exc:
        pytest.fail(f"{start.__name__} failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> str:
    """URL of an empty in-memory DynamoDB (dynalite), e.g. http://127.0.0.1:41234."""
    _aws_test_credentials()
    svc = _start(services.start_dynalite)
    yield svc.url
    svc.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of an empty in-memory S3 (moto server); also sets fake AWS credentials if unset."""
    _aws_test_credentials()
    svc = _start(services.start_moto)
    yield svc.url
    svc.stop()


@pytest.fixture(scope="session")
def postgres_service() -> services.PostgresService:
    """A throw-away PostgreSQL: .host .port .user .password .database .jdbc_url .dsn .env()."""
    svc = _start(services.start_postgres)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> services.KafkaService:
    """A throw-away Kafka broker (KRaft): .bootstrap_servers; topics are created explicitly."""
    svc = _start(services.start_kafka)
    yield svc
    svc.stop()


@dataclass
class DemoApi:
    """The demo's merchant scoring API: its url, the records file it serves (pass it to
    generate_data.generate(api_data=...)) and the config connection that reaches it."""

    url: str
    data: Path

    @property
    def connection(self) -> str:
        """The `merchant_api` entry of a config's connections: (its token from the environment)."""
        return (f'  merchant_api: {{base_url: "{self.url}", '
                f'token: "${{{services.DEMO_API_TOKEN_ENV}}}", retries: 2, backoff: 0.2}}')


@pytest.fixture(scope="session")
def demo_api(tmp_path_factory) -> DemoApi:
    """scripts/demo_api.py on a free port, with a random token set in the environment variable the
    demo's connection reads (FEATURELAKE_DEMO_API_TOKEN), serving a file of its own."""
    token = f"test-{secrets.token_hex(8)}"
    old = os.environ.get(services.DEMO_API_TOKEN_ENV)
    os.environ[services.DEMO_API_TOKEN_ENV] = token
    data = tmp_path_factory.mktemp("demo_api") / "merchant_scores.json"
    svc = _start(services.start_demo_api, data=data, token=token)
    yield DemoApi(svc.url, data)
    svc.stop()
    if old is None:
        os.environ.pop(services.DEMO_API_TOKEN_ENV, None)
    else:
        os.environ[services.DEMO_API_TOKEN_ENV] = old
