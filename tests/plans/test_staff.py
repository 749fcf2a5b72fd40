"""Staff and the coding plan (issue 22): grant, extend, change and end (with a prorated
refund to where the money came from) through the back-office's staff actions, each with a
reason, its permission, one staff audit event, and nothing changed when refused."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.charges import split_fee
from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from billing.selectors import current_month
from billing.statements import statement_data
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan, PlanTerm, Subscription
from plans.quota import QuotaHold, QuotaRefused, quota_admit
from plans.services import plan_end_now, plan_subscribe, unused_share
from tests.billing.factories import funded_account
from tests.factories import login_verified
from tests.portal.test_staff_actions import action_url, perform, staff_with

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT
ASK = [{"role": "user", "content": "x"}]


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


@pytest.fixture
def staff_client(client):
    login_verified(client, staff_with("staff_manage_plan"))
    return client


def staff_events(account, action):
    return list(
        AuditEvent.objects.filter(account=account, action=action, actor_kind="staff").values_list(
            "reason", flat=True
        )
    )


def wallet(account):
    row = Wallet.objects.get(account=account)
    return row.recharge_nano, row.bonus_nano, row.arrears_nano


def test_staff_grant_a_free_plan_that_ends_unless_renewed(staff_client):
    account = funded_account(recharge_units=10)
    before = wallet(account)
    response = perform(
        staff_client, action_url(account, "plan-grant"), plan="pro", period="month", reason="beta"
    )
    assert response.status_code == 302
    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan.code, subscription.auto_renew) == ("pro", False)
    assert subscription.terms.get().kind == PlanTerm.Kind.GRANT
    assert (
        wallet(account) == before
        and not LedgerEntry.objects.filter(account=account, kind="plan_purchase").exists()
    )
    assert staff_events(account, "plans.grant") == ["beta"]
    assert isinstance(
        quota_admit(account=account, model="glm-5", messages=ASK, token="a"), QuotaHold
    )
    again = perform(
        staff_client, action_url(account, "plan-grant"), plan="max", period="month", reason="x"
    )
    assert again.status_code == 422 and "extend or change" in again.content.decode()


def test_staff_extend_and_change_the_plan(staff_client):
    account = funded_account(recharge_units=100)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None
    )
    end = subscription.period_end
    assert (
        perform(
            staff_client, action_url(account, "plan-extend"), days=7, reason="outage"
        ).status_code
        == 302
    )
    subscription.refresh_from_db()
    assert subscription.period_end == end + timedelta(days=7)
    assert (
        perform(
            staff_client, action_url(account, "plan-change"), plan="max", reason="vip"
        ).status_code
        == 302
    )
    subscription.refresh_from_db()
    assert subscription.plan.code == "max"
    assert [t.kind for t in subscription.terms.order_by("pk")] == [
        "purchase",
        "extension",
        "change",
    ]
    assert staff_events(account, "plans.extend") == ["outage"]
    assert staff_events(account, "plans.change") == ["vip"]
    held = quota_admit(account=account, model="glm-5", messages=ASK, token="b")
    assert isinstance(held, QuotaHold) and held.windows[0].limit == 2_400_000


@pytest.mark.parametrize(
    ("slug", "data"),
    [
        ("plan-extend", {"days": 0, "reason": "x"}),
        ("plan-extend", {"days": 400, "reason": "x"}),
        ("plan-extend", {"days": "seven", "reason": "x"}),
        ("plan-change", {"plan": "gold", "reason": "x"}),
        ("plan-change", {"plan": "lite", "reason": "x"}),  # the plan it is on
        ("plan-grant", {"plan": "pro", "period": "decade", "reason": "x"}),
        ("plan-end", {"refund": "on", "reason": " "}),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(staff_client, slug, data):
    account = funded_account(recharge_units=100)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None
    )
    before = (wallet(account), subscription.period_end, subscription.plan_id)
    response = perform(staff_client, action_url(account, slug), **data)
    assert response.status_code == 422
    subscription.refresh_from_db()
    assert (wallet(account), subscription.period_end, subscription.plan_id) == before
    assert subscription.ended_at is None
    assert (
        not AuditEvent.objects.filter(account=account, action__startswith="plans.")
        .exclude(action="plans.subscribe")
        .exists()
    )


def test_ending_with_a_refund_returns_the_unused_share_to_the_nano_where_it_came_from():
    account = funded_account(recharge_units=100, bonus_units=50)
    start = timezone.now() - timedelta(days=9, hours=5, microseconds=77)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None, now=start
    )
    term = subscription.terms.get()
    purchase = term.ledger_entry
    now = timezone.now()
    share = unused_share(term, now)
    total = (term.ends_at - term.starts_at) // timedelta(microseconds=1)
    left = (term.ends_at - now) // timedelta(microseconds=1)
    assert share == (49 * UNIT * left * 2 + total) // (2 * total)
    recharge, bonus, _arrears = wallet(account)
    refunded = plan_end_now(account=account, refund=True, actor=None, reason="unhappy", now=now)
    assert refunded == share
    back_recharge, back_bonus = split_fee(
        share, -purchase.recharge_delta_nano, -purchase.bonus_delta_nano
    )
    assert wallet(account) == (recharge + back_recharge, bonus + back_bonus, 0)
    entry = LedgerEntry.objects.get(account=account, kind=LedgerEntry.Kind.PLAN_REFUND)
    assert (entry.recharge_delta_nano, entry.bonus_delta_nano) == (back_recharge, back_bonus)
    subscription.refresh_from_db()
    assert (subscription.ended_at, subscription.end_reason) == (now, "ended_by_staff")
    refused = quota_admit(account=account, model="glm-4.7", messages=ASK, token="c")
    assert isinstance(refused, QuotaRefused) and refused.refusal.code == "1309"
    assert audit_all()[1] == []
    # Statements show plan purchases net of refunds, each in its own month.
    month = current_month(account=account, now=now)
    bought_this_month = current_month(account=account, now=start) == month
    movements = statement_data(account=account, month=month)["movements"]
    assert movements["plan_purchases_nano"] == (49 * UNIT if bought_this_month else 0) - share
    with pytest.raises(ServiceError):
        plan_end_now(account=account, refund=True, actor=None, reason="twice")


def test_ending_without_a_refund_returns_nothing(staff_client):
    account = funded_account(recharge_units=100)
    plan_subscribe(account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None)
    before = wallet(account)
    response = perform(staff_client, action_url(account, "plan-end"), reason="abuse")
    assert response.status_code == 302
    assert wallet(account) == before
    assert Subscription.objects.get(account=account).end_reason == "ended_by_staff"
    assert staff_events(account, "plans.end") == ["abuse"]


def test_staff_without_the_permission_cannot(client):
    account = funded_account(recharge_units=100)
    login_verified(client, staff_with("staff_grant_pack"))
    for slug in ("plan-grant", "plan-extend", "plan-change", "plan-end"):
        assert client.get(action_url(account, slug)).status_code == 403
        assert (
            client.post(
                action_url(account, slug),
                {"reason": "x", "plan": "max", "period": "month", "days": 3},
            ).status_code
            == 403
        )
    assert not Subscription.objects.filter(account=account).exists()
    assert reverse("admin:console_account_change", args=[account.pk])


def test_after_an_extension_requests_use_the_running_term_and_the_renewal_a_whole_period():
    from plans.services import plan_extend, plan_renew

    account = funded_account(recharge_units=200)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None
    )
    purchase = subscription.terms.get()
    plan_extend(account=account, days=10, actor=None, reason="outage")
    held = quota_admit(account=account, model="glm-4.7", messages=ASK, token="d")
    assert held.term_id == purchase.pk  # not the extension, which starts later
    subscription.refresh_from_db()
    extended_end = subscription.period_end
    assert plan_renew(subscription_id=subscription.pk, now=extended_end) == "renewed"
    subscription.refresh_from_db()
    # A whole month from the extended end (28 to 31 days), not the rest of one.
    assert timedelta(days=28) <= subscription.period_end - extended_end <= timedelta(days=31)
