"""The quota API that coding tools read (issue 22), in the vendor's shape:

- `GET /api/monitor/usage/quota/limit`: the plan's level and each limit (the 5-hour and
  weekly prompt windows as `TOKENS_LIMIT`, the month's MCP tool calls as `TIME_LIMIT` with
  its calls per tool);
- `GET /api/monitor/usage/model-usage` and `/tool-usage`: the plan's requests per model
  and its tool calls over `startTime`..`endTime` (local `yyyy-MM-dd HH:mm:ss`), by hour, or
  by day past a week.

Taken with the coding tool's own inference key (an admin-read key works too), sent as
`Authorization: Bearer <key>` or as the bare key. As the vendor does, every answer is HTTP
200 with `{"code", "msg", "success"}` and `data` when it succeeded: the clients read `code`
and `success` in the body. Clients decode `percentage`, `unit` and `number` as integers and
`msg` as a string, so both are always so. See docs/api.md.
"""

import functools
import zoneinfo
from datetime import datetime, timedelta

from django.db.models import Count
from django.http import JsonResponse
from django.utils import timezone

from keys.models import Scope
from keys.selectors import Authenticated, api_key_from_header
from keys.services import api_key_mark_used
from plans.models import McpCall
from plans.quota import epoch_ms, quota_status
from plans.selectors import DAY, HOUR, plan_usage, usage_buckets, usage_truncate

# The vendor's window units, as its clients read them.
UNIT_HOURS, UNIT_MONTH, UNIT_WEEK = 3, 5, 6
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LONGEST_RANGE = timedelta(days=31)
GRANULARITY_NAMES = {HOUR: "hourly", DAY: "daily"}
LABELS = {HOUR: "%Y-%m-%d %H:%M", DAY: "%Y-%m-%d"}
# The MCP tools the vendor reports by kind; the console serves web search.
SEARCH_TOOLS = ("web_search",)


def _answer(code: int, msg: str, data=None) -> JsonResponse:
    body = {"code": code, "msg": msg, "success": code == 200}
    if data is not None:
        body["data"] = data
    return JsonResponse(body, json_dumps_params={"ensure_ascii": False})


def _get_only(view):
    """GET only, answered in the vendor's body (not Django's empty 405)."""

    @functools.wraps(view)
    def wrapper(request):
        if request.method != "GET":
            response = _answer(405, "Method not allowed: use GET.")
            response.status_code = 405
            response["Allow"] = "GET"
            return response
        return view(request)

    return wrapper


def _account(request):
    """The key's account, or the vendor's failure body."""
    result = api_key_from_header(
        request.headers.get("Authorization"),
        scope=(Scope.INFERENCE, Scope.ADMIN_READ),
        bare=True,
    )
    if isinstance(result, Authenticated):
        api_key_mark_used(key=result.key)
        return result.account
    if result.reason == "missing":
        return _answer(1001, "Authentication parameter not received in Header")
    return _answer(401, "token expired or incorrect")


def _limit(window, *, kind: str, unit: int, number: int, now: datetime) -> dict:
    used = (window.used * 2 // window.per_unit + 1) // 2  # whole prompts, half up
    if window.next_reset is not None:
        reset = window.next_reset
    else:  # nothing counted: a window starting now
        reset = now + (window.span or timedelta(0))
    return {
        "type": kind,
        "unit": unit,
        "number": number,
        "usage": window.limit,
        "currentValue": used,
        "remaining": max(window.limit - used, 0),
        "percentage": window.percent,
        "nextResetTime": epoch_ms(reset),
    }


@_get_only
def quota_limit(request):
    account = _account(request)
    if isinstance(account, JsonResponse):
        return account
    now = timezone.now()
    status = quota_status(account, now)
    if status is None:
        return _answer(1309, "This account has no active GLM Coding Plan.")
    if not status.windows:
        return _answer(1240, "The quota is unavailable right now; try again shortly.")
    five_hours, week, _month, mcp = status.windows
    tools = _limit(mcp, kind="TIME_LIMIT", unit=UNIT_MONTH, number=1, now=now)
    tools["usageDetails"] = [
        {"modelCode": tool, "usage": calls} for tool, calls in status.mcp_by_tool.items()
    ]
    return _answer(
        200,
        "Operation successful",
        {
            "level": status.subscription.plan.code,
            "limits": [
                # The 5 hours first: clients that pick by type alone read the first entry.
                _limit(five_hours, kind="TOKENS_LIMIT", unit=UNIT_HOURS, number=5, now=now),
                _limit(week, kind="TOKENS_LIMIT", unit=UNIT_WEEK, number=1, now=now),
                tools,
            ],
        },
    )


def _range(request, account):
    """(start, end, granularity, zone) from startTime/endTime in the account's zone, or a
    failure body. The last day when both are missing; by hour up to a week, by day past it."""
    zone = zoneinfo.ZoneInfo(account.time_zone)
    start_text, end_text = request.GET.get("startTime"), request.GET.get("endTime")
    if not start_text and not end_text:
        end = timezone.localtime(timezone.now(), zone)
        start = end - timedelta(days=1)
    else:
        try:
            start = datetime.strptime(start_text or "", TIME_FORMAT).replace(tzinfo=zone)
            end = datetime.strptime(end_text or "", TIME_FORMAT).replace(tzinfo=zone)
        except ValueError:
            return _answer(1214, "startTime and endTime must be yyyy-MM-dd HH:mm:ss.")
    if end < start:
        return _answer(1214, "endTime is before startTime.")
    if end - start > LONGEST_RANGE:
        return _answer(1214, "The range is at most 31 days.")
    granularity = DAY if end - start > timedelta(days=7) else HOUR
    return start, end, granularity, zone


def _labels(buckets, granularity: str) -> list[str]:
    """The buckets as the vendor's `x_time` (clients index the arrays by position and read
    0, never null, for a quiet hour)."""
    return [bucket.strftime(LABELS[granularity]) for bucket in buckets]


def _account_and_range(view):
    """A series endpoint: the key's account and the range, or the failure body."""

    @functools.wraps(view)
    def wrapper(request):
        account = _account(request)
        if isinstance(account, JsonResponse):
            return account
        parsed = _range(request, account)
        if isinstance(parsed, JsonResponse):
            return parsed
        return view(request, account, *parsed)

    return wrapper


@_get_only
@_account_and_range
def model_usage(request, account, start, end, granularity, zone):
    usage = plan_usage(account=account, start=start, end=end, granularity=granularity)
    models = [
        {
            "modelName": name,
            "sortOrder": order,
            "tokensUsage": [counts.tokens for counts in series],
            "totalTokens": sum(counts.tokens for counts in series),
        }
        for order, (name, series) in enumerate(usage.by_model.items(), start=1)
    ]
    per_bucket = usage.per_bucket
    calls = [counts.requests for counts in per_bucket]
    tokens = [counts.tokens for counts in per_bucket]
    return _answer(
        200,
        "Operation successful",
        {
            "granularity": GRANULARITY_NAMES[granularity],
            "x_time": _labels(usage.buckets, granularity),
            "modelCallCount": calls,
            "tokensUsage": tokens,
            "modelDataList": models,
            "totalUsage": {
                "totalModelCallCount": sum(calls),
                "totalTokensUsage": sum(tokens),
                "modelSummaryList": [
                    {key: model[key] for key in ("modelName", "sortOrder", "totalTokens")}
                    for model in models
                ],
            },
        },
    )


@_get_only
@_account_and_range
def tool_usage(request, account, start, end, granularity, zone):
    rows = (
        McpCall.objects.filter(account=account, created_at__gte=start, created_at__lte=end)
        .annotate(bucket=usage_truncate(granularity, zone))
        .values("bucket", "tool")
        .annotate(calls=Count("pk"))
        .order_by("bucket", "tool")
    )
    buckets = usage_buckets(start=start, end=end, granularity=granularity, zone=zone)
    labels = _labels(buckets, granularity)
    position = {bucket.timestamp(): index for index, bucket in enumerate(buckets)}
    search, per_tool = [0] * len(labels), {}
    for row in rows:
        per_tool[row["tool"]] = per_tool.get(row["tool"], 0) + row["calls"]
        index = position.get(row["bucket"].timestamp())
        if index is not None and row["tool"] in SEARCH_TOOLS:
            search[index] += row["calls"]
    zeros = [0] * len(labels)
    return _answer(
        200,
        "Operation successful",
        {
            "granularity": GRANULARITY_NAMES[granularity],
            "x_time": labels,
            "networkSearchCount": search,
            "webReadMcpCount": zeros,
            "zreadMcpCount": zeros,
            "totalUsage": {
                "totalNetworkSearchCount": sum(search),
                "totalWebReadMcpCount": 0,
                "totalZreadMcpCount": 0,
                "totalSearchMcpCount": sum(per_tool.values()),
                "toolDetails": [
                    {"modelName": tool, "totalUsageCount": calls}
                    for tool, calls in sorted(per_tool.items())
                ],
            },
        },
    )
