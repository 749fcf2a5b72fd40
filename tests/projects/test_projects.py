import pytest
from django.urls import reverse

from billing.models import AccountMonthSpend, ProjectMonthSpend
from billing.selectors import current_month
from console.models import AuditEvent
from projects.models import Project
from projects.services import project_create

pytestmark = pytest.mark.django_db


def test_create_rename_and_describe(client, world):
    client.force_login(world.developer_a.user)
    response = client.post(reverse("projects:create"), {"name": "Search", "description": "RAG"})
    project = Project.objects.get(name="Search")
    assert response["Location"] == reverse("projects:detail", args=[project.pk])
    client.post(
        reverse("projects:edit", args=[project.pk]), {"name": "Search v2", "description": "new"}
    )
    project.refresh_from_db()
    assert (project.name, project.description) == ("Search v2", "new")
    assert AuditEvent.objects.filter(action="project.update", target_id=str(project.pk)).exists()


@pytest.mark.parametrize("data", [{"name": ""}, {"name": "   "}, {"name": "x" * 101}])
def test_bad_project_input_is_refused(client, world, data):
    client.force_login(world.owner_a)
    before = Project.objects.count()
    assert client.post(reverse("projects:create"), data).status_code == 422
    assert Project.objects.count() == before


def test_the_default_project_cannot_be_archived(client, world):
    client.force_login(world.owner_a)
    default = world.account_a.projects.get(is_default=True)
    client.post(reverse("projects:archive", args=[default.pk]))
    default.refresh_from_db()
    assert default.archived_at is None


def test_archive_asks_first_and_writes_an_audit_event(client, world):
    client.force_login(world.owner_a)
    project = project_create(account=world.account_a, name="Old")
    page = client.get(reverse("projects:archive", args=[project.pk]))
    assert "stops working at once" in page.content.decode()
    client.post(reverse("projects:archive", args=[project.pk]))
    project.refresh_from_db()
    assert project.archived_at is not None
    assert AuditEvent.objects.filter(action="project.archive").exists()
    link = reverse("projects:detail", args=[project.pk])
    assert link not in client.get(reverse("projects:list")).content.decode()
    assert link in client.get(reverse("projects:list") + "?archived=1").content.decode()


# Writes spend counters directly to show exact figures: no ledger behind them.
@pytest.mark.billing_tamper
def test_a_cap_is_set_shown_with_a_bar_and_audited(client, world):
    client.force_login(world.admin_a.user)
    project = project_create(account=world.account_a, name="Capped")
    client.post(reverse("projects:cap", args=[project.pk]), {"amount": "200.50", "mode": "block"})
    project.refresh_from_db()
    assert (project.monthly_cap_nano, project.cap_mode) == (200_500_000_000, "block")
    month = current_month(account=world.account_a)
    ProjectMonthSpend.objects.create(
        account=world.account_a, project=project, month=month, spent_nano=100_250_000_000
    )
    page = client.get(reverse("projects:list")).content.decode()
    assert "¥100.25 / ¥200.50 · 50%" in page
    assert '<meter min="0" max="100"' in page
    event = AuditEvent.objects.get(action="project.cap_change")
    assert event.metadata["to"] == [200_500_000_000, "block"]
    # Removing the cap: an empty amount.
    client.post(reverse("projects:cap", args=[project.pk]), {"amount": "", "mode": "alert"})
    project.refresh_from_db()
    assert project.monthly_cap_nano is None


@pytest.mark.parametrize("amount", ["-5", "abc", "1.005", "0", "1e3", "100000001"])
def test_bad_caps_are_refused_and_nothing_is_saved(client, world, amount):
    client.force_login(world.owner_a)
    project = project_create(account=world.account_a, name="Capped")
    response = client.post(
        reverse("projects:cap", args=[project.pk]), {"amount": amount, "mode": "block"}
    )
    assert response.status_code == 422
    project.refresh_from_db()
    assert project.monthly_cap_nano is None
    assert not AuditEvent.objects.filter(action="project.cap_change").exists()


def test_an_unknown_cap_mode_is_refused(client, world):
    client.force_login(world.owner_a)
    project = project_create(account=world.account_a, name="Capped")
    response = client.post(
        reverse("projects:cap", args=[project.pk]), {"amount": "5", "mode": "explode"}
    )
    assert response.status_code == 422


@pytest.mark.billing_tamper
def test_the_account_budget(client, world):
    client.force_login(world.owner_a)
    client.post(reverse("projects:budget"), {"amount": "1000", "mode": "alert"})
    world.account_a.refresh_from_db()
    assert (world.account_a.monthly_budget_nano, world.account_a.budget_mode) == (
        1_000_000_000_000,
        "alert",
    )
    AccountMonthSpend.objects.create(
        account=world.account_a,
        month=current_month(account=world.account_a),
        spent_nano=800_000_000_000,
    )
    page = client.get(reverse("projects:list")).content.decode()
    assert "¥800.00 / ¥1,000.00 · 80%" in page
    assert (
        client.post(reverse("projects:budget"), {"amount": "-1", "mode": "alert"}).status_code
        == 422
    )
    assert AuditEvent.objects.filter(action="account.budget_change").count() == 1


def test_key_counts_on_the_list_count_only_working_keys(client, world):
    from keys.services import api_key_create, api_key_revoke

    project = project_create(account=world.account_a, name="Counted")
    kept = api_key_create(account=world.account_a, project=project, label="a", actor=None).key
    gone = api_key_create(account=world.account_a, project=project, label="b", actor=None).key
    api_key_revoke(key=gone, actor=None)
    client.force_login(world.owner_a)
    from billing.selectors import project_rows

    counts = {row.project.name: row.active_keys for row in project_rows(account=world.account_a)}
    assert counts["Counted"] == 1
    assert kept.pk
