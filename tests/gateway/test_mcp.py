"""The coding plan's web-search MCP server (issue 22) through the official `mcp` SDK's client
against uvicorn: each tool call counts against the plan's monthly MCP quota and is listed
per tool in the quota API; used up is 1310; no plan is 1309; no key is a 401 before the
protocol. PostgreSQL only: the server process must see the test data."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import httpx2
import pytest
from django.utils import timezone
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from plans.models import McpCall, Plan, PlanLimits
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


async def search(url: str, raw: str, queries: list):
    """One MCP session: initialize, list the tools, call web_search once per query."""
    headers = {"Authorization": f"Bearer {raw}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        results = [
            await session.call_tool(
                "web_search", query if isinstance(query, dict) else {"search_query": query}
            )
            for query in queries
        ]
    return tools, results


def run(coroutine):
    """Run the client in a thread of its own: pytest-playwright keeps an event loop running
    in the main thread, where asyncio.run refuses to start another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def text_of(result) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def subscriber(key_for, *, mcp_calls=None):
    account = funded_account(recharge_units=1_000)
    plan = Plan.objects.get(code="lite")
    if mcp_calls is not None:
        current = PlanLimits.objects.filter(plan=plan).latest("effective_from")
        PlanLimits.objects.create(
            plan=plan,
            effective_from=timezone.now() - timedelta(seconds=1),
            prompts_5h=current.prompts_5h,
            prompts_week=current.prompts_week,
            prompts_month=current.prompts_month,
            mcp_calls_month=mcp_calls,
            concurrency=current.concurrency,
        )
    plan_subscribe(account=account, plan=plan, period="month", actor=None)
    raw, _key = key_for(account)
    return account, raw


def test_web_search_calls_count_against_the_plan_and_stop_at_its_limit(uvicorn_site, key_for):
    account, raw = subscriber(key_for, mcp_calls=2)
    url = uvicorn_site + "/api/mcp/web_search/mcp"
    tools, results = run(search(url, raw, ["智谱 GLM", "django", "one too many"]))
    assert tools == ["web_search"]
    first = json.loads(text_of(results[0]))
    assert not results[0].is_error and first[0]["title"].startswith("智谱 GLM")
    assert len(first) == 10
    assert not results[1].is_error
    assert results[2].is_error and "1310: " in text_of(results[2])
    assert McpCall.objects.filter(account=account, tool="web_search").count() == 2
    # Hostile arguments are refused before anything is counted.
    _tools, hostile = run(
        search(url, raw, ["", " " * 5, "x" * 1_001, {"search_query": 42}, {"count": 3}])
    )
    assert all(result.is_error for result in hostile)
    assert "1214: " in text_of(hostile[0]) and "1214: " in text_of(hostile[2])
    assert McpCall.objects.filter(account=account).count() == 2
    quota = httpx.get(
        uvicorn_site + "/api/monitor/usage/quota/limit", headers={"Authorization": raw}
    ).json()
    tools_limit = quota["data"]["limits"][2]
    assert (tools_limit["currentValue"], tools_limit["usage"]) == (2, 2)
    assert tools_limit["usageDetails"] == [{"modelCode": "web_search", "usage": 2}]


def test_without_a_plan_the_tool_refuses_and_without_a_key_the_server_does(uvicorn_site, key_for):
    account = funded_account(recharge_units=10)
    raw, _key = key_for(account)
    url = uvicorn_site + "/api/mcp/web_search/mcp"
    _tools, [result] = run(search(url, raw, ["anything"]))
    assert result.is_error and "1309: " in text_of(result)
    assert not McpCall.objects.exists()
    anonymous = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "1001"
    bad = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "1002"
