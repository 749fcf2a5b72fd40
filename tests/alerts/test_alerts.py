"""Spend alerts driven through the real services: charge until a threshold is crossed, and
exactly one alert goes out per channel; a second crossing in the same period sends nothing;
a recharge re-arms."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertFiring, AlertSettings
from alerts.services import alert_settings_save, alerts_evaluate, alerts_sweep
from billing.models import Wallet
from billing.services import pack_grant, recharge
from config.celery import app
from console.money import NANO_PER_UNIT
from console.roles import Role
from keys.services import api_key_create
from notifications.models import Notification, WebhookDelivery
from notifications.webhooks import webhook_endpoint_create
from projects.services import account_set_budget, project_set_cap
from tests.billing.factories import funded_account
from tests.billing.traffic import settle_one
from tests.conftest import requires_postgres
from tests.factories import add_member
from tests.threads import run_together
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


@pytest.fixture
def team(settings):
    """A funded account (¥100, no packs) with an owner, an admin, a finance member and a
    developer, a key, and a webhook endpoint (on this machine: private addresses allowed)."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    account = funded_account(recharge_units=100)
    add_member(account, Role.ADMIN)
    add_member(account, Role.FINANCE)
    add_member(account, Role.DEVELOPER)
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    webhook_endpoint_create(
        account=account, url="http://127.0.0.1:9/hook", description="ops", actor=None, ip=None
    )
    return account, key


def spend(key, units, **fields):
    """A settled glm-5 request costing exactly `units` (¥18 per 1M input tokens)."""
    return settle_one(
        key, model="glm-5", input_tokens=units * 1_000_000 // 18, output_tokens=0, **fields
    )


def sent(account, kind):
    firings = AlertFiring.objects.filter(account=account, kind=kind)
    event_ids = [f"alert-{firing.pk}" for firing in firings]
    return {
        "firings": firings.count(),
        "in_app": Notification.objects.filter(account=account, event_id__in=event_ids).count(),
        "emails": len(mail.outbox),  # the tests below send no other email
        "webhooks": WebhookDelivery.objects.filter(event_id__in=event_ids).count(),
    }


def test_the_balance_alert_fires_once_per_crossing_and_a_recharge_rearms_it(
    team, eager_tasks, django_capture_on_commit_callbacks
):
    account, key = team
    alert_settings_save(account=account, actor=None, balance_below_nano=50 * UNIT)
    assert Wallet.objects.get(account=account).alert_below_nano == 50 * UNIT
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 30)  # ¥70 left: above the threshold
    assert sent(account, "balance_low")["firings"] == 0
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        spend(key, 30)  # ¥40: crossed, the settlement schedules the check
    assert callbacks
    # Three recipients (owner, admin, finance; not the developer), one webhook endpoint.
    assert sent(account, "balance_low") == {"firings": 1, "in_app": 3, "emails": 3, "webhooks": 1}
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 10)  # further below: the same crossing
    alerts_sweep()
    assert sent(account, "balance_low")["firings"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        recharge(account=account, amount_nano=100 * UNIT, reference="top-up")
    assert AlertFiring.objects.get(account=account, kind="balance_low").cleared_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 100)  # ¥30: crossed again after re-arming
    assert sent(account, "balance_low") == {"firings": 2, "in_app": 6, "emails": 6, "webhooks": 2}


def test_a_project_cap_alerts_at_50_80_and_100_percent_once_each(
    team, eager_tasks, django_capture_on_commit_callbacks
):
    account, key = team
    project_set_cap(project=key.project, cap_nano=20 * UNIT, mode="alert", actor=None)
    key.project.refresh_from_db()
    levels = []
    for units in (9, 2, 6, 1, 3, 5):  # 9, 11 (55%), 17 (85%), 18, 21 (105%), 26
        with django_capture_on_commit_callbacks(execute=True):
            spend(key, units)
        levels.append(
            sorted(
                AlertFiring.objects.filter(account=account, kind="project_cap").values_list(
                    "level", flat=True
                )
            )
        )
    assert levels == [[], [50], [50, 80], [50, 80], [50, 80, 100], [50, 80, 100]]
    assert alerts_evaluate(account=account) == []  # run again: nothing new
    assert sent(account, "project_cap") == {"firings": 3, "in_app": 9, "emails": 9, "webhooks": 3}
    # Raising the cap clears 80 and 100 (re-armed); the next crossing of 80% sends again.
    project_set_cap(project=key.project, cap_nano=40 * UNIT, mode="alert", actor=None)
    alerts_evaluate(account=account)
    open_levels = AlertFiring.objects.filter(
        account=account, kind="project_cap", cleared_at__isnull=True
    ).values_list("level", flat=True)
    assert sorted(open_levels) == [50]
    key.project.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 7)  # 33 of 40: 82.5%
    assert AlertFiring.objects.filter(account=account, kind="project_cap", level=80).count() == 2


def test_the_account_budget_alerts_like_a_cap(
    team, eager_tasks, django_capture_on_commit_callbacks
):
    account, key = team
    account_set_budget(account=account, budget_nano=10 * UNIT, mode="alert", actor=None)
    account.refresh_from_db()
    key.account.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 9)  # 90% of ¥10
    assert sorted(
        AlertFiring.objects.filter(account=account, kind="account_budget").values_list(
            "level", flat=True
        )
    ) == [50, 80]


def test_an_unusual_day_alerts_once(team, eager_tasks):
    account, key = team
    now = timezone.now()
    for day in range(1, 8):
        spend(key, 1, at=now - timedelta(days=day))  # ¥1 a day for a week
    spend(key, 2, at=now)
    assert alerts_sweep() == 0  # 2× the average: under the default 3×
    spend(key, 5, at=now)  # ¥7 today
    assert alerts_sweep() == 1
    assert alerts_sweep() == 0
    assert sent(account, "daily_spike")["firings"] == 1


def test_packs_running_low_or_expiring_alert_once(team, eager_tasks):
    account, key = team
    pack, _created = pack_grant(account=account, tokens=1_000_000, reference="p", days=30)
    # For another model: the glm-4.7 request below does not touch it.
    soon, _created = pack_grant(account=account, tokens=10, reference="q", days=3, model="glm-5")
    settle_one(key, model="glm-4.7", input_tokens=950_000, output_tokens=0)
    alerts_sweep()
    kinds = set(AlertFiring.objects.filter(account=account).values_list("kind", "subject"))
    assert ("pack_low", f"pack:{pack.pk}") in kinds
    assert ("pack_expiring", f"pack:{soon.pk}") in kinds
    before = AlertFiring.objects.count()
    alerts_sweep()
    assert AlertFiring.objects.count() == before


def test_alerts_switched_off_send_nothing(team, eager_tasks, django_capture_on_commit_callbacks):
    account, key = team
    alert_settings_save(
        account=account,
        actor=None,
        balance_below_nano=None,
        caps=False,
        spike_tenths=None,
        pack_low_percent=None,
        pack_expiry_days=None,
    )
    project_set_cap(project=key.project, cap_nano=5 * UNIT, mode="alert", actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 90)
    alerts_sweep()
    assert not AlertFiring.objects.filter(account=account).exists()


def test_channels_switched_off_are_not_used(team, eager_tasks, django_capture_on_commit_callbacks):
    account, key = team
    alert_settings_save(
        account=account, actor=None, balance_below_nano=50 * UNIT, email=False, webhook=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 60)
    assert sent(account, "balance_low") == {"firings": 1, "in_app": 3, "emails": 0, "webhooks": 0}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_evaluations_racing_each_other_send_one_alert():
    account = funded_account(recharge_units=100)
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    AlertSettings.objects.create(account=account, balance_below_nano=50 * UNIT)
    spend(key, 60)
    assert run_together(lambda index: alerts_evaluate(account=account), 8) == []
    assert AlertFiring.objects.filter(account=account).count() == 1
    assert Notification.objects.filter(account=account).count() == 1  # the owner


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_the_alert_after_the_crossing_settlement():
    account = funded_account(recharge_units=100)
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    alert_settings_save(account=account, actor=None, balance_below_nano=50 * UNIT)
    with celery_worker() as output:
        spend(key, 60)  # committed: its on-commit hook enqueues the evaluation
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and not Notification.objects.filter(account=account).exists()
        ):
            time.sleep(0.2)
    assert AlertFiring.objects.filter(account=account, kind="balance_low").count() == 1, output
    assert Notification.objects.filter(account=account).count() == 1


def test_the_settings_page_saves_valid_rules_and_refuses_bad_ones(client, world):
    client.force_login(world.finance_a.user)
    url = reverse("alerts:settings")
    for bad in (
        {"balance_below": "-5"},
        {"balance_below": "abc"},
        {"balance_below": "1" * 40},
        {"spike": "0.5"},
        {"spike": "1e9"},
        {"pack_low_percent": "150"},
        {"pack_expiry_days": "0"},
    ):
        response = client.post(url, {"caps": "on", **bad})
        assert response.status_code == 422, bad
    assert not AlertSettings.objects.filter(account=world.account_a).exists()
    response = client.post(
        url,
        {
            "balance_below": "25.50",
            "caps": "on",
            "spike": "2.5",
            "pack_low_percent": "20",
            "pack_expiry_days": "5",
            "email": "on",
            "in_app": "on",
        },
    )
    assert response.status_code == 302
    saved = AlertSettings.objects.get(account=world.account_a)
    assert (saved.balance_below_nano, saved.spike_tenths, saved.webhook) == (
        25_500_000_000,
        25,
        False,
    )
    assert Wallet.objects.get(account=world.account_a).alert_below_nano == 25_500_000_000
    client.force_login(world.developer_a.user)
    assert client.get(url).status_code == 403


def test_an_idle_accounts_pack_about_to_expire_is_found_by_the_sweep(eager_tasks):
    account = funded_account(recharge_units=10)  # no usage at all
    pack, _created = pack_grant(account=account, tokens=1_000, reference="idle", days=3)
    assert alerts_sweep() == 1
    firing = AlertFiring.objects.get(account=account)
    assert (firing.kind, firing.subject) == ("pack_expiring", f"pack:{pack.pk}")
    assert alerts_sweep() == 0  # sent: the sweep no longer visits it for this pack


def test_open_firings_of_past_periods_or_gone_subjects_are_closed(team, eager_tasks):
    account, key = team
    now = timezone.now()
    old = [
        AlertFiring.objects.create(
            account=account,
            kind="project_cap",
            subject=f"project:{key.project_id}",
            level=50,
            period="2020-01",
            message="old month",
            fired_at=now - timedelta(days=2000),
        ),
        AlertFiring.objects.create(
            account=account,
            kind="daily_spike",
            period="2020-01-02",
            message="old day",
            fired_at=now - timedelta(days=2000),
        ),
        AlertFiring.objects.create(
            account=account,
            kind="pack_low",
            subject="pack:999999",
            level=10,
            message="gone pack",
            fired_at=now - timedelta(days=3),
        ),
    ]
    alerts_evaluate(account=account)
    assert all(AlertFiring.objects.get(pk=firing.pk).cleared_at is not None for firing in old)


def test_a_recharge_that_lands_between_reading_and_sending_stops_the_alert(team, eager_tasks):
    from alerts.services import _apply, _conditions, alert_settings_for

    account, key = team
    alert_settings_save(account=account, actor=None, balance_below_nano=50 * UNIT)
    spend(key, 60)
    settings_row = alert_settings_for(account)
    stale = [c for c in _conditions(account, settings_row, timezone.now()) if c.active]
    recharge(account=account, amount_nano=100 * UNIT, reference="in-between")
    assert [_apply(account, settings_row, c, timezone.now()) for c in stale] == [None]
    assert not AlertFiring.objects.filter(account=account).exists()


def test_webhook_amounts_are_exact_decimal_strings(
    team, eager_tasks, django_capture_on_commit_callbacks
):
    account, key = team
    alert_settings_save(account=account, actor=None, balance_below_nano=50 * UNIT)
    with django_capture_on_commit_callbacks(execute=True):
        spend(key, 60)
    data = WebhookDelivery.objects.get().payload["data"]
    assert data["threshold"] == "50.000000000"
    assert data["currency"] == "CNY"
    assert data["balance"].count(".") == 1 and len(data["balance"].split(".")[1]) == 9
