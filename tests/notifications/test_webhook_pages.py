"""The webhook pages: alerts.manage only, another account's endpoint is a 404, and bad input
on every form changes nothing."""

import pytest
from django.urls import reverse

from console.models import AuditEvent
from console.secrets_at_rest import decrypt_secret
from notifications.models import WebhookDelivery, WebhookEndpoint
from notifications.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(world):
    return webhook_endpoint_create(
        account=world.account_a, url="https://a.example/hook", actor=world.owner_a, ip=None
    )


def test_adding_an_endpoint_generates_a_secret_and_shows_the_detail(world, client):
    client.force_login(world.finance_a.user)
    response = client.post(
        reverse("notifications:webhook_create"),
        {"url": "https://hooks.example.com/console", "description": "ops"},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("notifications:webhook_detail", args=[endpoint.pk])
    assert (endpoint.account, endpoint.url, endpoint.description, endpoint.enabled) == (
        world.account_a,
        "https://hooks.example.com/console",
        "ops",
        True,
    )
    assert endpoint.created_by == world.finance_a.user
    secret = decrypt_secret(endpoint.secret_encrypted)
    page = client.get(response["Location"]).content.decode()
    assert secret not in page, "the secret needs an explicit reveal"
    assert "Reveal" in page


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"url": ""},
        {"url": "not a url"},
        {"url": "javascript:alert(1)"},
        {"url": "JavaScript://example.com/%0aalert(1)"},
        {"url": "ftp://example.com/hook"},
        {"url": "file:///etc/passwd"},
        {"url": "https://user:password@example.com/hook"},
        {"url": "https://token@example.com/hook"},
        {"url": "https://example.com/" + "a" * 490},
        {"url": "https://example.com/hook", "description": "d" * 201},
    ],
)
def test_bad_input_is_refused_in_place_and_changes_nothing(world, client, data):
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:webhook_create"), data)
    assert response.status_code == 422
    assert 'class="errorlist' in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="webhook.").exists()


def test_a_url_of_exactly_500_characters_is_accepted(world, client):
    url = "https://example.com/" + "a" * (500 - len("https://example.com/"))
    client.force_login(world.owner_a)
    assert client.post(reverse("notifications:webhook_create"), {"url": url}).status_code == 302


def test_reveal_shows_the_secret_uncached_and_audits_it(world, client, endpoint):
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:webhook_reveal", args=[endpoint.pk]))
    assert decrypt_secret(endpoint.secret_encrypted) in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert AuditEvent.objects.filter(action="webhook.reveal_secret").count() == 1
    # GET never reveals.
    assert (
        client.get(reverse("notifications:webhook_reveal", args=[endpoint.pk])).status_code == 405
    )


def test_rotate_replaces_the_secret(world, client, endpoint):
    before = decrypt_secret(endpoint.secret_encrypted)
    client.force_login(world.owner_a)
    client.post(reverse("notifications:webhook_rotate", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    after = decrypt_secret(endpoint.secret_encrypted)
    assert after != before and after.startswith("whsec_")


def test_enable_and_disable(world, client, endpoint):
    client.force_login(world.owner_a)
    url = reverse("notifications:webhook_enabled", args=[endpoint.pk])
    assert client.post(url, {"enabled": "0"}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    for bad in ({}, {"enabled": "maybe"}):
        assert client.post(url, bad).status_code == 422
        endpoint.refresh_from_db()
        assert endpoint.enabled is False
    client.post(url, {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled is True
    actions = list(
        AuditEvent.objects.filter(action__in=["webhook.enable", "webhook.disable"])
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["webhook.disable", "webhook.enable"]


def test_delete_asks_first_then_deletes(world, client, endpoint):
    client.force_login(world.owner_a)
    url = reverse("notifications:webhook_delete", args=[endpoint.pk])
    page = client.get(url)
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert WebhookEndpoint.objects.exists()
    assert client.post(url).status_code == 302
    assert not WebhookEndpoint.objects.exists()


def test_send_test_records_a_delivery_shown_in_the_log(world, client, endpoint):
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:webhook_test", args=[endpoint.pk]))
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get()
    assert (delivery.endpoint, delivery.event_type, delivery.status) == (
        endpoint,
        "webhook.test",
        "pending",
    )
    page = client.get(reverse("notifications:webhook_detail", args=[endpoint.pk]))
    assert "webhook.test" in page.content.decode()


def test_developers_and_viewers_get_403(world, client, endpoint):
    for membership in (world.developer_a, world.viewer_a):
        client.force_login(membership.user)
        assert client.get(reverse("notifications:webhooks")).status_code == 403
        assert (
            client.post(reverse("notifications:webhook_create"), {"url": "https://x.example"})
        ).status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_another_accounts_endpoint_is_a_404_and_nothing_moves(world, client, endpoint):
    client.force_login(world.owner_b)
    secret = endpoint.secret_encrypted
    for name, method, data in [
        ("webhook_detail", "get", None),
        ("webhook_reveal", "post", None),
        ("webhook_rotate", "post", None),
        ("webhook_enabled", "post", {"enabled": "0"}),
        ("webhook_test", "post", None),
        ("webhook_delete", "post", None),
    ]:
        url = reverse(f"notifications:{name}", args=[endpoint.pk])
        assert getattr(client, method)(url, data or {}).status_code == 404, name
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.secret_encrypted) == (True, secret)
    assert not WebhookDelivery.objects.exists()
    assert "a.example" not in client.get(reverse("notifications:webhooks")).content.decode()
