"""spark-submit entry point: offline -> DynamoDB for some or all online groups.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 jobs/export_online.py \
        --conf conf/prod.yaml --repo features/ --group customer_txn [--full]
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="export_online", description="Export online groups to DynamoDB.")
    p.add_argument("--conf", default=None, help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    p.add_argument("--repo", default="features", help="feature repository folder")
    p.add_argument("--group", action="append", default=[], help="a group to export (repeatable)")
    p.add_argument("--all", action="store_true", help="every online group")
    p.add_argument("--full", action="store_true", help="rewrite every key, not only what changed")
    args = p.parse_args(argv)
    from featurelake.cli import main as cli

    return cli(["export", *args.group, *(["--all"] if args.all else []), *(["--full"] if args.full else []),
                "--repo", args.repo, *(["--conf", args.conf] if args.conf else [])])


if __name__ == "__main__":
    sys.exit(main())
