import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from console.models import AuditEvent
from keys.models import ApiKey
from keys.selectors import Authenticated, KeyRejected, api_key_authenticate
from projects.services import project_create
from tests.factories import login_verified

pytestmark = pytest.mark.django_db

_KEY = re.compile(r'value="([0-9a-f]{32}\.[A-Za-z0-9_-]+)"')


def _text_columns_containing(needle: str) -> list[str]:
    """Every text-like column of every table that contains `needle`."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                quoted_table = connection.ops.quote_name(table)
                quoted_column = connection.ops.quote_name(column.name)
                cursor.execute(
                    f"SELECT COUNT(*) FROM {quoted_table} "
                    f"WHERE CAST({quoted_column} AS TEXT) LIKE %s",
                    [f"%{needle}%"],
                )
                if cursor.fetchone()[0]:
                    found.append(f"{table}.{column.name}")
    return found


def test_the_secret_is_in_exactly_one_response_and_nowhere_else(client, world, caplog, mailoutbox):
    caplog.set_level(logging.DEBUG)
    client.force_login(world.owner_a)
    project = project_create(account=world.account_a, name="Chatbot")
    responses = []

    def keep(response):
        responses.append(response.content.decode() + str(response.headers))
        return response

    created = keep(
        client.post(
            reverse("keys:create"),
            {
                "label": "chatbot",
                "project": project.pk,
                "scope": "inference",
                "environment": "production",
            },
        )
    )
    raw = _KEY.search(responses[0]).group(1)
    secret = raw.split(".")[1]
    assert "no-store" in created["Cache-Control"]
    key = ApiKey.objects.get()
    keep(client.get(reverse("keys:list")))
    keep(client.get(reverse("keys:detail", args=[key.pk])))
    keep(client.get(reverse("projects:detail", args=[project.pk])))
    keep(
        client.post(
            reverse("keys:edit", args=[key.pk]),
            {"label": "bot", "environment": "staging"},
            follow=True,
        )
    )
    rotated = keep(client.post(reverse("keys:rotate", args=[key.pk]), {"grace_seconds": "3600"}))
    new_raw = _KEY.search(rotated.content.decode()).group(1)
    replacement = ApiKey.objects.get(replaced_by__isnull=True, pk__gt=key.pk)
    keep(client.get(reverse("keys:detail", args=[replacement.pk])))
    keep(client.get(reverse("keys:revoke", args=[replacement.pk])))
    keep(client.post(reverse("keys:revoke", args=[replacement.pk]), follow=True))
    keep(client.get(reverse("keys:list")))

    for needle in (secret, raw):
        assert sum(needle in body for body in responses) == 1
        assert needle in responses[0]
    new_secret = new_raw.split(".")[1]
    assert [new_secret in body for body in responses].count(True) == 1
    for needle in (secret, new_secret):
        assert _text_columns_containing(needle) == []
        assert not any(needle in record.getMessage() for record in caplog.records)
        assert not any(needle in message.body for message in mailoutbox)
    assert AuditEvent.objects.filter(action__startswith="api_key.").count() == 4


def test_developer_creates_keys_but_not_admin_read_ones(client, world):
    client.force_login(world.developer_a.user)
    project = world.account_a.projects.get(is_default=True)
    response = client.post(
        reverse("keys:create"),
        {"label": "x", "project": project.pk, "scope": "admin-read", "environment": "test"},
    )
    assert response.status_code == 422
    assert ApiKey.objects.count() == 0
    client.force_login(world.admin_a.user)
    response = client.post(
        reverse("keys:create"),
        {"label": "x", "project": project.pk, "scope": "admin-read", "environment": "test"},
    )
    assert response.status_code == 200
    assert ApiKey.objects.get().scope == "admin-read"


@pytest.mark.parametrize(
    "changes",
    [
        {"label": ""},
        {"label": "   "},
        {"label": "x" * 200},
        {"environment": "Prod Env!"},
        {"environment": "x" * 40},
        {"scope": "root"},
        {"project": "999999"},
        {"project": "abc"},
        {"expires_on": "2001-01-01"},
        {"expires_on": "yesterday"},
    ],
)
def test_bad_key_input_is_refused_and_nothing_is_saved(client, world, changes):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    data = {"label": "ok", "project": project.pk, "scope": "inference", "environment": "test"}
    response = client.post(reverse("keys:create"), {**data, **changes})
    assert response.status_code == 422
    assert ApiKey.objects.count() == 0
    assert AuditEvent.objects.filter(action="api_key.create").count() == 0


def test_an_expiry_today_is_accepted_and_ends_with_the_day(client, world):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    import zoneinfo

    today = timezone.now().astimezone(zoneinfo.ZoneInfo("Asia/Shanghai")).date()
    response = client.post(
        reverse("keys:create"),
        {
            "label": "ok",
            "project": project.pk,
            "scope": "inference",
            "environment": "test",
            "expires_on": today.isoformat(),
        },
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert timezone.now() < key.expires_at <= timezone.now() + timedelta(days=1)


def test_keys_cannot_go_into_an_archived_project(client, world):
    client.force_login(world.owner_a)
    project = project_create(account=world.account_a, name="Old")
    client.post(reverse("projects:archive", args=[project.pk]))
    response = client.post(
        reverse("keys:create"),
        {"label": "x", "project": project.pk, "scope": "inference", "environment": "test"},
    )
    assert response.status_code == 422
    assert ApiKey.objects.count() == 0


def test_bad_edit_input_changes_nothing(client, world):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    client.post(
        reverse("keys:create"),
        {"label": "keep", "project": project.pk, "scope": "inference", "environment": "test"},
    )
    key = ApiKey.objects.get()
    for data in ({"label": "", "environment": "test"}, {"label": "y" * 200, "environment": "t"}):
        assert client.post(reverse("keys:edit", args=[key.pk]), data).status_code == 422
    key.refresh_from_db()
    assert (key.label, key.environment) == ("keep", "test")


def test_a_bad_grace_period_rotates_nothing(client, world):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    client.post(
        reverse("keys:create"),
        {"label": "keep", "project": project.pk, "scope": "inference", "environment": "test"},
    )
    key = ApiKey.objects.get()
    for grace in ("17", "-1", "forever", ""):
        client.post(reverse("keys:rotate", args=[key.pk]), {"grace_seconds": grace})
    assert ApiKey.objects.count() == 1


def test_the_htmx_create_answers_with_the_dialog_and_errors_go_to_the_form(client, world):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    ok = client.post(
        reverse("keys:create"),
        {"label": "h", "project": project.pk, "scope": "inference", "environment": "test"},
        HTTP_HX_REQUEST="true",
    )
    body = ok.content.decode()
    assert ok.status_code == 200 and "<dialog" in body and "<html" not in body
    bad = client.post(
        reverse("keys:create"),
        {"label": "", "project": project.pk, "scope": "inference", "environment": "test"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 422
    assert bad["HX-Retarget"] == "#create-key"
    assert 'id="create-key"' in bad.content.decode()


def test_revoke_asks_first_then_takes_effect_on_the_next_call(client, world):
    client.force_login(world.developer_a.user)
    project = world.account_a.projects.get(is_default=True)
    page = client.post(
        reverse("keys:create"),
        {"label": "r", "project": project.pk, "scope": "inference", "environment": "test"},
    )
    raw = _KEY.search(page.content.decode()).group(1)
    key = ApiKey.objects.get()
    confirm = client.get(reverse("keys:revoke", args=[key.pk]))
    assert "cannot be undone" in confirm.content.decode()
    assert isinstance(api_key_authenticate(raw), Authenticated)
    client.post(reverse("keys:revoke", args=[key.pk]))
    assert api_key_authenticate(raw) == KeyRejected("revoked")


def test_the_admin_shows_the_mask_and_never_the_hash(client, world):
    from keys.services import api_key_create

    created = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="admin-view",
        actor=None,
    )
    staff = world.owner_b
    staff.is_staff = staff.is_superuser = True
    staff.save()
    login_verified(client, staff)
    page = client.get(reverse("admin:keys_apikey_change", args=[created.key.pk]))
    body = page.content.decode()
    assert page.status_code == 200 and created.key.mask in body
    assert created.key.secret_hash not in body
    assert created.raw.split(".")[1] not in body
    listing = client.get(reverse("admin:keys_apikey_changelist")).content.decode()
    assert created.key.secret_hash not in listing


def test_a_developer_cannot_edit_rotate_or_revoke_an_admin_read_key(client, world):
    """Rotating copies the scope: it would hand a developer a fresh admin-read key."""
    from keys.services import api_key_create

    created = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="usage-export",
        scope="admin-read",
        actor=world.owner_a,
    )
    client.force_login(world.developer_a.user)
    pk = created.key.pk
    assert client.post(reverse("keys:rotate", args=[pk]), {"grace_seconds": "0"}).status_code == 403
    assert client.post(reverse("keys:revoke", args=[pk])).status_code == 403
    edit = client.post(reverse("keys:edit", args=[pk]), {"label": "x", "environment": "test"})
    assert edit.status_code == 403
    assert ApiKey.objects.count() == 1
    assert isinstance(api_key_authenticate(created.raw), Authenticated)


def test_the_created_key_never_shows_in_a_repr(world):
    from keys.services import api_key_create

    created = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="r",
        actor=None,
    )
    assert created.raw.split(".")[1] not in repr(created)


def test_finance_sees_a_project_but_not_its_keys(client, world):
    from keys.services import api_key_create

    project = world.account_a.projects.get(is_default=True)
    created = api_key_create(
        account=world.account_a, project=project, label="secret-label-xyz", actor=None
    )
    client.force_login(world.finance_a.user)
    page = client.get(reverse("projects:detail", args=[project.pk])).content.decode()
    assert "secret-label-xyz" not in page and created.key.mask not in page


@pytest.mark.parametrize("day", ["9999-12-31", "2099-01-01"])
def test_a_far_future_expiry_is_refused_not_a_crash(client, world, day):
    client.force_login(world.owner_a)
    project = world.account_a.projects.get(is_default=True)
    response = client.post(
        reverse("keys:create"),
        {
            "label": "x",
            "project": project.pk,
            "scope": "inference",
            "environment": "t",
            "expires_on": day,
        },
    )
    assert response.status_code == 422
    assert ApiKey.objects.count() == 0


def test_ids_too_large_for_a_database_integer_are_404(client, world):
    client.force_login(world.owner_a)
    huge = 10**30
    assert client.get(f"/api-keys/{huge}/").status_code == 404
    assert client.get(f"/projects/{huge}/").status_code == 404
    assert client.post(f"/members/{huge}/role/", {"role": "viewer"}).status_code == 404
    response = client.post(reverse("account_switch"), {"account": str(huge)})
    assert response.status_code == 302  # refused by the form, nothing switched


def test_error_reports_redact_the_authorization_header(rf):
    from django.views.debug import get_default_exception_reporter_filter

    request = rf.post("/api/paas/v4/chat/completions", HTTP_AUTHORIZATION="Bearer abc.secret")
    meta = get_default_exception_reporter_filter().get_safe_request_meta(request)
    assert "abc.secret" not in str(meta["HTTP_AUTHORIZATION"])
