"""The gateway's rules, as plain (synchronous) functions the async views call in a thread:
admission (limits, balance, caps, reservation), the refusals' usage records, and the release
of what a request held. Settlement is `gateway.settlement`'s. No transaction is open while
the upstream answers.

Bounded overspend: admission reserves the request's estimated cost (prompt size and
max_tokens, priced without packs) per account and per project, in the shared state with a
TTL; caps and the balance are checked against month-to-date spend (or the balance) plus what
is reserved. Settlement charges the real usage and releases the reservation. So a block-mode
cap, or the balance, can be overrun by at most what was in flight beyond the estimates —
concretely, by at most the sum over in-flight requests of (actual cost − estimated cost),
which is zero when clients send max_tokens, plus one request admitted at the edge.

Resource packs are held the same way, in tokens: a request the pack tokens no other request
holds can cover holds its estimated tokens and costs no money (no reservation, caps do not
apply); any other request takes the money path above, arrears and caps included
(docs/decisions.md, "Issue 20: resource-pack token holds").
"""

import functools
import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from billing.selectors import (
    DEFAULT_OUTPUT_ESTIMATE,
    Estimate,
    admission_facts,
    estimate_request,
    may_admit,
    prompt_tokens_of,
)
from console import api_errors as errors
from console.database import connection_wait
from console.shared_state import (
    concurrency_key,
    pack_hold_keys,
    rate_refused_key,
    rate_window_key,
    reservation_keys,
    shared_state,
)
from gateway import anthropic
from gateway.models import UpstreamRoute
from gateway.selectors import served_route
from keys.models import Scope
from keys.selectors import Authenticated, api_key_from_header
from plans.models import model_name
from plans.quota import (
    QuotaHold,
    QuotaRefused,
    plan_in_force,
    quota_admit,
    quota_keep_alive,
    quota_settle,
)
from usage.models import UsageRecord
from usage.rollups import usage_record_write

logger = logging.getLogger(__name__)


def with_short_database_wait(function):
    """The API's database work waits GATEWAY_DATABASE_WAIT for a connection, not the pool's
    DATABASE_POOL_TIMEOUT: requests shed load quickly while PostgreSQL is unreachable, and a
    stream admitted before an outage ends quickly too (console/database.py)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with connection_wait(settings.GATEWAY_DATABASE_WAIT):
            return function(*args, **kwargs)

    return wrapper


def new_request_id() -> str:
    return uuid.uuid4().hex


def console_caller(*, account, project) -> Authenticated:
    """The console's playground as a caller: the account and the chosen project, no key.
    It goes through the same admission and settlement as a key."""
    return Authenticated(key=None, project=project, account=account)


def usage_source(auth: Authenticated) -> str:
    # Only the console's playground calls without a key.
    return UsageRecord.Source.API if auth.key is not None else UsageRecord.Source.CONSOLE


@dataclass
class Admitted:
    auth: Authenticated
    route: UpstreamRoute
    estimate: Estimate
    request_id: str
    reserved_nano: int
    rate_headers: dict = field(default_factory=dict)
    # The pack-hold keys this request holds tokens under (pack_hold_keys), if packs cover it.
    pack_keys: tuple[str, ...] = ()
    # A coding-plan request (issue 22): its prompts held in the plan's windows and its slot of
    # the plan's concurrency, instead of money; settlement says whether they count.
    plan: QuotaHold | None = None
    plan_counts: bool = False
    # Which API was called (UsageRecord.Endpoint), and the model name the client asked for
    # when it is served as another (an alias), for the usage record.
    endpoint: str = UsageRecord.Endpoint.OPENAI
    requested_model: str = ""
    # The Anthropic endpoint's request in the OpenAI-compatible form it is admitted, logged
    # and (to an OpenAI-protocol upstream) forwarded as.
    chat_body: dict | None = None

    @property
    def account(self):
        return self.auth.account


@dataclass
class Refused:
    refusal: errors.Refusal
    auth: Authenticated | None = None
    message: str | None = None
    rate_headers: dict = field(default_factory=dict)
    # The model that would have served an alias the client asked for (and that name), for
    # the refusal's usage record; empty: the body's model is recorded as it came.
    model: str = ""
    requested_model: str = ""


@with_short_database_wait
def authenticate(header: str | None) -> Authenticated | Refused:
    result = api_key_from_header(header, scope=Scope.INFERENCE)
    if isinstance(result, Authenticated):
        return result
    refusal = errors.key_refusal(result.reason, wrong_scope=errors.WRONG_SCOPE)
    if result.key is not None:
        # The key itself is genuine: the request passed authentication and gets a record.
        key = result.key
        return Refused(refusal, Authenticated(key=key, project=key.project, account=key.account))
    return Refused(refusal)


@with_short_database_wait
def plan_models(header: str | None) -> list[str] | Refused:
    """What GET /api/coding/paas/v4/models lists: the models the account's plan in force
    covers and the gateway serves."""
    auth = authenticate(header)
    if isinstance(auth, Refused):
        return auth
    subscription = plan_in_force(auth.account, timezone.now())
    if isinstance(subscription, QuotaRefused):
        return Refused(subscription.refusal, auth)
    covered = subscription.plan.coding_models.values("model")
    return list(
        UpstreamRoute.objects.filter(enabled=True, model__in=covered)
        .order_by("model")
        .values_list("model", flat=True)
    )


def _reservation_keys(auth: Authenticated) -> tuple[str, str]:
    return reservation_keys(account_id=auth.account.pk, project_id=auth.project.pk)


def _rate_window(auth: Authenticated) -> tuple[Refused | None, dict]:
    """Count the request in its account's per-minute window: every request that passed
    authentication, refused ones too (a bad body, an unknown model), since each costs a
    usage record. Returns the 1303 refusal once the window is full (or None) and the rate
    headers. Raises when the shared state is unreachable."""
    window = shared_state().hit_window(
        rate_window_key(auth.account.pk),
        limit=auth.account.tier.requests_per_minute,
        window_seconds=60,
    )
    headers = {
        "x-ratelimit-limit-requests": str(window.limit),
        "x-ratelimit-remaining-requests": str(window.remaining),
        "x-ratelimit-reset-requests": f"{max(window.reset_seconds, 0):.0f}s",
    }
    if not window.allowed:
        return Refused(errors.FREQUENCY, auth, rate_headers=headers), headers
    return None, headers


def admit(
    *, auth: Authenticated, body: dict, request_id: str, route: UpstreamRoute | None = None
) -> Admitted | Refused:
    """Everything between a valid key and the upstream call. On success a concurrency slot
    is held and the estimate reserved: `release` must follow on every path. The model is
    matched whatever its case; the request goes on under its canonical (lower-case) name.
    `route`: the model's, when the caller looked it up already."""
    account = auth.account
    model = body["model"] = model_name(body["model"])
    # The window first: a request past the limit costs no database read.
    try:
        limited, headers = _rate_window(auth)
    except Exception as error:
        logger.warning("gateway: shared state unavailable: %s", error)
        return Refused(errors.STATE_UNAVAILABLE, auth)
    if limited is not None:
        return limited
    if route is None:
        route = UpstreamRoute.objects.filter(model=model, enabled=True).first()
    estimate = estimate_request(
        account=account,
        model=model,
        messages=body["messages"],
        max_tokens=body.get("max_tokens"),
        body=body,
    )
    if route is None or estimate is None:
        return Refused(errors.UNKNOWN_MODEL, auth, f"The model {model!r} does not exist.", headers)
    state = shared_state()
    tier = account.tier
    ttl = settings.GATEWAY_RESERVATION_TTL
    # Redis may go away between these calls too: the same 1240 refusal, never a 500.
    try:
        acquired = state.slot_acquire(
            concurrency_key(account.pk), token=request_id, limit=tier.concurrency, ttl_seconds=ttl
        )
    except Exception:
        logger.warning("gateway: shared state unavailable", exc_info=True)
        return Refused(errors.STATE_UNAVAILABLE, auth, rate_headers=headers)
    if not acquired:
        return Refused(errors.CONCURRENCY, auth, rate_headers=headers)
    try:
        refusal, reserved, pack_keys = _reserve(
            auth=auth, estimate=estimate, state=state, ttl=ttl, token=request_id
        )
    except DatabaseError:
        # The database went away mid-admission: give the slot back, or it stays taken until
        # its TTL and the account's concurrency shrinks meanwhile.
        _release_everything(state, auth=auth, model=estimate.model, token=request_id)
        raise
    except Exception:
        logger.warning("gateway: shared state unavailable", exc_info=True)
        _release_everything(state, auth=auth, model=estimate.model, token=request_id)
        return Refused(errors.STATE_UNAVAILABLE, auth, rate_headers=headers)
    if refusal is not None:
        state.slot_release(concurrency_key(account.pk), token=request_id)
        return Refused(refusal, auth, rate_headers=headers)
    return Admitted(auth, route, estimate, request_id, reserved, headers, pack_keys=pack_keys)


def admit_plan(
    *,
    auth: Authenticated,
    body: dict,
    request_id: str,
    prompt_messages=None,
    route: UpstreamRoute | None = None,
) -> Admitted | Refused:
    """Admission on the coding endpoint (issue 22): billed to the account's coding plan,
    never to the balance or packs, and limited by the plan's concurrency and quota windows,
    not by the tier's rate and concurrency. The model is matched whatever its case; the
    request goes on under its canonical (lower-case) name. `prompt_messages`: the messages
    as the client sent them, when they were translated (an Anthropic tool_result turn is a
    continuation whatever text sits beside it)."""
    model = model_name(body["model"])
    # The route first: nothing may fail between counting the prompts and handing them over.
    if route is None:
        route = UpstreamRoute.objects.filter(model=model, enabled=True).first()
    try:
        held = quota_admit(
            account=auth.account,
            model=model,
            messages=body["messages"] if prompt_messages is None else prompt_messages,
            token=request_id,
        )
    except DatabaseError:
        raise
    except Exception:
        logger.warning("gateway: shared state unavailable", exc_info=True)
        return Refused(errors.STATE_UNAVAILABLE, auth)
    if isinstance(held, QuotaRefused):
        headers = {"Retry-After": str(held.retry_after)} if held.retry_after else {}
        return Refused(held.refusal, auth, held.message, rate_headers=headers)
    if route is None:
        quota_settle(held, token=request_id, counts=False)
        return Refused(errors.UNKNOWN_MODEL, auth, f"The model {body['model']!r} is not served.")
    body["model"] = model
    max_tokens = body.get("max_tokens")
    estimate = Estimate(
        model,
        prompt_tokens_of(body),
        max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_OUTPUT_ESTIMATE,
        0,
    )
    return Admitted(auth, route, estimate, request_id, 0, plan=held)


def admit_messages(*, auth: Authenticated, body: dict, request_id: str) -> Admitted | Refused:
    """Admission on the Anthropic-compatible endpoint (issue 23): the requested name served
    as one of the gateway's models (itself, any case, or an alias), the request translated
    to the OpenAI-compatible form, then the coding plan's admission when the account has a
    plan in force (a model outside it is refused, never billed to the balance), else
    pay-as-you-go's."""
    requested = body["model"]
    route = served_route(requested)
    if route is None:
        return Refused(
            errors.UNKNOWN_MODEL,
            auth,
            f"The model {requested!r} does not exist: use a served model or a name in the "
            "console's alias table (Quickstart).",
        )
    chat_body = anthropic.openai_body(body, route.model)
    admitted = admit_plan(
        auth=auth,
        body=chat_body,
        request_id=request_id,
        prompt_messages=body["messages"],
        route=route,
    )
    if isinstance(admitted, Refused) and admitted.refusal in (
        errors.PLAN_REQUIRED,
        errors.PLAN_EXPIRED,
    ):
        admitted = admit(auth=auth, body=chat_body, request_id=request_id, route=route)
    alias = requested if model_name(requested) != route.model else ""
    if isinstance(admitted, Admitted):
        admitted.chat_body = chat_body
        admitted.requested_model = alias
    elif alias:
        # Refused after the alias was resolved: recorded as its served model, as if admitted.
        admitted.model, admitted.requested_model = route.model, alias
    return admitted


ADMISSIONS = {
    UsageRecord.Endpoint.OPENAI: admit,
    UsageRecord.Endpoint.CODING: admit_plan,
    UsageRecord.Endpoint.ANTHROPIC: admit_messages,
}


@with_short_database_wait
def admit_request(
    *,
    header: str | None,
    body,
    invalid: tuple[errors.Refusal, str] | None,
    request_id: str,
    client_request_id: str,
    stream: bool,
    endpoint: str = UsageRecord.Endpoint.OPENAI,
) -> Admitted | Refused:
    """The API's way in, in one thread call from the async view (each call is a thread hop
    that showed in the gateway's profile): the key, the body's check (`invalid`, done by
    the view), the endpoint's admission, and the usage record of a refusal that passed
    authentication (with the status the endpoint answers it with)."""
    auth = authenticate(header)
    if isinstance(auth, Refused):
        refused = auth
    elif invalid is not None:
        try:
            refused, headers = _rate_window(auth)
        except Exception as error:
            # No rate window without the shared state: the body is refused all the same.
            logger.warning("gateway: shared state unavailable: %s", error)
            refused, headers = None, {}
        refused = refused or Refused(invalid[0], auth, invalid[1], headers)
    else:
        refused = ADMISSIONS[endpoint](auth=auth, body=body, request_id=request_id)
        if isinstance(refused, Admitted):
            refused.endpoint = endpoint
            return refused
    if endpoint == UsageRecord.Endpoint.ANTHROPIC:
        refused.refusal = anthropic.refusal_for(refused.refusal)
    if refused.refusal == errors.FREQUENCY and not _first_rate_refusal(refused.auth):
        # Of the 1303 refusals only the first of each minute is recorded: a client that
        # keeps sending past its limit must not cost a write per request.
        return refused
    record_refusal(
        refused=refused,
        request_id=request_id,
        body=body if isinstance(body, dict) else None,
        client_request_id=client_request_id,
        stream=stream,
        endpoint=endpoint,
    )
    return refused


@with_short_database_wait
def count_tokens(*, header: str | None, body, invalid: str | None) -> int | Refused:
    """POST /api/anthropic/v1/messages/count_tokens: the request's input tokens as
    admission estimates them. Free, and not a prompt: it counts in the account's per-minute
    window, and writes no usage record and no history. Its refusals take the endpoint's
    statuses where the view answers them (gateway.messages.error_response)."""
    auth = authenticate(header)
    if isinstance(auth, Refused):
        return auth
    try:
        limited, headers = _rate_window(auth)
    except Exception as error:
        logger.warning("gateway: shared state unavailable: %s", error)
        return Refused(errors.STATE_UNAVAILABLE, auth)
    if limited is not None:
        return limited
    if invalid is not None:
        return Refused(errors.INVALID_PARAMETERS, auth, invalid, headers)
    route = served_route(body["model"])
    if route is None:
        message = f"The model {body['model']!r} does not exist."
        return Refused(errors.UNKNOWN_MODEL, auth, message, headers)
    chat_body = anthropic.openai_body({"max_tokens": 1, **body}, route.model)
    return prompt_tokens_of(chat_body)


def _hold_packs(*, account, estimate: Estimate, facts, state, ttl: int, token: str):
    """Hold the estimate's tokens of the applicable packs, if the tokens no request in flight
    holds cover all of it (model-specific packs first, then general ones, the order
    settlement draws them). Returns (the keys held under, the un-held tokens there were)."""
    tokens = estimate.input_tokens + estimate.output_tokens
    if facts.pack_tokens < tokens:
        return (), facts.pack_tokens  # not even the whole packs: no need to ask
    keys = pack_hold_keys(account_id=account.pk, model=estimate.model)
    held = state.hold_within(
        keys,
        token=token,
        amount=tokens,
        capacities=(facts.model_pack_tokens, facts.general_pack_tokens),
        ttl_seconds=ttl,
    )
    return tuple(key for key, part in zip(keys, held.parts, strict=True) if part), held.free


def _reserve(*, auth: Authenticated, estimate: Estimate, state, ttl: int, token: str):
    """Decide the money side of admission and reserve the estimate, atomically per key:
    a request is admitted while what is reserved stays below the room (balance, budget or
    cap left), so concurrent admissions cannot share the same room. Pack tokens are held
    the same way, except that the estimate must fit in what no other request holds: a
    request that fits costs no money (no money reserved, caps never apply); one that does
    not takes the money path with every check, reserving its whole estimate. Returns
    (refusal or None, amount reserved, pack-hold keys)."""
    account, project = auth.account, auth.project
    if not estimate.cost_nano:
        # Free models cost nothing and consume no pack: nothing to read, nothing to hold.
        return None, 0, ()
    # Wallet, packs and month spend in one query.
    facts = admission_facts(account=account, project_id=project.pk, model=estimate.model)
    pack_keys, free_pack_tokens = _hold_packs(
        account=account, estimate=estimate, facts=facts, state=state, ttl=ttl, token=token
    )
    admission = may_admit(
        account=account, estimate=estimate, facts=facts, pack_tokens=free_pack_tokens
    )
    if not admission.allowed:
        return errors.ARREARS, 0, ()
    if admission.pack_covered:
        return None, 0, pack_keys
    room, refusal = facts.recharge_nano + facts.bonus_nano, errors.ARREARS
    if account.monthly_budget_nano and account.budget_mode == "block":
        budget_room = account.monthly_budget_nano - facts.account_month_spend_nano
        if budget_room < room:
            room, refusal = budget_room, errors.ACCOUNT_BUDGET
    account_key, project_key = _reservation_keys(auth)
    cost = estimate.cost_nano
    if not state.hold(account_key, token=token, amount=cost, ceiling=room, ttl_seconds=ttl):
        return refusal, 0, ()
    if project.monthly_cap_nano and project.cap_mode == "block":
        cap_room = project.monthly_cap_nano - facts.project_month_spend_nano
        if not state.hold(project_key, token=token, amount=cost, ceiling=cap_room, ttl_seconds=ttl):
            state.hold_release(account_key, token=token)
            return errors.PROJECT_CAP, 0, ()
    else:
        state.hold(project_key, token=token, amount=cost, ttl_seconds=ttl)
    return None, cost, ()


def _give_back(state, *, account_id: int, token: str, hold_keys) -> None:
    """Release the request's holds under `hold_keys` and its concurrency slot, each on its
    own (a failure of one does not keep the others)."""
    for key in hold_keys:
        best_effort(state.hold_release, key, token=token)
    best_effort(state.slot_release, concurrency_key(account_id), token=token)


def _release_everything(state, *, auth: Authenticated, model: str, token: str) -> None:
    """After a failure part-way through admission, give back whatever of this request's
    slot and holds the shared state took: a hold may have been taken before the failure
    (the account's before the project's, or a pack hold whose reply timed out), and would
    otherwise keep its room from other requests for GATEWAY_RESERVATION_TTL. Releasing
    what was never taken is harmless."""
    keys = (*_reservation_keys(auth), *pack_hold_keys(account_id=auth.account.pk, model=model))
    _give_back(state, account_id=auth.account.pk, token=token, hold_keys=keys)


def best_effort(operation, *args, **kwargs) -> None:
    """A best-effort write to the shared state (a clean-up, a release, a last-used time)
    that must neither hide the error being handled nor fail an answer already settled; what
    it could not undo expires with its TTL."""
    try:
        operation(*args, **kwargs)
    except Exception:
        logger.warning("gateway: shared-state write skipped", exc_info=True)


def release(admitted: Admitted) -> None:
    """Give back the reservation and the concurrency slot (every exit path calls this).
    Never raises: it runs after the settlement committed, whose answer must reach the
    client; what Redis could not take back expires with its TTL."""
    if admitted.plan is not None:
        quota_settle(admitted.plan, token=admitted.request_id, counts=admitted.plan_counts)
        return
    _give_back(
        shared_state(),
        account_id=admitted.account.pk,
        token=admitted.request_id,
        hold_keys=_held_keys(admitted),
    )
    admitted.reserved_nano = 0
    admitted.pack_keys = ()


def _held_keys(admitted: Admitted) -> tuple[str, ...]:
    """The shared-state keys a request holds something under: its money holds (if it
    reserved any) and its pack-token holds."""
    money = _reservation_keys(admitted.auth) if admitted.reserved_nano else ()
    return (*money, *admitted.pack_keys)


def renewal_interval() -> float:
    """Seconds between renewals of a running request's slot and holds: well inside their
    TTL, so a stream that outlives GATEWAY_RESERVATION_TTL never loses them, yet rare
    enough to cost nothing next to the chunks."""
    return settings.GATEWAY_RESERVATION_TTL / 4


def keep_alive(admitted: Admitted) -> None:
    """Renew everything a running request holds in the shared state (its concurrency slot
    and its money and pack-token holds), in one call. Never raises: a renewal Redis cannot
    take leaves the TTL to run as before."""
    if admitted.plan is not None:
        quota_keep_alive(admitted.plan, token=admitted.request_id)
        return
    keys = [concurrency_key(admitted.account.pk), *_held_keys(admitted)]
    best_effort(
        shared_state().renew,
        keys,
        token=admitted.request_id,
        ttl_seconds=settings.GATEWAY_RESERVATION_TTL,
    )


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    response_text: str = ""
    latency_ms: int = 0
    first_token_ms: int | None = None
    forwarded: bool = True
    # The upstream failed after part of the answer reached the client: that part is billed.
    partial: bool = False


def _first_rate_refusal(auth: Authenticated) -> bool:
    """Whether this 1303 refusal is the account's first in the last minute (so recorded)."""
    try:
        return (
            shared_state()
            .hit_window(rate_refused_key(auth.account.pk), limit=1, window_seconds=60)
            .allowed
        )
    except Exception:
        return True  # the shared state just answered the window; if gone now, record it


def record_refusal(
    *,
    refused: Refused,
    request_id: str,
    body: dict | None,
    client_request_id: str,
    stream: bool,
    endpoint: str = UsageRecord.Endpoint.OPENAI,
) -> None:
    """A refused request that passed authentication: a usage record costing nothing."""
    if refused.auth is None:
        return
    usage_record_write(
        account=refused.auth.account,
        project=refused.auth.project,
        api_key=refused.auth.key,
        source=usage_source(refused.auth),
        request_id=request_id,
        client_request_id=client_request_id,
        model=refused.model or str((body or {}).get("model", ""))[:64],
        requested_model=refused.requested_model[:100],
        endpoint=endpoint,
        stream=stream,
        status=refused.refusal.status,
        code=refused.refusal.code,
        created_at=timezone.now(),
    )
