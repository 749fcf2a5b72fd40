"""The subscription page (issue 22): the plans in the account's currency, buying from the
balance or a saved card, cancel and resume, the quota bars; bad input changes nothing."""

import pytest
from django.urls import reverse

from billing.models import LedgerEntry, Payment, Wallet
from console.money import NANO_PER_UNIT as UNIT
from console.roles import Role
from plans.models import Subscription
from plans.quota import quota_admit, quota_settle
from tests.billing.factories import funded_account
from tests.factories import add_member
from tests.plans.test_card import add_card

pytestmark = pytest.mark.django_db

PAGE = reverse("plans:subscription")


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def signed_in(client, account, role=Role.OWNER):
    user = account.memberships.get(role=Role.OWNER).user if role == Role.OWNER else None
    if user is None:
        user = add_member(account, role=role).user
    client.force_login(user)
    return user


def test_without_a_plan_the_page_offers_the_three_plans_in_the_accounts_currency(client):
    account = funded_account(recharge_units=100)  # CNY
    signed_in(client, account)
    page = client.get(PAGE).content.decode()
    assert "No coding plan yet" in page
    for name, price in (("Lite", "¥49.00"), ("Pro", "¥149.00"), ("Max", "¥469.00")):
        assert name in page and price in page
    assert "save 10%" in page  # Lite quarterly: 132 against 3 × 49
    assert page.count('action="/subscription/subscribe/"') == 1
    assert page.count('form="plan-buy" name="offer"') == 9
    assert 'value="lite:quarter"' in page
    # No saved card: the balance pays, and the page says how to pay by card.
    assert 'name="pay" value="balance"' in page and "save a card" in page


def test_subscribing_from_the_page_pays_from_the_balance_and_shows_the_plan(client):
    account = funded_account(recharge_units=100)
    signed_in(client, account)
    response = client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"})
    assert response.status_code == 302
    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan.code, subscription.period) == ("lite", "month")
    assert LedgerEntry.objects.filter(account=account, kind="plan_purchase").count() == 1
    held = quota_admit(
        account=account, model="glm-4.7", messages=[{"role": "user", "content": "x"}], token="t"
    )
    quota_settle(held, token="t", counts=True)
    page = client.get(PAGE).content.decode()
    assert "Your plan: Lite" in page and "¥49.00" in page
    assert "Prompts, rolling 5 hours" in page and "/api/coding/paas/v4/" in page
    assert 'value="1"' in page  # the meter of 1 / 120 prompts: 1 %
    assert "Cancel the plan" in page and 'action="/subscription/subscribe/"' not in page


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"plan": "lite"},
        {"plan": "gold", "period": "month"},
        {"plan": "lite", "period": "decade"},
        {"plan": "<script>alert(1)</script>", "period": "month"},
        {"plan": "lite" * 1000, "period": "month"},
        {"offer": "lite"},
        {"offer": "lite:month", "pay": "card-999999"},
        {"offer": "lite:month", "pay": "<b>"},
    ],
)
def test_bad_choices_change_nothing(client, data):
    account = funded_account(recharge_units=100)
    signed_in(client, account)
    response = client.post(reverse("plans:subscribe"), data, follow=True)
    assert "Choose a plan, a period and how to pay." in response.content.decode()
    assert not Subscription.objects.filter(account=account).exists()
    assert not LedgerEntry.objects.filter(account=account, kind="plan_purchase").exists()


def test_a_balance_that_cannot_pay_is_told_so_and_nothing_changes(client):
    account = funded_account(recharge_units=10)
    signed_in(client, account)
    response = client.post(
        reverse("plans:subscribe"), {"plan": "max", "period": "year"}, follow=True
    )
    assert response.status_code == 200
    assert not Subscription.objects.filter(account=account).exists()
    assert "alert" in response.content.decode() or "balance" in response.content.decode()


def test_cancel_then_resume(client):
    account = funded_account(recharge_units=100)
    signed_in(client, account)
    client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"})
    page = client.post(reverse("plans:auto_renew"), {"on": "0"}, follow=True).content.decode()
    assert "Auto-renew is off" in page and "Resume auto-renew" in page
    assert Subscription.objects.get(account=account).auto_renew is False
    client.post(reverse("plans:auto_renew"), {"on": "1"})
    assert Subscription.objects.get(account=account).auto_renew is True
    bad = client.post(reverse("plans:auto_renew"), {"on": "maybe"}, follow=True)
    assert "Choose whether the plan renews." in bad.content.decode()
    assert Subscription.objects.get(account=account).auto_renew is True


def test_a_developer_sees_the_quota_but_cannot_buy(client):
    account = funded_account(recharge_units=100)
    signed_in(client, account, Role.DEVELOPER)
    page = client.get(PAGE).content.decode()
    assert "Your role cannot buy a plan" in page
    assert 'action="/subscription/subscribe/"' not in page
    assert (
        client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"}).status_code
        == 403
    )


def test_the_quickstart_gives_coding_tools_both_base_urls(client):
    account = funded_account(recharge_units=1)
    signed_in(client, account)
    page = client.get(reverse("quickstart")).content.decode()
    assert "http://testserver/api/coding/paas/v4/" in page
    assert '"cline.apiUrl": "http://testserver/api/coding/paas/v4/"' in page
    assert "Roo Code" in page and "Cursor" in page
    assert "http://testserver/api/paas/v4/" in page  # pay-as-you-go, for the same tools
    assert "<code>1308</code>" in page and "<code>1309</code>" in page


def test_the_overview_shows_the_plans_five_hours_to_a_subscriber_only(client):
    account = funded_account(recharge_units=100)
    signed_in(client, account)
    assert "GLM Coding Plan Lite" not in client.get(reverse("overview")).content.decode()
    client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"})
    held = quota_admit(
        account=account, model="glm-4.7", messages=[{"role": "user", "content": "x"}], token="t"
    )
    quota_settle(held, token="t", counts=True)
    page = client.get(reverse("overview")).content.decode()
    assert "GLM Coding Plan Lite" in page and "1 / 120" in page


def test_a_plan_requests_cost_says_the_plan_paid(client):
    from history.services import prompt_log_write
    from usage.models import UsageRecord

    account = funded_account(recharge_units=100)
    signed_in(client, account)
    client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"})
    term = Subscription.objects.get(account=account).terms.get()
    from django.utils import timezone

    now = timezone.now()
    log = prompt_log_write(
        account=account,
        project=account.projects.get(is_default=True),
        api_key=None,
        request_id="plan-req",
        model="glm-4.7",
        messages=[{"role": "user", "content": "x"}],
        parameters={},
        response_text="y",
        status=200,
        input_tokens=5,
        output_tokens=2,
        latency_ms=10,
        first_token_ms=None,
        created_at=now,
    )
    UsageRecord.objects.create(
        account=account,
        request_id="plan-req",
        model="glm-4.7",
        status=200,
        plan_term_id=term.pk,
        quota_milli=67,
        created_at=now,
    )
    page = client.get(reverse("usage:request_cost", kwargs={"log_id": log.pk})).content.decode()
    assert "GLM Coding Plan" in page and "0.067 prompts of the plan" in page
    assert "none: the plan pays, not the balance" in page


def test_a_saved_card_pays_from_the_page_and_the_wallet_is_untouched(client):
    account = funded_account(recharge_units=5)
    signed_in(client, account)
    card = add_card(account)
    page = client.get(PAGE).content.decode()
    assert f'name="pay" value="card-{card.pk}"' in page and "•••• 4242" in page
    response = client.post(
        reverse("plans:subscribe"), {"offer": "pro:month", "pay": f"card-{card.pk}"}, follow=True
    )
    assert "You are on the GLM Coding Plan Pro" in response.content.decode()
    assert Subscription.objects.get(account=account).plan.code == "pro"
    assert LedgerEntry.objects.get(account=account, kind="plan_purchase").fee_nano == 149 * UNIT
    assert Wallet.objects.get(account=account).recharge_nano == 5 * UNIT
    # The payment lists on the recharge page as a plan's, not a recharge.
    payment = Payment.objects.get(account=account)
    detail = client.get(reverse("billing:payment", args=[payment.pk])).content.decode()
    assert "Paid for: Coding plan." in detail and "Credited to your recharge" not in detail
    assert "Coding plan</span>" in client.get(reverse("billing:recharge")).content.decode()


def test_another_accounts_card_cannot_pay(client):
    account = funded_account(recharge_units=5)
    other = funded_account()
    signed_in(client, account)
    card = add_card(other)
    response = client.post(
        reverse("plans:subscribe"), {"offer": "lite:month", "pay": f"card-{card.pk}"}, follow=True
    )
    assert "Choose a plan, a period and how to pay." in response.content.decode()
    assert not Subscription.objects.exists() and not Payment.objects.exists()


def test_a_declined_or_pending_card_is_told_on_the_page(client, settings):
    account = funded_account()
    signed_in(client, account)
    declined = add_card(account, "4000 0000 0000 0002")
    response = client.post(
        reverse("plans:subscribe"),
        {"offer": "lite:month", "pay": f"card-{declined.pk}"},
        follow=True,
    )
    assert "The card payment failed" in response.content.decode()
    settings.SANDBOX_PENDING_SECONDS = 60
    pending = add_card(account, "4000 0000 0000 3220")
    response = client.post(
        reverse("plans:subscribe"),
        {"offer": "lite:month", "pay": f"card-{pending.pk}"},
        follow=True,
    )
    page = response.content.decode()
    assert "being confirmed" in page and "A card payment of ¥49.00" in page
    assert not Subscription.objects.filter(account=account).exists()
