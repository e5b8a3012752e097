"""The statuses the catalogue's runs and exports tables hold: one spelling each, named here, so a
writer and every reader (freshness, lineage, skew, history) agree on what "it worked" means.
Standard library only: the JVM-free read verbs import it."""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """An ingest run (kind ingest) or a dry run (kind validate)."""

    SUCCEEDED = "succeeded"      # validated and written
    WARNED = "warned"            # written; the suite failed under validation.on_failure=warn
    QUARANTINED = "quarantined"  # the batch failed its suite and went to the quarantine table
    FAILED = "failed"            # nothing written: the error says why
    VALID = "valid"              # a dry run whose batch passes
    INVALID = "invalid"          # a dry run whose batch fails
    SKIPPED = "skipped"          # a backfill chunk an earlier attempt already did


WROTE = frozenset({RunStatus.SUCCEEDED, RunStatus.WARNED})
"""Runs whose rows are in the offline table."""
ADVANCING = frozenset({RunStatus.SUCCEEDED, RunStatus.WARNED, RunStatus.QUARANTINED})
"""Runs after which the batch is dealt with (written, or set aside): the next run reads past it."""


class ExportStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"          # some items were refused (too large); the rest are online
    FAILED = "failed"
    SKIPPED = "skipped"          # nothing changed since the last export


ONLINE = frozenset({ExportStatus.OK, ExportStatus.PARTIAL})
"""Exports whose items are online, all or some."""
