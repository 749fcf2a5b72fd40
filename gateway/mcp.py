"""The coding plan's MCP tools (issue 22): a web-search MCP server over streamable HTTP, as the
vendor delivers its plans' tool quota, at `/api/mcp/web_search/mcp`, built on the official
`mcp` SDK (`MCPServer`) and served beside Django by the project's ASGI module
(config/asgi.py dispatches the `/api/mcp/` prefix here, and the lifespan that runs the SDK's
session manager).

Authenticated by a console API key (`Authorization: Bearer <key>`, inference scope): a
request without a valid key gets 401 before the MCP protocol sees it. Each `web_search` call
counts one call against the plan's monthly MCP quota (`plans.quota.mcp_admit`): an account
without a plan in force, or whose month's calls are used up, gets the tool's error result
with BigModel's code (1309, 1310). The results are the simulator's (deterministic in the
query) unless an upstream is configured (`MCP_WEB_SEARCH_URL`, not yet: the simulator is
the only search backend today).
"""

import hashlib
import json

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from console import api_errors
from gateway import services
from plans.quota import QuotaRefused, mcp_admit

MCP_PREFIX = "/api/mcp/"
WEB_SEARCH_PATH = "/api/mcp/web_search/mcp"
MAX_RESULTS = 20
MAX_QUERY = 1_000

server = MCPServer(
    name="web-search",
    instructions="Search the web. Each call counts against your GLM Coding Plan's MCP quota.",
)


def _call(header: str | None, tool: str):
    """The key's account admitted for one call of `tool`, or the refusal's text. Outside
    Django's request cycle: its connection hygiene (a connection past its age or broken by
    a database restart is closed) is done here, as Django's request signals would."""
    close_old_connections()
    try:
        return _admit_call(header, tool)
    finally:
        close_old_connections()


def _admit_call(header: str | None, tool: str):
    auth = services.authenticate(header)
    if isinstance(auth, services.Refused):
        return f"{auth.refusal.code}: {auth.refusal.message}"
    outcome = mcp_admit(account=auth.account, tool=tool, api_key=auth.key)
    if isinstance(outcome, QuotaRefused):
        return f"{outcome.refusal.code}: {outcome.message or outcome.refusal.message}"
    return None


def simulated_results(query: str, count: int) -> list[dict]:
    """Search results the same query always gets: titles, links and snippets that name it."""
    digest = hashlib.sha256(query.encode()).hexdigest()
    return [
        {
            "title": f"{query} — result {index + 1}",
            "link": f"https://example.com/{digest[:12]}/{index + 1}",
            "content": f"A simulated page about {query} ({digest[index % 32 : index % 32 + 8]}).",
            "media": "example.com",
            "publish_date": f"2026-{(index % 12) + 1:02d}-{(index % 28) + 1:02d}",
        }
        for index in range(count)
    ]


@server.tool(
    name="web_search",
    description="Search the web for `search_query`; returns titles, links and snippets.",
)
async def web_search(ctx: Context, search_query: str, count: int = 10) -> str:
    query = search_query.strip()
    if not query or len(query) > MAX_QUERY:
        raise ToolError(f"1214: search_query must be 1 to {MAX_QUERY} characters.")
    headers = ctx.headers or {}
    refused = await sync_to_async(_call)(headers.get("authorization"), "web_search")
    if refused is not None:
        raise ToolError(refused)
    results = simulated_results(query, max(1, min(count, MAX_RESULTS)))
    return json.dumps(results, ensure_ascii=False)


# The key is required, so a page in a browser cannot drive it with the visitor's cookies: the
# SDK's DNS-rebinding check (meant for unauthenticated local servers, and tied to one host)
# is off; Django's ALLOWED_HOSTS does not apply to this app.
_app = server.streamable_http_app(
    streamable_http_path=WEB_SEARCH_PATH,
    stateless_http=True,
    json_response=True,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)


async def _unauthorized(scope, receive, send, refusal: api_errors.Refusal) -> None:
    response = api_errors.error_response(refusal)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [
                (name.lower().encode(), value.encode()) for name, value in response.items()
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.content})


async def mcp_app(scope, receive, send) -> None:
    """The MCP server's ASGI app, behind the key: 401 with BigModel's error body for a
    request without a valid key; the lifespan passes through (it runs the session manager)."""
    if scope["type"] == "http":
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        auth = await sync_to_async(services.authenticate)(header)
        if isinstance(auth, services.Refused):
            await _unauthorized(scope, receive, send, auth.refusal)
            return
    await _app(scope, receive, send)
