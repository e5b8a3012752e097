"""Small inline SVG charts for the HTML report: drawn in Python so the page needs no script, no
CDN and no network, and opens the same in any browser, offline, years later."""
from __future__ import annotations

from html import escape
from typing import Optional, Sequence

REFERENCE, CURRENT = "#1f77b4", "#ff7f0e"
ALERT, OK, GRID = "#d62728", "#2ca02c", "#cccccc"
FONT = 'font-family="sans-serif" font-size="11"'


def _num(v: float) -> str:
    """Axis label: short, whatever the magnitude."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:,.0f}" if a >= 1000 else f"{v:.3g}"


def _svg(kind: str, width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg class="plot {kind}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
            f'<title>{escape(label)}</title>{"".join(body)}</svg>')


def _legend(x: int, y: int) -> list[str]:
    return [f'<rect x="{x}" y="{y}" width="10" height="10" fill="{REFERENCE}" fill-opacity="0.6"/>',
            f'<text x="{x + 14}" y="{y + 9}" {FONT}>reference</text>',
            f'<rect x="{x + 80}" y="{y}" width="10" height="10" fill="{CURRENT}" fill-opacity="0.6"/>',
            f'<text x="{x + 94}" y="{y + 9}" {FONT}>current</text>']


def histogram(edges: Sequence[float], reference: Sequence[float], current: Sequence[float], label: str,
              unit: Optional[str] = None, width: int = 420, height: int = 200) -> str:
    """Reference and current fractions per bin, overlaid (translucent, so both stay visible)."""
    left, right, top, bottom = 44, 10, 22, 30
    pw, ph = width - left - right, height - top - bottom
    n = max(len(reference), 1)
    peak = max([*reference, *current, 1e-9])
    bw = pw / n
    body = [f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" {FONT}>{peak:.0%}</text>',
            f'<text x="{left - 4}" y="{top + ph}" text-anchor="end" {FONT}>0</text>']
    for series, color in ((reference, REFERENCE), (current, CURRENT)):
        for k, v in enumerate(series):
            h = ph * v / peak
            body.append(f'<rect class="bar" x="{left + k * bw + 0.5:.1f}" y="{top + ph - h:.1f}" '
                        f'width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="{color}" fill-opacity="0.55"/>')
    if edges:
        suffix = " (epoch s)" if unit == "epoch_seconds" else ""
        body += [f'<text x="{left}" y="{height - 14}" {FONT}>{_num(edges[0])}</text>',
                 f'<text x="{left + pw}" y="{height - 14}" text-anchor="end" {FONT}>{_num(edges[-1])}{suffix}</text>']
    body += _legend(left + pw - 160, 4)
    return _svg("histogram", width, height, body, label)


def category_bars(categories: Sequence[str], reference: Sequence[float], current: Sequence[float], label: str,
                  width: int = 420) -> str:
    """One row per category: the reference bar above the current one."""
    left, right, top, row = 120, 50, 22, 22
    height = top + row * max(len(categories), 1) + 8
    pw = width - left - right
    peak = max([*reference, *current, 1e-9])
    body = _legend(left, 4)
    for k, cat in enumerate(categories):
        y = top + k * row
        text = cat if len(cat) <= 18 else cat[:17] + "…"
        body.append(f'<text x="{left - 4}" y="{y + 14}" text-anchor="end" {FONT}>{escape(text)}</text>')
        for j, (series, color) in enumerate(((reference, REFERENCE), (current, CURRENT))):
            w = pw * series[k] / peak
            body.append(f'<rect class="bar" x="{left}" y="{y + 2 + j * 9}" width="{w:.1f}" height="8" '
                        f'fill="{color}" fill-opacity="0.8"/>')
        share = f"{current[k]:.0%}" if current[k] >= 0.1 or current[k] == 0 else f"{current[k]:.1%}"
        body.append(f'<text x="{left + pw + 4}" y="{y + 14}" {FONT}>{share}</text>')
    return _svg("categories", width, height, body, label)


def metric_bars(rows: Sequence[tuple[str, float, Optional[float], bool]], label: str, fmt: str = "{:.3f}",
                width: int = 560, kind: str = "metric") -> str:
    """Horizontal bars (name, value, threshold, alert), with the threshold drawn as a dashed tick;
    red when alerting. Used for PSI per feature, freshness lag against the SLA, skew rates."""
    left, right, top, row = 170, 70, 8, 22
    height = top + row * max(len(rows), 1) + 8
    pw = width - left - right
    peak = max([v for _, v, _, _ in rows] + [t for _, _, t, _ in rows if t is not None] + [1e-9])
    body = []
    for k, (name, value, threshold, alert) in enumerate(rows):
        y = top + k * row
        text = name if len(name) <= 26 else name[:25] + "…"
        w = max(pw * value / peak, 1)
        body.append(f'<text x="{left - 4}" y="{y + 14}" text-anchor="end" {FONT}>{escape(text)}</text>')
        body.append(f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="14" '
                    f'fill="{ALERT if alert else OK}" fill-opacity="0.85"/>')
        if threshold is not None:
            tx = left + pw * threshold / peak
            body.append(f'<line class="threshold" x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + 20}" '
                        f'stroke="#333" stroke-dasharray="3,2"/>')
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" {FONT}>{escape(fmt.format(value))}</text>')
    return _svg(kind, width, height, body, label)
