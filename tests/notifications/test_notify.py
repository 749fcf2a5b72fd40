"""notify: recipients, idempotency per event id, the channels, and safety inside a caller's
transaction."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from notifications.models import Notification, NotificationEvent, WebhookDelivery
from notifications.services import notify
from notifications.webhooks import webhook_endpoint_create
from tests.conftest import requires_postgres
from tests.factories import make_account, make_user
from tests.threads import run_together

pytestmark = pytest.mark.django_db


def _notify(account, event_id="evt-1", **extra):
    return notify(
        account=account,
        event_type="alert.balance_low",
        event_id=event_id,
        title="Balance below 100.00 CNY",
        body="Recharge to keep the API running.",
        link="/billing/",
        data={"threshold": "100.000000000"},
        **extra,
    )


def test_it_notifies_exactly_owner_admin_and_finance(world):
    created = _notify(world.account_a)
    recipients = set(
        Notification.objects.filter(account=world.account_a).values_list("user__email", flat=True)
    )
    assert created == 3
    assert recipients == {"owner@a.example", "admin@a.example", "fin@a.example"}
    assert not Notification.objects.filter(account=world.account_b).exists()


def test_it_skips_inactive_members(world):
    user = world.finance_a.user
    user.is_active = False
    user.save()
    assert _notify(world.account_a) == 2


def test_the_same_event_id_twice_creates_and_sends_nothing_more(
    world, eager_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(world.account_a) == 3
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert _notify(world.account_a) == 0
    assert callbacks == []
    assert NotificationEvent.objects.filter(account=world.account_a).count() == 1
    assert Notification.objects.count() == 3
    assert len(mailoutbox) == 3


def test_an_event_id_is_per_account(world):
    assert _notify(world.account_a) == 3
    assert _notify(world.account_b) == 1


def test_one_plain_text_email_per_recipient_after_commit(
    world, eager_tasks, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.SITE_URL = "https://console.example.com"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _notify(world.account_a)
    assert mailoutbox == [], "nothing is sent before the commit"
    with django_capture_on_commit_callbacks(execute=True):  # the outbox sends on commit
        for callback in callbacks:
            callback()
    assert sorted(message.to[0] for message in mailoutbox) == [
        "admin@a.example",
        "fin@a.example",
        "owner@a.example",
    ]
    message = mailoutbox[0]
    assert message.subject == "[Account A] Balance below 100.00 CNY"
    assert "Recharge to keep the API running." in message.body
    assert "https://console.example.com/billing/" in message.body
    assert message.content_subtype == "plain"


def test_channels_can_be_switched_off(
    world, eager_tasks, mailoutbox, receiver, django_capture_on_commit_callbacks
):
    webhook_endpoint_create(account=world.account_a, url=receiver.url, actor=None, ip=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert _notify(world.account_a, in_app=False, email=False, webhook=False) == 0
    assert (Notification.objects.count(), len(mailoutbox), WebhookDelivery.objects.count()) == (
        0,
        0,
        0,
    )
    with django_capture_on_commit_callbacks(execute=True):
        _notify(world.account_a, event_id="evt-2", in_app=False, email=False)
    assert WebhookDelivery.objects.get().status == "succeeded"
    assert len(receiver.requests) == 1


def test_the_email_task_twice_sends_once(world, mailoutbox, django_capture_on_commit_callbacks):
    from notifications.tasks import send_event_email

    with django_capture_on_commit_callbacks(execute=False):
        _notify(world.account_a)
    event = NotificationEvent.objects.get()
    with django_capture_on_commit_callbacks(execute=True):  # the outbox sends on commit
        assert send_event_email.run(event.pk) == 3
        assert send_event_email.run(event.pk) == 0
    assert len(mailoutbox) == 3


def test_event_emails_go_through_the_outbox_and_are_retried_there(
    world, mailoutbox, django_capture_on_commit_callbacks, settings
):
    from console.emails import email_deliver
    from console.models import OutgoingEmail
    from notifications.emails import notification_email_send
    from tests.console.mail_faults import FailingMailBackend

    with django_capture_on_commit_callbacks(execute=False):
        _notify(world.account_a)
    event = NotificationEvent.objects.get()
    FailingMailBackend.fail_next(3, settings)  # every first attempt fails
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_email_send(event_pk=event.pk) == 3
    assert mailoutbox == []
    queued = OutgoingEmail.objects.filter(kind="notification")
    assert sorted(queued.values_list("recipient", "status", "attempts")) == [
        ("admin@a.example", "pending", 1),
        ("fin@a.example", "pending", 1),
        ("owner@a.example", "pending", 1),
    ]
    later = timezone.now() + timedelta(hours=1)
    for email in queued:
        email_deliver(email_id=email.pk, now=later)
    assert sorted(message.to[0] for message in mailoutbox) == [
        "admin@a.example",
        "fin@a.example",
        "owner@a.example",
    ]
    assert notification_email_send(event_pk=event.pk) == 0, "queued once per recipient"


def test_a_broker_outage_does_not_break_the_callers_transaction(
    world, receiver, django_capture_on_commit_callbacks
):
    webhook_endpoint_create(account=world.account_a, url=receiver.url, actor=None, ip=None)
    with (
        mock.patch("notifications.tasks.deliver_webhook.apply_async", side_effect=ConnectionError),
        mock.patch("notifications.tasks.send_event_email.apply_async", side_effect=ConnectionError),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        _notify(world.account_a)
    # Written and committed: the sweep sends what the lost tasks did not.
    assert WebhookDelivery.objects.get().status == "pending"
    assert NotificationEvent.objects.get().emailed_at is None


def test_a_rolled_back_caller_leaves_nothing(world):
    with pytest.raises(RuntimeError), transaction.atomic():
        _notify(world.account_a)
        raise RuntimeError("the caller failed")
    assert not NotificationEvent.objects.exists()
    assert not Notification.objects.exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_notifies_of_one_event_create_it_once():
    owner = make_user()
    account = make_account(owner)
    created = []

    def call(index):
        with transaction.atomic():
            created.append(_notify(account, event_id="evt-race"))

    assert run_together(call, 6) == []
    assert sorted(created) == [0, 0, 0, 0, 0, 1]
    assert Notification.objects.filter(account=account).count() == 1
