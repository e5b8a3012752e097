"""Sizes of each scale. `medium` is issue 7's reference; `small` is about 1/50 of it, so that
`make bench SCALE=small` takes a few minutes (one timed run after a warm-up: a check that every
workload runs and is right, not a measurement to quote; `--runs 3` for medians); `tiny` is for
the test suite.

Every scale keeps medium's densities: 50 feature rows and 10 spine rows per customer over the
year, 50 events per customer, 3 rows per exported key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

YEAR_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
YEAR_END = datetime(2025, 1, 1, tzinfo=timezone.utc)
TTL_DAYS = 90
MERCHANTS_PER_CUSTOMER = 5


@dataclass(frozen=True)
class Scale:
    name: str
    customers: int          # customer keys (workloads 1, 2, 5)
    merchants: int          # merchant keys (workload 1, three groups)
    spine: int              # spine rows (workloads 1, 2)
    rows: int               # rows of each workload-1 group (10 double features)
    events: int             # workload-2 events (amount), before the "history x2" variant
    export_keys: int        # workload 3: keys exported (10 double features, 3 offline rows a key)
    wide_keys: int          # workload 4: keys of the 50-feature group
    requests: int           # workload 4: requests per case and run
    ingest_rows: int        # workload 5
    ingest_files: int
    runs: int               # default runs per measurement (median of these)
    driver_memory: str      # both sides' Spark driver (local mode: driver = executors)

    def to_dict(self) -> dict:
        return asdict(self)


SCALES = {
    "tiny": Scale("tiny", customers=200, merchants=40, spine=2_000, rows=10_000, events=10_000, export_keys=300,
                  wide_keys=100, requests=30, ingest_rows=5_000, ingest_files=2, runs=1, driver_memory="2g"),
    "small": Scale("small", customers=2_000, merchants=200, spine=20_000, rows=100_000, events=100_000,
                   export_keys=2_000, wide_keys=1_000, requests=200, ingest_rows=100_000, ingest_files=4, runs=1,
                   driver_memory="2g"),
    "medium": Scale("medium", customers=100_000, merchants=10_000, spine=1_000_000, rows=5_000_000,
                    events=5_000_000, export_keys=100_000, wide_keys=10_000, requests=1_000,
                    ingest_rows=10_000_000, ingest_files=10, runs=3, driver_memory="8g"),
}


def scaled(scale: Scale, factor: int) -> Scale:
    """The same shape with `factor` times the keys, spine and rows (workload 1's growth variant)."""
    return Scale(f"{scale.name}x{factor}", customers=scale.customers * factor, merchants=scale.merchants * factor,
                 spine=scale.spine * factor, rows=scale.rows * factor, events=scale.events * factor,
                 export_keys=scale.export_keys, wide_keys=scale.wide_keys, requests=scale.requests,
                 ingest_rows=scale.ingest_rows, ingest_files=scale.ingest_files, runs=scale.runs,
                 driver_memory=scale.driver_memory)
