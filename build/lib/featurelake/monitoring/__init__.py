"""Monitoring and governance: can a group's features be trusted today, and who depends on them?

    stats.py      per-batch statistics, recorded in the catalogue (`statistics`)
    refs.py       what --reference / --current name: a version, a time range, a training set
    drift.py      PSI, Kolmogorov-Smirnov, Jensen-Shannon between two slices of a group
    skew.py       offline as-of values vs the online items (train/serve skew)
    freshness.py  newest event time against each group's freshness_sla
    lineage.py    lineage and usage views over the catalogue
    report.py     MonitorReport: ok, summary(), to_dict()
    html.py       the self-contained HTML page (svg.py draws its plots)

Python:

    from featurelake import monitoring
    report = monitoring.drift(store, "customer_txn", reference="@3")      # current: latest
    report = monitoring.compare(store, "customer_txn", reference_df, candidate_df)
    report = monitoring.skew(store, "customer_txn", sample=200)
    report = monitoring.freshness(store)                                 # every group
    report.ok, report.summary(), report.to_dict(); monitoring.write_html(report, "drift.html")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurelake.errors import UsageError
from featurelake.monitoring.drift import compare, drift
from featurelake.monitoring.freshness import freshness
from featurelake.monitoring.html import render, write_html
from featurelake.monitoring.lineage import lineage, usage
from featurelake.monitoring.refs import parse_ref, training_set_versions
from featurelake.monitoring.report import MonitorReport
from featurelake.monitoring.skew import skew
from featurelake.monitoring.stats import (batch_statistics, read_statistics, record_statistics,
                                          record_training_set_statistics)

if TYPE_CHECKING:
    from featurelake.store import FeatureStore

__all__ = ["MonitorReport", "batch_statistics", "compare", "drift", "freshness", "lineage", "read_statistics",
           "record_statistics", "record_training_set_statistics", "render", "run_monitor", "skew", "usage",
           "write_html"]


def run_monitor(store: "FeatureStore", args: Any) -> MonitorReport:
    """`featurelake monitor CHECK ...`: args has check, group, all, reference, current, sample."""
    check, group, every = args.check, getattr(args, "group", None), getattr(args, "all", False)
    if check == "freshness":
        if group and every:
            raise UsageError("monitor freshness: name a group or pass --all, not both")
        return freshness(store, [group] if group else None)
    if bool(group) == bool(every):
        raise UsageError(f"monitor {check}: name one group (e.g. `featurelake monitor {check} customer_txn`)"
                         + (" or pass --all" if check == "drift" else ""))
    if check == "drift":
        groups = [group] if group else [g.name for g in store.repo.ordered() if store.offline(g.name).exists()]
        ref = parse_ref(args.reference)
        if every and ref.kind == "training_set":  # --all: the groups that training set read
            read = training_set_versions(store, args.reference)
            groups = [g for g in groups if g in read]
        return drift(store, groups, reference=args.reference, current=args.current)
    if check == "skew":
        if every or not group:
            raise UsageError("monitor skew compares one group (or request-time feature) at a time: name it")
        return skew(store, group, sample=getattr(args, "sample", None), requests=getattr(args, "requests", None))
    raise UsageError(f"unknown monitor check {check!r}: use drift, skew or freshness")
