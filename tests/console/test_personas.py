"""Every URL of the console, for every persona.

The URLconf is enumerated: a new URL pattern without an entry in EXPECTATIONS fails
`test_every_url_has_persona_expectations`. Personas: anonymous; owner, developer and finance
of account A; the owner of account B, who must get nothing of A (404 on A's objects).
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from billing.invoices import Buyer, invoice_request
from billing.models import PackProduct
from billing.payments import payment_method_add, payment_record_manual, payment_start_bank_transfer
from billing.selectors import current_month
from console import api_errors as errors
from console.models import Invitation
from console.money import NANO_PER_UNIT
from console.services import invitation_create
from gateway.services import Refused, console_caller, new_request_id, record_refusal
from history.services import history_export_build, history_export_start, prompt_log_write
from keys.models import ApiKey
from keys.services import api_key_create
from notifications.models import Notification
from notifications.services import notify
from notifications.webhooks import webhook_endpoint_create
from projects.services import project_create

# Exempt by a short explicit list: Django's admin (staff only, its own permission system),
# and the health probes (public by design, tested in test_health.py).
EXEMPT_PREFIXES = ("admin:",)
EXEMPT_NAMES = {"healthz", "readyz"}

PERSONAS = ["anonymous", "owner_a", "developer_a", "finance_a", "user_b"]
LOGIN = "login"  # a redirect to the sign-in page


def _all(status):
    return dict.fromkeys(PERSONAS, status)


def _members_only(status, anonymous=LOGIN):
    return {**_all(status), "anonymous": anonymous}


# name → (method, kwargs builder, POST data, {persona: expected status or LOGIN})
EXPECTATIONS = {
    "overview": ("get", None, None, _members_only(200)),
    # Staff only; no persona here is staff: signed-in non-staff get a 404 (the page is not
    # part of their console). Staff get 200: tests/console/test_job_runs.py.
    "staff_jobs": ("get", None, None, _members_only(404)),
    "signup": ("get", None, None, {**_all(302), "anonymous": 200}),
    "verify_email": ("get", lambda w: {"token": "not-a-token"}, None, _all(400)),
    "verify_email_resend": ("post", None, None, _members_only(302)),
    "login": ("get", None, None, {**_all(302), "anonymous": 200}),
    "logout": ("post", None, None, _all(302)),
    # The sign-in's second step: without a pending sign-in, the signed-out go back to the
    # first step and the signed-in (no app, nothing to verify) on to the overview.
    "login_verify": ("get", None, None, _members_only(302)),
    # Two-factor authentication is each user's own (no account involved): every signed-in
    # persona manages theirs. Turning it off when it is off is a redirect with a message.
    "two_factor": ("get", None, None, _members_only(200)),
    "two_factor_setup": ("get", None, None, _members_only(200)),
    "two_factor_disable": ("post", None, None, _members_only(302)),
    "two_factor_recovery_codes": ("post", None, None, _members_only(302)),
    # The staff's one-time setup link: no persona here is staff (404; an unknown link is a
    # 404 too). Staff: tests/console/test_staff_two_factor_link.py.
    "two_factor_staff_link": ("get", None, None, _members_only(404)),
    "two_factor_staff_link_open": (
        "get",
        lambda w: {"token": "not-a-link"},
        None,
        _members_only(404),
    ),
    "password_change": ("get", None, None, _members_only(200)),
    "password_change_done": ("get", None, None, _members_only(200)),
    "password_reset": ("get", None, None, _all(200)),
    "password_reset_done": ("get", None, None, _all(200)),
    "password_reset_confirm": (
        "get",
        lambda w: {"uidb64": "MQ", "token": "set-password"},
        None,
        _all(200),
    ),
    "password_reset_complete": ("get", None, None, _all(200)),
    "account_create": ("get", None, None, _members_only(200)),
    # Switching to A: its members may, B's owner gets a 404 (not "forbidden").
    "account_switch": (
        "post",
        None,
        lambda w: {"account": w.account_a.pk},
        {**_members_only(302), "user_b": 404},
    ),
    "account_settings": (
        "get",
        None,
        None,
        {**_members_only(200), "developer_a": 403, "finance_a": 403},
    ),
    "members": ("get", None, None, _members_only(200)),
    # Owners and admins read their own account's audit log (B's owner: B's own, empty of A).
    "audit_log": (
        "get",
        None,
        None,
        {**_members_only(200), "developer_a": 403, "finance_a": 403},
    ),
    "member_invite": (
        "post",
        None,
        lambda w: {"email": "new@example.com", "role": "viewer"},
        {**_members_only(302), "developer_a": 403, "finance_a": 403},
    ),
    # A's developer membership, as the object of every member URL.
    "member_role": (
        "post",
        lambda w: {"membership_id": w.developer_a.pk},
        lambda w: {"role": "viewer"},
        {**_members_only(302), "developer_a": 403, "finance_a": 403, "user_b": 404},
    ),
    "member_remove": (
        "get",
        lambda w: {"membership_id": w.developer_a.pk},
        None,
        # The developer sees "leave"; finance may not remove others; B gets nothing.
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    "invitation_revoke": (
        "post",
        lambda w: {"invitation_id": w.invitation_a.pk},
        None,
        {**_members_only(302), "developer_a": 403, "finance_a": 403, "user_b": 404},
    ),
    # The token is the secret: whoever holds the link sees the invitation (and can only
    # accept it as the invited address).
    "invitation_accept": ("get", lambda w: {"token": w.invitation_token}, None, _all(200)),
    "set_language": ("post", None, lambda w: {"language": "zh-hans", "next": "/"}, _all(302)),
    # Projects: A's "Support bot" project is the object.
    "projects:list": ("get", None, None, _members_only(200)),
    "projects:create": (
        "post",
        None,
        lambda w: {"name": "New project"},
        {**_members_only(302), "finance_a": 403},
    ),
    "projects:budget": (
        "post",
        None,
        lambda w: {"amount": "100", "mode": "block"},
        {**_members_only(302), "developer_a": 403, "finance_a": 403},
    ),
    "projects:detail": (
        "get",
        lambda w: {"project_id": w.project_a.pk},
        None,
        {**_members_only(200), "user_b": 404},
    ),
    "projects:edit": (
        "post",
        lambda w: {"project_id": w.project_a.pk},
        lambda w: {"name": "Renamed"},
        {**_members_only(302), "finance_a": 403, "user_b": 404},
    ),
    "projects:cap": (
        "post",
        lambda w: {"project_id": w.project_a.pk},
        lambda w: {"amount": "10", "mode": "alert"},
        {**_members_only(302), "developer_a": 403, "finance_a": 403, "user_b": 404},
    ),
    "projects:archive": (
        "get",
        lambda w: {"project_id": w.project_a.pk},
        None,
        {**_members_only(200), "developer_a": 403, "finance_a": 403, "user_b": 404},
    ),
    # Billing: owner, admin and finance; developers and viewers see no money pages.
    "billing:index": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "alerts:settings": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:transactions": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:transactions_csv": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:packs": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    # The catalogue is public to members; buying needs billing.manage (and a balance:
    # these accounts have none, so the purchase is refused with a message, a redirect).
    "billing:buy_pack": (
        "post",
        lambda w: {"product_id": w.product.pk},
        None,
        {**_members_only(302), "developer_a": 403},
    ),
    # The coding plan's page: everyone who reads usage; subscribing and cancelling move money
    # (billing.manage). These accounts have no balance and no plan: refused with a message.
    "plans:subscription": ("get", None, None, _members_only(200)),
    "plans:subscribe": (
        "post",
        None,
        lambda w: {"plan": "lite", "period": "month"},
        {**_members_only(302), "developer_a": 403},
    ),
    "plans:upgrade": (
        "post",
        None,
        lambda w: {"plan": "max"},
        {**_members_only(302), "developer_a": 403},
    ),
    "plans:auto_renew": (
        "post",
        None,
        lambda w: {"on": "0"},
        {**_members_only(302), "developer_a": 403},
    ),
    "plans:downgrade": (
        "post",
        None,
        lambda w: {"plan": "lite", "period": "month"},
        {**_members_only(302), "developer_a": 403},
    ),
    "plans:downgrade_cancel": ("post", None, None, {**_members_only(302), "developer_a": 403}),
    # Recharges, cards and billing settings: owner, admin and finance. B acts on its own
    # account (a new payment or card of B's), never on A's objects (404).
    "billing:recharge": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:recharge_start": (
        "post",
        None,
        lambda w: {"amount": "100", "method": "bank_transfer"},
        {**_members_only(302), "developer_a": 403},
    ),
    "billing:payment": (
        "get",
        lambda w: {"payment_id": w.payment_a.pk},
        None,
        {**_members_only(200), "developer_a": 403, "user_b": 404},
    ),
    "billing:payment_cancel": (
        "post",
        lambda w: {"payment_id": w.payment_a.pk},
        None,
        {**_members_only(302), "developer_a": 403, "user_b": 404},
    ),
    "billing:cards": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:card_add": (
        "post",
        None,
        lambda w: {
            "number": "4242424242424242",
            "exp_month": "12",
            "exp_year": "2040",
            "cvc": "123",
        },
        {**_members_only(302), "developer_a": 403},
    ),
    "billing:card_default": (
        "post",
        lambda w: {"card_id": w.card_a.pk},
        None,
        {**_members_only(302), "developer_a": 403, "user_b": 404},
    ),
    "billing:card_remove": (
        "get",
        lambda w: {"card_id": w.card_a.pk},
        None,
        {**_members_only(200), "developer_a": 403, "user_b": 404},
    ),
    "billing:settings": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:invoice_details": (
        "post",
        None,
        lambda w: {"buyer_type": "individual", "title": "Zhang San"},
        {**_members_only(302), "developer_a": 403},
    ),
    "billing:auto_recharge": (
        "post",
        None,
        lambda w: {"enabled": ""},
        {**_members_only(302), "developer_a": 403},
    ),
    # Documents. A's receipt and invoice are the objects; B has paid nothing, so B's
    # invoice request is refused (422) for want of an invoiceable amount.
    "billing:receipt": (
        "get",
        lambda w: {"entry_id": w.recharge_entry_a.pk},
        None,
        {**_members_only(200), "developer_a": 403, "user_b": 404},
    ),
    "billing:invoices": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:invoice_request": (
        "post",
        None,
        lambda w: {"amount": "10", "buyer_type": "individual", "title": "Zhang San"},
        {**_members_only(302), "developer_a": 403, "user_b": 422},
    ),
    "billing:invoice_pdf": (
        "get",
        lambda w: {"invoice_id": w.invoice_a.pk},
        None,
        {**_members_only(200), "developer_a": 403, "user_b": 404},
    ),
    "billing:statements": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "billing:statement_generate": (
        "post",
        None,
        lambda w: {"month": "2000-01"},  # not a month of these accounts: refused, a redirect
        {**_members_only(302), "developer_a": 403},
    ),
    # The month is not an object: B downloads its own current month.
    "billing:statement_csv": (
        "get",
        lambda w: {"month": w.this_month},
        None,
        {**_members_only(200), "developer_a": 403},
    ),
    "billing:statement_pdf": (
        "get",
        lambda w: {"month": w.this_month},
        None,
        {**_members_only(200), "developer_a": 403},
    ),
    # Prompt history: content, so never finance (or viewers).
    "history:search": ("get", None, None, {**_members_only(200), "finance_a": 403}),
    # Usage numbers carry no content: every member reads them; B reads its own (empty) usage.
    "usage:index": ("get", None, None, _members_only(200)),
    "usage:csv": ("get", None, None, _members_only(200)),
    # The panels the project and key pages load: usage numbers like the usage page (finance
    # reads a key's as it filters the usage page by key); A's ids give B a 404.
    "usage:project_panel": (
        "get",
        lambda w: {"project_id": w.project_a.pk},
        None,
        {**_members_only(200), "user_b": 404},
    ),
    "usage:key_panel": (
        "get",
        lambda w: {"key_id": w.key_a.pk},
        None,
        {**_members_only(200), "user_b": 404},
    ),
    # What a logged request was charged (its history page loads it): the history's permission.
    "usage:request_cost": (
        "get",
        lambda w: {"log_id": w.log_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    # The usage API answers a JSON 401 (not a redirect) to a caller with no key or session.
    "usage_api:usage": ("get", None, None, _members_only(200, anonymous=401)),
    "usage_api:costs": ("get", None, None, _members_only(200, anonymous=401)),
    "history:detail": (
        "get",
        lambda w: {"log_id": w.log_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    "history:export": ("get", None, None, {**_members_only(200), "finance_a": 403}),
    # Only owners delete history (GET shows the confirmation with the count).
    "history:delete": (
        "get",
        None,
        None,
        {**_members_only(200), "developer_a": 403, "finance_a": 403},
    ),
    "history:export_start": (
        "post",
        None,
        lambda w: {"range": "7d", "format": "csv"},
        {**_members_only(302), "finance_a": 403},
    ),
    "history:export_status": (
        "get",
        lambda w: {"export_id": w.export_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    "history:export_download": (
        "get",
        lambda w: {"export_id": w.export_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    # Notifications: every member reads their own; A's owner's notification is the object
    # (anyone else's id is a 404, even for a teammate who got the same alert).
    "notifications:list": ("get", None, None, _members_only(200)),
    "notifications:read_all": ("post", None, None, _members_only(302)),
    "notifications:read": (
        "post",
        lambda w: {"notification_id": w.notification_a.pk},
        None,
        {**_members_only(404), "owner_a": 302},
    ),
    # Webhooks: alerts.manage (owner, admin, finance); A's endpoint is the object. B adds
    # its own endpoint (a redirect to it).
    "notifications:webhooks": ("get", None, None, {**_members_only(200), "developer_a": 403}),
    "notifications:webhook_create": (
        "post",
        None,
        lambda w: {"url": "https://example.com/hook"},
        {**_members_only(302), "developer_a": 403},
    ),
    **{
        f"notifications:{name}": (
            method,
            lambda w: {"endpoint_id": w.webhook_a.pk},
            data,
            {**_members_only(status), "developer_a": 403, "user_b": 404},
        )
        for name, method, data, status in [
            ("webhook_detail", "get", None, 200),
            ("webhook_reveal", "post", None, 200),
            ("webhook_rotate", "post", None, 302),
            ("webhook_enabled", "post", lambda w: {"enabled": "0"}, 302),
            ("webhook_test", "post", None, 302),
            ("webhook_delete", "get", None, 200),
        ]
    },
    # The API authenticates with keys only: a console session is not a key.
    "gateway_chat": ("post", None, lambda w: {"model": "glm-4.7"}, _all(401)),
    "gateway_models": ("get", None, None, _all(401)),
    # The coding plan's endpoint (issue 22): a key, never a session.
    "gateway_coding_chat": ("post", None, lambda w: {"model": "glm-4.7"}, _all(401)),
    "gateway_coding_models": ("get", None, None, _all(401)),
    # The Anthropic-compatible endpoint (issue 23): a key (x-api-key or Bearer), never a session.
    "gateway_messages": ("post", None, lambda w: {"model": "glm-4.7"}, _all(401)),
    "gateway_count_tokens": ("post", None, lambda w: {"model": "glm-4.7"}, _all(401)),
    # The quota API answers as the vendor does: HTTP 200 with the failure in the body (code
    # 1001 without a key; tests/plans/test_quota_api.py reads the bodies). A session is not a
    # key: no persona reads anything.
    "plans_api:quota_limit": ("get", None, None, _all(200)),
    "plans_api:model_usage": ("get", None, None, _all(200)),
    "plans_api:tool_usage": ("get", None, None, _all(200)),
    # The simulator takes no key and holds no data; a form post is not its JSON.
    "simulator_chat": ("post", None, None, _all(400)),
    "simulator_messages": ("post", None, None, _all(400)),
    # The playground: owner, admin and developer. Its chat takes JSON, so the form post here
    # is a 400 for members (B posting A's project is a 404: tests/gateway/test_playground.py).
    "playground": ("get", None, None, {**_members_only(200), "finance_a": 403}),
    "playground_chat": ("post", None, None, {**_members_only(400), "finance_a": 403}),
    # A's playground message (refused in arrears) is the object.
    "playground_result": (
        "get",
        lambda w: {"request_id": w.playground_request_a},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    # Pricing and quickstart: every member, each reading its own account's currency.
    "pricing": ("get", None, None, _members_only(200)),
    "quickstart": ("get", None, None, _members_only(200)),
    # API keys: A's key in that project is the object. Finance never manages keys.
    "keys:list": ("get", None, None, {**_members_only(200), "finance_a": 403}),
    "keys:create": (
        "post",
        None,
        lambda w: {
            "label": "k",
            "project": w.project_a.pk,
            "scope": "inference",
            "environment": "test",
        },
        # B cannot pick A's project: the same "not a valid choice" as a missing one.
        {**_members_only(200), "finance_a": 403, "user_b": 422},
    ),
    "keys:detail": (
        "get",
        lambda w: {"key_id": w.key_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    "keys:edit": (
        "post",
        lambda w: {"key_id": w.key_a.pk},
        lambda w: {"label": "renamed", "environment": "staging"},
        {**_members_only(302), "finance_a": 403, "user_b": 404},
    ),
    "keys:revoke": (
        "get",
        lambda w: {"key_id": w.key_a.pk},
        None,
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
    "keys:rotate": (
        "post",
        lambda w: {"key_id": w.key_a.pk},
        lambda w: {"grace_seconds": "0"},
        {**_members_only(200), "finance_a": 403, "user_b": 404},
    ),
}


def _named_patterns(resolver=None, namespace=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _named_patterns(pattern, inner)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name or f'<unnamed {pattern.pattern}>'}"


def test_every_url_has_persona_expectations():
    names = {
        name
        for name in _named_patterns()
        if name not in EXEMPT_NAMES and not name.startswith(EXEMPT_PREFIXES)
    }
    missing = sorted(names - set(EXPECTATIONS))
    assert not missing, f"URLs without persona expectations: {missing}"
    stale = sorted(set(EXPECTATIONS) - names)
    assert not stale, f"Expectations for URLs that no longer exist: {stale}"


def token_from_mail(message) -> str:
    """Invitation tokens travel only in the email; tests read them from its link."""
    return message.body.split("/invitations/")[1].split("/")[0]


@pytest.fixture
def persona_world(world, mailoutbox, django_capture_on_commit_callbacks):
    owner = world.account_a.memberships.get(user=world.owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        world.invitation_a = invitation_create(
            account=world.account_a, inviter=owner, email="invitee@a.example", role="viewer"
        )
    world.invitation_token = token_from_mail(mailoutbox[-1])
    world.project_a = project_create(account=world.account_a, name="Support bot")
    world.product = PackProduct.objects.filter(active=True).first()
    world.export_a = history_export_start(
        account=world.account_a, user=world.owner_a, query={"range": "7d"}, fmt="csv"
    )
    history_export_build(export_id=world.export_a.pk)
    world.log_a = prompt_log_write(
        account=world.account_a,
        project=world.project_a,
        api_key=None,
        request_id="r-a",
        model="glm-4.7",
        messages=[{"role": "user", "content": "A's secret prompt"}],
        parameters={},
        response_text="A's answer",
        status=200,
        input_tokens=5,
        output_tokens=5,
        latency_ms=10,
        first_token_ms=None,
        created_at=timezone.now(),
    )
    payment, _replayed = payment_record_manual(
        account=world.account_a, amount_nano=100 * NANO_PER_UNIT, reference="persona-a"
    )
    world.recharge_entry_a = payment.ledger_entry
    world.payment_a = payment_start_bank_transfer(
        account=world.account_a, amount_nano=50 * NANO_PER_UNIT, actor=world.owner_a
    )
    world.card_a = payment_method_add(
        account=world.account_a,
        number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
        actor=world.owner_a,
    )
    world.invoice_a = invoice_request(
        account=world.account_a,
        amount_nano=20 * NANO_PER_UNIT,
        buyer=Buyer(type="individual", title="A's buyer"),
        actor=world.owner_a,
    )
    world.this_month = f"{current_month(account=world.account_a):%Y-%m}"
    world.key_a = api_key_create(
        account=world.account_a, project=world.project_a, label="bot", actor=world.owner_a
    ).key
    notify(
        account=world.account_a,
        event_type="alert.balance_low",
        event_id="persona-alert",
        title="Balance low",
        body="A's balance is low.",
    )
    world.notification_a = Notification.objects.get(user=world.owner_a, event_id="persona-alert")
    world.webhook_a = webhook_endpoint_create(
        account=world.account_a, url="https://a.example/hook", actor=world.owner_a, ip=None
    )
    world.playground_request_a = new_request_id()
    record_refusal(
        refused=Refused(
            errors.ARREARS, console_caller(account=world.account_a, project=world.project_a)
        ),
        request_id=world.playground_request_a,
        body={"model": "glm-4.7"},
        client_request_id="",
        stream=True,
    )
    return world


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_persona_gets_expected_status(name, persona, persona_world, client):
    world = persona_world
    method, kwargs_for, data_for, expected = EXPECTATIONS[name]
    url = reverse(name, kwargs=kwargs_for(world) if kwargs_for else None)
    user = world.user(persona)
    if user is not None:
        client.force_login(user)
    data = data_for(world) if data_for else {}
    response = getattr(client, method)(url, data)
    want = expected[persona]
    if want == LOGIN:
        assert response.status_code == 302, f"{name} as {persona}"
        assert response["Location"].startswith(reverse("login")), f"{name} as {persona}"
    else:
        assert response.status_code == want, (
            f"{method.upper()} {url} as {persona}: {response.status_code}, expected {want}"
        )


def test_user_b_changes_nothing_of_account_a(persona_world, client):
    """The 404s above are not just status codes: nothing of A moved."""
    world = persona_world
    client.force_login(world.owner_b)
    client.post(reverse("member_role", args=[world.developer_a.pk]), {"role": "owner"})
    client.post(reverse("member_remove", args=[world.developer_a.pk]))
    client.post(reverse("invitation_revoke", args=[world.invitation_a.pk]))
    project, key = world.project_a, world.key_a
    client.post(reverse("projects:edit", args=[project.pk]), {"name": "Mine now"})
    client.post(reverse("projects:cap", args=[project.pk]), {"amount": "1", "mode": "block"})
    client.post(reverse("projects:archive", args=[project.pk]))
    client.post(reverse("keys:edit", args=[key.pk]), {"label": "x", "environment": "test"})
    client.post(reverse("keys:rotate", args=[key.pk]), {"grace_seconds": "0"})
    client.post(reverse("keys:revoke", args=[key.pk]))
    client.post(reverse("billing:payment_cancel", args=[world.payment_a.pk]))
    client.post(reverse("billing:card_default", args=[world.card_a.pk]))
    client.post(reverse("billing:card_remove", args=[world.card_a.pk]))
    world.payment_a.refresh_from_db()
    assert world.payment_a.status == "pending"
    world.card_a.refresh_from_db()
    assert (world.card_a.is_default, world.card_a.removed_at) == (True, None)
    world.developer_a.refresh_from_db()
    assert world.developer_a.role == "developer"
    assert Invitation.objects.get(pk=world.invitation_a.pk).revoked_at is None
    project.refresh_from_db()
    assert (project.name, project.monthly_cap_nano, project.archived_at) == (
        "Support bot",
        None,
        None,
    )
    key.refresh_from_db()
    assert (key.label, key.revoked_at, key.replaced_by_id) == ("bot", None, None)
    assert ApiKey.objects.filter(account=world.account_a).count() == 1
