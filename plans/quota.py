"""The coding plan's quotas at request time (issue 22): what a request counts, admission
against the plan's windows, giving back, and rebuilding a window Redis lost.

A request counts in thousandths of a prompt ("milli"): one prompt (1,000) for a new user turn,
the plan's continuation share (1/15 by default, rounded up) for a request that continues an
agent's turn (its last message holds a tool result), times the model's weight. It is counted
at admission in every window at once (`SharedState.quota_take`, one Redis script), so
concurrent requests can never overshoot a window; settlement confirms it (the usage record
carries `quota_milli` and the term that paid) or gives it back (a refusal, an upstream
failure). The windows are keyed by subscription, so an upgrade keeps what was counted.

The windows: rolling 5 hours and rolling week (minute buckets), and the subscription month
(calendar months from the first purchase, in the account's time zone). Where Redis has lost
a window (its key is missing: a flush, a restart, an idle window that expired) it is rebuilt
from the usage records under the subscription's row lock before anything is admitted.
"""

import logging
import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.utils import timezone
from django.utils.formats import date_format

from console import api_errors as errors
from console.shared_state import (
    QuotaWindow,
    mcp_quota_key,
    plan_concurrency_key,
    quota_keys,
    shared_state,
)
from plans.models import McpCall, PlanLimits, PlanTerm, Subscription
from plans.selectors import plan_admission, plan_limits, subscription_current
from plans.services import add_months
from usage.models import UsageRecord

logger = logging.getLogger(__name__)

PROMPT_MILLI = 1000
FIVE_HOURS = timedelta(hours=5)
WEEK = timedelta(days=7)
# A plan whose period ended while auto-renew is on keeps serving this long: the renewal job
# runs every five minutes, and a coding tool must not stop mid-task waiting for it.
RENEWAL_GRACE = timedelta(minutes=15)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=zoneinfo.ZoneInfo("UTC"))


# --- What a request counts -------------------------------------------------------------------


def continues_a_turn(messages) -> bool:
    """Whether the request continues an agent's turn rather than asking something new: its
    last message is a tool result (OpenAI's `tool` role) or holds one (Anthropic's
    `tool_result` blocks; the reminder text coding tools put beside them does not make it a
    new turn)."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    if last.get("role") == "tool":
        return True
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def prompt_milli(*, messages, weight_milli: int, continuation_divisor: int) -> int:
    """What a request counts, in thousandths of a prompt: the model's weight for a new turn,
    or its `1/continuation_divisor` share (rounded up, so never nothing) for a continuation."""
    if continues_a_turn(messages):
        return math.ceil(weight_milli / max(continuation_divisor, 1))
    return weight_milli


# --- The windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionMonth:
    index: int  # 0 for the month the subscription started
    start: datetime
    end: datetime


def subscription_month(subscription: Subscription, at: datetime) -> SubscriptionMonth:
    """The subscription month holding `at`: calendar months counted from the first purchase
    in the account's time zone (as periods are), whatever the period bought."""
    zone = zoneinfo.ZoneInfo(subscription.account.time_zone)
    started = timezone.localtime(subscription.started_at, zone)
    local = timezone.localtime(at, zone)
    index = max((local.year - started.year) * 12 + local.month - started.month, 0)
    while index > 0 and add_months(started, index) > local:
        index -= 1
    while add_months(started, index + 1) <= local:
        index += 1
    return SubscriptionMonth(
        index,
        add_months(started, index).astimezone(at.tzinfo),
        add_months(started, index + 1).astimezone(at.tzinfo),
    )


def prompt_windows(
    subscription: Subscription, limits: PlanLimits, month: SubscriptionMonth
) -> tuple[QuotaWindow, ...]:
    """The 5 hours, the week and the month, in the order refusals name them."""
    five_hours, week, this_month = quota_keys(subscription.pk, month.index)
    return (
        QuotaWindow(five_hours, limits.prompts_5h * PROMPT_MILLI, span_ms=epoch_ms_of(FIVE_HOURS)),
        QuotaWindow(week, limits.prompts_week * PROMPT_MILLI, span_ms=epoch_ms_of(WEEK)),
        QuotaWindow(this_month, limits.prompts_month * PROMPT_MILLI, ends_ms=epoch_ms(month.end)),
    )


def mcp_window(
    subscription: Subscription, limits: PlanLimits, month: SubscriptionMonth
) -> QuotaWindow:
    """The month's MCP tool calls, counted one per call."""
    return QuotaWindow(
        mcp_quota_key(subscription.pk, month.index),
        limits.mcp_calls_month,
        ends_ms=epoch_ms(month.end),
    )


def epoch_ms_of(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)


def _rebuild(subscription: Subscription, windows, *, month: SubscriptionMonth, now: datetime):
    """Load every missing window of `windows` from the usage records (under the
    subscription's row lock, so two processes that both found it missing load it once; the
    load itself only ever fills a missing key)."""
    state = shared_state()
    with transaction.atomic():
        Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
        uses = state.quota_use(windows, now_ms=epoch_ms(now))
        missing = [window for window, use in zip(windows, uses, strict=True) if use is None]
        if not missing:
            return
        since = min(now - WEEK, month.start)
        terms = PlanTerm.objects.filter(subscription=subscription).values("pk")
        records = list(
            UsageRecord.objects.filter(
                account_id=subscription.account_id,
                plan_term_id__in=terms,
                created_at__gte=since,
                quota_milli__gt=0,
            ).values_list("created_at", "quota_milli")
        )
        for window in missing:
            if window.rolling:
                start_ms = epoch_ms(now) - window.span_ms
                chosen = [(at, milli) for at, milli in records if epoch_ms(at) > start_ms]
            else:
                chosen = [(at, milli) for at, milli in records if month.start <= at < month.end]
            buckets: dict[int, int] = {}
            for at, milli in chosen:
                buckets[epoch_ms(at)] = buckets.get(epoch_ms(at), 0) + milli
            state.quota_load(window, buckets=buckets, now_ms=epoch_ms(now))
        logger.info(
            "plans: rebuilt %d quota window(s) of subscription %s from %d records",
            len(missing),
            subscription.pk,
            len(records),
        )


def _rebuild_mcp(subscription: Subscription, window: QuotaWindow, *, month, now) -> None:
    """Load the month's MCP window from the calls recorded, as `_rebuild` for prompts."""
    state = shared_state()
    with transaction.atomic():
        Subscription.objects.select_for_update().filter(pk=subscription.pk).first()
        calls = McpCall.objects.filter(
            subscription=subscription, created_at__gte=month.start, created_at__lt=month.end
        ).count()
        state.quota_load(window, buckets={epoch_ms(month.start): calls}, now_ms=epoch_ms(now))


# --- Admission -------------------------------------------------------------------------------


@dataclass
class QuotaHold:
    """What a plan request holds from admission to settlement: its prompts in the windows
    and a slot of the plan's concurrency."""

    subscription_id: int
    term_id: int
    plan_code: str
    windows: tuple[QuotaWindow, ...]
    amount: int
    taken_ms: int
    concurrency_key: str
    # Each window's use once this request was counted (in the windows' order), and which
    # build of each window counted it (a give-back skips a window rebuilt since).
    used: tuple[int, ...] = ()
    generations: tuple[str, ...] = ()
    # False once given back (or confirmed): a hold is settled one way, once.
    open: bool = True

    def crossed(self, levels: tuple[int, ...]) -> bool:
        """Whether counting this request took a window across one of `levels` (percent of
        its limit): the alerts need evaluating then, not only at the next sweep."""
        for window, after in zip(self.windows, self.used, strict=False):
            before = after - self.amount
            for level in levels:
                if before * 100 < window.limit * level <= after * 100:
                    return True
        return False


@dataclass(frozen=True)
class QuotaRefused:
    refusal: errors.Refusal
    message: str | None = None
    retry_after: int | None = None  # seconds, where the reset time is known


def plan_in_force(account, now: datetime, subscription=None):
    """The account's plan that serves requests now, or a refusal: none, or one whose paid
    period is over (past a short grace while auto-renew is due). `subscription` when the
    caller read it already (admission reads it with everything else in one query)."""
    if subscription is None:
        subscription = subscription_current(account=account)
    if subscription is None:
        return QuotaRefused(errors.PLAN_REQUIRED)
    if subscription.period_end <= now and not (
        subscription.auto_renew and now < subscription.period_end + RENEWAL_GRACE
    ):
        return QuotaRefused(errors.PLAN_EXPIRED)
    return subscription


def reset_text(reset_ms: int, account) -> str:
    """A reset time as the vendor words it (YYYY-MM-DD HH:MM:SS), in the account's zone."""
    local = timezone.localtime(from_epoch_ms(reset_ms), zoneinfo.ZoneInfo(account.time_zone))
    return date_format(local, "Y-m-d H:i:s")


def _window_refusal(take, *, account, now: datetime) -> QuotaRefused:
    refusal = errors.PLAN_FIVE_HOURS if take.index == 0 else errors.PLAN_WEEK_OR_MONTH
    if not take.reset_ms:
        return QuotaRefused(refusal)
    when = reset_text(take.reset_ms, account)
    wait = max(math.ceil((take.reset_ms - epoch_ms(now)) / 1000), 1)
    return QuotaRefused(refusal, f"{refusal.message} Your limit will reset at {when}", wait)


def quota_admit(*, account, model: str, messages, token: str, now: datetime | None = None):
    """Admit one coding-plan request: the plan in force, the model in the plan, a slot of
    the plan's concurrency and the request's prompts in every window. Returns a QuotaHold
    (`quota_settle` must follow on every path) or a QuotaRefused. Raises when the shared
    state is unreachable (the caller answers 1240)."""
    now = now or timezone.now()
    facts = plan_admission(account=account, model=model, at=now)
    if facts is None:
        return QuotaRefused(errors.PLAN_REQUIRED)
    facts.account = account  # the caller's: its time zone is read without another query
    subscription = plan_in_force(account, now, facts)
    if isinstance(subscription, QuotaRefused):
        return subscription
    if not facts.model_known:
        return QuotaRefused(errors.UNKNOWN_MODEL, f"The model {model!r} does not exist.")
    plan = facts.plan
    if facts.model_weight is None or facts.limit_concurrency is None:
        return QuotaRefused(
            errors.PLAN_MODEL,
            f"Your GLM Coding Plan ({plan.name}) does not include {model}; upgrade to use it.",
        )
    limits = PlanLimits(
        plan=plan,
        prompts_5h=facts.limit_prompts_5h,
        prompts_week=facts.limit_prompts_week,
        prompts_month=facts.limit_prompts_month,
        concurrency=facts.limit_concurrency,
    )
    month = subscription_month(subscription, now)
    windows = prompt_windows(subscription, limits, month)
    amount = prompt_milli(
        messages=messages,
        weight_milli=facts.model_weight,
        continuation_divisor=facts.continuation_divisor,
    )
    state = shared_state()
    slot = plan_concurrency_key(account.pk)
    ttl = _hold_ttl()
    if not state.slot_acquire(slot, token=token, limit=limits.concurrency, ttl_seconds=ttl):
        return QuotaRefused(errors.PLAN_CONCURRENCY)
    now_ms = epoch_ms(now)
    try:
        take = state.quota_take(windows, amount=amount, now_ms=now_ms)
        if take.status == "missing":
            _rebuild(subscription, windows, month=month, now=now)
            take = state.quota_take(windows, amount=amount, now_ms=now_ms)
    except BaseException:
        _release_slot(slot, token)
        raise
    if take.status != "admitted":
        _release_slot(slot, token)
        if take.status == "missing":  # lost again between the rebuild and the take
            return QuotaRefused(errors.STATE_UNAVAILABLE)
        return _window_refusal(take, account=account, now=now)
    return QuotaHold(
        subscription_id=subscription.pk,
        term_id=facts.term_id,
        plan_code=plan.code,
        windows=windows,
        amount=amount,
        taken_ms=now_ms,
        concurrency_key=slot,
        used=take.used,
        generations=take.generations,
    )


def _hold_ttl() -> float:
    return settings.GATEWAY_RESERVATION_TTL


def _release_slot(slot: str, token: str) -> None:
    try:
        shared_state().slot_release(slot, token=token)
    except Exception:
        logger.warning("plans: concurrency slot not released", exc_info=True)


def quota_settle(hold: QuotaHold, *, token: str, counts: bool) -> None:
    """End a request's hold: keep its prompts counted (`counts`: an answer, or a client
    that left mid-answer) or give them back (a refusal, an upstream failure), and free its
    concurrency slot. Once only; never raises (what Redis could not take back stays
    counted in the windows, and the slot expires with its TTL)."""
    if not hold.open:
        return
    hold.open = False
    if not counts:
        try:
            shared_state().quota_give_back(
                hold.windows,
                amount=hold.amount,
                taken_ms=hold.taken_ms,
                now_ms=epoch_ms(timezone.now()),
                generations=hold.generations,
            )
        except Exception:
            logger.warning("plans: quota not given back", exc_info=True)
    _release_slot(hold.concurrency_key, token)


def quota_keep_alive(hold: QuotaHold, *, token: str) -> None:
    """A long stream keeps its concurrency slot (as the wallet's requests keep theirs)."""
    try:
        shared_state().renew([hold.concurrency_key], token=token, ttl_seconds=_hold_ttl())
    except Exception:
        logger.warning("plans: concurrency slot not renewed", exc_info=True)


# --- Reading the quotas (the quota API, plan_show, the console's quota panel) -----------------


@dataclass(frozen=True)
class WindowStatus:
    name: str  # "5h", "week", "month" (prompts) or "mcp" (tool calls)
    limit: int  # prompts, or calls
    used: int  # thousandths of a prompt, or calls
    per_unit: int  # what one prompt (1,000) or one call (1) is in `used`
    next_reset: datetime | None  # when the oldest use frees up (None: nothing to free)
    span: timedelta | None  # a rolling window's length (None: it ends at `next_reset`)

    @property
    def used_units(self) -> Decimal:
        """Prompts (or calls) used, exactly: 3.2, 0.067, 12."""
        return Decimal(self.used) / self.per_unit

    @property
    def percent(self) -> int:
        """Used of the limit, in whole percent, rounded half up (100 when used up)."""
        if not self.limit:
            return 100
        return min((self.used * 200 // (self.limit * self.per_unit) + 1) // 2, 100)


@dataclass(frozen=True)
class QuotaStatus:
    subscription: Subscription
    limits: PlanLimits
    month: SubscriptionMonth
    windows: tuple[WindowStatus, ...]  # 5h, week, month, mcp; none while Redis is unreachable
    mcp_by_tool: dict[str, int]


def _window_uses(subscription, prompts, mcp, *, month, now):
    """The windows' use now from the shared state, rebuilding those it lost."""
    state = shared_state()
    uses = state.quota_use((*prompts, mcp), now_ms=epoch_ms(now))
    if any(use is None for use in uses[:3]):
        _rebuild(subscription, prompts, month=month, now=now)
    if uses[3] is None:
        _rebuild_mcp(subscription, mcp, month=month, now=now)
    if any(use is None for use in uses):
        uses = state.quota_use((*prompts, mcp), now_ms=epoch_ms(now))
    return uses


def quota_status(account, now: datetime | None = None) -> QuotaStatus | None:
    """The account's plan and each quota's use now, or None without a plan that has not
    ended. Rebuilds a window Redis lost, as admission would."""
    now = now or timezone.now()
    subscription = subscription_current(account=account)
    if subscription is None:
        return None
    subscription.account = account
    limits = plan_limits(plan=subscription.plan, at=now)
    if limits is None:
        return None  # a plan staff left without limits: nothing to show or count against
    month = subscription_month(subscription, now)
    prompts = prompt_windows(subscription, limits, month)
    mcp = mcp_window(subscription, limits, month)
    try:
        uses = _window_uses(subscription, prompts, mcp, month=month, now=now)
    except DatabaseError:
        raise
    except Exception:
        # Redis unreachable: the plan is still shown (the page, the overview, the alerts'
        # other rules), without figures; the gateway refuses with 1240 meanwhile.
        logger.warning("plans: quota windows unavailable", exc_info=True)
        return QuotaStatus(subscription, limits, month, (), {})
    names = ("5h", "week", "month", "mcp")
    spans = (FIVE_HOURS, WEEK, None, None)
    windows = []
    for name, window, use, span in zip(names, (*prompts, mcp), uses, spans, strict=True):
        used = use.used if use else 0
        reset = from_epoch_ms(use.next_reset_ms) if use and use.next_reset_ms else None
        if span is None:
            reset = month.end
        windows.append(
            WindowStatus(
                name=name,
                limit=window.limit // (PROMPT_MILLI if name != "mcp" else 1),
                used=used,
                per_unit=PROMPT_MILLI if name != "mcp" else 1,
                next_reset=reset,
                span=span,
            )
        )
    by_tool = dict(
        McpCall.objects.filter(
            subscription=subscription, created_at__gte=month.start, created_at__lt=month.end
        )
        .values_list("tool")
        .annotate(calls=models.Count("pk"))
        .order_by("tool")
        .values_list("tool", "calls")
    )
    return QuotaStatus(subscription, limits, month, tuple(windows), by_tool)


# --- MCP tool calls ---------------------------------------------------------------------------


def mcp_admit(*, account, tool: str, api_key=None, now: datetime | None = None):
    """Count one MCP tool call against the plan's monthly tool quota and record it: the
    McpCall, or a QuotaRefused (no plan in force: 1309; the month's calls used up: 1310 with
    the month's end). A call is counted when it is made: the simulated tools do not fail, and
    a tool an upstream failed is still a call the plan made. Raises when the shared state is
    unreachable."""
    now = now or timezone.now()
    subscription = plan_in_force(account, now)
    if isinstance(subscription, QuotaRefused):
        return subscription
    subscription.account = account
    limits = plan_limits(plan=subscription.plan, at=now)
    if limits is None:
        return QuotaRefused(errors.PLAN_EXPIRED)
    month = subscription_month(subscription, now)
    window = mcp_window(subscription, limits, month)
    state = shared_state()
    take = state.quota_take((window,), amount=1, now_ms=epoch_ms(now))
    if take.status == "missing":
        _rebuild_mcp(subscription, window, month=month, now=now)
        take = state.quota_take((window,), amount=1, now_ms=epoch_ms(now))
    if take.status == "missing":
        return QuotaRefused(errors.STATE_UNAVAILABLE)
    if take.status == "refused":
        refusal = errors.PLAN_WEEK_OR_MONTH
        when = reset_text(take.reset_ms, account)
        return QuotaRefused(refusal, f"{refusal.message} Your limit will reset at {when}")
    term = (
        PlanTerm.objects.filter(subscription=subscription, starts_at__lte=now)
        .order_by("-starts_at")
        .first()
    )
    try:
        return McpCall.objects.create(
            account=account,
            subscription=subscription,
            term=term,
            api_key=api_key,
            tool=tool,
            created_at=now,
        )
    except BaseException:
        # Not recorded: not counted either (the rebuild reads the records).
        state.quota_give_back(
            (window,),
            amount=1,
            taken_ms=epoch_ms(now),
            now_ms=epoch_ms(now),
            generations=take.generations,
        )
        raise
