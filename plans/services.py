"""Buying and keeping a coding plan (issue 22). This step: a plan bought from the wallet.

Paying from the wallet is a purchase like a resource pack's (billing's
`balance_purchase_prepare` / `_record`): the wallet is locked first, the price is split
between recharge and bonus by the proportional rule, a ledger entry of its own kind
(`plan_purchase`) records it, and a balance that cannot pay refuses with nothing changed.
Packs never pay for plans, and a plan purchase is not usage: no month spend counter, cap or
budget sees it.
"""

import calendar
import zoneinfo
from datetime import datetime, time, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from billing.models import LedgerEntry
from billing.services import balance_purchase_prepare, balance_purchase_record
from console.models import Account, User
from console.services import ServiceError, audit_record
from plans.models import PERIOD_MONTHS, Period, Plan, PlanTerm, Subscription
from plans.selectors import plan_limits, plan_price, subscription_current

# New subscriptions are counted per sales day, which starts at 10:00 Beijing time (001).
SALES_DAY_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
SALES_DAY_STARTS = time(10, 0)


def add_months(moment: datetime, months: int) -> datetime:
    """The same wall-clock time `months` calendar months later, on the last day of the month
    where that month is shorter (31 January + 1 month = 28 or 29 February)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(*, account: Account, start: datetime, period: str) -> datetime:
    """Where a period bought at `start` ends: calendar months in the account's time zone."""
    local = timezone.localtime(start, zoneinfo.ZoneInfo(account.time_zone))
    return add_months(local, PERIOD_MONTHS[period]).astimezone(start.tzinfo)


def sales_day(at: datetime) -> tuple[datetime, datetime]:
    """The sales day holding `at`: from the last 10:00 Beijing time to the next."""
    local = timezone.localtime(at, SALES_DAY_ZONE)
    start = local.replace(
        hour=SALES_DAY_STARTS.hour, minute=SALES_DAY_STARTS.minute, second=0, microsecond=0
    )
    if local < start:
        start -= timedelta(days=1)
    return start, start + timedelta(days=1)


def _check_sales_limit(*, plan: Plan, at: datetime, account: Account) -> None:
    """Refuse a new subscription past the plan's daily limit (renewals never count). The
    plan's row is locked while counting, so two buyers of the last place cannot both get it."""
    limits = plan_limits(plan=plan, at=at)
    if limits is None or limits.daily_new_subscriptions is None:
        return
    Plan.objects.select_for_update().filter(pk=plan.pk).first()
    start, end = sales_day(at)
    sold = PlanTerm.objects.filter(
        plan=plan, kind=PlanTerm.Kind.PURCHASE, created_at__gte=start, created_at__lt=end
    ).count()
    if sold >= limits.daily_new_subscriptions:
        reopens = timezone.localtime(end, zoneinfo.ZoneInfo(account.time_zone))
        raise ServiceError(
            _("Today's new subscriptions to %(plan)s are sold out. Sales reopen at %(time)s.")
            % {"plan": plan.name, "time": date_format(reopens, "DATETIME_FORMAT")}
        )


def plan_subscribe(
    *,
    account: Account,
    plan: Plan,
    period: str,
    actor: User | None,
    now: datetime | None = None,
) -> Subscription:
    """Buy `period` of `plan` from the balance at today's price, for an account without a
    plan. Refused, changing nothing: a period or currency the plan is not sold in, an account
    that has a plan, a sold-out sales day, a balance that cannot pay."""
    if period not in Period.values:
        raise ServiceError(_("Choose monthly, quarterly or yearly."))
    now = now or timezone.now()
    price = plan_price(plan=plan, period=period, currency=account.currency, at=now)
    if price is None:
        raise ServiceError(_("This plan is not on sale in your account's currency."))
    with transaction.atomic():
        # The wallet lock first: it serialises everything that moves this account's money,
        # so two purchases for one account run one after the other.
        wallet, parts = balance_purchase_prepare(
            account=account,
            price_nano=price.amount_nano,
            refusal=_("Your balance is too low to buy this plan. Recharge first."),
        )
        current = subscription_current(account=account)
        if current is not None:
            if current.period_end > now:
                raise ServiceError(
                    _("Your account already has a coding plan: upgrade it, or wait for it to end.")
                )
            # Its paid period ran out and nothing renewed it: it lapsed then.
            current.ended_at, current.end_reason = current.period_end, "lapsed"
            current.save(update_fields=["ended_at", "end_reason"])
        _check_sales_limit(plan=plan, at=now, account=account)
        end = period_end(account=account, start=now, period=period)
        subscription = Subscription.objects.create(
            account=account,
            plan=plan,
            period=period,
            currency=account.currency,
            price_nano=price.amount_nano,
            started_at=now,
            period_start=now,
            period_end=end,
        )
        entry = balance_purchase_record(
            account=account,
            wallet=wallet,
            parts=parts,
            kind=LedgerEntry.Kind.PLAN_PURCHASE,
            actor=actor,
            at=now,
            reference=f"plan-{subscription.pk}",
            metadata={"plan": plan.code, "period": period, "subscription": subscription.pk},
        )
        PlanTerm.objects.create(
            subscription=subscription,
            plan=plan,
            kind=PlanTerm.Kind.PURCHASE,
            starts_at=now,
            ends_at=end,
            amount_nano=price.amount_nano,
            ledger_entry=entry,
            created_at=now,
        )
        audit_record(
            action="plans.subscribe",
            account=account,
            actor=actor,
            target=subscription,
            metadata={"plan": plan.code, "period": period, "price_nano": price.amount_nano},
        )
    return subscription
