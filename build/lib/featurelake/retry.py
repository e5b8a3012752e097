"""The one retry policy: bounded attempts, exponential backoff with full jitter (many clients
retrying a throttled service spread out instead of returning together), and a server's own wait
(Retry-After) honoured when it gives one. Standard library only: the online client imports it."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def backoff(attempt: int, base: float = 0.025, cap: float = 1.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


def retry(action: Callable[[], T], *, attempts: int, retryable: Callable[[Exception], bool],
          give_up: Callable[[Exception], Exception], base: float = 0.2, cap: float = 5.0,
          wait: Callable[[Exception], float | None] | None = None,
          on_retry: Callable[[Exception, int], None] | None = None) -> T:
    """Runs `action` up to `attempts` times. An exception `retryable` refuses is raised as it is;
    the last retryable one becomes `give_up(exc)`, chained. `wait(exc)` may name the server's own
    delay in seconds (capped at `cap`); otherwise the jittered backoff applies."""
    for attempt in range(max(1, attempts)):
        try:
            return action()
        except Exception as exc:
            if not retryable(exc):
                raise
            if attempt >= attempts - 1:
                raise give_up(exc) from exc
            if on_retry is not None:
                on_retry(exc, attempt + 1)
            asked = wait(exc) if wait is not None else None
            time.sleep(max(0.0, min(asked, cap)) if asked is not None else backoff(attempt, base, cap))
    raise AssertionError("unreachable")
