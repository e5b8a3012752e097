"""Starts bench/feast_side.py in Feast's virtualenv (creating it with setup_feast.sh when
missing) and talks to it: one JSON command a line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-feast"
PYTHON = VENV / "bin" / "python"


class FeastError(RuntimeError):
    pass


def ensure_venv(log=print) -> Path:
    """bench/.venv-feast with Feast 0.67 (setup_feast.sh is idempotent and fast when present)."""
    if not PYTHON.exists():
        log("  creating bench/.venv-feast (Feast 0.67 with Spark and DynamoDB; a few minutes, once)")
    subprocess.run(["bash", str(BENCH / "setup_feast.sh")], check=True)
    return PYTHON


class FeastSide:
    """A running feast_side.py; `call(cmd, **args)` -> its answer (raises FeastError on failure)."""

    def __init__(self, stderr_path: Path, env: Optional[dict] = None):
        ensure_venv()
        self.stderr_path = stderr_path
        stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._err = open(stderr_path, "ab")
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTHONPATH", None)
        full_env.pop("SPARK_HOME", None)
        full_env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen([str(PYTHON), str(BENCH / "feast_side.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1,
                                     env=full_env, cwd=str(stderr_path.parent))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, cmd: str, **args: Any) -> dict:
        if self.proc.poll() is not None:
            raise FeastError(f"Feast's side exited ({self.proc.returncode}); see {self.stderr_path}")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise FeastError(f"Feast's side died during {cmd!r}; see {self.stderr_path}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise FeastError(f"Feast's {cmd} failed: {answer.get('error')}\n{answer.get('traceback', '')}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
        self._err.close()

    def __enter__(self) -> "FeastSide":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def spark_conf(driver_memory: str) -> dict:
    """Feast's Spark: the conf of issue 7, the same as featurelake's side."""
    return {"spark.master": "local[2]", "spark.driver.memory": driver_memory,
            "spark.sql.shuffle.partitions": "8", "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC"}


if __name__ == "__main__":  # smoke test: python bench/feast_client.py
    side = FeastSide(Path("/tmp/feast-side.log"))
    print(side.call("versions"))
    side.close()
    sys.exit(0)
