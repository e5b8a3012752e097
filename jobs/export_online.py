"""spark-submit entry point for the online export, the same as `featurelake export`:

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 \\
        jobs/export_online.py --conf conf/prod.yaml --repo features --group customer_txn [--full] | --all

spark-submit starts the JVM before this file runs, so the Delta jar must come from its --packages;
the executors need featurelake and boto3 installed (they write to DynamoDB). Exit codes as the CLI's.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from featurelake import cli


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="jobs/export_online.py", description="offline -> DynamoDB")
    p.add_argument("--conf", help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    p.add_argument("--repo", default="features", help="feature repository folder")
    p.add_argument("--group", action="append", default=[], help="a group to export; repeat for more")
    p.add_argument("--all", action="store_true", help="every online group")
    p.add_argument("--full", action="store_true", help="rewrite every key, not only what changed")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    args = ["--repo", a.repo] + (["--conf", a.conf] if a.conf else []) + ["export", *a.group]
    return cli.main(args + [f for f, on in (("--all", a.all), ("--full", a.full), ("--json", a.json)) if on])


if __name__ == "__main__":
    sys.exit(main())
