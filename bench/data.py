"""Deterministic benchmark data: numpy (seeded per data set) -> pandas -> parquet, under
bench/data/<scale>/<name>/part-NNNNN.parquet. A data set is generated once and reused while its
manifest (generator version, scale parameters) matches; delete bench/data/ to start over.

Times are UTC microseconds, uniform over 2024. Within a data set no two rows of a key share an
event time, so "newest row" never depends on a tie-break (Feast breaks ties by a created
timestamp, featurelake by ingestion order: not what these workloads compare).
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd

from bench.scales import MERCHANTS_PER_CUSTOMER, YEAR_END, YEAR_START, Scale, scaled

GENERATOR_VERSION = 3
BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
CHUNK_ROWS = 1_000_000
YEAR_US = int((YEAR_END - YEAR_START).total_seconds() * 1_000_000)
START_US = int(YEAR_START.timestamp() * 1_000_000)
N_FEATURES = 10
WIDE_FEATURES = 50
CURRENCIES = np.array(["BRL", "USD", "EUR"])
CHANNELS = np.array(["web", "app", "pos"])


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()) ^ 0x5EED)


def _times(rng: np.random.Generator, n: int, resolution_us: int = 1) -> np.ndarray:
    us = rng.integers(0, YEAR_US // resolution_us, size=n, dtype=np.int64) * resolution_us
    return us + START_US


def _ts(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(us, unit="us", utc=True)).astype("datetime64[us, UTC]")


def _unique_times(keys: list[np.ndarray], us: np.ndarray) -> np.ndarray:
    """Moves a row whose (keys, time) repeats an earlier row's by 1 us until none repeats."""
    us = us.copy()
    while True:
        frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
        frame["t"] = us
        dup = frame.duplicated().to_numpy()
        if not dup.any():
            return us
        us[dup] += 1


def merchant_of(customer: np.ndarray, j: np.ndarray, merchants: int) -> np.ndarray:
    """The j-th of a customer's MERCHANTS_PER_CUSTOMER merchants (deterministic)."""
    return (customer * 7919 + j * 104_729) % merchants


# ---- the data sets ----------------------------------------------------------------------------

def gen_spine(s: Scale) -> pd.DataFrame:
    """row_id (unique), customer_id, merchant_id (one of the customer's), event_ts (whole seconds), label."""
    rng = _rng("spine")
    customer = rng.integers(0, s.customers, size=s.spine, dtype=np.int64)
    merchant = merchant_of(customer, rng.integers(0, MERCHANTS_PER_CUSTOMER, size=s.spine), s.merchants)
    return pd.DataFrame({"row_id": np.arange(s.spine, dtype=np.int64), "customer_id": customer,
                         "merchant_id": merchant.astype(np.int64),
                         "event_ts": _ts(_times(rng, s.spine, 1_000_000)),
                         "label": rng.integers(0, 2, size=s.spine, dtype=np.int32)})


def _feature_group(name: str, keys: dict, n: int, prefix: str, n_features: int = N_FEATURES) -> pd.DataFrame:
    rng = _rng(name)
    us = _unique_times(list(keys.values()), _times(rng, n))
    out = pd.DataFrame(keys)
    out["event_ts"] = _ts(us)
    for i in range(n_features):
        out[f"{prefix}{i}"] = rng.standard_normal(n)
    return out


def gen_cust(s: Scale) -> pd.DataFrame:
    rng = _rng("cust-keys")
    return _feature_group("cust", {"customer_id": rng.integers(0, s.customers, size=s.rows, dtype=np.int64)},
                          s.rows, "c_f")


def gen_merch(s: Scale) -> pd.DataFrame:
    rng = _rng("merch-keys")
    return _feature_group("merch", {"merchant_id": rng.integers(0, s.merchants, size=s.rows, dtype=np.int64)},
                          s.rows, "m_f")


def gen_pair(s: Scale) -> pd.DataFrame:
    rng = _rng("pair-keys")
    customer = rng.integers(0, s.customers, size=s.rows, dtype=np.int64)
    merchant = merchant_of(customer, rng.integers(0, MERCHANTS_PER_CUSTOMER, size=s.rows), s.merchants)
    return _feature_group("pair", {"customer_id": customer, "merchant_id": merchant.astype(np.int64)}, s.rows, "p_f")


def _events(name: str, s: Scale, n: int) -> pd.DataFrame:
    """Amounts in quarters (exact in binary floating point, so sums do not depend on order)."""
    rng = _rng(name)
    customer = rng.integers(0, s.customers, size=n, dtype=np.int64)
    us = _unique_times([customer], _times(rng, n))
    return pd.DataFrame({"customer_id": customer, "event_ts": _ts(us),
                         "amount": rng.integers(0, 400_000, size=n) / 4.0})


def gen_txn(s: Scale) -> pd.DataFrame:
    return _events("txn", s, s.events)


def gen_txn2x(s: Scale) -> pd.DataFrame:
    """Twice the history per key: the same customers, twice the events."""
    return _events("txn2x", s, 2 * s.events)


def gen_profile(s: Scale) -> pd.DataFrame:
    """Workload 3: export_keys keys (0..n-1), 3 offline rows each, 10 double features f0..f9."""
    keys = np.repeat(np.arange(s.export_keys, dtype=np.int64), 3)
    return _feature_group("profile", {"customer_id": keys}, len(keys), "f")


def gen_wide(s: Scale) -> pd.DataFrame:
    """Workload 4: wide_keys keys, one row each, 50 double features w0..w49."""
    return _feature_group("wide", {"customer_id": np.arange(s.wide_keys, dtype=np.int64)}, s.wide_keys, "w",
                          WIDE_FEATURES)


def gen_ingest(s: Scale) -> Iterator[pd.DataFrame]:
    """Workload 5: raw transactions for the ingest (valid for the 10-expectation suite), in files."""
    rng = _rng("ingest")
    per_file = -(-s.ingest_rows // s.ingest_files)
    for start in range(0, s.ingest_rows, per_file):
        n = min(per_file, s.ingest_rows - start)
        amount = rng.integers(0, 400_000, size=n) / 4.0
        yield pd.DataFrame({
            "txn_id": np.arange(start, start + n, dtype=np.int64),
            "customer_id": rng.integers(0, s.customers, size=n, dtype=np.int64),
            "event_ts": _ts(_times(rng, n)),
            "amount": amount,
            "currency": CURRENCIES[rng.integers(0, len(CURRENCIES), size=n)],
            "channel": CHANNELS[rng.integers(0, len(CHANNELS), size=n)],
            "n_items": rng.integers(1, 51, size=n, dtype=np.int32),
            "is_large": amount > 50_000,
        })


def gen_ingest_bad(s: Scale) -> pd.DataFrame:
    """A small batch that breaks two expectations (a negative amount, an unknown currency)."""
    frame = next(gen_ingest(Scale(**{**s.to_dict(), "ingest_rows": 100, "ingest_files": 1})))
    frame.loc[3, "amount"] = -5.0
    frame.loc[7, "currency"] = "XXX"
    return frame


GENERATORS: dict[str, Callable[[Scale], object]] = {
    "spine": gen_spine, "cust": gen_cust, "merch": gen_merch, "pair": gen_pair, "txn": gen_txn,
    "txn2x": gen_txn2x, "profile": gen_profile, "wide": gen_wide, "ingest": gen_ingest,
    "ingest_bad": gen_ingest_bad,
}


class Data:
    """The data sets of one scale, generated on first use. `Data(scale).path("cust")` -> its folder."""

    def __init__(self, scale: Scale, root: Optional[Path] = None, factor: int = 1):
        self.base = scale
        self.scale = scaled(scale, factor) if factor > 1 else scale
        self.root = Path(root or DATA_DIR / scale.name) / (f"x{factor}" if factor > 1 else "")
        self.factor = factor

    def manifest(self, name: str) -> dict:
        return {"generator": GENERATOR_VERSION, "name": name, "scale": {**self.scale.to_dict(), "name": None}}

    def path(self, name: str) -> Path:
        target = self.root / name
        marker = target / "_manifest.json"
        want = self.manifest(name)
        if marker.exists() and json.loads(marker.read_text()) == want:
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        out = GENERATORS[name](self.scale)
        frames = out if isinstance(out, Iterator) else _chunks(out)
        for i, frame in enumerate(frames):
            frame.to_parquet(target / f"part-{i:05d}.parquet", index=False, engine="pyarrow",
                             coerce_timestamps="us", allow_truncated_timestamps=False)
        marker.write_text(json.dumps(want, indent=1))
        return target

    def frame(self, name: str, columns: Optional[list] = None) -> pd.DataFrame:
        """The whole data set in pandas (oracles at small scale only)."""
        return pd.read_parquet(self.path(name), columns=columns)


def _chunks(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, max(len(frame), 1), CHUNK_ROWS):
        yield frame.iloc[start:start + CHUNK_ROWS]
