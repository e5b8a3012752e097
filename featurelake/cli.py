"""The `featurelake` command: a thin layer over the library. Exit codes: 0 done, 1 the work failed
(validation, drift alert, job error), 2 usage or configuration error."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Optional

from featurelake.errors import FeaturelakeError, UsageError

if TYPE_CHECKING:
    from featurelake.store import FeatureStore

log = logging.getLogger("featurelake")


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def _emit(args: argparse.Namespace, payload: Any, text: Callable[[Any], str]) -> None:
    print(_dump(payload) if getattr(args, "json", False) else text(payload))


def _time(text: Optional[str], what: str) -> Optional[datetime]:
    from featurelake.monitoring.refs import parse_time

    return None if text is None else parse_time(text, what)


def _store(args: argparse.Namespace) -> FeatureStore:
    from featurelake.store import FeatureStore

    return FeatureStore.from_config(args.conf, repo=args.repo)


def _groups(args: argparse.Namespace, store: Any) -> list[str]:
    if args.all == bool(args.groups):
        raise UsageError(f"name the groups to {args.verb} or pass --all")
    return [g.name for g in store.repo.ordered(None if args.all else args.groups)]


# ---- verbs ----------------------------------------------------------------------------------

def cmd_apply(args: argparse.Namespace) -> int:
    store = _store(args)
    planned = store.plan()
    if not args.json and planned:
        print(_plan_text(planned))
    changes = store.apply()  # refuses (exit 2, nothing registered) what the plan marked refused
    _emit(args, {"changes": changes, "plan": [c.to_dict() for c in planned]},
          lambda p: "applied:\n" + "\n".join(f"  {c}" for c in p["changes"]) if p["changes"] else "no changes")
    return 0


def _plan_text(planned: list) -> str:
    return "\n".join(c.text() for c in planned) if planned else "no changes"


def cmd_plan(args: argparse.Namespace) -> int:
    store = _store(args)
    planned = store.plan()
    _emit(args, [c.to_dict() for c in planned], lambda _: _plan_text(planned))
    return 2 if any(c.action == "refused" for c in planned) else 0


def cmd_backfill(args: argparse.Namespace) -> int:
    store = _store(args)
    return _results(args, [store.backfill(args.group, start=_time(args.start, "--start"),
                                          end=_time(args.end, "--end"),
                                          chunk=args.chunk)])


def cmd_deprecate(args: argparse.Namespace) -> int:
    _emit(args, {"result": _store(args).deprecate(args.group)}, lambda p: p["result"])
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _emit(args, {"result": _store(args).rollback(args.group, args.to)}, lambda p: p["result"])
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from featurelake import catalog as cat

    store = _store(args)
    if args.action == "list":
        from featurelake import ondemand

        groups = cat.latest_groups(store.catalog, include_deprecated=args.all) + ondemand.latest(store.catalog)
        _emit(args, groups, lambda gs: "\n".join(
            f"{g['name']:<24} v{g['version']:<3} {'on-demand':<12} {len(g['outputs']):>3} features  "
            f"from {', '.join(g['inputs'])} + request {', '.join(g['request'])}  owner={g['owner'] or '-'}  "
            f"{g['description'] or ''}" if g.get("kind") == "on_demand" else
            f"{g['name']:<24} v{g['version']:<3} {g['entity']:<12} {len(g['features']):>3} features  "
            f"{g['source']['kind']:<5} owner={g['owner'] or '-'}  {g['description'] or ''}" for g in gs)
            or "the catalogue is empty: run `featurelake apply`")
    elif args.action == "show":
        from featurelake import ondemand

        found = ondemand.show(store.catalog, args.name)
        if found is not None:
            _emit(args, found, _on_demand_text)
        else:
            _emit(args, cat.show_group(store.catalog, args.name), _show_text)
    elif args.action == "search":
        hits = cat.search(store.catalog, args.name)
        _emit(args, hits, lambda hs: "\n".join(f"{h['kind']:<8} {h['name']:<40} {h.get('description') or ''}"
                                              for h in hs) or f"nothing matches {args.name!r}")
    elif args.action == "history":
        from featurelake.history import offline_history

        rows = offline_history(store, args.name)
        _emit(args, rows, lambda rs: "\n".join(
            f"@{r['version']:<4} {r['timestamp']}  {r['operation']:<8} run={r.get('run_id') or '-'} "
            f"rows={r.get('rows_written', '-')}"
            + (f" definition v{r['group_version']}" if r.get("group_version") is not None else "")
            for r in rs) or "no offline versions yet")
    elif args.action == "lineage":
        from featurelake.monitoring import lineage

        _emit(args, lineage(store, args.name), lambda p: p["text"])
    elif args.action == "usage":
        from featurelake.monitoring import usage

        _emit(args, usage(store, args.name), lambda p: p["text"])
    return 0


def _on_demand_text(d: dict) -> str:
    lines = [f"{d['name']} (on-demand, definition v{d['version']}, registered {d['registered_at']} by "
             f"{d['registered_by']})", f"  {d['description'] or ''}",
             "  request fields: " + ", ".join(f"{k} {v}" for k, v in d["request"].items()),
             f"  inputs: {', '.join(d['inputs'])}; owner {d['owner'] or '-'}; tags {d['tags']}", "  features:"]
    lines += [f"    {f['name']:<28} {f['dtype']:<14} {f['description'] or ''}" for f in d["outputs"]]
    lines += ["  versions:"] + [f"    v{v['version']} {v['registered_at']} {v['changes']}" for v in d["versions"]]
    return "\n".join(lines)


def _show_text(g: dict) -> str:
    lines = [f"{g['name']} (definition v{g['version']}, registered {g['registered_at']} by {g['registered_by']})",
             f"  {g['description'] or ''}",
             f"  entity {g['entity']} keys {', '.join(g['keys'])}; event time {g['timestamp_column']}; "
             f"ttl {g['ttl'] or 'none'}; online {g['online']}; owner {g['owner'] or '-'}; tags {g['tags']}",
             f"  source {g['source']['kind']}: " + ", ".join(f"{k}={v}" for k, v in g['source'].items()
                                                            if v not in (None, {}, "") and k != "kind"),
             "  features:"]
    lines += [f"    {f['name']:<28} {f['dtype']:<14} {f['description'] or ''}" for f in g["features"]]
    lines += ["  versions:"] + [f"    v{v['version']} {v['registered_at']} {v['changes']}" for v in g["versions"]]
    return "\n".join(lines)


def _results(args: argparse.Namespace, results: list) -> int:
    payload = [r.to_dict() for r in results]
    _emit(args, payload, lambda _: "\n".join(r.summary() for r in results))
    return 0 if all(r.ok for r in results) else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.from_quarantine:
        if len(args.groups) != 1:
            raise UsageError("--from-quarantine takes exactly one group")
        return _results(args, [store.ingest(args.groups[0], from_quarantine=args.from_quarantine)])
    results, worst = [], 0
    for name in _groups(args, store):
        if args.all and store.group(name).streamed:
            log.info("%s reads a Kafka topic: `featurelake stream %s` keeps it current, not ingest", name, name)
            continue
        try:
            result = store.ingest(name, start=_time(args.start, "--start"), end=_time(args.end, "--end"),
                                  chunk=args.chunk)
        except FeaturelakeError as exc:  # recorded as a failed run; --keep-going goes on with the rest
            if not args.keep_going:
                raise
            print(f"featurelake: error: {exc}", file=sys.stderr)
            worst = max(worst, exc.exit_code)
            continue
        results.append(result)
        if not result.ok and not args.keep_going:
            break
    return max(worst, _results(args, results))


def cmd_validate(args: argparse.Namespace) -> int:
    store = _store(args)
    return _results(args, [store.validate(args.group, start=_time(args.start, "--start"),
                                          end=_time(args.end, "--end"))])


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    return _results(args, [store.export(name, full=args.full) for name in _groups(args, store)])


def cmd_stream(args: argparse.Namespace) -> int:
    store = _store(args)
    return _results(args, [store.stream(args.group, trigger=args.trigger, available_now=args.available_now)])


def cmd_training_set(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.replay:
        ts = store.load_training_set(args.replay)
    else:
        if not (args.spine and args.features):
            raise UsageError("training-set needs --spine PATH and --features REFS (or --replay ID)")
        refs = [r for chunk in args.features for r in chunk.split(",") if r]
        ts = store.training_set(args.spine, refs, timestamp_column=args.timestamp_column,
                                full_names=args.full_names)
    if args.out:
        ts.write(args.out, format=args.format)
    _emit(args, {"id": ts.id, "out": args.out}, lambda p: p["id"])
    return 0


def online_keys(pairs: list[str]) -> list[dict]:
    """The entity keys of `online get`'s --key NAME=VALUE options, in order: a name given again
    starts the next key (`--key id=1 --key id=2` two keys; `--key a=1 --key b=2` one key of two
    columns; `--key a=1 --key b=2 --key a=3 --key b=4` two of them)."""
    keys: list[dict] = []
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--key {pair!r}: write NAME=VALUE, e.g. --key customer_id=42")
        name, value = pair.split("=", 1)
        if not keys or name in keys[-1]:
            keys.append({})
        keys[-1][name] = int(value) if value.lstrip("-").isdigit() else value
    if not keys:
        raise UsageError("online get needs the entity key: --key NAME=VALUE, e.g. --key customer_id=42")
    if any(k.keys() != keys[0].keys() for k in keys):
        raise UsageError(f"--key: every key must name the same columns ({', '.join(keys[0])}); "
                         f"give them in the same order for each key")
    return keys


def cmd_online(args: argparse.Namespace) -> int:
    from featurelake.online.client import OnlineClient

    keys = online_keys(args.key)
    client = OnlineClient.from_config(args.conf)
    if len(keys) == 1:
        row = client.get(args.group, keys[0], with_event_time=True)
        print(_dump(row))
        return 0 if row is not None else 1
    rows = client.get_many(args.group, keys, with_event_time=True)
    print(_dump(rows))
    return 0 if any(r is not None for r in rows) else 1


def cmd_monitor(args: argparse.Namespace) -> int:
    from featurelake import monitoring

    store = _store(args)
    report = monitoring.run_monitor(store, args)
    if args.report:
        monitoring.write_html(report, args.report)
    _emit(args, report.to_dict(), lambda _: report.summary())
    return 0 if report.ok else 1


# ---- parser ---------------------------------------------------------------------------------

def _global_options(defaults: bool) -> argparse.ArgumentParser:
    """The global options, accepted before and after the verb (after: no defaults, so a value
    given before the verb is not overwritten)."""
    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", default=d(None), help="config file (default conf/local.yaml or $FEATURELAKE_CONF)")
    common.add_argument("--repo", default=d("features"), help="feature repository folder (default features/)")
    common.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    common.add_argument("-v", "--verbose", action="store_true", default=d(False), help="debug logs and tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=d(False), help="only warnings and errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(defaults=False)
    p = argparse.ArgumentParser(prog="featurelake", parents=[_global_options(defaults=True)],
                                description="A feature store on Spark, Delta Lake and DynamoDB.")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    def verb(name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    verb("plan", cmd_plan, "what apply would change, and what each change does to offline data, online tables "
                           "and past training sets")
    verb("apply", cmd_apply, "register the repository's definitions in the catalogue; print what changed")
    sp = verb("backfill", cmd_backfill, "recompute a group's history with its current definition (new or "
                                        "changed features), in chunks, resumable")
    sp.add_argument("group")
    sp.add_argument("--start", help="event-time window start (ISO 8601); default the first stored event")
    sp.add_argument("--end", help="event-time window end (ISO 8601); default now")
    sp.add_argument("--chunk", help="chunk size, e.g. 1d or 7d (default 7d)")
    sp = verb("deprecate", cmd_deprecate, "retire a group: not listed or served any more; replays keep working")
    sp.add_argument("group")
    sp = verb("rollback", cmd_rollback, "make an earlier registered definition of a group the current one")
    sp.add_argument("group")
    sp.add_argument("--to", type=int, required=True, metavar="VERSION", help="the definition version")
    sp = verb("ingest", cmd_ingest, "source -> transform -> validate -> offline table")
    sp.add_argument("groups", nargs="*")
    sp.add_argument("--all", action="store_true", help="every group, in dependency order")
    sp.add_argument("--start", help="event-time window start (ISO 8601), for backfills")
    sp.add_argument("--end", help="event-time window end (ISO 8601)")
    sp.add_argument("--chunk", help="backfill chunk size, e.g. 1d or 7d (default 7d)")
    sp.add_argument("--from-quarantine", metavar="RUN_ID", help="re-ingest a quarantined batch")
    sp.add_argument("--keep-going", action="store_true", help="go on with the other groups after a failure")
    sp = verb("export", cmd_export, "offline -> DynamoDB (incremental; --full rewrites)")
    sp.add_argument("groups", nargs="*")
    sp.add_argument("--all", action="store_true")
    sp.add_argument("--full", action="store_true", help="rewrite every key, not only what changed")
    sp = verb("stream", cmd_stream, "a Kafka-fed group: offline and online kept current, exactly once")
    sp.add_argument("group")
    sp.add_argument("--trigger", default="1s", help="how often a micro-batch starts: 500ms, 1s, 1m (default 1s)")
    sp.add_argument("--available-now", action="store_true",
                    help="process what the topic holds, then stop (the scheduled form)")
    sp = verb("training-set", cmd_training_set, "point-in-time training set; prints its id")
    sp.add_argument("--spine", help="spine file (parquet, csv, delta path)")
    sp.add_argument("--features", action="append", help="group:feature or group:* (comma-separated)")
    sp.add_argument("--timestamp-column", default="event_ts", help="the spine's time column")
    sp.add_argument("--full-names", action="store_true", help="always name columns group__feature")
    sp.add_argument("--replay", metavar="ID", help="the same rows again, by time travel")
    sp.add_argument("--out", help="where to write the rows")
    sp.add_argument("--format", default="parquet", choices=["parquet", "delta", "csv"])
    sp = verb("online", cmd_online, "read the online store")
    sp.add_argument("action", choices=["get"])
    sp.add_argument("group")
    sp.add_argument("--key", action="append", default=[],
                    help="NAME=VALUE, once per key column; repeat a name for several entities "
                         "(--key id=1 --key id=2): then a JSON list, null where a key is not online, "
                         "and exit 1 only when none is")
    sp = verb("catalog", cmd_catalog, "discover what is registered: list, show, search, history, lineage, usage")
    sp.add_argument("action", choices=["list", "show", "search", "history", "lineage", "usage"])
    sp.add_argument("name", nargs="?", default=None)
    sp.add_argument("--all", action="store_true", help="list: deprecated groups too")
    sp = verb("validate", cmd_validate, "run a group's suite on its source window without writing")
    sp.add_argument("group")
    sp.add_argument("--start")
    sp.add_argument("--end")
    sp = verb("monitor", cmd_monitor, "drift, train/serve skew (of a group or a request-time feature) and "
                                       "freshness reports")
    sp.add_argument("check", choices=["drift", "skew", "freshness"])
    sp.add_argument("group", nargs="?")
    sp.add_argument("--all", action="store_true")
    sp.add_argument("--reference", help="training set id, Delta version of the offline table (@3) or time "
                                        "range (START..END)")
    sp.add_argument("--current", help="the same forms as --reference; default the latest version")
    sp.add_argument("--sample", type=int, default=None, help="keys (or requests) to compare for skew")
    sp.add_argument("--requests", metavar="PATH", help="skew of a request-time feature: parquet, CSV or Delta of "
                                                       "keys and request fields (default: the newest training "
                                                       "set's spine that computed it)")
    sp.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    return p


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# What the `spark` extra installs (setup.cfg): a verb that imports one of them needs that extra.
SPARK_SIDE = {"pyspark", "py4j", "delta", "great_expectations", "requests", "deltalake", "jinja2", "scipy"}


def spark_log(verbose: bool) -> Optional[str]:
    """Where the JVM a command starts writes Ivy's report, Spark's start-up lines and Java traces:
    a file of its own (featurelake.spark.SPARK_LOG_ENV, unless already set), so that the terminal
    shows featurelake's lines only; --verbose leaves them on the terminal."""
    from pathlib import Path

    from featurelake.spark import SPARK_LOG_ENV

    if verbose:
        return None
    if SPARK_LOG_ENV not in os.environ:
        folder = Path.home() / ".cache" / "featurelake" / "logs"
        os.environ[SPARK_LOG_ENV] = str(folder / f"spark-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log")
    return os.environ[SPARK_LOG_ENV]


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "catalog" and args.action != "list" and not args.name:
        parser.error(f"catalog {args.action} needs a NAME")
    setup_logging(args.verbose, args.quiet)
    jvm_log = spark_log(args.verbose)
    try:
        return int(args.fn(args))
    except FeaturelakeError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"featurelake: error: {exc}", file=sys.stderr)
        for failure in getattr(exc, "failures", []) or []:
            print(f"  - {failure}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SPARK_SIDE:
            raise
        print(f"featurelake: error: `featurelake {args.verb}` needs featurelake's Spark side, and {exc.name!r} is "
              f"not installed here (the base install is the online helper only): "
              f"pip install 'featurelake[spark]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # Spark's or a library's: its message, the trace only with --verbose
        if args.verbose:
            raise
        from featurelake.errors import root_message

        print(f"featurelake: error: {root_message(exc)}", file=sys.stderr)
        where = f"; Spark's log: {jvm_log}" if jvm_log and os.path.exists(jvm_log) else ""
        print(f"  (run with --verbose for the trace{where})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
