"""Spend alerts: the rules an account sets, their evaluation, and the crossings that trigger
it. Channels (email, in-app, webhooks) are `notifications.services.notify`'s.

Rules: the balance below an amount; each project at 50, 80 and 100% of its monthly cap,
and the account at those shares of its monthly budget; today's spend above N times the
daily average of the 7 days before; a resource pack below P% of its tokens, or expiring
within D days with tokens left. The GLM Coding Plan (always on, on the same channels): each
quota window at 80 and 100% of its limit, the plan renewing (or ending, with auto-renew off)
within 3 days, and the plan ended (its renewal failed, or it was cancelled or lapsed).

Each alert fires once per crossing and period: `AlertFiring` is unique per (account, kind,
subject, level, period, sequence), and a firing stays open until its condition clears (a
recharge, a raised cap), which re-arms it. Evaluation reads the wallet, the month counters,
the daily roll-ups and the packs — never the usage records.

Triggering: the settlement that takes the balance below the threshold, or a capped project
(or a budgeted account) across a level, schedules `evaluate_alerts` on commit (no extra
query on the hot path: the threshold is mirrored on the wallet row, the cap is on the
project). A recharge schedules it too (to re-arm). The sweep every five minutes evaluates
every account with usage today or an open alert, which also covers spikes and packs.
"""

import logging
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField
from django.db.models.functions import Cast, Substr
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from alerts import tasks  # the module: alerts/tasks.py says why
from alerts.models import AlertFiring, AlertSettings
from billing.models import ResourcePack, Wallet
from billing.payments import card_chargeable, default_payment_method
from billing.selectors import account_month_spend, current_month, project_month_spend
from console.models import Account
from console.money import decimal_string, format_amount
from console.services import audit_record
from notifications.services import notify
from plans.models import Subscription
from plans.quota import quota_status
from plans.selectors import subscription_renewal
from usage.models import UsageDaily
from usage.selectors import daily_fees, local_today

log = logging.getLogger(__name__)

CAP_LEVELS = (50, 80, 100)
SPIKE_DAYS = 7
# The longest "expiring within D days" the settings form accepts.
MAX_EXPIRY_DAYS = 90
# The coding plan's quota windows alert at these shares of their limits.
PLAN_LEVELS = (80, 100)
# The plan's renewal (or end) is announced this long before.
PLAN_NOTICE = timedelta(days=3)
# An ended plan is announced while it ended less than this long ago.
PLAN_ENDED_NOTICE = timedelta(days=3)


def alert_settings_for(account: Account) -> AlertSettings:
    """The account's settings, or the defaults (unsaved) when it never set any."""
    return AlertSettings.objects.filter(account=account).first() or AlertSettings(account=account)


def alert_settings_save(*, account: Account, actor, **values) -> AlertSettings:
    """Save the settings and mirror the balance threshold on the wallet row."""
    with transaction.atomic():
        settings_row, _created = AlertSettings.objects.update_or_create(
            account=account, defaults=values
        )
        Wallet.objects.filter(account=account).update(
            alert_below_nano=settings_row.balance_below_nano
        )
        audit_record(
            action="alerts.update",
            account=account,
            actor=actor,
            target=settings_row,
            metadata={key: str(value) for key, value in values.items()},
        )
        # The new thresholds may already be crossed (or no longer be).
        schedule_evaluation(account.pk)
    return settings_row


def schedule_evaluation(account_id: int) -> None:
    """Evaluate the account's alerts once the current transaction commits. Robust: a broker
    outage must not fail the settlement or the recharge that called this; the sweep
    evaluates the account within five minutes anyway."""
    # retry=False: with the broker down, publishing fails at once instead of blocking the
    # request that crossed the threshold while kombu retries the connection.
    transaction.on_commit(
        lambda: tasks.evaluate_alerts.apply_async((account_id,), retry=False), robust=True
    )


def crossed(before: int, after: int, threshold: int) -> bool:
    """Whether a value rising from `before` to `after` reached `threshold`."""
    return before < threshold <= after


def spend_crossed_a_level(*, before: int, after: int, limit: int | None) -> bool:
    """Whether month-to-date spend rising from `before` to `after` reached 50, 80 or 100% of
    `limit` (a cap or a budget)."""
    if not limit:
        return False
    return any(crossed(before, after, -(-limit * level // 100)) for level in CAP_LEVELS)


# --- Evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    level: int
    period: str
    active: bool
    message: str
    link: str
    data: dict


def _money(nano: int, account: Account) -> str:
    return format_amount(nano, account.currency)


def _conditions(account: Account, settings_row: AlertSettings, now: datetime) -> list[Condition]:
    """Every condition the account's rules watch, each rule's from its own builder. The order
    is the order alerts fire in (a pack's low alert before its expiry one)."""
    month = current_month(account=account, now=now)
    conditions = _balance_low(account, settings_row)
    if settings_row.caps:
        conditions += _project_caps(account, month)
        conditions += _account_budget(account, month)
    conditions += _daily_spike(account, settings_row, now)
    if settings_row.pack_low_percent or settings_row.pack_expiry_days:
        # Packs still in force, empty ones included: an empty pack is "low" until it expires.
        for pack in ResourcePack.objects.filter(account=account).unexpired(at=now):
            conditions += _pack_low(account, settings_row, pack)
            conditions += _pack_expiring(account, settings_row, pack, now)
    conditions += _plan(account, now)
    return conditions


def _local(moment: datetime, account: Account) -> str:
    local = timezone.localtime(moment, zoneinfo.ZoneInfo(account.time_zone))
    return local.strftime("%Y-%m-%d %H:%M")


_WINDOW_NAMES = {
    "5h": gettext_lazy("prompts in the rolling 5 hours"),
    "week": gettext_lazy("prompts in the rolling week"),
    "month": gettext_lazy("prompts this subscription month"),
    "mcp": gettext_lazy("MCP tool calls this subscription month"),
}


def _plan(account: Account, now: datetime) -> list[Condition]:
    """The coding plan's conditions: each window at 80 and 100% (the rolling ones re-arm
    when their use drops below; the month's are per subscription month), the renewal (or
    the end) within 3 days, once per period, and a plan that ended in the last 3 days."""
    link = reverse("plans:subscription")
    status = quota_status(account, now)
    if status is None:
        return _plan_ended(account, now, link)
    conditions = []
    for window in status.windows:
        monthly = window.name in ("month", "mcp")
        for level in PLAN_LEVELS:
            conditions.append(
                Condition(
                    kind=AlertFiring.Kind.PLAN_QUOTA,
                    subject=f"window:{window.name}",
                    level=level,
                    period=f"month-{status.month.index}" if monthly else "",
                    active=window.used * 100 >= window.limit * window.per_unit * level,
                    message=_(
                        "Your GLM Coding Plan has used %(percent)s%% of its %(window)s "
                        "(%(used)s of %(limit)s)."
                    )
                    % {
                        "percent": window.percent,
                        "window": _WINDOW_NAMES[window.name],
                        "used": f"{window.used_units:,}",
                        "limit": f"{window.limit:,}",
                    }
                    + (
                        " "
                        + _("It frees up from %(when)s.")
                        % {"when": _local(window.next_reset, account)}
                        if window.next_reset
                        else ""
                    ),
                    link=link,
                    data={
                        "window": window.name,
                        "used": str(window.used_units),
                        "limit": window.limit,
                    },
                )
            )
    subscription = status.subscription
    if subscription.auto_renew:
        wallet = Wallet.objects.filter(account=account).first()
        spendable = (wallet.recharge_nano + wallet.bonus_nano) if wallet else 0
        # The price of what will renew: a scheduled downgrade's plan at its price of that day.
        renewal = subscription_renewal(subscription)
        facts = {
            "date": _local(subscription.period_end, account),
            "price": _money(renewal.price_nano, account),
            "plan": renewal.plan.name,
        }
        if renewal.changes:
            message = (
                _(
                    "Your GLM Coding Plan changes to %(plan)s on %(date)s and renews for "
                    "%(price)s from your balance."
                )
                % facts
            )
        else:
            message = (
                _("Your GLM Coding Plan renews on %(date)s for %(price)s from your balance.")
                % facts
            )
        if spendable < renewal.price_nano:
            card = default_payment_method(account=account)
            if card is not None and card_chargeable(card):
                message += " " + _(
                    "Your balance (%(balance)s) does not cover it: your saved card %(card)s "
                    "will be charged."
                ) % {"balance": _money(spendable, account), "card": card}
            else:
                message += " " + _(
                    "Your balance (%(balance)s) does not cover it: recharge or save a card, "
                    "or the plan ends then."
                ) % {"balance": _money(spendable, account)}
    else:
        message = _("Your GLM Coding Plan ends on %(date)s: auto-renew is off.") % {
            "date": _local(subscription.period_end, account)
        }
    conditions.append(
        Condition(
            kind=AlertFiring.Kind.PLAN_RENEWAL,
            subject=f"subscription:{subscription.pk}",
            level=PLAN_NOTICE.days,
            period=subscription.period_end.date().isoformat(),
            active=now < subscription.period_end <= now + PLAN_NOTICE,
            message=message,
            link=link,
            data={
                "subscription_id": subscription.pk,
                "period_end": subscription.period_end.isoformat(),
            },
        )
    )
    return conditions


def _plan_ended(account: Account, now: datetime, link: str) -> list[Condition]:
    """The plan that ended in the last 3 days (an account without a plan in force)."""
    ended = (
        Subscription.objects.filter(account=account, ended_at__gte=now - PLAN_ENDED_NOTICE)
        .select_related("plan")
        .order_by("-ended_at")
        .first()
    )
    if ended is None:
        return []
    reasons = {
        "renewal_failed": _(
            "its renewal failed: neither the balance nor a saved card could pay %(price)s"
        ),
        "cancelled": _("auto-renew was off"),
    }
    reason = reasons.get(ended.end_reason, _("its paid period ended")) % {
        # What the failed renewal asked for: a scheduled downgrade's price, if one was due.
        "price": _money(subscription_renewal(ended).price_nano, account)
    }
    return [
        Condition(
            kind=AlertFiring.Kind.PLAN_ENDED,
            subject=f"subscription:{ended.pk}",
            level=0,
            period="",
            active=True,
            message=_("Your GLM Coding Plan %(plan)s ended on %(date)s: %(reason)s.")
            % {"plan": ended.plan.name, "date": _local(ended.ended_at, account), "reason": reason},
            link=link,
            data={"subscription_id": ended.pk, "reason": ended.end_reason},
        )
    ]


def _balance_low(account: Account, settings_row: AlertSettings) -> list[Condition]:
    """The spendable balance (recharge and bonus) below the account's threshold."""
    threshold = settings_row.balance_below_nano
    if not threshold:
        return []
    wallet = Wallet.objects.filter(account=account).first()
    spendable = (wallet.recharge_nano + wallet.bonus_nano) if wallet else 0
    return [
        Condition(
            kind=AlertFiring.Kind.BALANCE_LOW,
            subject="",
            level=0,
            period="",
            active=spendable < threshold,
            message=_("The balance of %(account)s is %(balance)s, below %(threshold)s.")
            % {
                "account": account.name,
                "balance": _money(spendable, account),
                "threshold": _money(threshold, account),
            },
            link=reverse("billing:index"),
            data={
                "balance": decimal_string(spendable),
                "threshold": decimal_string(threshold),
                "currency": account.currency,
            },
        )
    ]


def _project_caps(account: Account, month: date) -> list[Condition]:
    """Each capped project at each level of its monthly cap."""
    spent_by_project = project_month_spend(account=account, month=month)
    conditions = []
    for project in account.projects.filter(
        archived_at__isnull=True, monthly_cap_nano__isnull=False
    ):
        spent = spent_by_project.get(project.pk, 0)
        for level in CAP_LEVELS:
            conditions.append(
                Condition(
                    kind=AlertFiring.Kind.PROJECT_CAP,
                    subject=f"project:{project.pk}",
                    level=level,
                    period=month.strftime("%Y-%m"),
                    active=spent * 100 >= project.monthly_cap_nano * level,
                    message=_(
                        "Project %(project)s has spent %(spent)s this month: %(level)s%% "
                        "of its cap of %(cap)s."
                    )
                    % {
                        "project": project.name,
                        "spent": _money(spent, account),
                        "level": level,
                        "cap": _money(project.monthly_cap_nano, account),
                    },
                    link=reverse("projects:detail", args=[project.pk]),
                    data={
                        "project_id": project.pk,
                        "spent": decimal_string(spent),
                        "cap": decimal_string(project.monthly_cap_nano),
                        "currency": account.currency,
                        "level": level,
                    },
                )
            )
    return conditions


def _account_budget(account: Account, month: date) -> list[Condition]:
    """The account at each level of its monthly budget."""
    budget = account.monthly_budget_nano
    if not budget:
        return []
    spent = account_month_spend(account=account, month=month)
    return [
        Condition(
            kind=AlertFiring.Kind.ACCOUNT_BUDGET,
            subject="",
            level=level,
            period=month.strftime("%Y-%m"),
            active=spent * 100 >= budget * level,
            message=_(
                "%(account)s has spent %(spent)s this month: %(level)s%% of its "
                "budget of %(budget)s."
            )
            % {
                "account": account.name,
                "spent": _money(spent, account),
                "level": level,
                "budget": _money(budget, account),
            },
            link=reverse("projects:list"),
            data={
                "spent": decimal_string(spent),
                "budget": decimal_string(budget),
                "currency": account.currency,
                "level": level,
            },
        )
        for level in CAP_LEVELS
    ]


def _daily_spike(account: Account, settings_row: AlertSettings, now: datetime) -> list[Condition]:
    """Today's spend against N times the daily average of the 7 days before."""
    if not settings_row.spike_tenths:
        return []
    today = local_today(account, now)
    *week, (_today, today_spend) = daily_fees(account=account, last=today, days=SPIKE_DAYS + 1)
    before = sum(fee for _day, fee in week)
    # today > N/10 × (before / 7), in integers; nothing before means nothing to compare.
    active = before > 0 and today_spend * 10 * SPIKE_DAYS > settings_row.spike_tenths * before
    return [
        Condition(
            kind=AlertFiring.Kind.DAILY_SPIKE,
            subject="",
            level=0,
            period=today.isoformat(),
            # A spike is a day's event: once sent, it stays sent for that day.
            active=active or _already_fired(account, AlertFiring.Kind.DAILY_SPIKE, today),
            message=_(
                "%(account)s has spent %(today)s today, more than %(times)s times its "
                "daily average of %(average)s over the last 7 days."
            )
            % {
                "account": account.name,
                "today": _money(today_spend, account),
                "times": f"{settings_row.spike_tenths / 10:g}",
                "average": _money(before // SPIKE_DAYS, account),
            },
            link=reverse("usage:index"),
            data={
                "today": decimal_string(today_spend),
                "average": decimal_string(before // SPIKE_DAYS),
                "currency": account.currency,
            },
        )
    ]


def _pack_low(account: Account, settings_row: AlertSettings, pack: ResourcePack) -> list[Condition]:
    """The pack below P% of its tokens."""
    percent = settings_row.pack_low_percent
    if not percent:
        return []
    return [
        Condition(
            kind=AlertFiring.Kind.PACK_LOW,
            subject=f"pack:{pack.pk}",
            level=percent,
            period="",
            active=pack.tokens_remaining * 100 < pack.tokens_total * percent,
            message=_("Resource pack %(pack)s has %(left)s of %(total)s tokens left.")
            % {
                "pack": pack.name,
                "left": f"{pack.tokens_remaining:,}",
                "total": f"{pack.tokens_total:,}",
            },
            link=reverse("billing:packs"),
            data={"pack_id": pack.pk, "tokens_remaining": pack.tokens_remaining},
        )
    ]


def _pack_expiring(
    account: Account, settings_row: AlertSettings, pack: ResourcePack, now: datetime
) -> list[Condition]:
    """The pack expiring within D days with tokens left."""
    days = settings_row.pack_expiry_days
    if not days:
        return []
    return [
        Condition(
            kind=AlertFiring.Kind.PACK_EXPIRING,
            subject=f"pack:{pack.pk}",
            level=days,
            period="",
            active=pack.tokens_remaining > 0 and pack.expires_at <= now + timedelta(days=days),
            message=_("Resource pack %(pack)s expires on %(date)s with %(left)s tokens left.")
            % {
                "pack": pack.name,
                "date": timezone.localtime(
                    pack.expires_at, zoneinfo.ZoneInfo(account.time_zone)
                ).date(),
                "left": f"{pack.tokens_remaining:,}",
            },
            link=reverse("billing:packs"),
            data={"pack_id": pack.pk, "expires_at": pack.expires_at.isoformat()},
        )
    ]


def _already_fired(account: Account, kind: str, day) -> bool:
    return AlertFiring.objects.filter(account=account, kind=kind, period=day.isoformat()).exists()


def _apply(account, settings_row, condition: Condition, now) -> AlertFiring | None:
    """Fire an armed condition that became true (once: the unique constraint), or clear an
    open one that became false (re-arming it)."""
    key = {
        "account": account,
        "kind": condition.kind,
        "subject": condition.subject,
        "level": condition.level,
        "period": condition.period,
    }
    open_firing = AlertFiring.objects.filter(**key, cleared_at__isnull=True).first()
    if not condition.active:
        if open_firing is not None:
            AlertFiring.objects.filter(pk=open_firing.pk, cleared_at__isnull=True).update(
                cleared_at=now
            )
        return None
    if open_firing is not None:
        return None
    # The next crossing after the cleared ones: two evaluations that both saw no open firing
    # compute the same number, even if one commits between the other's reads, and the unique
    # constraint lets one of them through.
    sequence = AlertFiring.objects.filter(**key, cleared_at__isnull=False).count() + 1
    try:
        with transaction.atomic():
            if condition.kind == AlertFiring.Kind.BALANCE_LOW and not _still_low(
                account, settings_row
            ):
                return None  # a recharge committed since the condition was read
            firing = AlertFiring.objects.create(
                **key, sequence=sequence, message=condition.message[:300], fired_at=now
            )
            notify(
                account=account,
                event_type=f"alert.{condition.kind}",
                event_id=f"alert-{firing.pk}",
                title=str(AlertFiring.Kind(condition.kind).label),
                body=condition.message,
                link=condition.link,
                data={**condition.data, "level": condition.level, "period": condition.period},
                email=settings_row.email,
                in_app=settings_row.in_app,
                webhook=settings_row.webhook,
            )
    except IntegrityError:
        return None  # a concurrent evaluation sent this one
    log.info("alert fired: account=%s %s", account.pk, firing)
    return firing


def _still_low(account: Account, settings_row: AlertSettings) -> bool:
    """The balance condition again, with the wallet locked: a recharge (which locks it too)
    either committed before, and the alert is not sent, or waits until it is."""
    wallet = Wallet.objects.select_for_update().filter(account=account).first()
    spendable = (wallet.recharge_nano + wallet.bonus_nano) if wallet else 0
    return spendable < (settings_row.balance_below_nano or 0)


def _condition_key(kind, subject, level, period) -> tuple:
    return (kind, subject, level, period)


def alerts_evaluate(*, account: Account, now: datetime | None = None) -> list[AlertFiring]:
    """Evaluate every alert of `account`: fire what crossed, re-arm what cleared. Idempotent:
    a second run sends nothing. Open firings that no current condition speaks for (a past
    month or day, a closed pack, an archived project, a rule switched off) are closed too,
    so open firings stay few and a rule switched back on starts armed."""
    now = now or timezone.now()
    settings_row = alert_settings_for(account)
    fired = []
    current = set()
    for condition in _conditions(account, settings_row, now):
        current.add(
            _condition_key(condition.kind, condition.subject, condition.level, condition.period)
        )
        firing = _apply(account, settings_row, condition, now)
        if firing is not None:
            fired.append(firing)
    stale = [
        firing.pk
        for firing in AlertFiring.objects.filter(account=account, cleared_at__isnull=True)
        if _condition_key(firing.kind, firing.subject, firing.level, firing.period) not in current
    ]
    if stale:
        AlertFiring.objects.filter(pk__in=stale, cleared_at__isnull=True).update(cleared_at=now)
    return fired


def alerts_sweep(*, now: datetime | None = None) -> int:
    """The safety net: every account with usage today (in UTC terms: yesterday and today
    cover every time zone) or an open alert. Returns how many alerts it sent."""
    now = now or timezone.now()
    active = set(
        UsageDaily.objects.filter(day__gte=(now - timedelta(days=1)).date()).values_list(
            "account_id", flat=True
        )
    )
    active |= set(
        AlertFiring.objects.filter(cleared_at__isnull=True).values_list("account_id", flat=True)
    )
    active |= set(
        AlertSettings.objects.filter(balance_below_nano__isnull=False).values_list(
            "account_id", flat=True
        )
    )
    # Packs expire with no usage at all: an idle account is exactly who needs the warning.
    # Each pack counts until its expiry alert has gone out (then the anti-join drops it).
    expiring = (
        ResourcePack.objects.open(at=now)
        .filter(expires_at__lte=now + timedelta(days=MAX_EXPIRY_DAYS))
        .exclude(
            pk__in=AlertFiring.objects.filter(kind=AlertFiring.Kind.PACK_EXPIRING)
            .annotate(pack_id=Cast(Substr("subject", 6), BigIntegerField()))
            .values("pack_id")
        )
    )
    active |= set(expiring.values_list("account_id", flat=True))
    # Coding plans renewing or ending within the notice, or ended recently: idle accounts too.
    active |= set(
        Subscription.objects.filter(
            ended_at__isnull=True, period_end__lte=now + PLAN_NOTICE
        ).values_list("account_id", flat=True)
    )
    active |= set(
        Subscription.objects.filter(ended_at__gte=now - PLAN_ENDED_NOTICE).values_list(
            "account_id", flat=True
        )
    )
    sent = 0
    for account in Account.objects.filter(pk__in=active).select_related("tier"):
        try:
            sent += len(alerts_evaluate(account=account, now=now))
        except Exception:
            # One account's failure (a notify error, bad data) must not starve the others.
            log.exception("alerts sweep: account %s failed", account.pk)
    return sent


def recent_firings(*, account: Account, limit: int = 50):
    return AlertFiring.objects.filter(account=account).order_by("-fired_at", "-pk")[:limit]
