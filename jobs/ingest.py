"""spark-submit entry point for ingestion, the same as `featurelake ingest`:

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0,org.apache.hadoop:hadoop-aws:3.4.1,... \\
        jobs/ingest.py --conf conf/prod.yaml --repo features --group customer_txn [--group ...] | --all

spark-submit starts the JVM before this file runs, so the jars must come from its --packages (or
--jars); the session itself is built by featurelake with Delta configured. Exit codes as the CLI's.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from featurelake import cli


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="jobs/ingest.py", description="source -> transform -> validate -> offline")
    p.add_argument("--conf", help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    p.add_argument("--repo", default="features", help="feature repository folder")
    p.add_argument("--group", action="append", default=[], help="a group to ingest; repeat for more")
    p.add_argument("--all", action="store_true", help="every group, in dependency order")
    for flag in ("--start", "--end", "--chunk", "--from-quarantine"):
        p.add_argument(flag)
    p.add_argument("--keep-going", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    args = ["--repo", a.repo] + (["--conf", a.conf] if a.conf else []) + ["ingest", *a.group]
    args += [f for f, on in (("--all", a.all), ("--keep-going", a.keep_going), ("--json", a.json)) if on]
    for flag, value in (("--start", a.start), ("--end", a.end), ("--chunk", a.chunk),
                        ("--from-quarantine", a.from_quarantine)):
        args += [flag, value] if value else []
    missing = _without_delta(a.conf)
    if missing:
        print(f"jobs/ingest.py: error: {missing}", file=sys.stderr)
        return 2
    return cli.main(args)


def _without_delta(conf: Optional[str]) -> Optional[str]:
    """Builds the session from the config; says so when Delta's classes are missing, which is what
    spark-submit without --packages gives (the JVM starts before featurelake can add them)."""
    from featurelake.config import load_config
    from featurelake.errors import FeaturelakeError
    from featurelake.spark import PACKAGES, get_spark

    try:
        spark = get_spark(load_config(conf))
    except FeaturelakeError:
        return None  # the CLI reports it, with its exit code
    if type(spark.sparkContext._jvm.io.delta.tables.DeltaTable).__name__ == "JavaClass":
        return None
    return f"Delta Lake's classes are not on the classpath: spark-submit --packages {','.join(PACKAGES)} ..."


if __name__ == "__main__":
    sys.exit(main())
