#!/usr/bin/env python3
"""Seeded, realistic data for the payments demo, written where the feature repository reads it.

- SQLite (the config's `payments` connection): merchants, transactions (with the is_fraud
  label), chargebacks filed weeks after a fraud, and the acquirer's daily chargeback_reports.
- S3 (the config's s3.endpoint_url): CRM profiles as CSV under raw/profiles/, app sessions as
  nested JSON lines under raw/events/ (one file per day), the app servers' access log lines as
  text under raw/access_logs/ (one file per run, a couple of malformed lines in a large one).
- The partner scoring API's records (each merchant's daily risk score) as a JSON list in a file
  beside the SQLite database, which the demo API (scripts/demo_api.py) serves page by page.

The first run covers the last --days days but stops a day short of now: `--append`, the second
demo run, adds that newer day (new ids, later timestamps). `--bad-batch` adds one events file
that breaks the customer_sessions suite (over existing data and without --append, only that
file). The same seed and --now give the same data.

    python scripts/generate_data.py [--size small|medium|large] [--seed 42] [--customers N]
        [--merchants N] [--days N] [--txns N] [--events N] [--now ISO]
        [--append] [--bad-batch] [--reset] [--conf conf/local.yaml]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from featurelake.config import Config, load_config
from featurelake.errors import FeaturelakeError, JobError, UsageError

BUCKET, PROFILES, EVENTS, ACCESS_LOGS = "featurelake-demo", "raw/profiles/", "raw/events/", "raw/access_logs/"
API_DATA = "merchant_scores.json"
"""The demo API's records, in the directory of the SQLite database (scripts/services.py DEMO_API_DATA)."""
PATHS = {"/home": 30, "/products": 25, "/cart": 12, "/pay": 15, "/login": 10, "/account": 8}
SIZES = {"small": dict(customers=200, merchants=20, days=30, txns=3_000),
         "medium": dict(customers=1_000, merchants=50, days=90, txns=20_000),
         "large": dict(customers=20_000, merchants=500, days=180, txns=500_000)}
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 11, 12, 11, 10, 10, 10, 11, 12, 12, 11, 9, 6, 4]
CATEGORIES = {"grocery": 90, "restaurants": 60, "fuel": 150, "fashion": 200, "digital_goods": 40,
              "electronics": 900, "travel": 1200}  # median ticket, BRL
MERCHANT_COUNTRIES = {"BR": ("BRL", 85), "US": ("USD", 6), "PT": ("EUR", 4), "AR": ("ARS", 3), "GB": ("GBP", 2)}
CUSTOMER_COUNTRIES = {"BR": 93, "PT": 3, "US": 2, "AR": 2}
DOMAINS = {"gmail.com": 55, "hotmail.com": 15, "yahoo.com.br": 10, "outlook.com": 10, "uol.com.br": 7,
           "mailinator.com": 3}
NAMES = ["ana", "bruno", "carla", "diego", "elisa", "felipe", "gabriela", "heitor", "isabela", "joao",
         "larissa", "marcos", "natalia", "otavio", "paula", "rafael", "sofia", "thiago", "vitoria"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (merchant_id INTEGER PRIMARY KEY, name TEXT, category TEXT,
    country TEXT, currency TEXT, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS transactions (txn_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
    merchant_id INTEGER NOT NULL, amount DOUBLE NOT NULL, currency TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, is_fraud INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS transactions_created ON transactions (created_at);
CREATE INDEX IF NOT EXISTS transactions_updated ON transactions (updated_at);
CREATE TABLE IF NOT EXISTS chargebacks (chargeback_id INTEGER PRIMARY KEY, txn_id INTEGER UNIQUE NOT NULL,
    merchant_id INTEGER NOT NULL, customer_id INTEGER NOT NULL, amount DOUBLE NOT NULL, reason TEXT,
    created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
CREATE INDEX IF NOT EXISTS chargebacks_created ON chargebacks (created_at);
CREATE TABLE IF NOT EXISTS chargeback_reports (merchant_id INTEGER NOT NULL, report_date TEXT NOT NULL,
    txn_count_30d INTEGER, txn_amount_30d DOUBLE, chargeback_count_30d INTEGER,
    chargeback_amount_30d DOUBLE, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (merchant_id, report_date));
CREATE TABLE IF NOT EXISTS generator_runs (run_id TEXT PRIMARY KEY, seed INTEGER, customers INTEGER,
    merchants INTEGER, window_start TIMESTAMP, window_end TIMESTAMP, txns INTEGER, events INTEGER);
"""


def db_ts(t: datetime) -> str:
    """SQLite text timestamps, the JDBC driver's default format: sortable as strings."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse(text: str) -> datetime:
    """ISO text to an aware UTC datetime; text without an offset is UTC already."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _pick(rng: random.Random, weights: dict) -> Any:
    return rng.choices(list(weights), list(weights.values()))[0]


def population(seed: int, customers: int, merchants: int, start: datetime) -> tuple[list, list]:
    """Customers and merchants as a function of the seed alone, so --append sees the same ones."""
    rng = random.Random(f"{seed}:population")
    people = []
    for cid in range(1, customers + 1):
        domain = _pick(rng, DOMAINS)
        signup = start - timedelta(days=min(rng.expovariate(1 / 400), 1800), seconds=rng.randrange(86400))
        people.append(dict(
            customer_id=cid, country=_pick(rng, CUSTOMER_COUNTRIES), domain=domain,
            email=f"{rng.choice(NAMES)}.{rng.choice(NAMES)}{cid}@{domain}",
            signup=signup, birth=signup - timedelta(days=365.25 * rng.uniform(18.1, 75)),
            segment=rng.choices(["basic", "gold", "platinum"], [70, 24, 6])[0],
            activity=rng.lognormvariate(0, 1.0),
            risk=rng.lognormvariate(0, 0.5) * (4 if domain == "mailinator.com" else 1)))
    shops = []
    for mid in range(1, merchants + 1):
        category = rng.choice(list(CATEGORIES))
        country = _pick(rng, {k: share for k, (_, share) in MERCHANT_COUNTRIES.items()})
        shops.append(dict(
            merchant_id=mid, name=f"{category.replace('_', ' ').title()} {mid}", category=category,
            country=country, currency=MERCHANT_COUNTRIES[country][0], popularity=1 / mid ** 0.8,
            risk=rng.lognormvariate(0, 0.6) * (2 if category in ("digital_goods", "electronics") else 1)))
    return people, shops


def _instant(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A time in [start, end) following the day's rhythm (quiet nights, busy lunch and evening)."""
    while True:
        t = start + (end - start) * rng.random()
        if rng.random() * max(HOUR_WEIGHTS) < HOUR_WEIGHTS[t.hour]:
            return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _transactions(rng: random.Random, n: int, first_id: int, people: list, shops: list,
                  start: datetime, end: datetime) -> list[dict]:
    """Log-normal amounts; fraud about 1% overall, likelier when large, at night, abroad."""
    buyers = rng.choices(people, [p["activity"] for p in people], k=n)
    sellers = rng.choices(shops, [s["popularity"] for s in shops], k=n)
    times = sorted(_instant(rng, start, end) for _ in range(n))
    rows = []
    for i, (t, c, m) in enumerate(zip(times, buyers, sellers)):
        amount = round(min(max(rng.lognormvariate(math.log(CATEGORIES[m["category"]]), 1.0), 1.0), 50_000), 2)
        logit = (-5.9 + 1.6 * (amount > 1000) + 1.2 * (t.hour < 6) + 1.3 * (m["currency"] != "BRL")
                 + math.log(m["risk"] * c["risk"]))
        rows.append(dict(txn_id=first_id + i, customer_id=c["customer_id"], merchant_id=m["merchant_id"],
                         amount=amount, currency=m["currency"], created_at=db_ts(t), updated_at=db_ts(t),
                         is_fraud=int(rng.random() < 1 / (1 + math.exp(-logit)))))
    return rows


def _file_chargebacks(db: sqlite3.Connection, seed: int, start: datetime, end: datetime) -> int:
    """Most frauds and a few honest payments come back as chargebacks 2 to 60 days later; each
    run files the ones due by its end. The draw depends on the txn id only, so it never changes."""
    due = []
    cutoff = db_ts(start - timedelta(days=61))  # older payments were settled by earlier runs
    for txn_id, merchant_id, customer_id, amount, created, fraud in db.execute(
            "SELECT txn_id, merchant_id, customer_id, amount, created_at, is_fraud FROM transactions t "
            "WHERE created_at >= ? AND NOT EXISTS (SELECT 1 FROM chargebacks c WHERE c.txn_id = t.txn_id)",
            (cutoff,)):
        rng = random.Random(f"{seed}:chargeback:{txn_id}")
        if rng.random() >= (0.8 if fraud else 0.002):
            continue
        filed = _parse(created) + timedelta(days=min(2 + rng.expovariate(1 / 12), 60), seconds=rng.randrange(3600))
        if filed < end:
            reason = "fraud" if fraud else rng.choice(["product_not_received", "duplicate", "not_as_described"])
            due.append((txn_id, merchant_id, customer_id, amount, reason, db_ts(filed), db_ts(filed)))
    db.executemany("INSERT INTO chargebacks (txn_id, merchant_id, customer_id, amount, reason, created_at, "
                   "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", due)
    return len(due)


def _issue_reports(db: sqlite3.Connection, start: datetime, end: datetime) -> int:
    """The acquirer's report for day D counts the 30 days up to D's end and is issued at 02:00 the
    next day; days already reported are skipped."""
    last = db.execute("SELECT max(report_date) FROM chargeback_reports").fetchone()[0]
    day = (_parse(last) + timedelta(days=1)) if last else start.replace(hour=0, minute=0, second=0, microsecond=0)
    count = 0
    while day + timedelta(days=1, hours=2) <= end:
        hi, issued = day + timedelta(days=1), db_ts(day + timedelta(days=1, hours=2))
        params = {"day": day.date().isoformat(), "lo": db_ts(hi - timedelta(days=30)), "hi": db_ts(hi),
                  "ts": issued}
        count += db.execute("""
            INSERT INTO chargeback_reports SELECT m.merchant_id, :day, coalesce(t.n, 0), coalesce(t.amount, 0),
                   coalesce(c.n, 0), coalesce(c.amount, 0), :ts, :ts
            FROM merchants m
            LEFT JOIN (SELECT merchant_id, count(*) n, round(sum(amount), 2) amount FROM transactions
                       WHERE created_at >= :lo AND created_at < :hi GROUP BY merchant_id) t USING (merchant_id)
            LEFT JOIN (SELECT merchant_id, count(*) n, round(sum(amount), 2) amount FROM chargebacks
                       WHERE created_at >= :lo AND created_at < :hi GROUP BY merchant_id) c USING (merchant_id)
            """, params).rowcount
        day = hi
    return count


def _profile(c: dict, updated: datetime) -> dict:
    return dict(customer_id=c["customer_id"], email=c["email"], age=int((updated - c["birth"]).days / 365.25),
                segment=c["segment"], country=c["country"], signup_ts=iso(c["signup"]), updated_at=iso(updated))


def _session(rng: random.Random, event_id: str, c: dict, kind: str, ended: datetime, takeover: bool) -> dict:
    """One app session as the apps send it: nested objects, ISO timestamps."""
    seconds = min(rng.lognormvariate(math.log(150 if kind == "payment" else 240), 0.9), 7200)
    device = rng.choices(["mobile", "tablet", "desktop"], [62, 5, 33])[0]
    systems = ["android", "ios"] if device != "desktop" else ["windows", "macos"]
    foreign = rng.random() < (0.6 if takeover else 0.03)
    return {"event_id": event_id,
            "customer": {"id": c["customer_id"], "country": c["country"]},
            "event": {"type": kind, "ts": iso(ended), "started_at": iso(ended - timedelta(seconds=seconds)),
                      "page_views": max(1, int(seconds / 25 * rng.uniform(0.5, 1.5))),
                      "failed_logins": rng.randint(1, 4) if takeover else rng.choices([0, 1, 2], [93, 5, 2])[0]},
            "device": {"type": device, "os": rng.choice(systems),
                       "app_version": f"5.{rng.randint(0, 4)}.{rng.randint(0, 9)}"},
            "geo": {"ip_country": rng.choice(["US", "RU", "NG", "CN", "PT"]) if foreign else c["country"]}}


def _events(rng: random.Random, run_id: str, n: int, txns: list, people: list, start: datetime,
            end: datetime) -> dict[str, list]:
    """Sessions per UTC day: a payment session ends at half the payments (most frauds, with the
    marks of an account takeover), the rest are browsing and account changes."""
    by_id, out, i = {p["customer_id"]: p for p in people}, [], 0
    for t in txns:
        if rng.random() < (0.9 if t["is_fraud"] else 0.5):
            out.append(_session(rng, f"evt-{run_id}-{i:07d}", by_id[t["customer_id"]], "payment",
                                _parse(t["created_at"]), bool(t["is_fraud"])))
            i += 1
    for c in rng.choices(people, [p["activity"] for p in people], k=max(0, n - len(out))):
        kind = rng.choices(["browse", "account_change"], [85, 15])[0]
        out.append(_session(rng, f"evt-{run_id}-{i:07d}", c, kind, _instant(rng, start, end), False))
        i += 1
    days: dict[str, list] = {}
    for e in sorted(out, key=lambda e: e["event"]["ts"]):
        days.setdefault(e["event"]["ts"][:10], []).append(e)
    return days


def _access_lines(rng: random.Random, people: list, start: datetime, end: datetime) -> list[str]:
    """About ten requests a day, in time order, as the app servers log them; a window of 100 or
    more lines also gets one malformed line per 100 (a health checker's, one cut short)."""
    n = max(1, round(10 * (end - start) / timedelta(days=1)))
    lines = []
    for t in sorted(_instant(rng, start, end) for _ in range(n)):
        c = rng.choices(people, [p["activity"] for p in people])[0]
        path = _pick(rng, PATHS)
        status = rng.choices([200, 302, 401, 404, 500], [88, 4, 3 if path != "/login" else 20, 3, 2])[0]
        ms = int(min(rng.lognormvariate(math.log(400 if path == "/pay" else 90), 0.7), 30_000))
        lines.append(f"{iso(t)} customer={c['customer_id']} {'POST' if path in ('/pay', '/login') else 'GET'} "
                     f"{path} {status} {ms}ms")
    for i in range(len(lines) // 100):
        at = rng.randrange(len(lines))
        lines.insert(at, f"{iso(end)} - GET /health 200 1ms" if i % 2 == 0 else lines[at][:30])
    return lines


def _scores(seed: int, shops: list, start: datetime, end: datetime) -> list[dict]:
    """The partner's score of every merchant for day D, issued at 03:00 the next day: those
    issued in [start, end). A function of the seed, merchant and day only."""
    out = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    while day + timedelta(days=1, hours=3) < end:
        issued = day + timedelta(days=1, hours=3)
        if issued >= start:
            for m in shops:
                rng = random.Random(f"{seed}:score:{m['merchant_id']}:{day.date()}")
                score = round(min(max(35 * m["risk"] + rng.gauss(0, 6), 0.0), 100.0), 1)
                band = "low" if score < 40 else "medium" if score < 70 else "high"
                at = iso(issued + timedelta(seconds=rng.randrange(600)))
                out.append({"merchant_id": m["merchant_id"], "score": score, "band": band, "scored_at": at,
                            "updated_at": at})
        day += timedelta(days=1)
    return out


def _add_api_records(path: Path, records: list[dict]) -> None:
    """Adds the records to the API's file, replaced whole (the API reads it on every request)."""
    old = json.loads(path.read_text()) if path.exists() else []
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(old + records, separators=(",", ":")))
    tmp.replace(path)


def _bad_events(rng: random.Random, run_id: str, people: list, end: datetime) -> list[dict]:
    """What a broken app release sends: null ids, sessions ending before they start, negative
    page counts, an unknown event type."""
    rows = []
    for i in range(20):
        e = _session(rng, f"evt-{run_id}-bad-{i:03d}", rng.choice(people), "payment",
                     end - timedelta(minutes=rng.randint(1, 60)), False)
        defect = i % 4
        if defect == 0:
            e["customer"]["id"] = None
        elif defect == 1:
            e["event"]["started_at"], e["event"]["ts"] = e["event"]["ts"], e["event"]["started_at"]
        elif defect == 2:
            e["event"]["page_views"] = -rng.randint(1, 50)
        else:
            e["event"]["type"] = "unknown"
        rows.append(e)
    return rows


class Storage:
    """The S3 bucket the feature repository reads, reached the way Spark reaches it."""

    def __init__(self, config: Config, bucket: str = BUCKET):
        import boto3
        from botocore.config import Config as BotoConfig

        self.endpoint, self.bucket = config.s3.endpoint_url, bucket
        self.region = config.s3.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            config=BotoConfig(s3={"addressing_style": "path" if config.s3.path_style else "auto"},
                              connect_timeout=3, read_timeout=30, retries={"max_attempts": 2}))

    def ensure_bucket(self) -> None:
        """Fails early, before any write, when S3 is not there."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise JobError(f"S3 bucket {self.bucket!r} at {self.endpoint or 'AWS'}: {exc}") from None
            extra = {} if self.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}}
            self.client.create_bucket(Bucket=self.bucket, **extra)
        except BotoCoreError as exc:
            raise JobError(f"S3 endpoint {self.endpoint or 'AWS'} is not reachable ({exc}): start the local "
                           f"services with `make services-up`, or set FEATURELAKE_S3_ENDPOINT") from None

    def put(self, key: str, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def delete_prefix(self, prefix: str) -> None:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def sqlite_path(config: Config) -> Path:
    url = config.connection("payments").url
    if not url.startswith("jdbc:sqlite:"):
        raise UsageError(f"the demo generator writes SQLite, but connection 'payments' in {config.path} "
                         f"is {url!r}")
    return Path(url[len("jdbc:sqlite:"):])


def generate(config: Config, seed: int = 42, *, customers: int = 1_000, merchants: int = 50, days: int = 90,
             txns: Optional[int] = None, events: Optional[int] = None, append: bool = False,
             bad_batch: bool = False, reset: bool = False, now: Optional[datetime] = None,
             bucket: str = BUCKET, api_data: Optional[Path] = None) -> dict:
    """Writes one batch (the first, or with append=True the next) and returns what it wrote.
    api_data: the demo API's records file (default: API_DATA beside the SQLite database).

    bad_batch adds the bad events file; over existing data without append, it writes only that.
    txns defaults to 20,000 for a first run and to the previous daily rate for an append; events
    to twice the payments. An append keeps the first run's seed and population."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    s3 = Storage(config, bucket)
    s3.ensure_bucket()
    path = sqlite_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    api_data = Path(api_data or path.parent / API_DATA)
    db = sqlite3.connect(path)
    try:
        if reset:
            for table in ("merchants", "transactions", "chargebacks", "chargeback_reports", "generator_runs"):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            s3.delete_prefix(PROFILES)
            s3.delete_prefix(EVENTS)
            s3.delete_prefix(ACCESS_LOGS)
            api_data.unlink(missing_ok=True)
        db.executescript(SCHEMA)
        last = db.execute("SELECT seed, customers, merchants, window_start, window_end, txns, events "
                          "FROM generator_runs ORDER BY window_end DESC LIMIT 1").fetchone()
        first = db.execute("SELECT min(window_start) FROM generator_runs").fetchone()[0]
        if last and not append and not bad_batch:
            raise UsageError(f"{path} already holds demo data: pass --append for a newer batch, or --reset")
        if append and not last:
            raise UsageError(f"nothing to append to in {path}: run once without --append first")
        if last:
            seed, customers, merchants = last[:3]
            if now <= _parse(last[4]):
                raise UsageError(f"--now {iso(now)} is not after the last batch's end {last[4]}")
        history_start = _parse(first) if first else now - timedelta(days=days)
        people, shops = population(seed, customers, merchants, history_start)
        runs = db.execute("SELECT count(*) FROM generator_runs").fetchone()[0]
        run_id = f"r{runs + 1:03d}-{now:%Y%m%dT%H%M%S}"  # file names: a rerun never overwrites a batch
        counts = {"run_id": run_id, "customers": customers, "merchants": merchants, "transactions": 0,
                  "fraud": 0, "chargebacks": 0, "reports": 0, "profiles": 0, "events": 0, "bad_events": 0,
                  "access_lines": 0, "malformed_lines": 0, "scores": 0}
        with db:  # one transaction: a failed upload leaves the database as it was
            if append:
                start, end = _parse(last[4]), now
                scale = (end - start) / (_parse(last[4]) - _parse(last[3]))
                txns = round(last[5] * scale) if txns is None else txns
                events = round(last[6] / max(last[5], 1) * txns) if events is None else events
                counts.update(_batch(db, s3, run_id, seed, people, shops, start, end, txns, events, first=False,
                                     api_data=api_data))
            elif not last:
                db.executemany("INSERT INTO merchants VALUES (:merchant_id, :name, :category, :country, "
                               ":currency, :created_at)",
                               [{**m, "created_at": db_ts(history_start - timedelta(days=400))} for m in shops])
                txns = 20_000 if txns is None else txns
                events = 2 * txns if events is None else events
                counts.update(_batch(db, s3, run_id, seed, people, shops, history_start, now - timedelta(days=1),
                                     txns, events, first=True, api_data=api_data))
            if bad_batch:
                rng = random.Random(f"{seed}:bad:{run_id}")
                bad = _bad_events(rng, run_id, people, now)
                s3.put(f"{EVENTS}events-bad-{run_id}.json", "\n".join(json.dumps(e) for e in bad) + "\n")
                counts["bad_events"] = len(bad)
        return {**counts, "database": str(path), "bucket": bucket, "api_data": str(api_data)}
    finally:
        db.close()


def _batch(db: sqlite3.Connection, s3: Storage, run_id: str, seed: int, people: list, shops: list,
           start: datetime, end: datetime, txns: int, events: int, first: bool, api_data: Path) -> dict:
    """One run's window [start, end): payments, chargebacks and reports into SQLite, profiles,
    sessions and access log lines to S3, merchant scores to the API's file. A first run writes
    every profile; later ones the ~5% that changed."""
    rng = random.Random(f"{seed}:batch:{db_ts(start)}")
    first_id = db.execute("SELECT coalesce(max(txn_id), 0) + 1 FROM transactions").fetchone()[0]
    rows = _transactions(rng, txns, first_id, people, shops, start, end)
    db.executemany("INSERT INTO transactions VALUES (:txn_id, :customer_id, :merchant_id, :amount, :currency, "
                   ":created_at, :updated_at, :is_fraud)", rows)
    chargebacks = _file_chargebacks(db, seed, start, end)
    reports = _issue_reports(db, start, end)
    if first:
        profiles = [_profile(c, c["signup"]) for c in people]
    else:
        changed = [c for c in people if rng.random() < 0.05]
        for c in changed:
            c["segment"] = rng.choices(["basic", "gold", "platinum"], [50, 35, 15])[0]
        profiles = [_profile(c, _instant(rng, start, end)) for c in changed]
    sessions = _events(rng, run_id, events, rows, people, start, end)
    db.execute("INSERT INTO generator_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (run_id, seed, len(people), len(shops), db_ts(start), db_ts(end), len(rows),
                sum(map(len, sessions.values()))))
    if profiles:
        s3.put(f"{PROFILES}profiles-{run_id}.csv", _csv(profiles))
    for day, batch in sessions.items():
        s3.put(f"{EVENTS}events-{day}-{run_id}.json", "\n".join(json.dumps(e) for e in batch) + "\n")
    access = _access_lines(random.Random(f"{seed}:access:{db_ts(start)}"), people, start, end)
    s3.put(f"{ACCESS_LOGS}access-{run_id}.log", "\n".join(access) + "\n")
    scores = _scores(seed, shops, start, end)
    _add_api_records(api_data, scores)
    return {"transactions": len(rows), "fraud": sum(r["is_fraud"] for r in rows), "chargebacks": chargebacks,
            "reports": reports, "profiles": len(profiles), "events": sum(map(len, sessions.values())),
            "access_lines": len(access), "malformed_lines": sum(" customer=" not in line for line in access),
            "scores": len(scores),
            "window": [iso(start), iso(end)]}


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default=None, help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    parser.add_argument("--size", choices=SIZES, default="medium", help="preset sizes; the flags below override")
    parser.add_argument("--seed", type=int, default=42)
    for name in ("customers", "merchants", "days"):
        parser.add_argument(f"--{name}", type=int, help=f"first run only (medium: {SIZES['medium'][name]})")
    parser.add_argument("--txns", type=int, help="payments in this batch (append: the previous daily rate)")
    parser.add_argument("--events", type=int, help="app sessions in this batch (default: twice the payments)")
    parser.add_argument("--now", type=_parse, help="end of the batch, ISO 8601 (default: now); reproducible runs")
    parser.add_argument("--append", action="store_true", help="add a newer batch after the last one")
    parser.add_argument("--bad-batch", action="store_true", help="write one events file that fails its suite")
    parser.add_argument("--reset", action="store_true", help="delete the demo data first")
    args = parser.parse_args(argv)
    size = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in SIZES[args.size].items()}
    if args.append:  # an append's size follows the previous batch, not the preset
        size["txns"] = args.txns
    try:
        counts = generate(load_config(args.conf), args.seed, customers=size["customers"],
                          merchants=size["merchants"], days=size["days"], txns=size["txns"], events=args.events,
                          append=args.append, bad_batch=args.bad_batch, reset=args.reset, now=args.now)
    except FeaturelakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
