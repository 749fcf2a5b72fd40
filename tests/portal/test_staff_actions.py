"""The back-office's staff actions on an account: each asks for a reason, needs its own
permission, calls its service, and writes exactly one staff audit event with the reason."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import LedgerEntry, Payment, ResourcePack, Wallet
from billing.payments import payment_start_bank_transfer
from console.models import Account, AuditEvent, Tier, User
from console.money import NANO_PER_UNIT
from keys.models import ApiKey
from keys.services import api_key_create
from portal.admin_staff import ACTIONS
from projects.models import Project
from tests.billing.factories import funded_account
from tests.factories import login_verified, make_user

pytestmark = pytest.mark.django_db

CODENAMES = [
    "staff_grant_bonus",
    "staff_confirm_transfer",
    "staff_refund",
    "staff_grant_pack",
    "staff_change_tier",
    "staff_suspend_account",
    "staff_revoke_key",
    "staff_export_finance",
]


def staff_with(*codenames):
    user = make_user(is_staff=True)
    for codename in codenames:
        permission, _created = Permission.objects.get_or_create(
            codename=codename,
            content_type=ContentType.objects.get_for_model(Account),
            defaults={"name": codename.replace("_", " ")},
        )
        user.user_permissions.add(permission)
    return user


def action_url(account, slug):
    return reverse("admin:console_account_staff_action", args=[account.pk, slug])


def revoke_url(key):
    return reverse("admin:console_account_revoke_key", args=[key.account_id, key.pk])


def staff_events(account):
    """Events written by a staff member (the fixtures' own top-ups have no actor)."""
    return list(AuditEvent.objects.filter(account=account, actor_kind="staff", actor__isnull=False))


def wallet_of(account):
    return Wallet.objects.values("recharge_nano", "bonus_nano", "arrears_nano").get(account=account)


def perform(client, url, **data):
    """GET the confirmation page (it draws the form's reference), then POST it."""
    page = client.get(url)
    assert page.status_code == 200
    reference = page.context["form"].initial["reference"]
    return client.post(url, {"reference": reference, **data})


@pytest.fixture
def account():
    return funded_account(recharge_units=100, bonus_units=0)


@pytest.fixture
def key(account):
    project = Project.objects.get(account=account, is_default=True)
    return api_key_create(account=account, project=project, label="ci", actor=None).key


def test_it_grants_bonus_credit_with_one_audit_row(client, account):
    staff = staff_with("staff_grant_bonus")
    login_verified(client, staff)
    response = perform(
        client, action_url(account, "grant-bonus"), amount="12.50", reason="goodwill"
    )
    assert response.status_code == 302
    assert wallet_of(account)["bonus_nano"] == 1250 * NANO_PER_UNIT // 100
    [event] = staff_events(account)
    assert (event.action, event.reason, event.actor) == ("billing.bonus_grant", "goodwill", staff)


def test_the_same_form_sent_twice_grants_once(client, account):
    login_verified(client, staff_with("staff_grant_bonus"))
    url = action_url(account, "grant-bonus")
    reference = client.get(url).context["form"].initial["reference"]
    for _attempt in range(2):
        client.post(url, {"reference": reference, "amount": "5", "reason": "twice"})
    assert wallet_of(account)["bonus_nano"] == 5 * NANO_PER_UNIT
    assert len(staff_events(account)) == 1


def test_it_refunds_through_the_service(client, account):
    login_verified(client, staff_with("staff_refund"))
    response = perform(client, action_url(account, "refund"), amount="30", reason="duplicate")
    assert response.status_code == 302
    assert wallet_of(account)["recharge_nano"] == 70 * NANO_PER_UNIT
    assert LedgerEntry.objects.filter(account=account, kind="refund").count() == 1
    [event] = staff_events(account)
    assert (event.action, event.reason) == ("billing.refund", "duplicate")


def test_it_confirms_a_pending_bank_transfer(client, account):
    payment = payment_start_bank_transfer(
        account=account, amount_nano=50 * NANO_PER_UNIT, actor=None
    )
    login_verified(client, staff_with("staff_confirm_transfer"))
    response = perform(
        client, action_url(account, "confirm-transfer"), payment=payment.pk, reason="arrived"
    )
    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert wallet_of(account)["recharge_nano"] == 150 * NANO_PER_UNIT
    [event] = staff_events(account)
    assert (event.action, event.reason) == ("billing.recharge", "arrived")


def test_it_grants_a_resource_pack(client, account):
    login_verified(client, staff_with("staff_grant_pack"))
    response = perform(
        client, action_url(account, "grant-pack"), tokens=1000, days=10, model="", reason="trial"
    )
    assert response.status_code == 302
    pack = ResourcePack.objects.get(account=account, source="grant")
    assert (pack.tokens_total, pack.model) == (1000, "")
    [event] = staff_events(account)
    assert (event.action, event.reason) == ("billing.pack_grant", "trial")


def test_it_changes_and_pins_the_tier(client, account):
    other = Tier.objects.exclude(pk=account.tier_id).order_by("-rank").first()
    login_verified(client, staff_with("staff_change_tier"))
    response = perform(
        client, action_url(account, "tier"), tier=other.pk, pinned="on", reason="partner"
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.tier_id, account.tier_pinned) == (other.pk, True)
    [event] = staff_events(account)
    assert (event.action, event.reason) == ("account.tier_change", "partner")


def test_it_suspends_and_restores_an_account(client, account):
    from keys.selectors import KeyRejected, api_key_authenticate

    project = Project.objects.get(account=account, is_default=True)
    created = api_key_create(account=account, project=project, label="ci", actor=None)
    login_verified(client, staff_with("staff_suspend_account"))
    perform(client, action_url(account, "status"), status="suspended", reason="fraud check")
    account.refresh_from_db()
    assert account.is_suspended
    assert api_key_authenticate(created.raw) == KeyRejected("account_suspended")
    perform(client, action_url(account, "status"), status="active", reason="cleared")
    account.refresh_from_db()
    assert not account.is_suspended
    actions = sorted((event.action, event.reason) for event in staff_events(account))
    assert actions == [("account.restore", "cleared"), ("account.suspend", "fraud check")]


def test_it_revokes_a_key(client, account, key):
    login_verified(client, staff_with("staff_revoke_key"))
    response = perform(client, revoke_url(key), reason="leaked on GitHub")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    [event] = staff_events(account)
    assert (event.action, event.reason) == ("api_key.revoke", "leaked on GitHub")


@pytest.mark.parametrize(
    "slug, data",
    [
        ("grant-bonus", {"amount": "-5", "reason": "x"}),
        ("grant-bonus", {"amount": "0", "reason": "x"}),
        ("grant-bonus", {"amount": "1.234", "reason": "x"}),
        ("grant-bonus", {"amount": "5", "reason": "  "}),
        ("refund", {"amount": "100.01", "reason": "too much"}),
        ("refund", {"amount": "5"}),
        ("grant-pack", {"tokens": 0, "days": 10, "reason": "x"}),
        ("grant-pack", {"tokens": 10, "days": 10, "model": "no-such-model", "reason": "x"}),
        ("status", {"status": "suspended", "reason": ""}),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(client, account, slug, data):
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    before = (wallet_of(account), ResourcePack.objects.filter(account=account).count())
    response = perform(client, action_url(account, slug), **data)
    assert response.status_code == 422
    assert response.context["form"].errors
    account.refresh_from_db()
    assert not account.is_suspended
    assert (wallet_of(account), ResourcePack.objects.filter(account=account).count()) == before
    assert staff_events(account) == []


def test_support_staff_without_permissions_can_do_none_of_them(client, account, key):
    other_tier = Tier.objects.exclude(pk=account.tier_id).first()
    payment = payment_start_bank_transfer(
        account=account, amount_nano=50 * NANO_PER_UNIT, actor=None
    )
    login_verified(client, staff_with())  # support: is_staff, no permissions
    page = client.get(reverse("admin:console_account_change", args=[account.pk]))
    assert page.status_code in (200, 403)
    if page.status_code == 200:
        assert b"staff-action" not in page.content
        assert b"staff-revoke-link" not in page.content
    data = {
        "reference": "staff-support-try",
        "reason": "trying",
        "amount": "5",
        "payment": payment.pk,
        "tokens": 10,
        "days": 10,
        "tier": other_tier.pk,
        "status": "suspended",
    }
    before = wallet_of(account)
    for slug in ACTIONS:
        assert client.get(action_url(account, slug)).status_code == 403
        assert client.post(action_url(account, slug), data).status_code == 403
    assert client.post(revoke_url(key), data).status_code == 403
    account.refresh_from_db()
    key.refresh_from_db()
    payment.refresh_from_db()
    assert wallet_of(account) == before
    assert (account.status, account.tier_id, key.revoked_at) == ("active", account.tier_id, None)
    assert payment.status == Payment.Status.PENDING
    assert staff_events(account) == []


def test_one_permission_offers_only_its_action(client, account):
    # The change page needs the view permission of the model too (support staff have it).
    login_verified(client, staff_with("staff_grant_bonus", "view_account"))
    page = client.get(reverse("admin:console_account_change", args=[account.pk]))
    assert page.status_code == 200
    assert action_url(account, "grant-bonus").encode() in page.content
    assert action_url(account, "refund").encode() not in page.content
    assert client.get(action_url(account, "refund")).status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_non_staff_are_sent_to_the_admin_login(client, account, who):
    if who == "member":
        client.force_login(make_user())
    response = client.post(action_url(account, "grant-bonus"), {"amount": "5", "reason": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert staff_events(account) == []


def test_a_post_without_the_csrf_token_is_refused(account):
    client = Client(enforce_csrf_checks=True)
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    response = client.post(
        action_url(account, "grant-bonus"),
        {"reference": "staff-csrf", "amount": "5", "reason": "x"},
    )
    assert response.status_code == 403
    assert wallet_of(account)["bonus_nano"] == 0
    assert staff_events(account) == []


def test_the_account_list_shows_money_without_a_query_per_row(client, account):
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    url = reverse("admin:console_account_changelist")
    with CaptureQueriesContext(connection) as one:
        page = client.get(url)
    assert "¥100.00" in page.content.decode()
    for _index in range(3):
        funded_account(recharge_units=1)
    with CaptureQueriesContext(connection) as four:
        client.get(url)
    assert len(four) == len(one)


def test_the_account_list_searches_by_email_name_and_id(client, account):
    owner_email = account.memberships.get(role="owner").user.email
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    url = reverse("admin:console_account_changelist")
    for term in (owner_email, account.name, str(account.pk)):
        page = client.get(url, {"q": term})
        assert account in page.context["cl"].result_list


def test_the_account_page_shows_the_summary_and_never_a_secret(client, account):
    project = Project.objects.get(account=account, is_default=True)
    created = api_key_create(account=account, project=project, label="ci", actor=None)
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:console_account_change", args=[account.pk]))
    text = page.content.decode()
    assert created.key.mask in text
    assert created.raw.split(".")[1] not in text
    assert "Recent ledger entries" in text
    assert ApiKey.objects.filter(account=account).count() == 1


def test_the_revoke_links_are_offered_only_to_staff_who_may_revoke(client, account, key):
    url = reverse("admin:console_account_change", args=[account.pk])
    login_verified(client, staff_with("view_account"))
    assert "staff-revoke-link" not in client.get(url).content.decode()
    login_verified(client, staff_with("view_account", "staff_revoke_key"))
    assert "staff-revoke-link" in client.get(url).content.decode()


def test_ids_that_are_not_ascii_digits_never_500(client, account):
    login_verified(
        client, User.objects.create_superuser(email="root2@example.com", password="x" * 20)
    )
    for url in (
        "/admin/console/account/%C2%B2/staff/grant-bonus/",
        "/admin/console/account/%C2%B2/staff/revoke-key/%C2%B2/",
        f"/admin/console/account/{account.pk}/staff/revoke-key/%D9%A1/",
    ):
        assert client.get(url).status_code in (403, 404), url


def test_users_cannot_be_deleted_in_the_admin_only_deactivated(client, account):
    owner = account.memberships.get(role="owner").user
    login_verified(
        client, User.objects.create_superuser(email="root3@example.com", password="x" * 20)
    )
    response = client.post(reverse("admin:console_user_delete", args=[owner.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert User.objects.filter(pk=owner.pk).exists()
    assert account.memberships.filter(user=owner).exists()
