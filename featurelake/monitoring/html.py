"""Renders a MonitorReport as one self-contained HTML page: the template from package data
(featurelake/templates/report.html), tables and inline SVG plots, nothing fetched when opened."""
from __future__ import annotations

from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Union

from featurelake.monitoring import svg
from featurelake.monitoring.report import MonitorReport, human_duration


def template() -> Template:
    return Template(resources.files("featurelake").joinpath("templates/report.html").read_text(encoding="utf-8"))


def render(report: MonitorReport) -> str:
    sections = {"drift": _drift, "skew": _skew, "freshness": _freshness}[report.check]
    body = sections(report)
    alerts = ("<ul class=\"alerts\">" + "".join(f"<li>{escape(a)}</li>" for a in report.alerts) + "</ul>"
              if report.alerts else "")
    groups = ", ".join(r.group for r in report.results)
    return template().safe_substitute(
        title=escape(f"featurelake {report.check} report: {groups}" if groups else f"featurelake {report.check} report"),
        generated=escape(report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        status="OK" if report.ok else "ALERT", status_class="ok" if report.ok else "alert",
        alerts=alerts, body=body)


def write_html(report: MonitorReport, path: Union[str, Path]) -> Path:
    """Writes the page (creating folders); returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report), encoding="utf-8")
    return out


def _table(headers: list[str], rows: list[list[Any]], alert_rows: set = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    lines = []
    for k, row in enumerate(rows):
        cells = "".join(f'<td class="num">{escape(_fmt(c))}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
                        else f"<td>{escape(_fmt(c))}</td>" for c in row)
        lines.append(f'<tr{" class=alert" if k in alert_rows else ""}>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def _when(value: Any) -> str:
    """A time as 2026-01-31 12:00 UTC; collected naive times are local, as PySpark gives them."""
    from datetime import datetime, timezone

    if not isinstance(value, datetime):
        return "-" if value is None else str(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _drift(report: MonitorReport) -> str:
    parts = []
    for r in report.results:
        parts.append(f"<h2>Drift of {escape(r.group)}</h2>"
                     f"<p class=\"meta\">reference: {escape(r.reference.describe())} ({r.reference_rows} rows) "
                     f"&middot; current: {escape(r.current.describe())} ({r.current_rows} rows)</p>")
        feats = [f for f in r.features if f.psi is not None]
        rows = [[f.name, f.kind, f.psi, f.ks, f.js, f.current_null_fraction,
                 "ALERT: " + "; ".join(f.reasons) if f.alert else (f.note or "ok")] for f in r.features]
        parts.append(_table(["feature", "kind", "PSI", "KS", "JS", "nulls (current)", "status"], rows,
                            {k for k, f in enumerate(r.features) if f.alert}))
        if feats:
            parts.append("<h3>PSI per feature (dashed: threshold)</h3>")
            parts.append(svg.metric_bars([(f.name, f.psi, f.thresholds.get("psi"), f.alert) for f in feats],
                                         f"PSI per feature of {r.group}", kind="psi"))
        cards = []
        for f in feats:
            p = f.plot
            if p.get("type") == "histogram":
                chart = svg.histogram(p["edges"], p["reference"], p["current"], f"{r.group}:{f.name}", p.get("unit"))
            elif p.get("type") == "bars":
                chart = svg.category_bars(p["categories"], p["reference"], p["current"], f"{r.group}:{f.name}")
            else:
                continue
            title = f"{f.name} &middot; PSI {f.psi:.3f}" + (f" &middot; KS {f.ks:.3f}" if f.ks is not None else "") \
                + (f" &middot; JS {f.js:.3f}" if f.js is not None else "")
            cards.append(f'<div class="plot-card{" alert" if f.alert else ""}"><h3>{escape(r.group)}:{title}</h3>'
                         f"{chart}</div>")
        if cards:
            parts.append("<h3>Distributions: reference vs current</h3><div class=\"plots\">" + "".join(cards) + "</div>")
    return "\n".join(parts)


def _skew(report: MonitorReport) -> str:
    parts = []
    for r in report.results:
        parts.append(f"<h2>Train/serve skew of {escape(r.group)}</h2>"
                     f"<p class=\"meta\">{r.sampled} keys sampled from offline version {r.offline_version}, as of "
                     f"{escape(str(r.as_of))} (export {escape(str(r.export_id or 'none recorded'))}); "
                     f"{r.missing_online} missing online</p>")
        parts.append(_table(["feature", "compared", "differ", "rate"],
                            [[f.name, f.compared, f.mismatches, f"{f.rate:.1%}"] for f in r.features],
                            {k for k, f in enumerate(r.features) if f.rate > r.threshold}))
        if r.features:
            parts.append(svg.metric_bars([(f.name, f.rate, r.threshold or None, f.rate > r.threshold)
                                          for f in r.features], f"mismatch rate per feature of {r.group}",
                                         fmt="{:.1%}", kind="skew"))
        examples = [[f.name, str(e["key"]), str(e["offline"]), str(e["online"])] for f in r.features for e in f.examples]
        if examples:
            parts.append("<h3>Examples</h3>" + _table(["feature", "key", "offline", "online"], examples))
        parts += [f'<p class="note">{escape(n)}</p>' for n in r.notes]
    return "\n".join(parts)


def _freshness(report: MonitorReport) -> str:
    rows = []
    for r in report.results:
        ingest, export = r.last_ingest or {}, r.last_export or {}
        rows.append([r.group, r.status, human_duration(r.lag.total_seconds()) if r.lag else "-", r.sla_text or "-",
                     _when(r.newest_event), _when(ingest.get("ended_at")),
                     _when(export.get("as_of")) if r.online else "offline only", "; ".join(r.notes)])
    parts = ["<h2>Freshness</h2>",
             _table(["group", "status", "lag", "SLA", "newest event", "last ingest", "last export", "notes"], rows,
                    {k for k, r in enumerate(report.results) if r.late})]
    bars = [(r.group, r.lag.total_seconds() / 3600, r.sla.total_seconds() / 3600 if r.sla else None, r.late)
            for r in report.results if r.lag is not None]
    if bars:
        parts.append("<h3>Lag of the newest event, hours (dashed: SLA)</h3>")
        parts.append(svg.metric_bars(bars, "freshness lag per group, hours", fmt="{:.1f} h", kind="lag"))
    return "\n".join(parts)
