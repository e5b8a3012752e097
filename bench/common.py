"""What every workload shares: the run context, a result row, alternating timed runs, peak-RSS
sampling, the machine line and DataFrame comparisons."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from bench.scales import Scale


@dataclass
class Row:
    """One line of the results table: featurelake against one competitor or floor."""
    workload: str                    # "1 PIT training set"
    case: str                        # "1 group, 1M spine x 5M rows"
    against: str                     # "Feast 0.67" | "floor: ..." | "no validation" ...
    featurelake: Optional[float]     # median, in `unit`
    other: Optional[float]
    unit: str = "s"
    target: str = ""                 # "ratio <= 0.2" as text
    target_ratio: Optional[float] = None  # featurelake / other must be <= this (None: informative)
    correct: Optional[bool] = None   # featurelake's output checked (None: not checked)
    notes: list = field(default_factory=list)
    runs: dict = field(default_factory=dict)  # every run's value, per side
    error: Optional[str] = None      # the workload did not finish: why

    @property
    def ratio(self) -> Optional[float]:
        if self.featurelake is None or self.other in (None, 0):
            return None
        return self.featurelake / self.other

    @property
    def verdict(self) -> str:
        if self.error:
            return "ERROR"
        if self.correct is False:
            return "FAIL (wrong)"
        if self.featurelake is None:
            return "n/a"
        if self.target_ratio is None or self.ratio is None:
            return "info"
        return "pass" if self.ratio <= self.target_ratio else "miss"

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "verdict": self.verdict}


@dataclass
class Context:
    """Everything a workload needs; built by run.py (and, at tiny scale, by the test)."""
    scale: Scale
    data: Any                        # bench.data.Data
    work: Path                       # scratch for this invocation (outputs, lakes)
    spark: Any                       # featurelake's SparkSession
    store: Any                       # featurelake's FeatureStore over `work`
    dynamodb_endpoint: Optional[str]
    runs: int
    feast: Optional[Callable[[], Any]] = None   # starts Feast's side (bench.feast_client.FeastSide)
    check_oracle: bool = True        # brute-force oracles (small and tiny scale)
    variants: bool = True            # workload 1's three-group and x4 variants, workload 2's x2
    state: dict = field(default_factory=dict)   # what one workload leaves for the next (exports)
    log: Callable[[str], None] = print


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def alternate(runs: int, sides: dict[str, Callable[[int], float]], log: Callable[[str], None] = print) -> dict:
    """Runs each side `runs` times, alternating which goes first (ABC, CBA, ABC...), so that a
    warming cache or a neighbour's load does not favour one side. -> {side: [seconds...]}."""
    names = list(sides)
    out: dict[str, list] = {n: [] for n in names}
    for i in range(runs):
        for name in (names if i % 2 == 0 else names[::-1]):
            value = sides[name](i)
            out[name].append(value)
            log(f"    run {i + 1}/{runs} {name}: {fmt(value)}")
    return out


def fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        if unit == "s":
            return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"
        if unit == "ms":
            return f"{value:.2f} ms"
        return f"{value:.3g} {unit}"
    return str(value)


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0


class RssSampler:
    """Peak resident memory of processes (by pid; their children too) every 50 ms while open."""

    def __init__(self, pids: Sequence[int], children: bool = True):
        self.pids, self.children = list(pids), children
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @staticmethod
    def kids(pid: int) -> list[int]:
        try:
            out = []
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(p) for p in f.read().split()]
            return out
        except OSError:
            return []

    def total(self) -> int:
        seen, todo, total = set(), list(self.pids), 0
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += self.rss(pid)
            if self.children:
                todo += self.kids(pid)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.total())

    def __enter__(self) -> "RssSampler":
        self.peak = self.total()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def machine(spark: Any = None) -> dict:
    """The machine line: cores, memory, CPU model, load, Python/Spark/Java versions."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20).stderr.splitlines()[0]
    except Exception:  # noqa: BLE001
        java = "?"
    import pyspark

    return {"cores": os.cpu_count(), "memory_gb": round(mem / 2 ** 30, 1), "cpu": cpu,
            "python": platform.python_version(), "spark": getattr(spark, "version", None) or pyspark.__version__,
            "java": java.replace('"', ""), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform()}


def machine_line(m: dict) -> str:
    return (f"{m['cores']} cores, {m['memory_gb']} GB, {m['cpu']}; Python {m['python']}, Spark {m['spark']}, "
            f"{m['java']}; load average {m['load_avg'][0]:.1f} at start")


# ---- comparing outputs --------------------------------------------------------------------------

def compare_spark(spark: Any, left: Any, right: Any, key: str, columns: Sequence[str],
                  rel_tol: float = 0.0, zero_is_null: Sequence[str] = ()) -> dict:
    """Two DataFrames holding one row per `key`: rows missing on either side, and per column the
    rows whose values differ (null-safe; doubles within rel_tol). Returns {"ok", "rows", ...}."""
    from pyspark.sql import functions as F

    def prep(df: Any, side: str) -> Any:
        cols = [F.col(key)]
        for c in columns:
            v = F.col(c)
            if c in zero_is_null:
                v = F.coalesce(v, F.lit(0))
            cols.append(v.alias(f"{side}_{c}"))
        return df.select(*cols)

    a, b = prep(left, "a"), prep(right, "b")
    a_keys = a.select(key, F.lit(1).alias("_a"))
    b_keys = b.select(key, F.lit(1).alias("_b"))
    j = a.join(b, key, "full_outer").join(a_keys, key, "left").join(b_keys, key, "left")
    aggs = [F.count(F.lit(1)).alias("rows"), F.sum(F.when(F.col("_a").isNull(), 1).otherwise(0)).alias("only_b"),
            F.sum(F.when(F.col("_b").isNull(), 1).otherwise(0)).alias("only_a")]
    for c in columns:
        x, y = F.col(f"a_{c}"), F.col(f"b_{c}")
        same = x.eqNullSafe(y)
        if rel_tol:
            same = same | (x.isNotNull() & y.isNotNull() & (F.abs(x - y) <= F.lit(rel_tol) * F.greatest(
                F.abs(x), F.abs(y), F.lit(1.0))))
        aggs.append(F.sum(F.when(same, 0).otherwise(1)).alias(f"diff_{c}"))
    r = j.agg(*aggs).first().asDict()
    dup_a = left.groupBy(key).count().where("count > 1").count()
    dup_b = right.groupBy(key).count().where("count > 1").count()
    diffs = {c: int(r[f"diff_{c}"] or 0) for c in columns if r[f"diff_{c}"]}
    ok = not r["only_a"] and not r["only_b"] and not diffs and not dup_a and not dup_b
    return {"ok": ok, "rows": int(r["rows"]), "only_left": int(r["only_a"] or 0), "only_right": int(r["only_b"] or 0),
            "duplicate_keys": [dup_a, dup_b], "differing": diffs}


def compare_pandas(left: Any, right: Any, key: str, columns: Sequence[str], rel_tol: float = 0.0,
                   zero_is_null: Sequence[str] = ()) -> dict:
    """The same comparison in pandas (oracle checks at small scale)."""
    import numpy as np

    a = left.set_index(key)[list(columns)]
    b = right.set_index(key)[list(columns)]
    only_a = len(a.index.difference(b.index))
    only_b = len(b.index.difference(a.index))
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    diffs = {}
    for c in columns:
        x, y = a[c], b[c]
        if c in zero_is_null:
            x, y = x.fillna(0), y.fillna(0)
        both_null = x.isna() & y.isna()
        if np.issubdtype(np.asarray(x.dropna()).dtype, np.floating) or np.issubdtype(
                np.asarray(y.dropna()).dtype, np.floating):
            xv, yv = x.astype(float), y.astype(float)
            close = (xv - yv).abs() <= rel_tol * np.maximum(np.maximum(xv.abs(), yv.abs()), 1.0)
            same = both_null | close.fillna(False)
        else:
            same = both_null | (x == y).fillna(False)
        n = int((~same).sum())
        if n:
            diffs[c] = n
    dups = [int(left[key].duplicated().sum()), int(right[key].duplicated().sum())]
    return {"ok": not only_a and not only_b and not diffs and not any(dups), "rows": len(common),
            "only_left": only_a, "only_right": only_b, "duplicate_keys": dups, "differing": diffs}


def describe_check(result: dict) -> str:
    if result.get("ok"):
        return f"equal ({result['rows']:,} rows)"
    return (f"DIFFERENT: {result.get('only_left')} rows only left, {result.get('only_right')} only right, "
            f"duplicate keys {result.get('duplicate_keys')}, differing columns {result.get('differing')}")
