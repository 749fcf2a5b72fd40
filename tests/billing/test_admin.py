"""The back-office's money pages are read-only for everyone, the price catalogue is add-only,
and the staff groups hold exactly the documented permissions (issue 10)."""

import importlib
from datetime import date, timedelta

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group, Permission
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertFiring
from billing.invoices import Buyer, invoice_request
from billing.models import (
    Invoice,
    LedgerEntry,
    ModelPrice,
    PackConsumption,
    Payment,
    ResourcePack,
    Statement,
)
from billing.payments import payment_record_manual
from billing.statements import statement_generate
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from keys.services import api_key_create
from tests.billing.traffic import settle_one
from tests.factories import login_verified, make_account, make_user
from usage.models import UsageDaily, UsageHourly, UsageRecord

pytestmark = pytest.mark.django_db

MONEY_MODELS = [
    LedgerEntry,
    UsageRecord,
    Payment,
    Invoice,
    Statement,
    ResourcePack,
    PackConsumption,
    UsageDaily,
    UsageHourly,
    AlertFiring,
]
STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def snapshot(model):
    return [model_to_dict(row) for row in model.objects.order_by("pk")]


@pytest.fixture
def money():
    """One row of every money model, made the way the product makes them."""
    owner = make_user()
    account = make_account(owner)  # with the starter pack
    account.created_at = timezone.now() - timedelta(days=70)
    account.save(update_fields=["created_at"])
    payment_record_manual(account=account, amount_nano=100 * NANO_PER_UNIT, reference="admin-t1")
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    settle_one(key)  # usage record, charge (from the starter pack), roll-ups
    invoice_request(
        account=account,
        amount_nano=10 * NANO_PER_UNIT,
        buyer=Buyer(type="company", title="北京智谱华章科技有限公司", tax_id="91350100M000100Y43"),
        actor=owner,
    )
    first_of_month = timezone.localdate().replace(day=1)
    last_month = (first_of_month - timedelta(days=1)).replace(day=1)
    statement_generate(account=account, month=last_month)
    AlertFiring.objects.create(
        account=account, kind="balance_low", message="low", fired_at=timezone.now()
    )
    for model in MONEY_MODELS:
        assert model.objects.exists(), model
    return account


def staff_member(group_name: str):
    user = make_user(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def superuser_client():
    client = Client()
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", MONEY_MODELS, ids=lambda m: m.__name__)
def test_it_shows_money_to_a_superuser_read_only(money, superuser_client, model):
    row = model.objects.order_by("pk").first()
    listing = superuser_client.get(admin_url(model, "changelist"))
    assert listing.status_code == 200
    # No "delete selected" (and no bulk action at all: nothing here may change).
    assert "delete_selected" not in listing.content.decode()
    page = superuser_client.get(admin_url(model, "change", row.pk))
    assert page.status_code == 200
    assert page.context["adminform"].form.fields == {}  # every field read-only
    assert not page.context["has_change_permission"]
    assert not page.context["has_delete_permission"]


@pytest.mark.parametrize("model", MONEY_MODELS, ids=lambda m: m.__name__)
def test_it_refuses_every_write_to_money_even_for_a_superuser(money, superuser_client, model):
    row = model.objects.order_by("pk").first()
    before = snapshot(model)
    data = {name: value for name, value in model_to_dict(row).items() if value is not None}
    assert superuser_client.get(admin_url(model, "add")).status_code == 403
    assert superuser_client.post(admin_url(model, "add"), data).status_code == 403
    assert superuser_client.post(admin_url(model, "change", row.pk), data).status_code == 403
    deleted = superuser_client.post(admin_url(model, "delete", row.pk), {"post": "yes"})
    assert deleted.status_code == 403
    bulk = superuser_client.post(
        admin_url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)  # "no action selected", nothing deleted
    assert snapshot(model) == before


def test_a_usage_record_shows_the_masked_key_only(money, superuser_client):
    record = UsageRecord.objects.exclude(api_key=None).first()
    page = superuser_client.get(admin_url(UsageRecord, "change", record.pk)).content.decode()
    assert record.api_key.mask in page
    assert record.api_key.secret_hash not in page


def test_support_staff_view_but_change_nothing(money):
    client = Client()
    login_verified(client, staff_member(STAFF_GROUPS.SUPPORT))
    entry = LedgerEntry.objects.first()
    assert client.get(admin_url(LedgerEntry, "changelist")).status_code == 200
    assert client.get(admin_url(LedgerEntry, "change", entry.pk)).status_code == 200
    assert client.get(admin_url(ModelPrice, "changelist")).status_code == 200
    price = ModelPrice.objects.first()
    count = ModelPrice.objects.count()
    data = {
        "model": "glm-new",
        "currency": "CNY",
        "input_per_million_nano": 1,
        "output_per_million_nano": 1,
        "effective_from_0": timezone.localdate().isoformat(),
        "effective_from_1": "23:59:00",
    }
    assert client.post(admin_url(ModelPrice, "add"), data).status_code == 403
    assert client.post(admin_url(ModelPrice, "change", price.pk), data).status_code == 403
    assert ModelPrice.objects.count() == count
    assert client.get(reverse("admin:index")).status_code == 200
    # Read-only, and no prompt content.
    support = Group.objects.get(name=STAFF_GROUPS.SUPPORT)
    codenames = set(support.permissions.values_list("codename", flat=True))
    assert all(codename.startswith("view_") for codename in codenames)
    assert "view_promptlog" not in codenames and "view_historyexport" not in codenames
    assert {"view_ledgerentry", "view_usagerecord", "view_apikey", "view_account"} <= codenames


def test_finance_staff_hold_exactly_the_documented_permissions(db):
    finance = Group.objects.get(name=STAFF_GROUPS.FINANCE_STAFF)
    held = set(finance.permissions.values_list("content_type__app_label", "codename"))
    views = set(
        Permission.objects.filter(
            content_type__app_label__in=[
                "billing",
                "usage",
                "alerts",
                "plans",
                "console",
                "keys",
                "projects",
            ],
            codename__startswith="view_",
        ).values_list("content_type__app_label", "codename")
    )
    actions = {
        ("console", codename)
        for codename in [
            "staff_grant_bonus",
            "staff_confirm_transfer",
            "staff_refund",
            "staff_grant_pack",
            "staff_export_finance",
            "staff_manage_plan",
        ]
    }
    assert held == views | actions
    user = staff_member(STAFF_GROUPS.FINANCE_STAFF)
    assert user.has_perm("console.staff_refund")
    assert not user.has_perm("console.staff_suspend_account")
    assert not user.has_perm("console.staff_change_tier")
    assert not user.has_perm("console.staff_revoke_key")
    assert not user.has_perm("billing.add_modelprice")
    assert not user.has_perm("history.view_promptlog")


def test_a_superuser_has_every_staff_permission(db):
    user = make_user(is_staff=True, is_superuser=True)
    assert user.has_perm("console.staff_suspend_account")
    assert user.has_perm("console.staff_export_finance")


def test_the_groups_migration_is_idempotent(db):
    def state():
        return {
            group.name: set(group.permissions.values_list("pk", flat=True))
            for group in Group.objects.order_by("name")
        }

    before = state()
    STAFF_GROUPS.groups(global_apps, None)
    STAFF_GROUPS.groups(global_apps, None)
    assert state() == before
    assert set(before) >= {STAFF_GROUPS.SUPPORT, STAFF_GROUPS.FINANCE_STAFF}


def test_non_staff_are_sent_to_the_admin_login(money):
    client = Client()
    client.force_login(money.memberships.first().user)
    response = client.get(admin_url(LedgerEntry, "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    anonymous = Client().get(admin_url(LedgerEntry, "changelist"))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("admin:login"))


def price_form(**overrides):
    start = timezone.localtime() + timedelta(days=1)
    data = {
        "model": "glm-4.7",
        "currency": "CNY",
        "input_per_million_nano": 3 * NANO_PER_UNIT,
        "output_per_million_nano": 9 * NANO_PER_UNIT,
        "effective_from_0": start.date().isoformat(),
        "effective_from_1": start.strftime("%H:%M:%S"),
    }
    return data | overrides


def test_an_admin_post_without_the_csrf_token_is_refused(db):
    client = Client(enforce_csrf_checks=True)
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    count = ModelPrice.objects.count()
    assert client.post(admin_url(ModelPrice, "add"), price_form()).status_code == 403
    assert ModelPrice.objects.count() == count


def test_a_new_price_is_a_new_row_and_the_old_one_is_untouched(superuser_client):
    old = ModelPrice.objects.filter(model="glm-4.7", currency="CNY").latest("effective_from")
    old_values = model_to_dict(old)
    response = superuser_client.post(admin_url(ModelPrice, "add"), price_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    new = ModelPrice.objects.filter(model="glm-4.7", currency="CNY").latest("effective_from")
    assert new.pk != old.pk and new.input_per_million_nano == 3 * NANO_PER_UNIT
    old.refresh_from_db()
    assert model_to_dict(old) == old_values
    event = AuditEvent.objects.get(action="catalogue.modelprice_add")
    assert event.actor_kind == AuditEvent.ActorKind.STAFF and event.target_id == str(new.pk)
    # Changing or deleting any row is refused.
    before = snapshot(ModelPrice)
    change = admin_url(ModelPrice, "change", old.pk)
    assert superuser_client.post(change, price_form()).status_code == 403
    delete = admin_url(ModelPrice, "delete", old.pk)
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 403
    assert snapshot(ModelPrice) == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"effective_from_0": date(2020, 1, 1).isoformat()},
        {"input_per_million_nano": -1},
        {"currency": "EUR"},
    ],
    ids=["in-the-past", "negative", "unknown-currency"],
)
def test_an_invalid_price_is_refused(superuser_client, overrides):
    count = ModelPrice.objects.count()
    response = superuser_client.post(admin_url(ModelPrice, "add"), price_form(**overrides))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert ModelPrice.objects.count() == count


def test_catalogue_edits_write_an_audit_event(superuser_client):
    from billing.models import Promotion
    from console.models import Tier

    tier = Tier.objects.order_by("rank").first()
    data = model_to_dict(tier, exclude=["id"]) | {"requests_per_minute": 77}
    response = superuser_client.post(admin_url(Tier, "change", tier.pk), data)
    assert response.status_code == 302
    tier.refresh_from_db()
    assert tier.requests_per_minute == 77
    event = AuditEvent.objects.get(action="catalogue.tier_change")
    assert event.metadata["fields"] == {"requests_per_minute": "77"}
    promotion = Promotion.objects.first()
    data = model_to_dict(promotion, exclude=["id"]) | {"active": False}
    data = {name: value for name, value in data.items() if value is not None}
    response = superuser_client.post(admin_url(Promotion, "change", promotion.pk), data)
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="catalogue.promotion_change").count() == 1


def test_an_upstream_secret_is_never_shown_back(superuser_client):
    from gateway.models import UpstreamRoute

    route = UpstreamRoute.objects.first()
    data = {
        "model": route.model,
        "base_url": "https://upstream.example/v1",
        "protocol": "openai",
        "upstream_model": "",
        "timeout_seconds": 30,
        "enabled": "on",
        "secret": "sk-very-secret-value",
    }
    response = superuser_client.post(admin_url(UpstreamRoute, "change", route.pk), data)
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.secret_encrypted and "sk-very-secret-value" not in route.secret_encrypted
    page = superuser_client.get(admin_url(UpstreamRoute, "change", route.pk)).content.decode()
    assert "sk-very-secret-value" not in page and route.secret_encrypted not in page
    event = AuditEvent.objects.get(action="catalogue.upstreamroute_change")
    assert event.metadata["fields"]["secret"] == "(hidden)"
    assert "sk-very-secret-value" not in str(event.metadata)


@pytest.mark.django_db(transaction=True)
def test_the_groups_are_reseeded_after_a_flush():
    names = set(Group.objects.values_list("name", flat=True))
    assert {STAFF_GROUPS.SUPPORT, STAFF_GROUPS.FINANCE_STAFF} <= names
    assert staff_member(STAFF_GROUPS.FINANCE_STAFF).has_perm("console.staff_grant_bonus")


def test_staff_edit_the_model_alias_table_with_checks_and_an_audit_line(superuser_client):
    from gateway.models import ModelAlias

    url = admin_url(ModelAlias, "add")
    bad_pattern = superuser_client.post(url, {"pattern": "claude sonnet <b>", "model": "glm-4.7"})
    assert bad_pattern.status_code == 200 and b"errorlist" in bad_pattern.content
    unserved = superuser_client.post(url, {"pattern": "claude-next-*", "model": "gpt-9"})
    assert unserved.status_code == 200 and b"No upstream route serves" in unserved.content
    assert not ModelAlias.objects.filter(pattern="claude-next-*").exists()
    response = superuser_client.post(url, {"pattern": " Claude-Next-* ", "model": "GLM-4.7"})
    assert response.status_code == 302
    alias = ModelAlias.objects.get(pattern="claude-next-*")
    assert alias.model == "glm-4.7"
    event = AuditEvent.objects.get(action="catalogue.modelalias_add")
    assert event.actor_kind == AuditEvent.ActorKind.STAFF and event.target_id == str(alias.pk)
