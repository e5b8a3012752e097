"""spark-submit entry point for a Kafka-fed group, the same as `featurelake stream`:

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0,org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0,... \\
        jobs/stream.py --conf conf/prod.yaml --repo features --group customer_payments [--trigger 1s] [--available-now]

spark-submit starts the JVM before this file runs, so the Delta and Kafka connector jars (and
org.apache.spark:spark-avro_2.13:4.0.1 for an Avro source) must come from its --packages; the
executors need featurelake and boto3 installed (they write to DynamoDB). Without --available-now
it runs until stopped; restarted, it carries on from its checkpoint. Exit codes as the CLI's.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from featurelake import cli


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="jobs/stream.py", description="Kafka -> offline and online, exactly once")
    p.add_argument("--conf", help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    p.add_argument("--repo", default="features", help="feature repository folder")
    p.add_argument("--group", required=True, help="the Kafka-fed group to stream")
    p.add_argument("--trigger", default="1s", help="how often a micro-batch starts (500ms, 1s, 1m)")
    p.add_argument("--available-now", action="store_true", help="process what the topic holds, then stop")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    args = ["--repo", a.repo] + (["--conf", a.conf] if a.conf else []) + ["stream", a.group, "--trigger", a.trigger]
    return cli.main(args + [f for f, on in (("--available-now", a.available_now), ("--json", a.json)) if on])


if __name__ == "__main__":
    sys.exit(main())
