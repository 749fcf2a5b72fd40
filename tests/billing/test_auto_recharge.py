"""Auto-recharge: triggered by the charge that crosses the threshold, at most the monthly
limit, one in flight at a time, and a decline turns it off and tells the people who pay."""

import time

import pytest
from django.utils import timezone

from billing.models import BillingProfile, PackProduct, Payment, Wallet
from billing.payments import (
    auto_recharge_configure,
    auto_recharge_run,
    auto_recharge_sweep,
    payment_method_remove,
)
from billing.services import pack_buy
from config.celery import app
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.roles import Role
from console.services import ServiceError
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account
from tests.billing.test_payments import DECLINE, add_card
from tests.conftest import requires_postgres
from tests.factories import add_member, make_user
from tests.workers import celery_worker

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT


@pytest.fixture
def eager_tasks():
    """Tasks enqueued on commit run at once, in this process."""
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


def configure(account, *, threshold=20, amount=100, limit=300):
    return auto_recharge_configure(
        account=account,
        enabled=True,
        threshold_nano=threshold * UNIT,
        amount_nano=amount * UNIT,
        monthly_limit_nano=limit * UNIT,
        actor=None,
    )


def spend(account, units, request_id):
    """A glm-5 charge of exactly `units` (¥18 per 1M input tokens)."""
    return charge_usage(
        account=account,
        model="glm-5",
        input_tokens=units * 1_000_000 // 18,
        output_tokens=0,
        request_id=request_id,
        project=account.projects.get(),
    )


def total(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano + wallet.bonus_nano


def test_the_charge_that_crosses_the_threshold_recharges_once(
    eager_tasks, django_capture_on_commit_callbacks
):
    account = funded_account(recharge_units=50)
    add_card(account)
    with django_capture_on_commit_callbacks(execute=True):
        configure(account)  # 50 ≥ 20: nothing to do yet
    assert not Payment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 18, "a")  # 50 → 32: above the threshold still
    assert not Payment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 18, "b")  # 32 → 14: crossed
    payment = Payment.objects.get(account=account)
    assert (payment.auto, payment.status, payment.amount_nano) == (True, "succeeded", 100 * UNIT)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        spend(account, 18, "c")  # 114 → 96: no crossing, no task
    assert callbacks == []
    assert Payment.objects.count() == 1


def test_buying_a_pack_that_crosses_the_threshold_recharges_too(
    eager_tasks, django_capture_on_commit_callbacks
):
    product = PackProduct.objects.filter(active=True).order_by("price_cny_nano").first()
    price = product.price_cny_nano
    account = funded_account(recharge_units=price // UNIT + 5)
    add_card(account)
    configure(account, threshold=10)
    with django_capture_on_commit_callbacks(execute=True):
        pack_buy(account=account, product=product, actor=None)
    assert Payment.objects.filter(account=account, auto=True, status="succeeded").count() == 1


def test_the_monthly_limit_holds():
    account = funded_account(recharge_units=5)
    add_card(account)
    configure(account, threshold=20, amount=100, limit=200)
    assert auto_recharge_run(account_id=account.pk).status == "succeeded"  # 5 → 105
    spend(account, 90, "a")  # 105 → 15
    assert auto_recharge_run(account_id=account.pk).status == "succeeded"  # 15 → 115 (200 used)
    spend(account, 100, "b")  # 115 → 15
    assert auto_recharge_run(account_id=account.pk) is None  # a third would pass 200
    assert Payment.objects.filter(auto=True).count() == 2


def test_running_twice_or_above_the_threshold_does_nothing():
    account = funded_account(recharge_units=5)
    add_card(account)
    configure(account)
    auto_recharge_run(account_id=account.pk)
    assert auto_recharge_run(account_id=account.pk) is None  # now above the threshold
    assert auto_recharge_sweep() == 0
    assert Payment.objects.count() == 1


def test_a_decline_turns_it_off_and_emails_owners_admins_and_finance(
    mailoutbox, django_capture_on_commit_callbacks
):
    account = funded_account(recharge_units=5)
    add_member(account, Role.FINANCE, make_user("finance@example.com"))
    add_member(account, Role.DEVELOPER, make_user("dev@example.com"))
    add_card(account, DECLINE)
    configure(account)
    with django_capture_on_commit_callbacks(execute=True):
        payment = auto_recharge_run(account_id=account.pk)
    assert payment.status == "declined"
    profile = BillingProfile.objects.get(account=account)
    assert not profile.auto_recharge_enabled
    assert "declined" in profile.auto_recharge_disabled_reason
    assert Wallet.objects.get(account=account).auto_recharge_below_nano is None
    recipients = sorted(address for mail in mailoutbox for address in mail.to)
    owner = account.memberships.get(role=Role.OWNER).user.email
    assert recipients == sorted([owner, "finance@example.com"])
    assert "declined" in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="billing.auto_recharge_disable").count() == 1
    # Off means off: the sweep and a further crossing do nothing.
    assert auto_recharge_sweep() == 0


def test_removing_the_last_card_turns_it_off():
    account = funded_account(recharge_units=50)
    card = add_card(account)
    configure(account)
    payment_method_remove(method=card, actor=None)
    assert not BillingProfile.objects.get(account=account).auto_recharge_enabled


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"amount": 5}, "smallest recharge"),
        ({"amount": 100, "limit": 50}, "monthly limit"),
        ({"threshold": 200, "amount": 100}, "at least the threshold"),
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(fields, message):
    account = funded_account(recharge_units=50)
    add_card(account)
    with pytest.raises(ServiceError, match=message):
        configure(account, **fields)
    assert not BillingProfile.objects.filter(account=account, auto_recharge_enabled=True).exists()
    assert Wallet.objects.get(account=account).auto_recharge_below_nano is None


def test_it_needs_a_card():
    account = funded_account(recharge_units=50)
    with pytest.raises(ServiceError, match="Add a card"):
        configure(account)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_recharges_after_the_crossing_charge(redis_client):
    account = funded_account(recharge_units=30)
    add_card(account)
    configure(account)
    with celery_worker() as output:
        spend(account, 18, "cross")  # committed: its on-commit hook enqueues the task
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Payment.objects.filter(account=account).exists():
            time.sleep(0.2)
        while time.monotonic() < deadline and total(account) < 100 * UNIT:
            time.sleep(0.2)
    assert total(account) == 112 * UNIT, output
    assert f"auto_recharge account={account.pk} succeeded" in output[0]
    assert Payment.objects.get(account=account).created_at <= timezone.now()
