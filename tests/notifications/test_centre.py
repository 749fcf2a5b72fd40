"""The notification centre: the bell's unread count, the list, mark read (htmx and not),
and tenancy (only the user's own notifications of the current account)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.models import Notification
from notifications.selectors import PAGE_SIZE
from notifications.services import notify

pytestmark = pytest.mark.django_db


def _notify(account, event_id, title="Balance low"):
    return notify(
        account=account,
        event_type="alert.balance_low",
        event_id=event_id,
        title=title,
        body="Recharge soon.",
        link="/billing/",
        email=False,
        webhook=False,
    )


def test_the_bell_shows_the_unread_count_of_the_current_account(world, client):
    _notify(world.account_a, "one")
    _notify(world.account_a, "two")
    client.force_login(world.owner_a)
    response = client.get(reverse("overview"))
    bell = response.content.decode().split('id="notification-bell"')[1].split("</a>")[0]
    assert '<span class="badge">2</span>' in bell
    assert "Notifications: 2 unread" in bell


def test_the_bell_costs_one_count_query(world, rf):
    from django.contrib.sessions.backends.db import SessionStore

    from notifications.context_processors import notifications

    _notify(world.account_a, "one")
    request = rf.get("/")
    request.user = world.owner_a
    request.session = SessionStore()
    from console.tenancy import current_membership

    current_membership(request)  # looked up (and cached) by the console's own processor
    with CaptureQueriesContext(connection) as queries:
        assert notifications(request) == {"unread_notifications": 1}
    assert len(queries) == 1
    assert "COUNT" in queries[0]["sql"]


def test_the_list_is_newest_first_with_unread_highlighted(world, client):
    _notify(world.account_a, "old", title="Older alert")
    _notify(world.account_a, "new", title="Newer alert")
    Notification.objects.filter(event_id="old").update(read_at="2026-01-01T00:00Z")
    client.force_login(world.owner_a)
    page = client.get(reverse("notifications:list")).content.decode()
    assert page.index("Newer alert") < page.index("Older alert")
    newer = Notification.objects.get(user=world.owner_a, event_id="new")
    assert f'id="notification-{newer.pk}" class="notification unread"' in page


def test_an_empty_centre_says_so(world, client):
    client.force_login(world.developer_a.user)
    response = client.get(reverse("notifications:list"))
    assert "No notifications." in response.content.decode()


def test_the_list_is_paginated(world, client):
    for index in range(PAGE_SIZE + 2):
        _notify(world.account_a, f"evt-{index}", title=f"Alert {index}")
    client.force_login(world.owner_a)
    first = client.get(reverse("notifications:list")).content.decode()
    second = client.get(reverse("notifications:list") + "?page=2").content.decode()
    assert first.count('<li id="notification-') == PAGE_SIZE
    assert second.count('<li id="notification-') == 2
    assert "Alert 0<" in second


def test_mark_read_without_javascript_redirects_back(world, client):
    _notify(world.account_a, "one")
    mine = Notification.objects.get(user=world.owner_a)
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:read", args=[mine.pk]), {"page": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("notifications:list") + "?page=1"
    mine.refresh_from_db()
    assert mine.read_at is not None
    # The teammates' copies stay unread.
    assert Notification.objects.filter(read_at__isnull=True).count() == 2


def test_mark_read_with_htmx_swaps_the_item_and_the_bell(world, client):
    _notify(world.account_a, "one")
    _notify(world.account_a, "two")
    mine = Notification.objects.filter(user=world.owner_a).first()
    client.force_login(world.owner_a)
    response = client.post(
        reverse("notifications:read", args=[mine.pk]), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="notification-{mine.pk}" class="notification"' in html
    assert 'hx-swap-oob="true"' in html
    assert '<span class="badge">1</span>' in html


def test_mark_all_read_only_touches_my_notifications_of_this_account(world, client):
    _notify(world.account_a, "one")
    _notify(world.account_a, "two")
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:read_all"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert Notification.objects.filter(user=world.owner_a, read_at__isnull=True).count() == 0
    assert Notification.objects.filter(read_at__isnull=True).count() == 4
    assert "Mark read" not in response.content.decode()
    response = client.post(reverse("notifications:read_all"))
    assert response.status_code == 302


def test_another_users_notification_is_a_404_and_stays_unread(world, client):
    _notify(world.account_a, "one")
    _notify(world.account_b, "b-one")
    admins = Notification.objects.get(user=world.admin_a.user)
    bs = Notification.objects.get(user=world.owner_b)
    client.force_login(world.owner_a)
    assert client.post(reverse("notifications:read", args=[admins.pk])).status_code == 404
    assert client.post(reverse("notifications:read", args=[bs.pk])).status_code == 404
    assert client.post(reverse("notifications:read", args=[2**63])).status_code == 404
    assert Notification.objects.filter(read_at__isnull=True).count() == 4


def test_the_list_shows_only_the_current_accounts_notifications(world, client):
    from tests.factories import add_member

    add_member(world.account_b, "finance", world.owner_a)
    _notify(world.account_a, "a", title="Alert of A")
    _notify(world.account_b, "b", title="Alert of B")
    client.force_login(world.owner_a)
    page = client.get(reverse("notifications:list")).content.decode()
    assert "Alert of A" in page and "Alert of B" not in page
    client.post(reverse("account_switch"), {"account": world.account_b.pk})
    page = client.get(reverse("notifications:list")).content.decode()
    assert "Alert of B" in page and "Alert of A" not in page


def test_a_javascript_link_is_never_rendered(world, client):
    notify(
        account=world.account_a,
        event_type="alert.x",
        event_id="x",
        title="T",
        body="B",
        link="javascript:alert(1)",
        email=False,
        webhook=False,
    )
    client.force_login(world.owner_a)
    assert "javascript:" not in client.get(reverse("notifications:list")).content.decode()
