"""Reads of the notification centre and the webhook pages, always scoped to one account, and
who receives an account's events."""

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from console.models import Account, User
from console.roles import PERMISSIONS
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint

PAGE_SIZE = 25
RECIPIENT_PERMISSION = "alerts.manage"
DELIVERY_LOG_SIZE = 50


def notifications_unread_count(*, user: User, account: Account) -> int:
    """The bell: one COUNT on the partial index of unread rows."""
    return Notification.objects.filter(user=user, account=account, read_at__isnull=True).count()


def notifications_of(*, user: User, account: Account) -> QuerySet[Notification]:
    """Only the user's own notifications of this account (anyone else's id is a 404)."""
    return Notification.objects.filter(user=user, account=account)


def notification_page(*, user: User, account: Account, number) -> Page:
    queryset = notifications_of(user=user, account=account).order_by("-created_at", "-id")
    return Paginator(queryset, PAGE_SIZE).get_page(number)


def webhook_endpoints(*, account: Account) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(account=account).order_by("created_at", "id")


def webhook_deliveries(*, endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    return list(
        WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")[
            :DELIVERY_LOG_SIZE
        ]
    )


def alert_recipients(*, account: Account) -> QuerySet[User]:
    """Every active member of `account` whose role may manage alerts (owner, admin, finance):
    who gets an event in-app and by email."""
    return User.objects.filter(
        is_active=True,
        memberships__account=account,
        memberships__role__in=list(PERMISSIONS[RECIPIENT_PERMISSION]),
    ).order_by("pk")
