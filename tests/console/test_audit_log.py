"""The console's audit log page: owners and admins read their own account's events."""

import pytest
from django.urls import reverse

from console.models import AuditEvent
from console.services import audit_record

pytestmark = pytest.mark.django_db


def test_it_lists_only_the_accounts_own_events_newest_first(world, login):
    audit_record(action="api_key.create", account=world.account_a, actor=world.owner_a)
    audit_record(action="billing.refund", account=world.account_a, reason="duplicate")
    audit_record(action="api_key.revoke", account=world.account_b, actor=world.owner_b)
    for persona in ("owner_a", "admin_a"):
        page = login(world.user(persona)).get(reverse("audit_log"))
        assert page.status_code == 200
        actions = [event.action for event in page.context["page"].object_list]
        assert actions[:2] == ["billing.refund", "api_key.create"]
        assert "api_key.revoke" not in actions
        assert all(
            event.account_id == world.account_a.pk for event in page.context["page"].object_list
        )


@pytest.mark.parametrize("persona", ["developer_a", "finance_a", "viewer_a"])
def test_other_roles_are_refused(world, login, persona):
    assert login(world.user(persona)).get(reverse("audit_log")).status_code == 403


def test_it_filters_by_action_prefix_and_shows_an_empty_state(world, login):
    audit_record(action="api_key.create", account=world.account_a)
    audit_record(action="billing.refund", account=world.account_a, reason="x")
    client = login(world.owner_a)
    page = client.get(reverse("audit_log"), {"action": "api_key."})
    assert [event.action for event in page.context["page"].object_list] == ["api_key.create"]
    empty = client.get(reverse("audit_log"), {"action": "nothing."})
    assert "No events match this filter." in empty.content.decode()


def test_metadata_and_reasons_are_escaped(world, login):
    audit_record(
        action="account.update",
        account=world.account_a,
        reason="<script>alert(1)</script>",
        metadata={"name": "<b>bold</b>"},
    )
    text = login(world.owner_a).get(reverse("audit_log")).content.decode()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text
    assert "<b>bold</b>" not in text
    # Shown as name and value, not as a Python dict.
    assert "<dt>name</dt><dd><code>&lt;b&gt;bold&lt;/b&gt;</code></dd>" in text
    assert "{&#x27;name&#x27;" not in text


def test_it_paginates(world, login):
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(account=world.account_a, action=f"test.event{index}", actor_kind="system")
            for index in range(60)
        ]
    )
    client = login(world.owner_a)
    first = client.get(reverse("audit_log"))
    second = client.get(reverse("audit_log"), {"page": 2})
    assert len(first.context["page"].object_list) == 50
    seen = {event.pk for event in first.context["page"].object_list}
    assert seen.isdisjoint(event.pk for event in second.context["page"].object_list)
