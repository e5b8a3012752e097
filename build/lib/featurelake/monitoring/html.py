"""Renders a MonitorReport as one self-contained HTML page: a Jinja2 template from package data
(featurelake/templates/report.html) with autoescape on, so every name and note a report carries is
escaped; the inline SVG plots (svg.py escapes its own labels) are the only markup passed through."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from featurelake.monitoring import svg
from featurelake.monitoring.report import MonitorReport, human_duration


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("featurelake", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=_fmt, drift_row=_drift_row, skew_row=_skew_row, freshness_row=_freshness_row)
    env.globals.update(alerts=lambda fs: {k for k, f in enumerate(fs) if f.alert},
                       skewed=lambda r: {k for k, f in enumerate(r.features) if f.rate > r.threshold},
                       late=lambda rs: {k for k, r in enumerate(rs) if r.late},
                       drift_charts=_drift_charts, skew_chart=_skew_chart, skew_examples=_skew_examples,
                       lag_chart=_lag_chart)
    return env


def render(report: MonitorReport) -> str:
    groups = ", ".join(r.group for r in report.results)
    title = f"featurelake {report.check} report" + (f": {groups}" if groups else "")
    return str(_environment().get_template("report.html").render(report=report, title=title))


def write_html(report: MonitorReport, path: Union[str, Path]) -> Path:
    """Writes the page (creating folders); returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report), encoding="utf-8")
    return out


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _when(value: Any) -> str:
    """A time as 2026-01-31 12:00 UTC; collected naive times are local, as PySpark gives them."""
    if not isinstance(value, datetime):
        return "-" if value is None else str(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _drift_row(f: Any) -> list:
    return [f.name, f.kind, f.psi, f.ks, f.js, f.current_null_fraction,
            "ALERT: " + "; ".join(f.reasons) if f.alert else (f.note or "ok")]


def _drift_charts(r: Any) -> dict:
    feats = [f for f in r.features if f.psi is not None]
    bars = svg.metric_bars([(f.name, f.psi, f.thresholds.get("psi"), f.alert) for f in feats],
                           f"PSI per feature of {r.group}", kind="psi") if feats else ""
    cards = []
    for f in feats:
        p = f.plot
        if p.get("type") == "histogram":
            chart = svg.histogram(p["edges"], p["reference"], p["current"], f"{r.group}:{f.name}", p.get("unit"))
        elif p.get("type") == "bars":
            chart = svg.category_bars(p["categories"], p["reference"], p["current"], f"{r.group}:{f.name}")
        else:
            continue
        cards.append((f, _markup(chart)))
    return {"bars": _markup(bars), "cards": cards}


def _skew_row(f: Any) -> list:
    return [f.name, f.compared, f.mismatches, f"{f.rate:.1%}"]


def _skew_chart(r: Any) -> Any:
    return _markup(svg.metric_bars([(f.name, f.rate, r.threshold or None, f.rate > r.threshold) for f in r.features],
                                   f"mismatch rate per feature of {r.group}", fmt="{:.1%}", kind="skew"))


def _skew_examples(r: Any) -> list:
    return [[f.name, str(e["key"]), str(e["offline"]), str(e["online"])] for f in r.features for e in f.examples]


def _freshness_row(r: Any) -> list:
    ingest, export = r.last_ingest or {}, r.last_export or {}
    return [r.group, r.status, human_duration(r.lag.total_seconds()) if r.lag else "-", r.sla_text or "-",
            _when(r.newest_event), _when(ingest.get("ended_at")),
            _when(export.get("as_of")) if r.online else "offline only", "; ".join(r.notes)]


def _lag_chart(results: list) -> Any:
    bars = [(r.group, r.lag.total_seconds() / 3600, r.sla.total_seconds() / 3600 if r.sla else None, r.late)
            for r in results if r.lag is not None]
    return _markup(svg.metric_bars(bars, "freshness lag per group, hours", fmt="{:.1f} h", kind="lag")) if bars else ""
