"""The usage and cost API (like OpenAI's and Anthropic's admin usage APIs):
`GET /api/console/v1/usage` and `GET /api/console/v1/costs`, bucketed by hour (UTC) or day
(the account's time zone), grouped by model, project, key or endpoint. Read from the
roll-ups only.

Authenticated by an `admin-read` API key (`Authorization: Bearer …`) or a signed-in
member's session. Unknown or malformed parameters fall back to their defaults, and each one
is named in the answer's `warnings`; refusals carry BigModel's error body. See docs/api.md.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.http import JsonResponse
from django.utils import timezone

from console import api_errors
from console.money import decimal_string
from console.roles import role_can
from console.tenancy import current_membership
from keys.models import Scope
from keys.selectors import Authenticated, api_key_from_header
from keys.services import api_key_mark_used
from usage.selectors import ENDPOINTS, Metrics, day_start, local_today, parse_id, rollup_sums

# Accepted spellings of the bucket width and of the group-by dimensions.
WIDTHS = {"1h": "hour", "hour": "hour", "1d": "day", "day": "day"}
GROUPS = {
    "model": "model",
    "project_id": "project_id",
    "project": "project_id",
    "api_key_id": "api_key_id",
    "key": "api_key_id",
    "endpoint": "endpoint",
}
# Buckets per page: (default, maximum).
PAGE_SIZES = {"hour": (24, 168), "day": (7, 31)}
PARAMETERS = {
    "start_time",
    "end_time",
    "bucket_width",
    "group_by",
    "project_ids",
    "api_key_ids",
    "models",
    "endpoints",
    "limit",
    "page",
}


def _account(request):
    """The account the caller may read, or the refusal."""
    header = request.headers.get("Authorization")
    if header:
        result = api_key_from_header(header, scope=Scope.ADMIN_READ)
        if not isinstance(result, Authenticated):
            return api_errors.key_refusal(result.reason, wrong_scope=api_errors.USAGE_WRONG_SCOPE)
        api_key_mark_used(key=result.key)
        return result.account
    membership = current_membership(request)
    if membership is None:
        return api_errors.USAGE_NOT_SIGNED_IN
    if not role_can(membership.role, "usage.view"):
        return api_errors.USAGE_NO_PERMISSION
    return membership.account


@dataclass(frozen=True)
class ApiQuery:
    width: str
    start: datetime  # the first bucket's start
    end: datetime  # exclusive
    group_by: tuple[str, ...]
    project_ids: tuple[int, ...]
    api_key_ids: tuple[int, ...]
    models: tuple[str, ...]
    endpoints: tuple[str, ...]
    limit: int


def _list(params, name) -> list[str]:
    return [item.strip() for value in params.getlist(name) for item in value.split(",") if item]


# Unix times from 2000 to 2100: anything else is no one's usage, and keeping far from the
# year 9999 keeps local-time conversion and bucket arithmetic from overflowing.
EARLIEST, LATEST = 946_684_800, 4_102_444_800


def _timestamp(text: str) -> datetime | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        return None
    value = int(text)
    if not EARLIEST <= value < LATEST:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _floor(moment: datetime, width: str, account) -> datetime:
    if width == "hour":
        return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return day_start(account, local_today(account, moment))


def _parse(params, *, account, now: datetime) -> tuple[ApiQuery, list[str]]:
    warnings = [f"unknown parameter {name!r} ignored" for name in sorted(set(params) - PARAMETERS)]
    width_text = params.get("bucket_width", "1d")
    width = WIDTHS.get(width_text)
    if width is None:
        warnings.append(f"bucket_width {width_text!r} is not 1h or 1d: using 1d")
        width = "day"
    default_size, max_size = PAGE_SIZES[width]
    limit = default_size
    if "limit" in params:
        text = params["limit"]
        if text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= max_size:
            limit = int(text)
        else:
            warnings.append(f"limit must be 1 to {max_size} for this bucket_width: using {limit}")
    step = timedelta(hours=1) if width == "hour" else timedelta(days=1)
    end = now
    if "end_time" in params:
        end = _timestamp(params["end_time"]) or now
        if _timestamp(params["end_time"]) is None:
            warnings.append("end_time is not a unix time in seconds (2000 to 2100): using now")
    start = None
    if "page" in params:
        start = _timestamp(params["page"])
        if start is None:
            warnings.append("page is not a cursor from next_page: starting at start_time")
    if start is None and "start_time" in params:
        start = _timestamp(params["start_time"])
        if start is None:
            warnings.append("start_time is not a unix time (2000 to 2100): using the default")
    # By default the page ends with the bucket that holds end_time.
    default_start = _floor(end, width, account) - step * (limit - 1)
    if start is None:
        start = default_start
    if start >= end:
        warnings.append("start_time is not before end_time: using the default")
        start = default_start
    group_by = []
    for name in _list(params, "group_by"):
        column = GROUPS.get(name)
        if column is None:
            warnings.append(
                f"group_by {name[:64]!r} is not model, project_id, api_key_id or endpoint: ignored"
            )
        elif column not in group_by:
            group_by.append(column)
    ids = {}
    for name in ("project_ids", "api_key_ids"):
        values = _list(params, name)
        good = [parse_id(v) for v in values if parse_id(v) is not None]
        if len(good) != len(values):
            warnings.append(f"{name} must be numeric ids: the others were ignored")
        ids[name] = tuple(good)
    models = tuple(value[:64] for value in _list(params, "models") if "\x00" not in value)
    if len(models) != len(_list(params, "models")):
        # PostgreSQL refuses NUL in a query, and no model's name has one.
        warnings.append("models must not contain NUL characters: those were ignored")
    endpoints = tuple(dict.fromkeys(v for v in _list(params, "endpoints") if v in ENDPOINTS))
    if len(set(endpoints)) != len(set(_list(params, "endpoints"))):
        # Not a filter of nothing: an unknown name is dropped, like a malformed id.
        warnings.append(f"endpoints must be {', '.join(ENDPOINTS)}: the others were ignored")
    query = ApiQuery(
        width=width,
        start=_floor(start, width, account),
        end=end,
        group_by=tuple(group_by),
        project_ids=ids["project_ids"],
        api_key_ids=ids["api_key_ids"],
        models=models,
        endpoints=endpoints,
        limit=limit,
    )
    return query, warnings


def _bucket_end(start: datetime, width: str, account) -> datetime:
    if width == "hour":
        return start + timedelta(hours=1)
    # The next local midnight (a day is 23 or 25 hours across a DST change).
    return day_start(account, local_today(account, start) + timedelta(days=1))


def _page(request, render_result):
    if request.method != "GET":
        return api_errors.error_response(api_errors.USAGE_METHOD)
    account = _account(request)
    if isinstance(account, api_errors.Refusal):
        return api_errors.error_response(account)
    query, warnings = _parse(request.GET, account=account, now=timezone.now())
    starts = []
    moment = query.start
    while moment < query.end and len(starts) < query.limit:
        starts.append(moment)
        moment = _bucket_end(moment, query.width, account)
    has_more = moment < query.end
    page_end = moment
    rows = rollup_sums(
        account=account,
        bucket=query.width,
        start=query.start if query.width == "hour" else local_today(account, query.start),
        end=page_end if query.width == "hour" else local_today(account, page_end),
        group_by=query.group_by,
        project_ids=query.project_ids,
        api_key_ids=query.api_key_ids,
        models=query.models,
        endpoints=query.endpoints,
    )
    by_bucket: dict[object, list] = {}
    for bucket, values, metrics in rows:
        group = dict(zip(query.group_by, values, strict=True))
        by_bucket.setdefault(bucket, []).append((group, metrics))
    data = []
    for start in starts:
        key = start if query.width == "hour" else local_today(account, start)
        results = by_bucket.get(key, [])
        if not query.group_by and not results:
            results = [({}, Metrics())]
        data.append(
            {
                "object": "bucket",
                "start_time": int(start.timestamp()),
                "end_time": int(_bucket_end(start, query.width, account).timestamp()),
                "results": [render_result(group, metrics, account) for group, metrics in results],
            }
        )
    return JsonResponse(
        {
            "object": "page",
            "bucket_width": "1h" if query.width == "hour" else "1d",
            "time_zone": "UTC" if query.width == "hour" else account.time_zone,
            "data": data,
            "has_more": has_more,
            "next_page": str(int(page_end.timestamp())) if has_more else None,
            "warnings": warnings,
        },
        json_dumps_params={"ensure_ascii": False},
    )


def _group_fields(group: dict) -> dict:
    return {
        "project_id": group.get("project_id") or None,
        # 0 is the console's playground, which calls without a key.
        "api_key_id": group.get("api_key_id") or None,
        "model": group.get("model"),
        "endpoint": group.get("endpoint"),
    }


def _usage_result(group, metrics, account) -> dict:
    return {
        "object": "usage.result",
        "requests": metrics.requests,
        "succeeded": metrics.succeeded,
        "refused": metrics.refused,
        "upstream_errors": metrics.upstream_errors,
        "input_tokens": metrics.input_tokens,
        "output_tokens": metrics.output_tokens,
        "pack_tokens": metrics.pack_tokens,
        **_group_fields(group),
    }


def _money(nano: int, account) -> dict:
    return {"value": decimal_string(nano), "currency": account.currency}


def _cost_result(group, metrics, account) -> dict:
    return {
        "object": "cost.result",
        "amount": _money(metrics.fee_nano, account),
        "recharge": _money(metrics.recharge_nano, account),
        "bonus": _money(metrics.bonus_nano, account),
        "arrears": _money(metrics.arrears_nano, account),
        **_group_fields(group),
    }


def usage(request):
    return _page(request, _usage_result)


def costs(request):
    return _page(request, _cost_result)
