"""The outbox every email goes through (console/emails.py): written in the caller's
transaction, sent by a task after commit, retried with backoff when the mail server fails,
re-sent by the sweep when the task was lost, failed after the cap, never sent twice."""

from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from console.emails import email_deliver, email_queue, emails_due
from console.models import OutgoingEmail, User
from console.roles import Role
from console.services import invitation_create
from console.tasks import send_email, sweep_emails
from tests.conftest import requires_postgres
from tests.console.mail_faults import FailingMailBackend
from tests.factories import login_verified, make_account, make_user
from tests.threads import run_together

pytestmark = pytest.mark.django_db

SIGN_UP = {
    "email": "new@example.com",
    "name": "Li Lei",
    "password": "long-context-journey-2025",
    "account_name": "New Co",
    "currency": "CNY",
}


def sign_up(client, capture):
    with capture(execute=True):  # the commit's callbacks: the outbox's task
        response = client.post(reverse("signup"), SIGN_UP)
    assert response.status_code == 302
    return OutgoingEmail.objects.get(kind="verify_email")


def test_a_failing_mail_server_is_retried_and_the_email_delivered_once(
    client, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_RETRY_BASE_SECONDS = 30
    FailingMailBackend.fail_next(2, settings)

    email = sign_up(client, django_capture_on_commit_callbacks)

    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == (
        "pending",
        1,
        "SMTPServerDisconnected",
    )
    assert mailoutbox == []
    assert email_deliver(email_id=email.pk) is None, "not due before its backoff"
    first_retry = email.next_attempt_at
    assert email_deliver(email_id=email.pk, now=first_retry).status == "pending"
    email.refresh_from_db()
    assert email.attempts == 2
    assert email.next_attempt_at - email.last_attempt_at >= timedelta(seconds=60), "backoff"
    assert email_deliver(email_id=email.pk, now=email.next_attempt_at).status == "sent"
    later = timezone.now() + timedelta(days=1)
    assert email_deliver(email_id=email.pk, now=later) is None
    assert emails_due(now=later) == []
    (message,) = mailoutbox
    assert message.to == ["new@example.com"] and "/accounts/verify/" in message.body
    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == ("sent", 3, "")
    assert email.body_encrypted == "", "the one-time link is erased once sent"


def test_the_sweep_sends_an_email_whose_task_was_lost(
    mailoutbox, django_capture_on_commit_callbacks
):
    owner = make_user("owner@example.com")
    account = make_account(owner, name="Team")
    inviter = account.memberships.get(user=owner)
    with (
        mock.patch.object(send_email, "apply_async", side_effect=BrokerUnavailable("down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        invitation_create(
            account=account, inviter=inviter, email="friend@example.com", role=Role.DEVELOPER
        )
    email = OutgoingEmail.objects.get(kind="invitation")
    assert (email.status, email.attempts, mailoutbox) == ("pending", 0, [])
    assert sweep_emails()["due"] == 0, "its own task gets a minute first"
    OutgoingEmail.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_emails()["due"] == 1
        assert sweep_emails()["due"] == 0

    (message,) = mailoutbox
    assert message.to == ["friend@example.com"] and "/invitations/" in message.body
    assert OutgoingEmail.objects.get().status == "sent"


def test_an_email_is_failed_after_the_cap_and_shown_to_staff(
    client, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_MAX_ATTEMPTS = 4
    FailingMailBackend.fail_next(100, settings)
    email = sign_up(client, django_capture_on_commit_callbacks)
    now = timezone.now()
    for _attempt in range(10):
        now += timedelta(hours=1)
        for email_id in emails_due(now=now):
            email_deliver(email_id=email_id, now=now)

    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == (
        "failed",
        4,
        "SMTPServerDisconnected",
    )
    assert email.body_encrypted == "" and email.next_attempt_at is None
    assert emails_due(now=now + timedelta(days=1)) == []
    assert mailoutbox == []

    support = make_user("support@example.com", is_staff=True)  # answers "my email never came"
    support.groups.add(Group.objects.get(name="Support"))
    login_verified(client, support)
    page = client.get(reverse("admin:console_outgoingemail_changelist"), {"status": "failed"})
    assert "new@example.com" in page.content.decode()
    detail = client.get(reverse("admin:console_outgoingemail_change", args=[email.pk]))
    assert detail.status_code == 200 and "SMTPServerDisconnected" in detail.content.decode()
    assert "Save" not in detail.content.decode(), "read-only"
    deleted = client.post(reverse("admin:console_outgoingemail_delete", args=[email.pk]))
    assert deleted.status_code == 403 and OutgoingEmail.objects.filter(pk=email.pk).exists()


def test_sending_twice_delivers_once(mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        email = email_queue(kind="test", to="a@example.com", subject="Hi", body="Hello")
    assert send_email.run(email.pk) == "sent"
    assert send_email.run(email.pk) == "not due"
    assert email_deliver(email_id=email.pk, now=timezone.now() + timedelta(days=1)) is None
    assert len(mailoutbox) == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_at_one_email_deliver_it_once(mailoutbox):
    with mock.patch.object(send_email, "apply_async", side_effect=BrokerUnavailable("down")):
        email = email_queue(kind="test", to="a@example.com", subject="Hi", body="Hello")
    outcomes = []
    assert run_together(lambda index: outcomes.append(email_deliver(email_id=email.pk)), 6) == []
    assert len([outcome for outcome in outcomes if outcome is not None]) == 1
    assert len(mailoutbox) == 1


def test_a_broker_outage_never_fails_the_request_that_sends_mail(
    client, mailoutbox, django_capture_on_commit_callbacks
):
    with mock.patch.object(send_email, "apply_async", side_effect=BrokerUnavailable("down")):
        email = sign_up(client, django_capture_on_commit_callbacks)
    assert User.objects.filter(email="new@example.com").exists()
    assert (email.status, mailoutbox) == ("pending", [])


def test_bodies_are_encrypted_at_rest_and_never_logged(
    client, caplog, mailoutbox, django_capture_on_commit_callbacks
):
    caplog.set_level("DEBUG")
    with mock.patch.object(send_email, "apply_async", side_effect=BrokerUnavailable("down")):
        email = sign_up(client, django_capture_on_commit_callbacks)
    assert "/accounts/verify/" not in email.body_encrypted
    with django_capture_on_commit_callbacks(execute=True):
        send_email.run(email.pk)
    (message,) = mailoutbox
    link = next(line for line in message.body.splitlines() if "/accounts/verify/" in line)
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert token not in caplog.text and "new@example.com" not in caplog.text


def test_an_api_key_is_never_put_in_an_email(django_capture_on_commit_callbacks):
    key = "0123456789abcdef0123456789abcdef.s3cr3t-s3cr3t-s3cr3t-s3cr3t"
    with pytest.raises(ValueError), django_capture_on_commit_callbacks(execute=True):
        email_queue(kind="test", to="a@example.com", subject="Your key", body=f"Key: {key}")
    assert not OutgoingEmail.objects.exists()


def test_no_code_sends_mail_but_the_outbox():
    """Every mail path goes through console.emails.email_queue: nothing else may reach
    django.core.mail (a direct send is lost when the mail server fails)."""
    root = Path(__file__).resolve().parents[2]
    reaching = sorted(
        str(path.relative_to(root))
        for app in ("console", "billing", "notifications", "keys", "projects", "history", "gateway")
        for path in (root / app).rglob("*.py")
        if "django.core.mail" in path.read_text() or "mail_admins" in path.read_text()
    )
    assert reaching == ["console/emails.py"]


def test_a_body_that_no_longer_decrypts_fails_after_the_cap_instead_of_looping(
    mailoutbox, settings, django_capture_on_commit_callbacks
):
    """The key changed under a queued email (UPSTREAM_SECRET_KEY rotated without care): each
    attempt fails like a mail server refusing it, and the email ends as failed."""
    settings.EMAIL_MAX_ATTEMPTS = 3
    # No worker takes the task: the sweep's attempts are the ones that count.
    with (
        mock.patch.object(send_email, "apply_async"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        email = email_queue(kind="test", to="a@example.com", subject="Hi", body="Body")
    settings.UPSTREAM_SECRET_KEY = "another key entirely"
    now = timezone.now()
    for _attempt in range(6):
        now += timedelta(hours=1)
        for email_id in emails_due(now=now):
            email_deliver(email_id=email_id, now=now)

    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == ("failed", 3, "InvalidToken")
    assert emails_due(now=now + timedelta(days=1)) == [] and mailoutbox == []
