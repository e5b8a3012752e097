"""spark-submit script for test_concurrent_commits: COUNT commits to one catalogue table and COUNT
merges into one offline table, in a lake on S3, started at the same moment as another writer.

    spark-submit ... commit_writer.py CONF REPO WHO COUNT BARRIER_DIR

Each writer builds its session, says it is ready (a file in BARRIER_DIR), waits for the other
one, then commits as fast as it can: the worst case for two drivers sharing a Delta log on S3."""
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from featurelake.store import FeatureStore


def main(conf: str, repo: str, who: str, count: int, barrier: Path) -> int:
    logging.basicConfig(stream=sys.stdout, format="%(message)s")
    logging.getLogger("featurelake.commitlock").setLevel(logging.DEBUG)  # the lease's hold times, for the test
    store = FeatureStore.from_config(conf, repo=repo)
    spark = store.spark
    schema = "customer_id bigint, ts timestamp, amount double"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    frames = [spark.createDataFrame([(hash((who, i)) % 10**9, now - timedelta(minutes=i), float(i))], schema)
              for i in range(count)]
    (barrier / f"ready-{who}").write_text("")
    deadline = time.monotonic() + 600
    while len(list(barrier.glob("ready-*"))) < 2:
        if time.monotonic() > deadline:
            print("the other writer never got ready", file=sys.stderr)
            return 1
        time.sleep(0.05)
    for i in range(count):
        store.catalog.audit("commit_test", f"{who}-{i}")
        store.offline("payments").merge(frames[i], f"{who}-{i}")
    print(f"{who}: {count} catalogue commits and {count} merges done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])))
