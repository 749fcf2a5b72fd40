"""The APIs' refusals, BigModel-style: {"error": {"code": "...", "message": "..."}}. The one
table of codes, statuses and messages for every API the console answers (the gateway's
OpenAI-compatible API and the usage API), and the one builder of their error body. It lives
in the core because the usage API sits below the gateway and both answer from it.
docs/api.md lists every code (a test checks it)."""

from dataclasses import dataclass

from django.http import JsonResponse


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


# --- The gateway (gateway/views.py, gateway/playground.py) ---------------------------------
MISSING_KEY = Refusal(401, "1001", "No API key: send Authorization: Bearer <key>.")
INVALID_KEY = Refusal(401, "1002", "The API key is not valid.")
EXPIRED_KEY = Refusal(401, "1003", "The API key has expired.")
REVOKED_KEY = Refusal(401, "1004", "The API key was revoked.")
WRONG_SCOPE = Refusal(401, "1000", "This API key's scope does not allow inference.")
ARREARS = Refusal(
    429, "1113", "Your account is in arrears or out of balance; recharge to continue."
)
INVALID_PARAMETERS = Refusal(400, "1210", "Invalid request parameters.")
UNKNOWN_MODEL = Refusal(400, "1211", "The model does not exist.")
INVALID_MESSAGES = Refusal(400, "1214", "messages must be a non-empty list of {role, content}.")
BODY_TOO_LARGE = Refusal(413, "1210", "The request body is too large.")
# The console's playground only: the project in the body is not one of the account's.
PROJECT_NOT_FOUND = Refusal(404, "1210", "The project does not exist.")
CONCURRENCY = Refusal(429, "1302", "Too many concurrent requests for your account's tier.")
FREQUENCY = Refusal(429, "1303", "Too many requests per minute for your account's tier.")
ACCOUNT_SUSPENDED = Refusal(403, "1120", "The account is suspended.")
PROJECT_ARCHIVED = Refusal(403, "1121", "The key's project is archived.")
PROJECT_CAP = Refusal(429, "1122", "The project's monthly spend cap is reached.")
ACCOUNT_BUDGET = Refusal(429, "1123", "The account's monthly budget is reached.")
UPSTREAM_ERROR = Refusal(502, "1230", "The model service failed; nothing was charged.")
UPSTREAM_TIMEOUT = Refusal(504, "1231", "The model service timed out; nothing was charged.")
STATE_UNAVAILABLE = Refusal(503, "1240", "Rate limiting is unavailable; try again shortly.")
DATABASE_UNAVAILABLE = Refusal(
    503, "1241", "The service's database is unavailable; nothing was charged. Try again shortly."
)
METHOD = Refusal(405, "1210", "Method not allowed.")

# --- The coding plan's endpoint (issue 22): BigModel's own codes for its GLM Coding Plan ----
PLAN_REQUIRED = Refusal(
    403,
    "1309",
    "This account has no active GLM Coding Plan: subscribe in the console, or call "
    "/api/paas/v4 to pay from the balance.",
)
PLAN_EXPIRED = Refusal(
    403, "1309", "Your GLM Coding Plan has expired; renew it in the console to continue."
)
PLAN_MODEL = Refusal(
    403, "1311", "Your GLM Coding Plan does not include this model; upgrade to use it."
)
# The messages carry the reset time (plans/quota.py fills it in).
PLAN_FIVE_HOURS = Refusal(429, "1308", "Usage limit reached for 5 hour.")
PLAN_WEEK_OR_MONTH = Refusal(429, "1310", "Weekly/Monthly limit reached.")
PLAN_CONCURRENCY = Refusal(429, "1302", "Too many concurrent requests for your coding plan.")

# --- The usage API (usage/api.py): a key or a signed-in member ------------------------------
USAGE_NOT_SIGNED_IN = Refusal(
    401, "1001", "Send an admin-read API key (Authorization: Bearer <key>) or sign in."
)
USAGE_WRONG_SCOPE = Refusal(
    401, "1000", "This API key's scope does not allow the usage API: use an admin-read key."
)
USAGE_NO_PERMISSION = Refusal(403, "1220", "Your role cannot read this account's usage.")
USAGE_METHOD = Refusal(405, "1210", "Method not allowed: use GET.")

# Why a key was rejected (keys.selectors.KeyRejected.reason), as every API answers it; a key
# of the wrong scope is refused with the API's own WRONG_SCOPE (key_refusal).
AUTH_REASONS = {
    "missing": MISSING_KEY,
    "malformed": INVALID_KEY,
    "unknown": INVALID_KEY,
    "expired": EXPIRED_KEY,
    "revoked": REVOKED_KEY,
    "project_archived": PROJECT_ARCHIVED,
    "account_suspended": ACCOUNT_SUSPENDED,
}


def key_refusal(reason: str, *, wrong_scope: Refusal) -> Refusal:
    """The refusal for a rejected key; `wrong_scope` names the scope the API takes."""
    return wrong_scope if reason == "wrong_scope" else AUTH_REASONS[reason]


def error_body(refusal: Refusal, message: str | None = None) -> dict:
    """The error body, as a JSON answer carries it and as a stream's last event does."""
    return {"error": {"code": refusal.code, "message": message or refusal.message}}


def error_response(
    refusal: Refusal, *, message: str | None = None, headers=None, body: dict | None = None
) -> JsonResponse:
    """The refusal's answer: BigModel's error body, or `body` where the API speaks another
    protocol's (the Anthropic-compatible endpoint's, whose 529 is our 503)."""
    response = JsonResponse(
        error_body(refusal, message) if body is None else body,
        status=refusal.status,
        headers=headers or {},
    )
    if refusal.status in (503, 529):
        # A dependency is down: the gateway logged one warning line where it failed. Django
        # would log each 503 again as an ERROR, thousands a minute under load; this is
        # Django's own mark for a response already logged (django.utils.log.log_response).
        response._has_been_logged = True
    return response
