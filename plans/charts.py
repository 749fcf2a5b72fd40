"""The subscription page's plotly figures, drawn as the usage page's are (`usage.charts`):
plain JSON-able dicts that the page passes through `json_script` and the static
`console/charts.js` draws with the locally served plotly.js, since the CSP refuses inline
script.

Prompts go to the browser as exact decimal strings ("0.067"; plotly reads numeric strings as
numbers), never as floats.
"""

from django.utils.translation import gettext as _

from plans.selectors import PLAN_USAGE_SPANS, PlanUsage, coding_model_names, plan_usage_recent
from usage.charts import PALETTE, plotly_text


def _layout(**extra) -> dict:
    return {
        "template": "none",
        "height": 300,
        "margin": {"l": 56, "r": 24, "t": 8, "b": 40},
        "legend": {"orientation": "h", "y": -0.15, "traceorder": "normal"},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "yaxis": {"gridcolor": "#e5e7eb", "rangemode": "tozero"},
        **extra,
    }


def _colours(models) -> dict[str, str]:
    """A colour per model, the same in both ranges and both charts: by the model's place in
    the catalogue (models are never deleted), then any other name a record holds."""
    known = coding_model_names()
    others = sorted(set(models) - set(known))
    return {model: PALETTE[index % len(PALETTE)] for index, model in enumerate([*known, *others])}


def plan_usage_figures(usage: PlanUsage, *, span: str) -> list[dict]:
    """Prompts per hour, one stacked series per model, and the range's requests by model.
    Empty when nothing was counted: the page says so instead of drawing zeros."""
    if usage.is_empty:
        return []
    colours = _colours(usage.by_model)
    # Local wall-clock times without an offset: plotly draws them as given, so the axis
    # reads in the account's time zone whatever the browser's.
    x = [bucket.strftime("%Y-%m-%d %H:%M") for bucket in usage.buckets]
    prompts = {
        "data": [
            {
                "type": "bar",
                "name": plotly_text(model),
                "x": x,
                "y": [str(counts.prompts) for counts in series],
                "marker": {"color": colours[model]},
            }
            for model, series in usage.by_model.items()
        ],
        "layout": _layout(
            barmode="stack",
            hovermode="x unified",
            xaxis={
                "type": "date",
                "showgrid": False,
                "tickformat": "%H:%M" if span == "5h" else "%m-%d",
                "hoverformat": "%Y-%m-%d %H:%M",
            },
            yaxis={
                "title": {"text": _("Prompts")},
                "gridcolor": "#e5e7eb",
                "rangemode": "tozero",
                "exponentformat": "none",
            },
        ),
    }
    per_model = usage.per_model
    requests = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": _("Requests"),
                "x": [counts.requests for _model, counts in per_model],
                "y": [plotly_text(model) for model, _counts in per_model],
                "marker": {"color": [colours[model] for model, _counts in per_model]},
            }
        ],
        "layout": _layout(
            height=max(120, 48 + 32 * len(per_model)),
            margin={"l": 120, "r": 24, "t": 8, "b": 32},
            showlegend=False,
            # The most requested at the top, as the table below lists them.
            yaxis={"autorange": "reversed", "type": "category"},
            xaxis={
                "gridcolor": "#e5e7eb",
                "rangemode": "tozero",
                "tickformat": ",d",
                # Whole requests: plotly would tick a small count at halves (0, 0.5, 1).
                **({"dtick": 1} if per_model[0][1].requests <= 10 else {}),
            },
        ),
    }
    return [
        {
            "id": "chart-plan-prompts",
            "data_id": "chart-plan-prompts-data",
            "title": _("Prompts per hour"),
            "figure": prompts,
        },
        {
            "id": "chart-plan-models",
            "data_id": "chart-plan-models-data",
            "title": _("Requests by model"),
            "figure": requests,
            "compact": True,  # one bar per model: shorter than the page's 300px charts
        },
    ]


def plan_usage_chart(*, account, span: str, now=None) -> dict:
    """The subscription page's chart region: the plan's requests over the last `span` (a key
    of PLAN_USAGE_SPANS) and their figures."""
    usage = plan_usage_recent(account=account, span=span, now=now)
    return {
        "span": span,
        "spans": list(PLAN_USAGE_SPANS),
        "usage": usage,
        "figures": plan_usage_figures(usage, span=span),
        "time_zone": account.time_zone,
    }
