"""Buying a coding plan from the wallet (issue 22, step 2): the price split like any purchase,
a ledger entry of its own kind, never arrears, never packs, not usage; one plan per account;
the daily sales limit; the ops command."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.charges import split_fee
from billing.models import AccountMonthSpend, LedgerEntry, ResourcePack, Wallet
from billing.reconciliation import audit_all
from billing.selectors import current_month
from billing.services import pack_grant
from billing.statements import statement_data
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan, PlanLimits, PlanPrice, PlanTerm, Subscription
from plans.services import add_months, plan_subscribe, sales_day
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.threads import run_together

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT


def plan(code) -> Plan:
    return Plan.objects.get(code=code)


def money(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano


def test_a_plan_bought_from_the_balance_splits_the_price_and_records_a_plan_purchase():
    account = funded_account(recharge_units=100, bonus_units=50)  # CNY
    subscription = plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)

    # 49 split 2:1 between recharge and bonus, as every fee is.
    price = 49 * UNIT
    recharge, bonus, arrears = money(account)
    assert recharge + bonus == 150 * UNIT - price and arrears == 0
    assert (100 * UNIT - recharge, 50 * UNIT - bonus) == split_fee(price, 100 * UNIT, 50 * UNIT)
    assert 100 * UNIT - recharge == price * 2 // 3 + 1  # 32.666…: the odd nano goes to recharge
    entry = LedgerEntry.objects.get(account=account, kind=LedgerEntry.Kind.PLAN_PURCHASE)
    assert entry.fee_nano == price
    assert -(entry.recharge_delta_nano + entry.bonus_delta_nano) == price
    assert (subscription.plan.code, subscription.period, subscription.price_nano) == (
        "lite",
        "month",
        price,
    )
    term = PlanTerm.objects.get(subscription=subscription)
    assert term.kind == "purchase" and term.ledger_entry == entry and term.amount_nano == price
    assert AuditEvent.objects.filter(action="plans.subscribe", account=account).count() == 1
    assert audit_all()[1] == []


@pytest.mark.parametrize(("period", "months"), [("month", 1), ("quarter", 3), ("year", 12)])
def test_a_period_is_calendar_months_in_the_accounts_time_zone(period, months):
    account = funded_account(recharge_units=5_000, time_zone="Asia/Shanghai")
    # 31 January, 12:00 in Beijing.
    bought = datetime(2027, 1, 31, 4, 0, tzinfo=UTC)
    subscription = plan_subscribe(
        account=account, plan=plan("pro"), period=period, actor=None, now=bought
    )
    expected = {
        "month": datetime(2027, 2, 28, 4, 0, tzinfo=UTC),
        "quarter": datetime(2027, 4, 30, 4, 0, tzinfo=UTC),
        "year": datetime(2028, 1, 31, 4, 0, tzinfo=UTC),
    }[period]
    assert subscription.period_start == bought and subscription.period_end == expected


def test_add_months_keeps_the_day_or_takes_the_months_last():
    moment = datetime(2028, 1, 31, 9, 30, tzinfo=UTC)
    assert add_months(moment, 1) == datetime(2028, 2, 29, 9, 30, tzinfo=UTC)  # leap year
    assert add_months(moment, 12) == datetime(2029, 1, 31, 9, 30, tzinfo=UTC)
    assert add_months(datetime(2027, 11, 15, tzinfo=UTC), 3) == datetime(2028, 2, 15, tzinfo=UTC)


def test_a_balance_that_cannot_pay_is_refused_and_nothing_changes():
    account = funded_account(recharge_units=40, bonus_units=8)  # 48 < 49
    before = money(account)
    with pytest.raises(ServiceError, match="too low"):
        plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    assert money(account) == before
    assert not Subscription.objects.filter(account=account).exists()
    assert not LedgerEntry.objects.filter(account=account, kind="plan_purchase").exists()


def test_resource_packs_never_pay_for_a_plan_and_are_left_alone():
    account = funded_account(recharge_units=0)
    pack, _ = pack_grant(account=account, tokens=10_000_000, reference="p1")
    with pytest.raises(ServiceError, match="too low"):
        plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    funded = funded_account(recharge_units=60)
    other_pack, _ = pack_grant(account=funded, tokens=5_000, reference="p2")
    plan_subscribe(account=funded, plan=plan("lite"), period="month", actor=None)
    for row in (pack, other_pack):
        assert ResourcePack.objects.get(pk=row.pk).tokens_remaining == row.tokens_remaining


def test_a_plan_purchase_is_not_usage_spend():
    account = funded_account(recharge_units=200)
    plan_subscribe(account=account, plan=plan("pro"), period="month", actor=None)
    assert not AccountMonthSpend.objects.filter(account=account).exists()


def test_an_account_has_one_plan_at_a_time():
    account = funded_account(recharge_units=1_000)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    before = money(account)
    with pytest.raises(ServiceError, match="already has a coding plan"):
        plan_subscribe(account=account, plan=plan("max"), period="month", actor=None)
    assert money(account) == before
    assert Subscription.objects.filter(account=account).count() == 1


def test_a_plan_whose_period_ran_out_unrenewed_has_lapsed_and_a_new_one_can_be_bought():
    account = funded_account(recharge_units=1_000)
    first = plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    later = first.period_end + timedelta(days=2)
    second = plan_subscribe(
        account=account, plan=plan("pro"), period="month", actor=None, now=later
    )
    first.refresh_from_db()
    assert (first.ended_at, first.end_reason) == (first.period_end, "lapsed")
    assert second.plan.code == "pro" and second.ended_at is None


def test_the_price_is_locked_in_at_purchase():
    account = funded_account(recharge_units=1_000)
    subscription = plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    PlanPrice.objects.create(
        plan=plan("lite"),
        period="month",
        currency="CNY",
        amount_nano=59 * UNIT,
        effective_from=timezone.now(),
    )
    subscription.refresh_from_db()
    assert subscription.price_nano == 49 * UNIT
    newcomer = funded_account(recharge_units=1_000)
    assert (
        plan_subscribe(account=newcomer, plan=plan("lite"), period="month", actor=None).price_nano
        == 59 * UNIT
    )


def test_a_currency_the_plan_is_not_sold_in_and_an_unknown_period_are_refused():
    account = funded_account(recharge_units=1_000)
    PlanPrice.objects.filter(plan__code="max", currency="CNY").delete()
    with pytest.raises(ServiceError, match="not on sale"):
        plan_subscribe(account=account, plan=plan("max"), period="year", actor=None)
    with pytest.raises(ServiceError, match="monthly, quarterly or yearly"):
        plan_subscribe(account=account, plan=plan("lite"), period="week", actor=None)
    assert not Subscription.objects.filter(account=account).exists()


def test_the_daily_sales_limit_refuses_past_it_until_10_beijing_time():
    lite = plan("lite")
    # A sales day runs from 10:00 to 10:00 Beijing time (02:00 UTC).
    morning = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)  # 09:00 in Beijing: the day before's
    assert sales_day(morning)[0] == datetime(2027, 2, 28, 2, 0, tzinfo=UTC)
    PlanLimits.objects.create(
        plan=lite,
        prompts_5h=120,
        prompts_week=9_000,
        prompts_month=18_000,
        mcp_calls_month=100,
        concurrency=3,
        daily_new_subscriptions=1,
        effective_from=morning - timedelta(days=1),
    )
    first, second = funded_account(recharge_units=100), funded_account(recharge_units=100)
    plan_subscribe(account=first, plan=lite, period="month", actor=None, now=morning)
    with pytest.raises(ServiceError, match="sold out") as refused:
        plan_subscribe(account=second, plan=lite, period="month", actor=None, now=morning)
    assert "Mar 1, 2027 10:00" in str(refused.value)  # when sales reopen, in its zone
    assert money(second) == (100 * UNIT, 0, 0)
    # Other plans are not affected, and at 10:00 Beijing time sales reopen.
    plan_subscribe(
        account=funded_account(recharge_units=1_000),
        plan=plan("pro"),
        period="month",
        actor=None,
        now=morning,
    )
    reopened = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
    plan_subscribe(account=second, plan=lite, period="month", actor=None, now=reopened)


def test_a_statement_shows_plan_purchases_as_their_own_movement():
    account = funded_account(recharge_units=100)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    data = statement_data(account=account, month=current_month(account=account))
    assert data["movements"]["plan_purchases_nano"] == 49 * UNIT
    assert data["totals"]["fee_nano"] == 0  # not usage


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_purchases_for_one_account_buy_one_plan():
    account = funded_account(recharge_units=10_000)
    lite = plan("lite")
    outcomes = []

    def buy(index):
        try:
            plan_subscribe(account=account, plan=lite, period="month", actor=None)
            outcomes.append("bought")
        except ServiceError:
            outcomes.append("refused")

    assert run_together(buy, 8) == []
    assert sorted(outcomes) == ["bought"] + ["refused"] * 7
    assert LedgerEntry.objects.filter(account=account, kind="plan_purchase").count() == 1
    assert money(account)[0] == 10_000 * UNIT - 49 * UNIT
    assert audit_all()[1] == []


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_command_subscribes_and_says_so():
    account = funded_account(recharge_units=500)
    said = run(
        "plan_subscribe", "--account", str(account.pk), "--plan", "PRO", "--period", "quarter"
    )
    assert "Pro (quarter)" in said and "402" in said
    assert Subscription.objects.get(account=account).plan.code == "pro"


@pytest.mark.parametrize(
    "args",
    [
        ["--account", "0", "--plan", "lite", "--period", "month"],
        ["--plan", "gold", "--period", "month"],
        ["--plan", "lite", "--period", "week"],
        ["--plan", "lite", "--period", "month", "--pay", "card"],
        ["--plan", "lite"],
    ],
    ids=["unknown-account", "unknown-plan", "bad-period", "card-not-yet", "missing-period"],
)
def test_the_command_refuses_bad_arguments_and_changes_nothing(args):
    account = funded_account(recharge_units=500)
    if "--account" not in args:
        args = ["--account", str(account.pk), *args]
    with pytest.raises(CommandError):
        run("plan_subscribe", *args)
    assert not Subscription.objects.exists()
    assert money(account) == (500 * UNIT, 0, 0)


def test_the_command_passes_on_a_refusal():
    account = funded_account(recharge_units=5)
    with pytest.raises(CommandError, match="too low"):
        run("plan_subscribe", "--account", str(account.pk), "--plan", "lite", "--period", "month")


def test_staff_see_subscribers_and_their_terms_read_only(client):
    from django.urls import reverse

    from tests.factories import login_verified, make_user

    account = funded_account(recharge_units=500)
    subscription = plan_subscribe(account=account, plan=plan("pro"), period="month", actor=None)
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:plans_subscription_changelist"))
    assert listing.status_code == 200 and listing.context["cl"].result_count == 1
    page = client.get(reverse("admin:plans_subscription_change", args=[subscription.pk]))
    assert page.status_code == 200 and "¥149" in page.content.decode()
    assert client.get(reverse("admin:plans_subscription_add")).status_code == 403
    delete = reverse("admin:plans_subscription_delete", args=[subscription.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Subscription.objects.filter(pk=subscription.pk).exists()


def test_an_account_with_a_plan_is_told_so_even_when_its_balance_is_low():
    account = funded_account(recharge_units=60)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    with pytest.raises(ServiceError, match="already has a coding plan"):
        plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_buyers_of_the_last_place_of_the_day_get_one():
    lite = plan("lite")
    PlanLimits.objects.create(
        plan=lite,
        prompts_5h=120,
        prompts_week=9_000,
        prompts_month=18_000,
        mcp_calls_month=100,
        concurrency=3,
        daily_new_subscriptions=1,
        effective_from=timezone.now() - timedelta(minutes=1),
    )
    buyers = [funded_account(recharge_units=100) for _ in range(6)]
    outcomes = []

    def buy(index):
        try:
            plan_subscribe(account=buyers[index], plan=lite, period="month", actor=None)
            outcomes.append("bought")
        except ServiceError:
            outcomes.append("refused")

    assert run_together(buy, 6) == []
    assert sorted(outcomes) == ["bought"] + ["refused"] * 5
    assert Subscription.objects.count() == 1
    assert audit_all()[1] == []
