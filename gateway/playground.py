"""The Playground (BigModel's 体验中心): members chat with a model from the console.

A message is an API call without a key: the same admission (rate limit, concurrency,
balance and arrears, project cap, account budget, reservation), the same stream, settlement
and prompt log as `POST /api/paas/v4/chat/completions` (gateway.services and
gateway.relay.stream_events), billed to the account and attributed to the project the member
chose; its usage record has no key and source `console`.

The chat endpoint is an async view (the reply streams); the session, membership and
permission are checked in a thread, as `account_view` does for the sync pages.
"""

import json
import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from console import api_errors
from console.models import Membership
from console.roles import role_can
from console.tenancy import account_view, current_membership
from gateway import services
from gateway.protocol import InvalidBody, parse_body, response_headers, validate
from gateway.relay import refuse, stream_events
from gateway.selectors import price_list
from history.models import PromptLog
from projects.models import Project
from projects.selectors import project_list
from usage.models import UsageRecord

PERMISSION = "playground.use"
# What the page may send on to the model; anything else in the body is ignored (the
# simulator's knobs and stream options are not the playground's to set).
PARAMETERS = ("max_tokens", "temperature", "top_p")
DEFAULT_MAX_TOKENS = 1024
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def _by_status(refusal: api_errors.Refusal) -> str:
    # Code 1210 stands for several refusals; the page tells them apart by the HTTP status.
    return f"{refusal.status} {refusal.code}"


# The page shows these for a refusal, by "<status> <code>" or else by code, in the reader's
# language; the API's English message is shown beside them.
REFUSAL_MESSAGES = {
    api_errors.ARREARS.code: _(
        "Your account is in arrears or out of balance: recharge to continue, or choose a free "
        "model."
    ),
    api_errors.PROJECT_CAP.code: _(
        "This project's monthly spend cap is reached: raise the cap or choose another project."
    ),
    api_errors.ACCOUNT_BUDGET.code: _("The account's monthly budget is reached."),
    api_errors.FREQUENCY.code: _(
        "Too many requests per minute for your account's tier: wait a moment and send again."
    ),
    api_errors.CONCURRENCY.code: _(
        "Too many requests at once for your account's tier: wait for one to finish."
    ),
    api_errors.ACCOUNT_SUSPENDED.code: _("The account is suspended: requests are refused."),
    api_errors.PROJECT_ARCHIVED.code: _("This project is archived: choose another project."),
    api_errors.UNKNOWN_MODEL.code: _("This model cannot be called: choose another one."),
    api_errors.INVALID_MESSAGES.code: _("The conversation is not valid: clear it and start again."),
    _by_status(api_errors.INVALID_PARAMETERS): _(
        "A parameter is not valid: max tokens from 1 to 1,000,000, temperature from 0 to 2."
    ),
    _by_status(api_errors.BODY_TOO_LARGE): _(
        "The conversation is too long to send: clear it and start again."
    ),
    _by_status(api_errors.PROJECT_NOT_FOUND): _("This project does not exist: reload the page."),
    # A stream that broke off is charged for the part of the reply it delivered.
    api_errors.UPSTREAM_ERROR.code: _(
        "The model service failed: only the part of the reply already shown is charged."
    ),
    api_errors.UPSTREAM_TIMEOUT.code: _(
        "The model service timed out: only the part of the reply already shown is charged."
    ),
    api_errors.STATE_UNAVAILABLE.code: _("Rate limiting is unavailable; try again shortly."),
}


@account_view(PERMISSION)
@require_GET
def playground(request):
    account = request.account
    return render(
        request,
        "gateway/playground.html",
        {
            "models": price_list(currency=account.currency),
            "projects": project_list(account=account),
            "default_max_tokens": DEFAULT_MAX_TOKENS,
            "refusal_messages": json.dumps(
                {code: str(message) for code, message in REFUSAL_MESSAGES.items()},
                ensure_ascii=False,
            ),
        },
    )


def _member(request) -> Membership:
    """`account_view`'s checks for the async chat view (run in a thread): the membership, or
    an HTTP answer (sign in, create an account) raised or returned."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    membership = current_membership(request)
    if membership is None:
        return redirect("account_create")
    if not role_can(membership.role, PERMISSION):
        raise PermissionDenied
    return membership


def _project(account, value) -> Project | None:
    """The account's project named in the body (archived ones too: they are refused with a
    record, as the API refuses an archived project's key)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        return None
    return Project.objects.filter(account=account, pk=value).first()


def _chat_body(body: dict) -> dict:
    """The request as the API would receive it: a stream, with only what the page may set."""
    chat = {name: body[name] for name in ("model", "messages") if name in body}
    chat.update({name: body[name] for name in PARAMETERS if body.get(name) is not None})
    return {**chat, "stream": True}


@require_POST
async def playground_chat(request):
    request_id = services.new_request_id()
    membership = await sync_to_async(_member)(request)
    if not isinstance(membership, Membership):
        return membership
    account = membership.account
    headers = response_headers(request_id)
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.GATEWAY_MAX_BODY_BYTES:
        return api_errors.error_response(api_errors.BODY_TOO_LARGE, headers=headers)
    try:
        raw = request.body
        if len(raw) > settings.GATEWAY_MAX_BODY_BYTES:
            return api_errors.error_response(api_errors.BODY_TOO_LARGE, headers=headers)
        body = parse_body(raw)
    except RequestDataTooBig:
        return api_errors.error_response(api_errors.BODY_TOO_LARGE, headers=headers)
    except InvalidBody as error:
        return api_errors.error_response(
            api_errors.INVALID_PARAMETERS, message=str(error), headers=headers
        )
    if not isinstance(body, dict):
        return api_errors.error_response(
            api_errors.INVALID_PARAMETERS,
            message="The body must be a JSON object.",
            headers=headers,
        )
    project = await sync_to_async(_project)(account, body.get("project"))
    if project is None:
        # Missing, malformed or another account's: the same answer, and no record (there is
        # no project of this account to attribute it to).
        return api_errors.error_response(api_errors.PROJECT_NOT_FOUND, headers=headers)
    # From here on the request is attributed to a project of the account: every refusal gets
    # a usage record costing nothing, as the API's do.
    caller = services.console_caller(account=account, project=project)
    chat = _chat_body(body)
    refusal = None
    if account.is_suspended:
        refusal = services.Refused(api_errors.ACCOUNT_SUSPENDED, caller)
    elif project.is_archived:
        refusal = services.Refused(api_errors.PROJECT_ARCHIVED, caller)
    elif (invalid := validate(chat)) is not None:
        refusal = services.Refused(invalid[0], caller, invalid[1])
    else:
        admitted = await sync_to_async(services.admit)(
            auth=caller, body=chat, request_id=request_id
        )
        if isinstance(admitted, services.Refused):
            refusal = admitted
    if refusal is not None:
        return await refuse(
            refusal, request_id=request_id, body=chat, client_request_id="", stream=True
        )
    return StreamingHttpResponse(
        stream_events(admitted, chat, ""),
        content_type="text/event-stream",
        headers={**headers, **admitted.rate_headers, "cache-control": "no-cache"},
    )


@account_view(PERMISSION)
@require_GET
def playground_result(request, request_id: str):
    """One playground message's tokens and cost, read back from its usage record."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise Http404
    record = (
        UsageRecord.objects.filter(
            account=request.account, request_id=request_id, source=UsageRecord.Source.CONSOLE
        )
        .select_related("project")
        .first()
    )
    if record is None:
        raise Http404
    log = (
        PromptLog.objects.filter(account=request.account, request_id=request_id).only("pk").first()
    )
    return render(
        request,
        "gateway/playground.html#result",
        {"record": record, "log": log, "currency": request.account.currency},
    )
