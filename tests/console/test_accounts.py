import pytest
from django.urls import reverse
from django.utils import timezone

from console.models import Account, AuditEvent, Membership
from projects.models import Project

pytestmark = pytest.mark.django_db


def test_a_user_creates_a_second_account_and_switches_between_them(client, world):
    client.force_login(world.owner_a)
    response = client.post(
        reverse("account_create"),
        {"name": "Side project", "currency": "USD", "time_zone": "Europe/Berlin"},
    )
    assert response.status_code == 302
    side = Account.objects.get(name="Side project")
    assert Project.objects.filter(account=side, is_default=True).exists()
    assert "Side project" in client.get(reverse("overview")).content.decode()
    client.post(reverse("account_switch"), {"account": world.account_a.pk})
    assert "<h1>Account A</h1>" in client.get(reverse("overview")).content.decode()


def test_switching_to_a_foreign_or_garbage_account_changes_nothing(client, world):
    client.force_login(world.owner_a)
    assert (
        client.post(reverse("account_switch"), {"account": world.account_b.pk}).status_code == 404
    )
    client.post(reverse("account_switch"), {"account": "abc"})
    assert "<h1>Account A</h1>" in client.get(reverse("overview")).content.decode()


def test_a_user_without_an_account_is_asked_to_create_one(client, world):
    Membership.objects.filter(user=world.owner_b).delete()
    client.force_login(world.owner_b)
    response = client.get(reverse("overview"))
    assert response["Location"] == reverse("account_create")


def test_account_create_refuses_bad_input(client, world):
    client.force_login(world.owner_a)
    for data in (
        {"name": "", "currency": "CNY", "time_zone": "Asia/Shanghai"},
        {"name": "x", "currency": "BTC", "time_zone": "Asia/Shanghai"},
        {"name": "x", "currency": "CNY", "time_zone": "Mars/Olympus"},
    ):
        assert client.post(reverse("account_create"), data).status_code == 422
    assert Account.objects.count() == 2


def test_settings_update_and_audit(client, world):
    client.force_login(world.owner_a)
    response = client.post(
        reverse("account_settings"),
        {"name": "Account A Ltd", "time_zone": "UTC", "currency": "USD"},
    )
    assert response.status_code == 302
    world.account_a.refresh_from_db()
    assert (world.account_a.name, world.account_a.time_zone, world.account_a.currency) == (
        "Account A Ltd",
        "UTC",
        "USD",
    )
    event = AuditEvent.objects.get(action="account.update")
    assert event.metadata["changes"]["currency"] == ["CNY", "USD"]


def test_the_currency_is_locked_once_money_moved(client, world):
    Account.objects.filter(pk=world.account_a.pk).update(money_moved_at=timezone.now())
    client.force_login(world.owner_a)
    page = client.get(reverse("account_settings")).content.decode()
    assert "money has already moved" in page
    # A disabled field keeps its stored value whatever is posted.
    client.post(
        reverse("account_settings"), {"name": "Renamed", "time_zone": "UTC", "currency": "USD"}
    )
    world.account_a.refresh_from_db()
    assert world.account_a.currency == "CNY"
    assert world.account_a.name == "Renamed"


def test_settings_refuse_bad_input(client, world):
    client.force_login(world.owner_a)
    response = client.post(
        reverse("account_settings"), {"name": "", "time_zone": "Nowhere", "currency": "CNY"}
    )
    assert response.status_code == 422
    world.account_a.refresh_from_db()
    assert world.account_a.name == "Account A"


def test_pages_show_times_in_the_account_time_zone(client, world):
    Account.objects.filter(pk=world.account_a.pk).update(
        created_at=timezone.datetime(2026, 1, 1, 20, 0, tzinfo=timezone.UTC)
    )
    client.force_login(world.owner_a)
    # 20:00 UTC on 1 January is already 2 January in Shanghai.
    assert "Jan 2, 2026" in client.get(reverse("overview")).content.decode()


def test_the_overview_shows_role_tier_and_counts(client, world):
    client.force_login(world.finance_a.user)
    page = client.get(reverse("overview")).content.decode()
    assert "Finance" in page and "Free" in page
    # Finance sees no prompt history or keys in the navigation.
    assert "Prompt history" not in page
    assert "API Keys" not in page
    assert "Billing" in page


@pytest.mark.parametrize("name", ["Evil\nBcc: x@example.com", "Tab\there", "Bell\x07"])
def test_names_with_control_characters_are_refused(client, world, name):
    client.force_login(world.owner_a)
    response = client.post(
        reverse("account_settings"), {"name": name, "time_zone": "UTC", "currency": "CNY"}
    )
    assert response.status_code == 422
    world.account_a.refresh_from_db()
    assert world.account_a.name == "Account A"
