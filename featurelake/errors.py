"""One small hierarchy of errors; the CLI maps each to an exit code and a one-line message."""
from __future__ import annotations

import difflib
import re
from typing import Iterable, Optional


class FeaturelakeError(Exception):
    """Base of every error featurelake raises on purpose."""

    exit_code = 1


class ConfigError(FeaturelakeError):
    """A configuration file is malformed, incomplete or names something unknown."""

    exit_code = 2


class DefinitionError(FeaturelakeError):
    """A feature definition is invalid; raised when the feature repository loads."""

    exit_code = 2


class NotFoundError(FeaturelakeError):
    """A named object (group, feature, run, training set) does not exist."""

    exit_code = 2


class NotExportedYet(NotFoundError):
    """An online table whose first export (or the re-export of a lost table) is still writing: a
    key not found there may yet arrive, so it is not "no row for this key"."""


class UsageError(FeaturelakeError):
    """A call or command line asks for something inconsistent."""

    exit_code = 2


class JobError(FeaturelakeError):
    """A job failed while running: a source is down, a write was refused."""

    exit_code = 1


class OnDemandError(FeaturelakeError):
    """A request-time feature's function raised, or returned missing or ill-typed outputs."""

    exit_code = 1


class ValidationFailed(FeaturelakeError):
    """A batch failed its expectation suite; carries the failed expectations."""

    exit_code = 1

    def __init__(self, message: str, failures: list[dict] | None = None, run_id: str | None = None):
        super().__init__(message)
        self.failures = failures or []
        self.run_id = run_id


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or a list of what exists."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    if candidates:
        shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
        return f" (known: {shown})"
    return ""


_PYTHON_ERROR = re.compile(r"^(?:[\w]+\.)*(\w+(?:Error|Exception)): (.+)$")


def executor_error(exc: BaseException) -> Optional[str]:
    """What Python code running in an executor raised, from the Java error that carries its whole
    traceback to the driver: the traceback's last line (a featurelake error's message alone)."""
    text = str(exc)
    marker = "Traceback (most recent call last)"
    if marker not in text:
        return None
    for line in reversed(text.split(marker)[-1].splitlines()):
        m = _PYTHON_ERROR.match(line.strip())
        if m:
            name, message = m.groups()
            classes: list[type] = [FeaturelakeError, *FeaturelakeError.__subclasses__()]
            ours = {c.__name__ for c in classes}
            return message if name in ours else f"{name}: {message}"
    return None


def root_message(exc: BaseException) -> str:
    """What went wrong, in one line: an executor's Python error, else the innermost Java cause's
    message, else the first line of the error."""
    raised = executor_error(exc)
    if raised:
        return raised
    jexc = getattr(exc, "java_exception", None)
    if jexc is not None:
        try:
            while jexc.getCause() is not None:
                jexc = jexc.getCause()
            return f"{jexc.getClass().getSimpleName()}: {jexc.getMessage()}"
        except Exception:  # the gateway is gone: fall back to the text
            pass
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
