"""The one retry policy every loop uses (catalogue commits, JDBC connections, the online transport)."""
from __future__ import annotations

import pytest

from featurelake import retry as retry_module
from featurelake.retry import backoff, retry


class Flaky:
    def __init__(self, failures: list[Exception]):
        self.failures, self.calls = list(failures), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry_module.time, "sleep", slept.append)
    return slept


def test_retries_what_it_may_then_answers(sleeps: list[float]) -> None:
    action = Flaky([TimeoutError("a"), TimeoutError("b")])
    seen: list[int] = []
    assert retry(action, attempts=3, retryable=lambda e: isinstance(e, TimeoutError), give_up=RuntimeError,
                 base=0.1, cap=1.0, on_retry=lambda e, n: seen.append(n)) == "ok"
    assert action.calls == 3 and seen == [1, 2] and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.2  # full jitter under the doubling ceiling


def test_an_error_it_may_not_retry_is_raised_at_once(sleeps: list[float]) -> None:
    action = Flaky([KeyError("bad request")])
    with pytest.raises(KeyError):
        retry(action, attempts=5, retryable=lambda e: isinstance(e, TimeoutError), give_up=RuntimeError)
    assert action.calls == 1 and sleeps == []


def test_the_last_failure_becomes_the_give_up_error_chained(sleeps: list[float]) -> None:
    action = Flaky([TimeoutError("1"), TimeoutError("2"), TimeoutError("3")])
    with pytest.raises(RuntimeError, match="gave up") as info:
        retry(action, attempts=3, retryable=lambda e: True, give_up=lambda e: RuntimeError(f"gave up: {e}"))
    assert action.calls == 3 and str(info.value.__cause__) == "3" and len(sleeps) == 2


def test_the_server_s_own_wait_is_honoured_and_capped(sleeps: list[float]) -> None:
    action = Flaky([TimeoutError("slow down"), TimeoutError("slow down")])
    waits = iter([3.0, 120.0])
    retry(action, attempts=3, retryable=lambda e: True, give_up=RuntimeError, cap=30.0, wait=lambda e: next(waits))
    assert sleeps == [3.0, 30.0]


def test_backoff_grows_and_stays_under_its_cap() -> None:
    for attempt in range(12):
        assert 0 <= backoff(attempt, base=0.05, cap=2.0) <= min(2.0, 0.05 * 2 ** attempt)
