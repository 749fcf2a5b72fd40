"""Buying and keeping a coding plan (issue 22): bought from the wallet, renewed, ended.

Paying from the wallet is a purchase like a resource pack's (billing's `wallet_lock`,
`balance_purchase_split`, `balance_purchase_record`): the wallet is locked first, the price
is split between recharge and bonus by the proportional rule, a ledger entry of its own kind
(`plan_purchase`) records it, and a balance that cannot pay refuses with nothing changed.
Packs never pay for plans, and a plan purchase is not usage: no month spend counter, cap or
budget sees it."""

import calendar
import logging
import zoneinfo
from datetime import datetime, time, timedelta

from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from billing.models import LedgerEntry, Payment, PaymentMethod
from billing.payments import card_chargeable, default_payment_method, payment_start_purchase
from billing.selectors import paid_totals
from billing.services import (
    balance_purchase_record,
    balance_purchase_split,
    card_purchase_record,
    purchase_return,
    wallet_lock,
)
from console.models import Account, AuditEvent, User
from console.services import ServiceError, audit_record
from plans.models import PERIOD_MONTHS, Period, Plan, PlanTerm, Subscription
from plans.selectors import (
    plan_limits,
    plan_price,
    subscription_current,
    subscription_renewal,
)

logger = logging.getLogger(__name__)

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


def _months_later(*, account: Account, start: datetime, months: int) -> datetime:
    """`months` calendar months after `start` in the account's time zone."""
    local = timezone.localtime(start, zoneinfo.ZoneInfo(account.time_zone))
    return add_months(local, months).astimezone(start.tzinfo)


def period_end(*, account: Account, start: datetime, period: str, count: int = 1) -> datetime:
    """Where `count` periods from `start` end: calendar months in the account's time zone,
    always counted from `start` (a plan bought on 31 January renews on 28 February, then 31
    March, not 28 March; a wall-clock time a DST change skipped does not shift later ones)."""
    return _months_later(account=account, start=start, months=PERIOD_MONTHS[period] * count)


def _months_paid(subscription: Subscription) -> int:
    """How many calendar months of the schedule (counted from `started_at`) the paid period
    reaches: its end lies on that grid, whatever periods paid for it (a scheduled change can
    switch monthly to yearly at a renewal; a staff extension moves both ends)."""
    zone = zoneinfo.ZoneInfo(subscription.account.time_zone)
    started = timezone.localtime(subscription.started_at, zone)
    end = timezone.localtime(subscription.period_end, zone)
    months = (end.year - started.year) * 12 + end.month - started.month
    # The nearest month of the grid: a time a DST change skipped can put the end an hour off.
    return min((months - 1, months, months + 1), key=lambda n: abs(add_months(started, n) - end))


def _period_holding(subscription: Subscription, at: datetime) -> tuple[datetime, datetime]:
    """The period of `subscription`'s schedule (counted from its first purchase) that holds
    `at`: where a renewal due at `at` starts and ends. The periods follow on from the paid
    one in steps of the subscription's period, so a period changed at a renewal keeps the day
    of the month the plan was bought on. After an outage of the renewal job longer than a
    period, the periods that passed unpaid are skipped, not charged."""
    account, started = subscription.account, subscription.started_at
    paid, step = _months_paid(subscription), PERIOD_MONTHS[subscription.period]
    count = 1
    while (end := _months_later(account=account, start=started, months=paid + step * count)) <= at:
        count += 1
    start = _months_later(account=account, start=started, months=paid + step * (count - 1))
    return max(start, subscription.period_end), end


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


def _subscription_start(
    *, account: Account, plan: Plan, period: str, price_nano: int, now, auto_renew: bool = True
) -> Subscription:
    """A new subscription whose first period starts `now` (bought or granted)."""
    return Subscription.objects.create(
        account=account,
        plan=plan,
        period=period,
        currency=account.currency,
        price_nano=price_nano,
        auto_renew=auto_renew,
        started_at=now,
        period_start=now,
        period_end=period_end(account=account, start=now, period=period),
    )


def _paid_term(
    subscription: Subscription,
    *,
    wallet=None,
    parts: tuple[int, int] = (0, 0),
    payment: Payment | None = None,
    kind: str,
    starts,
    ends,
    actor: User | None,
    now,
    reference: str,
    metadata: dict,
) -> PlanTerm:
    """A term and the plan purchase ledger entry that paid it: by card (`payment`, settled)
    or from the balance (`parts`). A term that cost nothing (a free upgrade, what staff
    gave) has no entry."""
    amount = payment.amount_nano if payment else sum(parts)
    recorded = {
        "kind": LedgerEntry.Kind.PLAN_PURCHASE,
        "account": subscription.account,
        "actor": actor,
        "at": now,
        "reference": reference,
        "metadata": {
            "period": subscription.period,
            **metadata,
            "subscription": subscription.pk,
            # What the purchase's receipt prints: billing, below plans, reads it here.
            "plan_name": subscription.plan.name,
            "term": kind,
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
        },
    }
    entry = None
    if payment is not None:
        entry = card_purchase_record(
            payment_reference=payment.reference, amount_nano=amount, **recorded
        )
    elif amount:
        entry = balance_purchase_record(wallet=wallet, parts=parts, **recorded)
    return PlanTerm.objects.create(
        subscription=subscription,
        plan=subscription.plan,
        kind=kind,
        starts_at=starts,
        ends_at=ends,
        amount_nano=amount,
        ledger_entry=entry,
        created_at=now,
    )


def _subscribable(*, account: Account, plan: Plan, period: str, now: datetime) -> int:
    """What a new subscription to `plan` for `period` costs the account today, or the
    reason it cannot be bought (ServiceError). Before the wallet lock: it reads no money."""
    if period not in Period.values:
        raise ServiceError(_("Choose monthly, quarterly or yearly."))
    price = plan_price(plan=plan, period=period, currency=account.currency, at=now)
    if price is None:
        raise ServiceError(_("This plan is not on sale in your account's currency."))
    return price.amount_nano


def _check_no_plan(*, account: Account, plan: Plan, now: datetime) -> None:
    """Under the wallet lock: refuse an account that has a plan, or a sold-out sales day.
    A plan found past its paid period with nothing renewing it is ended first, as the
    renewal job would have."""
    current = subscription_current(account=account)
    if current is not None:
        if current.period_end > now:
            raise ServiceError(
                _("Your account already has a coding plan: upgrade it, or wait for it to end.")
            )
        _end(current, reason="lapsed" if current.auto_renew else "cancelled")
    _check_sales_limit(plan=plan, at=now, account=account)


def _start_paid(
    *,
    account: Account,
    plan: Plan,
    period: str,
    price_nano: int,
    actor: User | None,
    now: datetime,
    wallet=None,
    parts: tuple[int, int] = (0, 0),
    payment: Payment | None = None,
) -> Subscription:
    subscription = _subscription_start(
        account=account, plan=plan, period=period, price_nano=price_nano, now=now
    )
    _paid_term(
        subscription,
        wallet=wallet,
        parts=parts,
        payment=payment,
        kind=PlanTerm.Kind.PURCHASE,
        starts=now,
        ends=subscription.period_end,
        actor=actor,
        now=now,
        reference=f"plan-{subscription.pk}",
        metadata={"plan": plan.code, "period": period},
    )
    audit_record(
        action="plans.subscribe",
        account=account,
        actor=actor,
        target=subscription,
        metadata={
            "plan": plan.code,
            "period": period,
            "price_nano": price_nano,
            "paid_by": "card" if payment else "balance",
        },
    )
    return subscription


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
    now = now or timezone.now()
    price_nano = _subscribable(account=account, plan=plan, period=period, now=now)
    with transaction.atomic():
        # The wallet lock first: it serialises everything that moves this account's money,
        # so two purchases for one account run one after the other.
        wallet = wallet_lock(account)
        _check_no_plan(account=account, plan=plan, now=now)
        parts = balance_purchase_split(
            wallet=wallet,
            price_nano=price_nano,
            refusal=_("Your balance is too low to buy this plan. Recharge first."),
        )
        return _start_paid(
            account=account,
            plan=plan,
            period=period,
            price_nano=price_nano,
            actor=actor,
            now=now,
            wallet=wallet,
            parts=parts,
        )


def plan_subscribe_by_card(
    *,
    account: Account,
    plan: Plan,
    period: str,
    card: PaymentMethod,
    actor: User | None,
    now: datetime | None = None,
) -> Payment:
    """Buy `period` of `plan` with a saved card at today's price: a card payment for the
    plan (billing's `payment_start_purchase`: not a recharge, so no promotion bonus and no
    tier promotion). The plan starts when the payment succeeds (at once, or when a pending
    payment is confirmed: `plan_paid`). Returns the payment. Refused before any charge for
    the same reasons as from the balance (the balance itself is not looked at)."""
    now = now or timezone.now()
    price_nano = _subscribable(account=account, plan=plan, period=period, now=now)
    with transaction.atomic():
        wallet_lock(account)
        _check_no_plan(account=account, plan=plan, now=now)
    return payment_start_purchase(
        account=account,
        card=card,
        amount_nano=price_nano,
        purchase={"kind": "purchase", "plan": plan.code, "period": period},
        actor=actor,
    )


def plan_paid(sender, *, payment: Payment, at: datetime, **kwargs) -> LedgerEntry | None:
    """billing's `purchase_paid` receiver: deliver what a card payment for a plan bought (a
    new subscription, a renewal, an upgrade), or refuse (ServiceError) when it can no longer
    be delivered: billing then credits the payment to the balance. Re-checks everything under
    the wallet lock: a pending payment can be confirmed long after it was started."""
    if payment.purpose != Payment.Purpose.PLAN:
        return None
    account, purchase = payment.account, payment.purchase
    kind = purchase.get("kind")
    if kind == "renewal":
        outcome, term = _renew(purchase["subscription"], now=at, payment=payment)
        if term is None:
            raise ServiceError(_("The plan was no longer due for renewal (%s).") % outcome)
        return term.ledger_entry
    wallet_lock(account)
    plan = Plan.objects.get(code=purchase["plan"])
    if kind == "purchase":
        _check_no_plan(account=account, plan=plan, now=at)
        subscription = _start_paid(
            account=account,
            plan=plan,
            period=purchase["period"],
            price_nano=payment.amount_nano,
            actor=payment.created_by,
            now=at,
            payment=payment,
        )
        return subscription.terms.get().ledger_entry
    if kind == "upgrade":
        subscription = _locked_in_force(account, at)
        if subscription.pk != purchase["subscription"] or subscription.plan.code != purchase.get(
            "from_plan"
        ):
            raise ServiceError(_("The plan changed while the payment was confirmed."))
        _charge, new_price = upgrade_price(subscription=subscription, plan=plan, now=at)
        return _apply_upgrade(
            subscription,
            plan=plan,
            new_price=new_price,
            charge=payment.amount_nano,
            actor=payment.created_by,
            now=at,
            payment=payment,
        ).ledger_entry
    raise ServiceError(_("Nothing here sells this purchase."))


def upgrade_price(*, subscription: Subscription, plan: Plan, now: datetime) -> tuple[int, int]:
    """What moving `subscription` to the higher `plan` costs at `now`: (the prorated charge,
    the new plan's price per period). The charge is the difference between the new plan's
    price today and the price locked in, times the share of the paid period still to run,
    to the nano (rounded half up); never below zero. Raises ServiceError for a plan that is
    not higher or not on sale in the subscription's period and currency."""
    if plan.rank <= subscription.plan.rank:
        raise ServiceError(
            _("Choose a higher plan: a lower one takes effect when the paid period ends.")
        )
    price = plan_price(
        plan=plan, period=subscription.period, currency=subscription.currency, at=now
    )
    if price is None:
        raise ServiceError(_("This plan is not on sale in your account's currency."))
    # Whole microseconds, so the share is exact: (difference × left) / total, half up.
    microsecond = timedelta(microseconds=1)
    total_us = (subscription.period_end - subscription.period_start) // microsecond
    left_us = max((subscription.period_end - now) // microsecond, 0)
    difference = max(price.amount_nano - subscription.price_nano, 0)
    charge = (difference * left_us * 2 + total_us) // (2 * total_us) if total_us else 0
    return charge, price.amount_nano


def _locked_in_force(account: Account, now: datetime) -> Subscription:
    """The account's plan in force, its row locked (the caller holds the wallet lock)."""
    subscription = _locked_current(account)
    if subscription is None or subscription.period_end <= now:
        raise ServiceError(_("Your account has no coding plan in force to upgrade."))
    return subscription


def _apply_upgrade(
    subscription: Subscription,
    *,
    plan: Plan,
    new_price: int,
    charge: int,
    actor: User | None,
    now: datetime,
    wallet=None,
    parts: tuple[int, int] = (0, 0),
    payment: Payment | None = None,
) -> PlanTerm:
    before = subscription.plan
    # A downgrade scheduled from the old plan no longer says what the subscriber wants: the
    # upgrade is the newer choice, so it cancels the schedule.
    cleared = subscription.next_plan.code if subscription.next_plan_id else None
    subscription.plan = plan
    subscription.price_nano = new_price
    subscription.next_plan, subscription.next_period = None, ""
    subscription.save(update_fields=["plan", "price_nano", "next_plan", "next_period"])
    term = _paid_term(
        subscription,
        wallet=wallet,
        parts=parts,
        payment=payment,
        kind=PlanTerm.Kind.UPGRADE,
        starts=now,
        ends=subscription.period_end,
        actor=actor,
        now=now,
        reference=f"plan-{subscription.pk}-upgrade-{now:%Y%m%d%H%M%S%f}",
        metadata={"plan": plan.code, "from_plan": before.code},
    )
    audit_record(
        action="plans.upgrade",
        account=subscription.account,
        actor=actor,
        target=subscription,
        metadata={
            "from": before.code,
            "to": plan.code,
            "charge_nano": charge,
            "paid_by": "card" if payment else "balance",
            **({"cleared_schedule": cleared} if cleared else {}),
        },
    )
    return term


def plan_upgrade(
    *, account: Account, plan: Plan, actor: User | None, now: datetime | None = None
) -> Subscription:
    """Move the account's plan to a higher one at once: the prorated difference is paid from
    the balance (a plan purchase, like the first), the new limits apply to the next request,
    and the use already counted in each window stays counted (the windows are the
    subscription's). Renewals then charge the new plan's price of today."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet = wallet_lock(account)
        subscription = _locked_in_force(account, now)
        charge, new_price = upgrade_price(subscription=subscription, plan=plan, now=now)
        parts = balance_purchase_split(
            wallet=wallet,
            price_nano=charge,
            refusal=_("Your balance is too low for this upgrade. Recharge first."),
        )
        _apply_upgrade(
            subscription,
            plan=plan,
            new_price=new_price,
            charge=charge,
            actor=actor,
            now=now,
            wallet=wallet,
            parts=parts,
        )
    return subscription


def plan_upgrade_by_card(
    *,
    account: Account,
    plan: Plan,
    card: PaymentMethod,
    actor: User | None,
    now: datetime | None = None,
) -> Payment | None:
    """Upgrade, paying the prorated difference with a saved card: the upgrade happens when
    the payment succeeds (`plan_paid`), at the amount quoted when it started. Returns the
    payment, or None when the upgrade costs nothing (done at once, no card charged)."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet_lock(account)
        subscription = _locked_in_force(account, now)
        charge, _new_price = upgrade_price(subscription=subscription, plan=plan, now=now)
        if not charge:
            plan_upgrade(account=account, plan=plan, actor=actor, now=now)
            return None
    return payment_start_purchase(
        account=account,
        card=card,
        amount_nano=charge,
        purchase={
            "kind": "upgrade",
            "subscription": subscription.pk,
            "plan": plan.code,
            "from_plan": subscription.plan.code,
        },
        actor=actor,
    )


def plan_set_auto_renew(*, account: Account, on: bool, actor: User | None) -> Subscription:
    """Cancel (auto-renew off: the plan runs to the end of the paid period, no refund) or
    resume (auto-renew on again) the account's plan."""
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update()
            .filter(account=account, ended_at__isnull=True)
            .first()
        )
        if subscription is None:
            raise ServiceError(_("Your account has no coding plan."))
        if subscription.auto_renew != on:
            subscription.auto_renew = on
            subscription.save(update_fields=["auto_renew"])
            audit_record(
                action="plans.resume" if on else "plans.cancel",
                account=account,
                actor=actor,
                target=subscription,
                metadata={"period_end": subscription.period_end.isoformat()},
            )
    return subscription


def plan_downgrade_schedule(
    *,
    account: Account,
    plan: Plan,
    period: str | None = None,
    actor: User | None,
    now: datetime | None = None,
) -> Subscription:
    """Schedule a move to the lower `plan` (and `period`: the current one when not given) at
    the renewal that ends the paid period. Until then nothing changes; the renewal buys the
    new plan at its price of that day, which is then locked in (plan_renew). Choosing again
    replaces the schedule. Refused, changing nothing: no plan in force, the current plan, a
    higher one (an upgrade, at once), a plan or period not on sale in the account's currency."""
    now = now or timezone.now()
    with transaction.atomic():
        # The subscription's row only: no money moves; the renewal takes the same row lock,
        # so a schedule lands before a renewal reads it or after it renewed.
        subscription = _locked_current(account)
        if subscription is None or subscription.period_end <= now:
            raise ServiceError(_("Your account has no coding plan in force to change."))
        period = period or subscription.period
        if period not in Period.values:
            raise ServiceError(_("Choose monthly, quarterly or yearly."))
        if plan.pk == subscription.plan_id:
            raise ServiceError(_("You are on this plan already."))
        if plan.rank > subscription.plan.rank:
            raise ServiceError(_("A higher plan is an upgrade: it applies at once."))
        if plan_price(plan=plan, period=period, currency=subscription.currency, at=now) is None:
            raise ServiceError(_("This plan is not on sale in your account's currency."))
        if (subscription.next_plan_id, subscription.next_period) == (plan.pk, period):
            return subscription  # scheduled already: nothing to write
        subscription.next_plan, subscription.next_period = plan, period
        subscription.save(update_fields=["next_plan", "next_period"])
        audit_record(
            action="plans.downgrade_schedule",
            account=account,
            actor=actor,
            target=subscription,
            metadata={
                "from": subscription.plan.code,
                "to": plan.code,
                "period": period,
                "at": subscription.period_end.isoformat(),
            },
        )
    return subscription


def plan_downgrade_cancel(*, account: Account, actor: User | None) -> Subscription:
    """Drop the scheduled change: the plan renews as it is, at the price locked in."""
    with transaction.atomic():
        subscription = _locked_current(account)
        if subscription is None:
            raise ServiceError(_("Your account has no coding plan."))
        if subscription.next_plan_id is None:
            raise ServiceError(_("No plan change is scheduled."))
        dropped = subscription.next_plan.code
        subscription.next_plan, subscription.next_period = None, ""
        subscription.save(update_fields=["next_plan", "next_period"])
        audit_record(
            action="plans.downgrade_cancel",
            account=account,
            actor=actor,
            target=subscription,
            metadata={"to": dropped},
        )
    return subscription


def plan_renew(*, subscription_id: int, now: datetime | None = None) -> str:
    """Renew one subscription whose paid period has ended, or end it. Idempotent: a renewed
    subscription's period moves on, so a second run finds nothing due. Returns what it did:
    "renewed", "cancelled" (auto-renew was off), "renewal_failed" (neither the balance nor
    the saved card could pay), "card_pending" (the card payment awaits its confirmation),
    or "not_due".

    Renewal pays the price locked in at the first purchase (grandfathered): from the
    balance like any purchase, else from the account's default saved card. A scheduled
    downgrade is bought instead, at its price of the renewal date, which is then locked in
    (`subscription_renewal`). A plan that cannot be renewed ends at its period's end, not at
    the job's run."""
    now = now or timezone.now()
    outcome, _term = _renew(subscription_id, now=now)
    if not isinstance(outcome, PaymentMethod):
        return outcome
    # The balance cannot pay and a saved card may: charged with no transaction open (the
    # provider may take seconds). The payment's reference names the period, so a second
    # run of the job charges nothing: it finds this payment.
    subscription = Subscription.objects.select_related("account").get(pk=subscription_id)
    renewal = subscription_renewal(subscription)  # a scheduled downgrade's plan and price
    try:
        payment = payment_start_purchase(
            account=subscription.account,
            card=outcome,
            amount_nano=renewal.price_nano,
            purchase={
                "kind": "renewal",
                "subscription": subscription.pk,
                "plan": renewal.plan.code,
                "period": renewal.period,
            },
            actor=None,
            reference=_renewal_payment_reference(subscription),
        )
    except IntegrityError:
        return "card_pending"  # another run started this period's payment
    if payment.is_pending:
        return "card_pending"
    if payment.ledger_entry_id and not payment.failure_message:
        return "renewed"
    return _renew(subscription_id, now=now)[0]  # declined: the plan ends


def _renewal_payment_reference(subscription: Subscription) -> str:
    return f"planrn-{subscription.pk}-{subscription.period_end:%Y%m%d%H%M%S}"


def _renewal_card(subscription: Subscription) -> PaymentMethod | str | None:
    """Where a renewal the balance cannot pay stands with the saved card: the card to charge,
    "card_pending" when this period's card payment awaits confirmation, or None (no card
    that can be charged, or this period's payment was declined)."""
    earlier = (
        Payment.objects.filter(reference=_renewal_payment_reference(subscription))
        .values_list("status", flat=True)
        .first()
    )
    if earlier is not None:
        return "card_pending" if earlier == Payment.Status.PENDING else None
    card = default_payment_method(account=subscription.account)
    return card if card is not None and card_chargeable(card) else None


def _renew(
    subscription_id: int, *, now: datetime, payment: Payment | None = None
) -> tuple[str | PaymentMethod, PlanTerm | None]:
    """Renew from the balance (or with `payment`, a card payment that succeeded) or end the
    subscription, under the wallet and subscription locks. Returns the outcome and the
    renewal's term; the outcome is the saved card to charge when only it can pay."""
    with transaction.atomic():
        account = Account.objects.get(subscriptions__pk=subscription_id)
        # The wallet lock first, as every purchase takes it; then the subscription's row.
        wallet = wallet_lock(account)
        subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
        subscription.account = account  # read above; _end and the period need it
        if subscription.ended_at is not None or subscription.period_end > now:
            return "not_due", None
        # The plan and price this renewal buys: the scheduled downgrade, if any.
        renewal = subscription_renewal(subscription)
        if payment is not None:
            paid_for = payment.reference == _renewal_payment_reference(subscription)
            if not paid_for or payment.amount_nano != renewal.price_nano:
                return "not_due", None  # paid for another period or price: not this one
            parts = (0, 0)
        elif not subscription.auto_renew:
            return _end(subscription, reason="cancelled"), None
        else:
            card = _renewal_card(subscription)
            if card == "card_pending":
                return "card_pending", None
            try:
                parts = balance_purchase_split(
                    wallet=wallet,
                    price_nano=renewal.price_nano,
                    refusal=_("Your balance is too low to renew the plan."),
                )
            except ServiceError:
                if card is None:
                    return _end(subscription, reason="renewal_failed"), None
                return card, None
        changed = _renewal_change(subscription, renewal)
        start, end = _period_holding(subscription, now)
        term = _paid_term(
            subscription,
            wallet=wallet,
            parts=parts,
            payment=payment,
            kind=PlanTerm.Kind.RENEWAL,
            starts=start,
            ends=end,
            actor=None,
            now=now,
            reference=f"plan-{subscription.pk}-renewal-{start:%Y%m%d%H%M%S}",
            metadata={
                "plan": subscription.plan.code,
                "period": subscription.period,
                "renewal": True,
            },
        )
        subscription.period_start, subscription.period_end = start, end
        subscription.save(
            update_fields=["period_start", "period_end", *(_RENEWAL_CHANGES if changed else ())]
        )
        audit_record(
            action="plans.renew",
            account=account,
            actor=None,
            target=subscription,
            metadata={
                "period_end": end.isoformat(),
                "price_nano": subscription.price_nano,
                "paid_by": "card" if payment else "balance",
                **changed,
            },
        )
    return "renewed", term


_RENEWAL_CHANGES = ("plan", "period", "price_nano", "next_plan", "next_period")


def _renewal_change(subscription: Subscription, renewal) -> dict:
    """Move a renewing subscription to the scheduled plan and period, lock in the price it
    paid, and clear the schedule. What changed, for the renewal's audit event (nothing
    without a schedule)."""
    if not renewal.changes:
        return {}
    changed = {
        "from": subscription.plan.code,
        "to": renewal.plan.code,
        "from_period": subscription.period,
        "period": renewal.period,
    }
    subscription.plan, subscription.period = renewal.plan, renewal.period
    subscription.price_nano = renewal.price_nano
    subscription.next_plan, subscription.next_period = None, ""
    return changed


def _end(subscription: Subscription, *, reason: str) -> str:
    """End a subscription at its paid period's end (not at the moment the job noticed)."""
    subscription.ended_at, subscription.end_reason = subscription.period_end, reason
    subscription.save(update_fields=["ended_at", "end_reason"])
    audit_record(
        action="plans.end",
        account=subscription.account,
        actor=None,
        target=subscription,
        metadata={"reason": reason},
    )
    return reason


def plans_renew_due(*, now: datetime | None = None) -> dict[str, int]:
    """Renew or end every subscription whose paid period has ended (the renewal job)."""
    now = now or timezone.now()
    due = Subscription.objects.filter(ended_at__isnull=True, period_end__lte=now).values_list(
        "pk", flat=True
    )
    outcomes: dict[str, int] = {}
    for subscription_id in list(due):
        try:
            outcome = plan_renew(subscription_id=subscription_id, now=now)
        except OperationalError:
            raise  # the database is away: the task retries the whole run
        except Exception:
            # One subscription's fault must not keep the others from renewing; it is logged
            # and tried again at the next run.
            logger.exception("renewal of subscription %s failed", subscription_id)
            outcome = "error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


# --- Staff actions (the back-office: portal/admin_staff.py) -----------------------------------
# Each takes a reason, is audited as staff, and changes nothing when it refuses.

STAFF = AuditEvent.ActorKind.STAFF


def _staff_change(
    subscription: Subscription,
    *,
    kind: str,
    starts,
    ends,
    now,
    action: str,
    actor: User | None,
    reason: str,
    metadata: dict,
) -> None:
    """What staff gave, written down: a term (no charge, no ledger entry) and the staff audit
    event with the reason."""
    _paid_term(
        subscription,
        kind=kind,
        starts=starts,
        ends=ends,
        actor=actor,
        now=now,
        reference="",
        metadata={},
    )
    audit_record(
        action=action,
        account=subscription.account,
        actor=actor,
        actor_kind=STAFF,
        target=subscription,
        reason=reason,
        metadata=metadata,
    )


def _locked_current(account: Account) -> Subscription | None:
    return (
        # of=self: the plan row is joined, not locked (buyers lock it for the sales limit).
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan")
        .filter(account=account, ended_at__isnull=True)
        .first()
    )


def plan_grant(
    *, account: Account, plan: Plan, period: str, actor: User | None, reason: str, now=None
) -> Subscription:
    """Give an account a plan for one `period`, free: no charge, auto-renew off (it ends at
    the period's end unless the account turns renewal on, at today's price). Not a sale: the
    daily sales limit does not count it."""
    if period not in Period.values:
        raise ServiceError(_("Choose monthly, quarterly or yearly."))
    now = now or timezone.now()
    with transaction.atomic():
        wallet_lock(account)  # the order every plan change takes: wallet, then subscription
        current = _locked_current(account)
        if current is not None:
            if current.period_end > now:
                raise ServiceError(_("The account has a plan: extend or change it instead."))
            _end(current, reason="lapsed" if current.auto_renew else "cancelled")
        price = plan_price(plan=plan, period=period, currency=account.currency, at=now)
        if price is None:
            # Its renewals would have no price to charge (and would renew for nothing).
            raise ServiceError(_("This plan is not on sale in the account's currency."))
        subscription = _subscription_start(
            account=account,
            plan=plan,
            period=period,
            price_nano=price.amount_nano,
            now=now,
            auto_renew=False,
        )
        _staff_change(
            subscription,
            kind=PlanTerm.Kind.GRANT,
            starts=now,
            ends=subscription.period_end,
            now=now,
            action="plans.grant",
            actor=actor,
            reason=reason,
            metadata={"plan": plan.code, "period": period},
        )
    return subscription


def plan_extend(
    *, account: Account, days: int, actor: User | None, reason: str, now=None
) -> Subscription:
    """Lengthen the plan's paid period by `days` (a goodwill extension): free, the renewal
    moves with it."""
    if not 1 <= days <= 366:
        raise ServiceError(_("Extend by 1 to 366 days."))
    now = now or timezone.now()
    with transaction.atomic():
        wallet_lock(account)
        subscription = _locked_current(account)
        if subscription is None:
            raise ServiceError(_("The account has no coding plan."))
        old_end = subscription.period_end
        subscription.period_end = old_end + timedelta(days=days)
        # Periods are counted from started_at (plans.services._period_holding): it moves too,
        # so the renewal after an extension pays for a whole period, not the rest of one.
        subscription.started_at += timedelta(days=days)
        subscription.save(update_fields=["period_end", "started_at"])
        _staff_change(
            subscription,
            kind=PlanTerm.Kind.EXTENSION,
            starts=old_end,
            ends=subscription.period_end,
            now=now,
            action="plans.extend",
            actor=actor,
            reason=reason,
            metadata={"days": days, "period_end": subscription.period_end.isoformat()},
        )
    return subscription


def plan_change(
    *, account: Account, plan: Plan, actor: User | None, reason: str, now=None
) -> Subscription:
    """Move the plan to another one at once, free (up or down): the new limits apply to the
    next request, renewals charge the new plan's price of today."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet_lock(account)
        subscription = _locked_current(account)
        if subscription is None:
            raise ServiceError(_("The account has no coding plan."))
        if subscription.plan_id == plan.pk:
            raise ServiceError(_("The account is on this plan already."))
        before = subscription.plan
        price = plan_price(
            plan=plan, period=subscription.period, currency=subscription.currency, at=now
        )
        subscription.plan = plan
        subscription.price_nano = price.amount_nano if price else subscription.price_nano
        # Staff chose the plan: a downgrade the subscriber scheduled from the old one is void.
        subscription.next_plan, subscription.next_period = None, ""
        subscription.save(update_fields=["plan", "price_nano", "next_plan", "next_period"])
        _staff_change(
            subscription,
            kind=PlanTerm.Kind.CHANGE,
            starts=now,
            ends=max(subscription.period_end, now),
            now=now,
            action="plans.change",
            actor=actor,
            reason=reason,
            metadata={"from": before.code, "to": plan.code},
        )
    return subscription


def unused_share(term: PlanTerm, now: datetime) -> int:
    """What of a paid term's amount is still to run at `now`, to the nano (half up)."""
    microsecond = timedelta(microseconds=1)
    total = (term.ends_at - term.starts_at) // microsecond
    left = min(max((term.ends_at - now) // microsecond, 0), total)
    if total <= 0:
        return 0
    return (term.amount_nano * left * 2 + total) // (2 * total)


def plan_end_now(
    *, account: Account, refund: bool, actor: User | None, reason: str, now=None
) -> int:
    """End the plan at once. With `refund`, each paid term still running gives back its
    unused share, prorated to the nano, to where it came from (recharge and bonus as its
    purchase took them): one plan refund ledger entry per term. Returns what was refunded."""
    now = now or timezone.now()
    refunded = to_card = 0
    with transaction.atomic():
        wallet = wallet_lock(account)
        subscription = _locked_current(account)
        if subscription is None:
            raise ServiceError(_("The account has no coding plan."))
        if refund:
            invoiceable = paid_totals(account=account).invoiceable_nano
            paid = PlanTerm.objects.filter(
                subscription=subscription, ledger_entry__isnull=False, ends_at__gt=now
            ).select_related("ledger_entry")
            for term in paid:
                share = unused_share(term, now)
                if not share:
                    continue
                purchase_return(
                    account=account,
                    wallet=wallet,
                    purchase=term.ledger_entry,
                    amount_nano=share,
                    kind=LedgerEntry.Kind.PLAN_REFUND,
                    actor=actor,
                    at=now,
                    reference=f"plan-{subscription.pk}-refund-{term.pk}",
                    metadata={"subscription": subscription.pk, "term": term.pk},
                )
                refunded += share
                if term.ledger_entry.metadata.get("method") == "card":
                    to_card += share
            # Money paid back to a card can no longer be invoiced; what was invoiced already
            # stays invoiced until staff void the invoice (as for a recharge's refund).
            if to_card > invoiceable:
                raise ServiceError(
                    _(
                        "The card-paid plan has been invoiced: void the invoice first, or end "
                        "the plan without a refund."
                    )
                )
        subscription.ended_at, subscription.end_reason = now, "ended_by_staff"
        # Ended before its renewal: the scheduled change never happens.
        subscription.next_plan, subscription.next_period = None, ""
        subscription.save(update_fields=["ended_at", "end_reason", "next_plan", "next_period"])
        audit_record(
            action="plans.end",
            account=account,
            actor=actor,
            actor_kind=STAFF,
            target=subscription,
            reason=reason,
            metadata={"reason": "ended_by_staff", "refunded_nano": refunded},
        )
    return refunded
