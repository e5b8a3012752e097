"""A Spark standalone cluster on loopback (one master, N workers) started with pyspark's own
`spark-class`, and spark-submit runs against it that record the driver's peak memory.

The cluster test needs a real cluster, not local mode, because local mode hides what breaks on
one: executors in other JVMs with their own working directories, jars shipped by the driver,
Python workers started from PYSPARK_PYTHON, and a driver that must never hold the data.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyspark

from procs import processes
from services import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The cluster did not come up; the message carries the tail of the failing process's log."""


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Ends a daemon and everything it started (a worker's executors and their Python workers):
    each daemon runs in its own session, so its process group holds them all."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


@dataclass
class StandaloneCluster:
    master_url: str
    ui_url: str
    workdir: Path
    env: dict
    procs: list = field(default_factory=list)   # (name, Popen, log path)

    def stop(self) -> None:
        """Workers first (they end their executors), then the master; safe to call twice. Then
        deletes the jars every executor copied (~580 MB each, the AWS SDK bundle) and the scratch
        dirs, keeping the logs."""
        for _, proc, _ in reversed(self.procs):
            _stop_group(proc)
        for jar in self.workdir.glob("worker*/app-*/*/*.jar"):
            jar.unlink()
        shutil.rmtree(self.workdir / "local", ignore_errors=True)

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return json.load(response)

    def logs(self) -> str:
        return "\n".join(f"--- {name} ({log}) ---\n{_tail(log)}" for name, _, log in self.procs)


def start_cluster(workdir: Path, *, workers: int = 2, cores: int = 1, memory: str = "2500m",
                  timeout_s: float = 120.0, env: Optional[dict] = None) -> StandaloneCluster:
    """Starts a master and `workers` workers on 127.0.0.1 (free ports, logs and work dirs under
    workdir) and waits until the master lists every worker ALIVE. Stops all of them on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(env or {}), "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": HOST,
           "SPARK_LOCAL_DIRS": str(workdir / "local"), "SPARK_LOG_DIR": str(workdir / "logs"),
           "PYSPARK_PYTHON": sys.executable}
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master_port, ui_port = free_port(), free_port()
    cluster = StandaloneCluster(f"spark://{HOST}:{master_port}", f"http://{HOST}:{ui_port}", workdir, env)

    def launch(name: str, *args: str) -> None:
        log = workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([spark_class, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=workdir, start_new_session=True)
        cluster.procs.append((name, proc, log))

    try:
        launch("master", "org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(master_port),
               "--webui-port", str(ui_port))
        for i in range(workers):
            (workdir / f"worker{i}").mkdir(exist_ok=True)
            launch(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                   "--port", str(free_port()), "--webui-port", str(free_port()), "--cores", str(cores),
                   "--memory", memory, "--work-dir", str(workdir / f"worker{i}"), cluster.master_url)
        _wait_alive(cluster, workers, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_alive(cluster: StandaloneCluster, workers: int, timeout_s: float) -> None:
    deadline, alive = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        for name, proc, log in cluster.procs:
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode} while starting:\n{_tail(log)}")
        try:
            alive = sum(w.get("state") == "ALIVE" for w in cluster.state().get("workers", []))
        except (urllib.error.URLError, OSError, ValueError):
            alive = 0  # the master's web UI is not up yet
        if alive >= workers:
            return
        time.sleep(0.5)
    raise ClusterError(f"{alive} of {workers} workers ALIVE at {cluster.ui_url} after {timeout_s:.0f}s:\n"
                       f"{cluster.logs()}")


# ---- spark-submit with the driver's memory watched ---------------------------------------------

def _children(pid: int) -> list[int]:
    return [child for child, fields in processes() if int(fields[1]) == pid]


def _peak_rss(pid: int) -> tuple[str, int]:
    """(command name, peak resident set size in bytes) of a live process; ("", 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "", 0
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    hwm = fields.get("VmHWM", "0 kB").split()
    return fields.get("Name", "").strip(), int(hwm[0]) * 1024 if hwm else 0


@dataclass
class SubmitResult:
    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    driver_jvm_peak: int      # bytes: the JVM spark-submit starts (the driver)
    driver_python_peak: int   # bytes: the driver's Python process, a child of that JVM


def submit(cmd: list, *, env: dict, cwd: Path, log: Path, timeout_s: float = 900.0) -> SubmitResult:
    """Runs a spark-submit command line, polling the peak RSS (VmHWM) of the driver's JVM and of
    its Python child until they exit. stderr (Spark's log) goes to `log`; stdout, which carries
    the driver's own output and logs, is kept and also written next to it (.out)."""
    started = time.monotonic()
    jvm_peak = python_peak = 0
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd,
                                start_new_session=True)
        chunks: list = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
        try:
            while proc.poll() is None:
                if time.monotonic() - started > timeout_s:
                    raise subprocess.TimeoutExpired(cmd, timeout_s)
                jvm_peak = max(jvm_peak, _peak_rss(proc.pid)[1])   # spark-submit execs the JVM
                for child in _children(proc.pid):
                    name, peak = _peak_rss(child)
                    if name.startswith("python"):
                        python_peak = max(python_peak, peak)
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                _stop_group(proc, grace_s=5)
            reader.join(timeout=30)
    stdout = (chunks[0] if chunks else b"").decode(errors="replace")
    log.with_suffix(".out").write_text(stdout)
    return SubmitResult(cmd, proc.returncode, stdout, _tail(log, 6000), time.monotonic() - started, jvm_peak,
                        python_peak)


def last_json(text: str) -> object:
    """The last JSON document printed at the start of a line: spark-submit merges the driver's
    stderr (featurelake's logs) into its stdout, so the CLI's --json output sits among log lines."""
    decoder, found = json.JSONDecoder(), None
    for start in [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]:
        if text[start:start + 1] in ("[", "{"):
            try:
                found = decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    if found is None:
        raise ValueError(f"no JSON document in the output:\n{text[-2000:]}")
    return found
