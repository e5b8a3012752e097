"""Brute-force answers in pandas/numpy, independent of Spark and of featurelake, for the checks at
small and tiny scale: the point-in-time join, the window aggregations, the newest row per key."""
from __future__ import annotations

from datetime import timedelta
from typing import Sequence

import numpy as np
import pandas as pd


def pit(spine: pd.DataFrame, group: pd.DataFrame, keys: Sequence[str], features: Sequence[str],
        ttl: timedelta, ts: str = "event_ts") -> pd.DataFrame:
    """Per spine row: the group's row with the greatest event time <= the spine's time and >= the
    spine's time - ttl (both inclusive), else nulls. Spine columns are kept."""
    keys = list(keys)
    left = spine.sort_values(ts, kind="stable")
    right = group[keys + [ts] + list(features)].rename(columns={ts: "_feature_ts"}).sort_values(
        "_feature_ts", kind="stable")
    out = pd.merge_asof(left, right, left_on=ts, right_on="_feature_ts", by=keys, direction="backward",
                        allow_exact_matches=True, tolerance=pd.Timedelta(ttl))
    return out.drop(columns=["_feature_ts"]).sort_values("row_id").reset_index(drop=True)


def windows(spine: pd.DataFrame, events: pd.DataFrame, windows: dict[str, timedelta], functions: Sequence[str],
            key: str = "customer_id", ts: str = "event_ts", column: str = "amount") -> pd.DataFrame:
    """Per spine row (row_id) and window w: function of `column` over the key's events with
    t - w < event time <= t. count is 0 and the others null over no events."""
    ev = events[[key, ts, column]].dropna(subset=[column])
    ev = ev.assign(_us=ev[ts].astype("int64")).sort_values([key, "_us"], kind="stable")
    by_key = {k: (g["_us"].to_numpy(), g[column].to_numpy(dtype=float)) for k, g in ev.groupby(key, sort=False)}
    t = spine[ts].astype("int64").to_numpy()
    keys = spine[key].to_numpy()
    out = {"row_id": spine["row_id"].to_numpy()}
    for w_name, w in windows.items():
        w_us = int(w.total_seconds() * 1_000_000)
        # pandas' datetime64[us] -> int64 gives microseconds here
        sums, counts, maxs = np.full(len(t), np.nan), np.zeros(len(t), dtype=np.int64), np.full(len(t), np.nan)
        for i, (k, ti) in enumerate(zip(keys, t)):
            times, values = by_key.get(k, (None, None))
            if times is None:
                continue
            lo = np.searchsorted(times, ti - w_us, side="right")   # first event > t - w
            hi = np.searchsorted(times, ti, side="right")          # first event > t
            if hi > lo:
                vals = values[lo:hi]
                sums[i], counts[i], maxs[i] = vals.sum(), hi - lo, vals.max()
        results = {"sum": sums, "count": counts, "max": maxs,
                   "avg": np.where(counts > 0, sums / np.maximum(counts, 1), np.nan),
                   "min": None}
        for fn in functions:
            out[f"{column}_{fn}_{w_name}"] = results[fn]
    return pd.DataFrame(out).sort_values("row_id").reset_index(drop=True)


def newest(group: pd.DataFrame, keys: Sequence[str], ts: str = "event_ts") -> pd.DataFrame:
    """The newest row of every key."""
    ordered = group.sort_values(list(keys) + [ts], kind="stable")
    return ordered.groupby(list(keys), sort=False).tail(1).reset_index(drop=True)
