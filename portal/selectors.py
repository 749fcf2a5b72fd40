"""Reads for the overview: the account's summary and the dashboard, from the wallet, the
month counters, the daily roll-ups, projects, keys and the rate-limit store. Every function
takes the account it is scoped to."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from billing.selectors import (
    account_month_spend,
    balance,
    current_month,
    next_month,
    previous_month,
)
from console import shared_state
from console.models import Account, Announcement, Membership, Tier
from console.selectors import open_invitations
from keys.models import ApiKey
from projects.selectors import project_list
from usage.charts import sparkline
from usage.selectors import Metrics, daily_fees, local_today, rollup_sums


@dataclass(frozen=True)
class AccountOverview:
    account: Account
    tier: Tier
    member_count: int
    project_count: int
    open_invitation_count: int


def account_overview(*, account: Account) -> AccountOverview:
    return AccountOverview(
        account=account,
        tier=account.tier,
        member_count=Membership.objects.filter(account=account).count(),
        project_count=project_list(account=account).count(),
        open_invitation_count=open_invitations(account=account).count(),
    )


BURN_DAYS = 7
SPARKLINE_DAYS = 30


@dataclass(frozen=True)
class RateUse:
    requests_this_minute: int
    requests_per_minute: int
    concurrent: int
    concurrency: int


@dataclass(frozen=True)
class Dashboard:
    account: Account
    tier: Tier
    balance: object | None  # billing.selectors.Balance; None for roles without billing.view
    pack_tokens_remaining: int
    month_to_date_nano: int
    last_month_nano: int
    burn_per_day_nano: int  # trailing 7-day average
    days_left: int | None  # None: nothing spent lately
    today: object  # usage.selectors.Metrics
    active_projects: int
    active_keys: int
    rate: RateUse | None  # None: the rate-limit store is unreachable
    announcements: list
    next_statement: date
    spend_days: list[tuple[date, int]]
    sparkline_points: str

    @property
    def month_change_percent(self) -> int | None:
        if not self.last_month_nano:
            return None
        change = self.month_to_date_nano - self.last_month_nano
        return round(100 * change / self.last_month_nano)


def announcements_published(*, account: Account, now: datetime) -> QuerySet[Announcement]:
    return Announcement.objects.filter(
        Q(starts_at__lte=now),
        Q(ends_at__isnull=True) | Q(ends_at__gt=now),
        Q(tier__isnull=True) | Q(tier=account.tier_id),
        Q(currency="") | Q(currency=account.currency),
    ).order_by("-starts_at")[:5]


def _rate_use(account: Account) -> RateUse | None:
    try:
        # Looked up on the module at each call (tests stand in a store that is down).
        state = shared_state.shared_state()
        used = state.get_int(shared_state.rate_window_key(account.pk))
        concurrent = state.slot_count(shared_state.concurrency_key(account.pk))
    except Exception:
        # The overview still serves when Redis is down; the gateway answers 1240 meanwhile.
        return None
    tier = account.tier
    return RateUse(used, tier.requests_per_minute, concurrent, tier.concurrency)


def overview_dashboard(
    *, account: Account, with_balance: bool = True, now: datetime | None = None
) -> Dashboard:
    """Everything the overview shows, from the wallet, the month counters and the daily
    roll-ups (never the usage records): the same few queries at any volume. Without
    `with_balance` (roles that may not see billing) the balance and the days it lasts are
    left out."""
    now = now or timezone.now()
    today = local_today(account, now)
    spend_days = daily_fees(account=account, last=today, days=SPARKLINE_DAYS)
    burn = sum(fee for _day, fee in spend_days[-BURN_DAYS:]) // BURN_DAYS
    current = balance(account=account) if with_balance else None
    spendable = current.recharge_nano + current.bonus_nano if current else 0
    month = current_month(account=account, now=now)
    todays = rollup_sums(account=account, bucket="day", start=today, end=today + timedelta(days=1))
    today_metrics = Metrics()
    for _bucket, _group, metrics in todays:
        today_metrics.add(metrics)
    return Dashboard(
        account=account,
        tier=account.tier,
        balance=current,
        pack_tokens_remaining=sum(pack.tokens_remaining for pack in current.packs)
        if current
        else 0,
        month_to_date_nano=account_month_spend(account=account, month=month),
        last_month_nano=account_month_spend(account=account, month=previous_month(month)),
        burn_per_day_nano=burn,
        days_left=spendable // burn if burn and current else None,
        today=today_metrics,
        active_projects=project_list(account=account).count(),
        active_keys=ApiKey.objects.filter(
            ApiKey.usable_q(now), account=account, project__archived_at__isnull=True
        ).count(),
        rate=_rate_use(account),
        announcements=list(announcements_published(account=account, now=now)),
        next_statement=next_month(month),
        spend_days=spend_days,
        sparkline_points=sparkline([fee for _day, fee in spend_days]),
    )
