"""Events delivered to an account's members: in-app notifications, emails and signed
webhooks. The database is the queue of record: every delivery is a row that a task (or the
sweep, when the task was lost) works off."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from console.models import Account


class NotificationEvent(models.Model):
    """One event per (account, event id): the idempotency anchor of `notify` and the outbox
    of its email (claimed by the email task through `emailed_at`)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(_("event type"), max_length=64)
    event_id = models.CharField(_("event id"), max_length=200)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"), blank=True)
    link = models.CharField(_("link"), max_length=500, blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    email_requested = models.BooleanField(default=False)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("notification event")
        verbose_name_plural = _("notification events")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "event_id"], name="notification_event_unique_per_account"
            ),
        ]
        indexes = [
            # The sweep: emails requested but not sent (their task was lost).
            models.Index(
                fields=["created_at"],
                condition=Q(email_requested=True, emailed_at__isnull=True),
                name="notification_event_unsent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    @property
    def absolute_link(self) -> str:
        """The link as a full URL, for emails and webhooks (read outside the console): a
        console path gets the site's address, a full URL passes unchanged."""
        if self.link.startswith("/"):
            return settings.SITE_URL + self.link
        return self.link


class Notification(models.Model):
    """An in-app notification: one row per recipient."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    event_type = models.CharField(_("event type"), max_length=64)
    event_id = models.CharField(_("event id"), max_length=200)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"), blank=True)
    link = models.CharField(_("link"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "user", "event_id"], name="notification_unique_per_user"
            ),
        ]
        indexes = [
            # The notification centre: a user's notifications of one account, newest first.
            models.Index(
                fields=["user", "account", "-created_at", "-id"], name="notification_inbox"
            ),
            # The bell on every page: COUNT of a user's unread notifications in one account.
            models.Index(
                fields=["user", "account"],
                condition=Q(read_at__isnull=True),
                name="notification_unread",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    @property
    def safe_link(self) -> str:
        """The link, if it is a console path or an http(s) URL (never a javascript: one)."""
        if self.link.startswith(("/", "https://", "http://")) and not self.link.startswith("//"):
            return self.link
        return ""


class WebhookEndpoint(models.Model):
    """A URL of the account's that receives every event as a signed JSON POST."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    url = models.CharField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # Fernet-encrypted with gateway.upstream's key; shown only on an explicit reveal.
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(_("enabled"), default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        indexes = [
            # notify: the enabled endpoints of one account.
            models.Index(fields=["account", "enabled"], name="webhook_endpoint_account"),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint, with what its attempts got."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(_("event type"), max_length=64)
    event_id = models.CharField(_("event id"), max_length=200)
    payload = models.JSONField(_("payload"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_status_code = models.PositiveSmallIntegerField(_("last status code"), null=True)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    # When the next attempt is due; while an attempt runs, a lease so that the sweep does not
    # send the same delivery twice at once.
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    # Every attempt: {"at", "status_code", "error", "ms"} (at most WEBHOOK_MAX_ATTEMPTS).
    attempt_log = models.JSONField(_("attempts log"), default=list, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhook_delivery_unique_per_endpoint"
            ),
        ]
        indexes = [
            # The endpoint page's delivery log, newest first.
            models.Index(fields=["endpoint", "-created_at", "-id"], name="webhook_delivery_log"),
            # The sweep: pending deliveries whose next attempt is due.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id}"


class NotificationEmail(models.Model):
    """One recipient's email of one event: recorded as it goes out, so a retry after another
    recipient's failure never sends it twice, and counted, so a failing one is given up on."""

    event = models.ForeignKey(NotificationEvent, on_delete=models.CASCADE, related_name="emails")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("notification email")
        verbose_name_plural = _("notification emails")
        constraints = [
            models.UniqueConstraint(fields=["event", "user"], name="notification_email_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.user_id}"
