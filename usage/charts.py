"""Plotly figures of a usage report, as plain JSON-able dicts; the page passes each
through `json_script` and the static `console/charts.js` draws it with the locally served
plotly.js: `plotly.io.to_html` would emit an inline script, which the CSP refuses.

Money goes to the browser as exact decimal strings (plotly reads numeric strings as
numbers), never as floats.
"""

import html
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from console.money import decimal_string
from usage.selectors import (
    DEFAULT_DAYS,
    Metrics,
    UsageQuery,
    UsageReport,
    local_today,
    usage_report,
)

# A chart with more series than this is unreadable: the rest are summed as "Other".
MAX_SERIES = 8
PALETTE = [
    "#3859ff",
    "#16a34a",
    "#f59e0b",
    "#db2777",
    "#0891b2",
    "#7c3aed",
    "#ea580c",
    "#4b5563",
    "#94a3b8",
]


def _layout(report: UsageReport, **extra) -> dict:
    monthly = report.query.bucket == "month"
    return {
        "template": "none",
        "barmode": "stack",
        "height": 300,
        "margin": {"l": 56, "r": 56, "t": 8, "b": 40},
        "legend": {"orientation": "h", "y": -0.15, "traceorder": "normal"},
        "hovermode": "x unified",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        # A date axis spaces its ticks by itself; a bar spans its day or month.
        "xaxis": {
            "type": "date",
            "showgrid": False,
            "tickformat": "%Y-%m" if monthly else "%m-%d",
            "hoverformat": "%Y-%m" if monthly else "%Y-%m-%d",
            **({"dtick": "M1"} if monthly else {}),
        },
        "yaxis": {"gridcolor": "#e5e7eb", "rangemode": "tozero"},
        **extra,
    }


def _x(report: UsageReport) -> list[str]:
    if report.query.bucket == "month":
        return [bucket.strftime("%Y-%m") for bucket in report.buckets]
    return [bucket.isoformat() for bucket in report.buckets]


def plotly_text(text: str) -> str:
    """Names people typed (a project, a key label) as plain text in a figure: plotly.js reads
    a small HTML subset in trace names (links, styles, popups), so < > & go as entities."""
    return html.escape(str(text), quote=False)


def _series(report: UsageReport) -> list[tuple[str, dict]]:
    """(label, {bucket: metrics}) per group, the costliest MAX_SERIES first, then Other."""
    shown, rest = report.groups[:MAX_SERIES], report.groups[MAX_SERIES:]
    series = [
        (
            plotly_text(group.label),
            {b: report.cells.get((b, group.id), Metrics()) for b in report.buckets},
        )
        for group in shown
    ]
    if rest:
        other = {b: Metrics() for b in report.buckets}
        for group in rest:
            for bucket in report.buckets:
                other[bucket].add(report.cells.get((bucket, group.id), Metrics()))
        series.append((_("Other"), other))
    return series


def _bar(name: str, x: list[str], y: list, color: str) -> dict:
    return {"type": "bar", "name": name, "x": x, "y": y, "marker": {"color": color}}


def usage_figures(report: UsageReport, *, currency: str) -> list[dict]:
    """The usage page's charts: cost by group, tokens, requests with their error rate.

    Plain figure dicts rather than `plotly.graph_objects`: validating figures on every page
    view cost ~7 ms each (measured in bench/usage.py); a test runs each figure through
    plotly's validator instead, so a misspelt property still fails."""
    x = _x(report)
    cost = {
        "data": [
            _bar(
                label,
                x,
                [decimal_string(cells[b].fee_nano) for b in report.buckets],
                PALETTE[index % len(PALETTE)],
            )
            for index, (label, cells) in enumerate(_series(report))
        ],
        "layout": _layout(
            report,
            yaxis={
                "title": {"text": currency},
                "rangemode": "tozero",
                "gridcolor": "#e5e7eb",
                # Plain decimals: plotly's SI prefixes read ¥0.0006 as "600µ".
                "exponentformat": "none",
                "separatethousands": True,
            },
        ),
    }
    totals = [report.by_bucket[b] for b in report.buckets]
    tokens = {
        "data": [
            _bar(_("Input tokens"), x, [m.input_tokens for m in totals], PALETTE[0]),
            _bar(_("Output tokens"), x, [m.output_tokens for m in totals], PALETTE[1]),
        ],
        "layout": _layout(report),
    }
    requests = {
        "data": [
            _bar(_("Succeeded"), x, [m.succeeded for m in totals], PALETTE[0]),
            _bar(_("Errors"), x, [m.errors for m in totals], PALETTE[3]),
            {
                "type": "scatter",
                "name": _("Error rate (%)"),
                "x": x,
                # No requests, no rate: a gap in the line, not a zero.
                "y": [m.error_rate_percent if m.requests else None for m in totals],
                "yaxis": "y2",
                "mode": "lines+markers",
                "line": {"color": PALETTE[6]},
            },
        ],
        "layout": _layout(
            report,
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "range": [0, 100],
                "tickvals": [0, 25, 50, 75, 100],
                "ticksuffix": "%",
                "showgrid": False,
            },
        ),
    }
    return [
        {"id": "chart-cost", "data_id": "chart-cost-data", "title": _("Cost"), "figure": cost},
        {
            "id": "chart-tokens",
            "data_id": "chart-tokens-data",
            "title": _("Tokens"),
            "figure": tokens,
        },
        {
            "id": "chart-requests",
            "data_id": "chart-requests-data",
            "title": _("Requests"),
            "figure": requests,
        },
    ]


def sparkline(values: list[int], *, width: int = 240, height: int = 48) -> str:
    """An SVG polyline's points for `values` (no script: the overview draws it as markup).
    Coordinates only: the amounts themselves are shown as exact text beside it."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{index * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}"
        for index, value in enumerate(values)
    )


def usage_panel(*, account, project_id=None, api_key_id=None, now=None) -> dict:
    """The last 30 days of one project's or key's usage by model, for its own page: the
    totals, the cost chart and a link to the usage page with the same filter."""
    end = local_today(account, now or timezone.now())
    query = UsageQuery(
        start=end - timedelta(days=DEFAULT_DAYS - 1),
        end=end,
        project_id=project_id,
        api_key_id=api_key_id,
    )
    report = usage_report(account=account, query=query)
    return {
        "report": report,
        "figure": usage_figures(report, currency=account.currency)[0],
        "url": reverse("usage:index") + "?" + query.querystring,
    }
