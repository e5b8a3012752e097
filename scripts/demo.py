"""The whole life of the demo features on the embedded default (conf/local.yaml):
generate data into the local services (SQLite, S3, the demo scoring API), apply, ingest every
group (one batch fails its suite and is quarantined on purpose), export to DynamoDB, build and
replay a training set, read online rows, run the monitors and write the HTML report, then stream
payments from Kafka to DynamoDB and time them. A second run is incremental.

Run it with `make demo` (which starts the local services first)."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from featurelake import FeatureStore  # noqa: E402
from featurelake.cli import setup_logging  # noqa: E402

SUMMARY: list[tuple[str, float, str]] = []


@contextmanager
def stage(name: str) -> Iterator[list]:
    """Times a stage and keeps its one-line outcome for the closing summary."""
    notes: list = []
    print(f"\n== {name}", flush=True)
    started = time.monotonic()
    yield notes
    elapsed = time.monotonic() - started
    SUMMARY.append((name, elapsed, "; ".join(map(str, notes))))
    print(f"   ({elapsed:.1f}s)", flush=True)


def say(notes: list, line: str, keep: bool = False) -> None:
    print("   " + line, flush=True)
    if keep:
        notes.append(line)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", default=str(ROOT / "conf" / "local.yaml"))
    parser.add_argument("--repo", default=str(ROOT / "features"))
    parser.add_argument("--size", default="small", help="generator size: small, medium or large")
    args = parser.parse_args(argv)
    setup_logging(verbose=False, quiet=True)
    logging.getLogger("featurelake").setLevel(logging.WARNING)

    import generate_data
    from featurelake.config import load_config

    config = load_config(args.conf)
    with stage("1. generate data: SQLite (payments), S3 (profiles, events, access logs), the demo API "
               "(merchant scores)") as notes:
        first = not generate_data.sqlite_path(config).exists()
        sizes = generate_data.SIZES[args.size] if first else {}
        counts = generate_data.generate(config, seed=42, append=not first, **sizes)
        say(notes, f"{'first batch' if first else 'a newer batch'}: {counts['transactions']} payments, "
                   f"{counts['profiles']} profiles, {counts['events']} app events, {counts['access_lines']} access "
                   f"log lines ({counts['malformed_lines']} malformed), {counts['scores']} merchant scores",
            keep=True)

    store = FeatureStore.from_config(args.conf, repo=args.repo)
    with stage("2. apply: register the definitions in the Delta catalogue") as notes:
        changes = store.apply()
        for line in changes or ["no changes"]:
            say(notes, line)
        notes.append(f"{len(changes)} changes")

    with stage("3. ingest every group, in dependency order") as notes:
        written = 0
        for group in store.repo.ordered():
            if group.streamed:  # fed by its Kafka topic in stage 8
                continue
            result = store.ingest(group.name)
            written += result.rows_written
            say(notes, result.summary())
            if group.name == "app_access" and result.rows_rejected:
                say(notes, f"   {result.rows_rejected} log lines did not match the pattern: set aside with their file "
                           f"and line number in {config.lake('rejected', 'app_access')}")
            if group.name == "merchant_scores":
                say(notes, f"   read from the demo API page by page ({result.window or 'all records'})")
        notes.append(f"{sum(not g.streamed for g in store.repo.groups.values())} groups, {written} rows written")

    with stage("3b. a bad events file arrives: its batch fails the suite and is quarantined") as notes:
        bad = generate_data.generate(config, bad_batch=True)
        say(notes, f"wrote {bad['bad_events']} events from a broken app release: null ids, sessions ending "
                   f"before they start, negative page counts, unknown event types")
        before = store.offline("customer_sessions").version()
        result = store.ingest("customer_sessions")
        say(notes, result.summary())
        untouched = store.offline("customer_sessions").version() == before
        say(notes, f"{result.status} as expected: {result.rows_quarantined} rows held in the quarantine table, "
                   f"customer_sessions' offline table untouched: {untouched}", keep=True)
        say(notes, f"after fixing the data or the suite: featurelake ingest customer_sessions "
                   f"--from-quarantine {result.run_id}")

    with stage("4. export the newest row of every entity to DynamoDB") as notes:
        for group in store.repo.ordered():
            if group.online and not group.streamed:  # a stream writes its own online rows
                result = store.export(group.name)
                say(notes, result.summary())
        notes.append("online groups exported")

    with stage("5. build a point-in-time training set, then replay it") as notes:
        from pyspark.sql import functions as F

        conn = config.connection("payments")
        spine = (store.spark.read.format("jdbc").option("url", conn.url).option("driver", "org.sqlite.JDBC")
                 .option("dbtable", "transactions").load()
                 .select(F.col("customer_id").cast("bigint"), F.col("merchant_id").cast("bigint"),
                         F.col("created_at").cast("timestamp").alias("event_ts"), F.col("is_fraud").cast("int"),
                         F.col("amount").cast("double").alias("payment_amount"))  # a request field
                 .where(F.col("txn_id") % 10 == 0))
        features = ["customer_txn:*", "merchant_risk:chargeback_rate_30d", "merchant_scores:risk_score",
                    "customer_profile:segment", "customer_profile:tenure_days",
                    "customer_sessions:failed_logins_sum_7d", "payment_context:*"]
        ts = store.training_set(spine, features=features, timestamp_column="event_ts")
        rows = ts.to_spark().count()
        out = ROOT / ".featurelake" / "training_sets" / ts.id
        ts.write(str(out))
        replay = store.load_training_set(ts.id)
        same = replay.to_spark().exceptAll(ts.to_spark()).count() == 0 and replay.to_spark().count() == rows
        say(notes, f"training set {ts.id}: {rows} rows x {len(ts.to_spark().columns)} columns -> {out}", keep=True)
        say(notes, f"replay by time travel gives identical rows: {same}", keep=True)

    with stage("6. read online rows, as a scoring service would") as notes:
        from featurelake.online import OnlineClient

        client = OnlineClient.from_config(args.conf, repo=args.repo)  # repo: the request-time features' code
        t0 = time.perf_counter()
        row = client.get("customer_txn", {"customer_id": 1})
        single = (time.perf_counter() - t0) * 1000
        say(notes, f"customer_txn for customer 1 ({single:.1f} ms): {row}")
        t0 = time.perf_counter()
        many = client.get_features([{"customer_id": c, "merchant_id": c % 50 + 1} for c in range(1, 101)],
                                   ["customer_txn:*", "customer_profile:segment", "merchant_risk:*"])
        say(notes, f"100 scoring rows from 3 groups in {(time.perf_counter() - t0) * 1000:.1f} ms; "
                   f"{sum(1 for r in many if r.get('amount') is not None)} with payments", keep=True)
        t0 = time.perf_counter()
        [scored] = client.get_features([{"customer_id": 1}], ["payment_context:*"],
                                       request={"payment_amount": 950.0, "event_ts": datetime.now(timezone.utc)})
        context = {k: round(v, 2) if isinstance(v, float) else v for k, v in scored.items() if k != "customer_id"}
        say(notes, f"request-time payment_context of a 950.00 payment by customer 1, computed here by the "
                   f"function training sets use ({(time.perf_counter() - t0) * 1000:.1f} ms): {context}", keep=True)

    with stage("7. monitor: freshness, drift, train/serve skew; HTML report") as notes:
        from featurelake import monitoring

        report_dir = ROOT / ".featurelake" / "reports"
        report_dir.mkdir(parents=True, exist_ok=True)
        version = store.offline("customer_txn").version() or 0
        previous = f"v{version - 1}" if version > 1 else None  # this batch against the table before it
        # skew of payment_context replays the training set's requests through both paths
        for check, group in (("freshness", None), ("drift", "customer_txn"), ("skew", "customer_txn"),
                             ("skew", "payment_context")):
            ns = argparse.Namespace(check=check, group=group, all=group is None, current=None, sample=200,
                                    reference=previous if check == "drift" else None, report=None, json=False)
            report = monitoring.run_monitor(store, ns)
            path = report_dir / f"{check}{'' if group in (None, 'customer_txn') else '_' + group}.html"
            monitoring.write_html(report, str(path))
            say(notes, report.summary().splitlines()[0] if report.summary() else check)
            say(notes, f"report: {path}")
        notes.append(f"reports in {report_dir}")

    with stage("8. stream: payments from Kafka to the offline table and DynamoDB as they happen") as notes:
        live_stage(store, config, args, notes)

    print("\n== summary")
    for name, elapsed, note in SUMMARY:
        print(f"   {elapsed:6.1f}s  {name.split(': ')[0]:<40} {note}")
    print("\nWhere to look next:\n"
          "   featurelake catalog list                 what is registered\n"
          "   featurelake catalog show customer_txn    one group, its features and versions\n"
          "   featurelake online get customer_txn --key customer_id=1\n"
          f"   open {ROOT / '.featurelake' / 'reports' / 'drift.html'}\n"
          "   featurelake stream customer_live --trigger 500ms   keep it running, Ctrl-C to stop\n"
          "   notebooks/01_training_set.ipynb, 02_online_lookup.ipynb, 03_monitoring.ipynb\n"
          "   run `make demo` again: a newer batch, ingested and exported incrementally")
    return 0


def live_stage(store: FeatureStore, config, args: argparse.Namespace, notes: list) -> None:
    """Payments sent for LIVE_SECONDS while `stream customer_live` runs in this process; prints
    one customer's online row as it changes, then the send-to-online latency."""
    import demo_stream
    from featurelake.online import OnlineClient

    group = store.group("customer_live")
    servers = config.connection(group.source.connection).bootstrap_servers
    demo_stream.ensure_topic(servers, group.source.topic)
    with demo_stream.streaming(store, group.name) as outcome, OnlineClient.from_config(args.conf) as client:
        warm = demo_stream.warm_up(servers, group.source.topic, client, group.name, 1)
        say(notes, f"a first payment took {warm:.1f} s to be online (the process's first micro-batch warms the JVM "
                   f"up)")
        say(notes, f"sending {LIVE_RATE:g} payments/s for {LIVE_SECONDS:g} s to topic {group.source.topic} "
                   f"while `featurelake stream {group.name} --trigger 500ms` runs; customer 1 online:")
        live = demo_stream.watch(client, group.name, list(range(1, 51)), 1, LIVE_SECONDS, LIVE_RATE, servers,
                                 group.source.topic, say=print)
    p50, p99 = live.percentile(50), live.percentile(99)
    say(notes, f"{live.sent} payments sent, {len(live.latencies)} read back online, {live.unseen} not yet; "
               f"send -> online p50 {p50 or 0:.1f} s, p99 {p99 or 0:.1f} s", keep=True)
    say(notes, outcome["result"].summary())


LIVE_SECONDS, LIVE_RATE = 30.0, 20.0


if __name__ == "__main__":
    sys.exit(main())
