"""The isolation matrix (issue 12, part 3): who may do what, and nothing of one account
reaches another.

(a) Every URL of the console (enumerated from the resolver) × every role of account A: the
    status follows console/roles.py — what the role may do answers as it does for the owner
    (tests/console/test_personas.py), what it may not is a 403 (it is their own account).
(b) Every URL with an object in its path × every role of account B (and a member of both
    accounts who is working in B), with A's ids, GET and POST: a 404 wherever B's role could
    reach such an object of its own, and A's rows unchanged afterwards. A new URL with an id
    fails `test_every_url_with_an_id_has_an_object_of_a` until A's object for it is named.
(c) The JSON APIs: A's project and key ids as usage/cost filters give B none of A's numbers,
    and B's keys reach nothing of A through the gateway.
"""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.urls import get_resolver, reverse

from billing.models import LedgerEntry
from billing.selectors import current_month, previous_month
from billing.services import recharge
from billing.statements import statement_generate
from console.money import NANO_PER_UNIT
from console.roles import PERMISSIONS, Role, role_can
from console.tenancy import SESSION_KEY
from history.services import history_export_build, history_export_start
from keys.models import Scope
from keys.services import api_key_create
from tests.billing.traffic import settle_one
from tests.console import test_personas
from tests.console.test_personas import EXEMPT_NAMES, EXEMPT_PREFIXES, EXPECTATIONS, _named_patterns
from tests.factories import add_member, make_user
from tests.snapshots import account_rows, rows_changed
from usage.models import UsageRecord

# The persona table's world (A with its objects, B's owner), as a fixture of this module.
persona_world = test_personas.persona_world
ROLES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER]

# --- (a) every URL × every role of A ---------------------------------------------------------

# The permission each console URL asks for: the spec, checked against the views' own
# `account_view(...)` by `test_the_permission_table_matches_the_views`. URLs not listed take
# no role into account (signed out pages, the account switcher, the API's keys...): every
# role of A gets what the owner gets.
PERMISSION = {
    "overview": "overview.view",
    "pricing": "overview.view",
    "quickstart": "overview.view",
    "notifications:list": "overview.view",
    "notifications:read_all": "overview.view",
    "notifications:read": "overview.view",
    "account_settings": "account.manage",
    "audit_log": "audit.view",
    "members": "members.view",
    "member_remove": "members.view",  # anyone may leave; removing others: members.manage
    "member_invite": "members.manage",
    "member_role": "members.manage",
    "invitation_revoke": "members.manage",
    "projects:list": "projects.view",
    "projects:detail": "projects.view",
    "projects:create": "projects.manage",
    "projects:edit": "projects.manage",
    "projects:budget": "caps.manage",
    "projects:cap": "caps.manage",
    "projects:archive": "caps.manage",
    "keys:list": "keys.view",
    "keys:detail": "keys.view",
    "keys:create": "keys.manage",
    "keys:edit": "keys.manage",
    "keys:revoke": "keys.manage",
    "keys:rotate": "keys.manage",
    "usage:index": "usage.view",
    "plans:subscription": "usage.view",
    "plans:subscribe": "billing.manage",
    "plans:auto_renew": "billing.manage",
    "plans:upgrade": "billing.manage",
    "plans:downgrade": "billing.manage",
    "plans:downgrade_cancel": "billing.manage",
    "usage:csv": "usage.view",
    "usage:project_panel": "usage.view",
    "usage:key_panel": "usage.view",
    "usage:request_cost": "history.view",
    "usage_api:usage": "usage.view",  # answered by the API's own check (a JSON 403)
    "usage_api:costs": "usage.view",
    "history:search": "history.view",
    "history:detail": "history.view",
    "history:export": "history.view",
    "history:export_start": "history.view",
    "history:export_status": "history.view",
    "history:export_download": "history.view",
    "history:delete": "history.delete",
    "playground": "playground.use",
    "playground_chat": "playground.use",  # an async view with its own check
    "playground_result": "playground.use",
    **{
        f"billing:{name}": "billing.view"
        for name in [
            "index",
            "transactions",
            "transactions_csv",
            "packs",
            "recharge",
            "payment",
            "cards",
            "settings",
            "receipt",
            "invoices",
            "invoice_pdf",
            "statements",
            "statement_csv",
            "statement_pdf",
        ]
    },
    **{
        f"billing:{name}": "billing.manage"
        for name in [
            "buy_pack",
            "recharge_start",
            "payment_cancel",
            "card_add",
            "card_default",
            "card_remove",
            "invoice_details",
            "auto_recharge",
            "invoice_request",
            "statement_generate",
        ]
    },
    "alerts:settings": "alerts.manage",
    **{
        f"notifications:{name}": "alerts.manage"
        for name in [
            "webhooks",
            "webhook_create",
            "webhook_detail",
            "webhook_reveal",
            "webhook_rotate",
            "webhook_enabled",
            "webhook_test",
            "webhook_delete",
        ]
    },
}

# Where the object, not only the role, decides (the role holds the permission).
OBJECT_DECIDES = {
    # The object is the developer's own membership: the developer may leave; finance and
    # viewers may not remove someone else.
    "member_remove": {Role.FINANCE: 403, Role.VIEWER: 403},
    # The object is the owner's notification: anyone else's id is a 404, teammates included.
    "notifications:read": {role: 404 for role in ROLES if role != Role.OWNER},
}


def url_names() -> list[str]:
    return sorted(
        name
        for name in _named_patterns()
        if name not in EXEMPT_NAMES and not name.startswith(EXEMPT_PREFIXES)
    )


def _callbacks() -> dict:
    found = {}

    def walk(resolver, namespace=""):
        from django.urls import URLPattern, URLResolver

        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern, inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                found[f"{namespace}{pattern.name}"] = pattern

    walk(get_resolver())
    return found


def declared_permission(view) -> str | None:
    """The permission of the `account_view(...)` around `view` (found in the decorator's
    closure), or None for a view without one."""
    seen, stack = set(), [view]
    while stack:
        function = stack.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        for cell in getattr(function, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if isinstance(value, str) and value in PERMISSIONS:
                return value
            if callable(value):
                stack.append(value)
        if getattr(function, "__wrapped__", None) is not None:
            stack.append(function.__wrapped__)
    return None


def test_the_permission_table_matches_the_views():
    patterns = _callbacks()
    names = set(url_names())
    for name in names:
        declared = declared_permission(patterns[name].callback)
        if declared is not None:
            assert PERMISSION.get(name) == declared, (
                f"{name}: the view asks for {declared!r}, the table says {PERMISSION.get(name)!r}"
            )
    stale = sorted(set(PERMISSION) - names)
    assert not stale, f"permissions for URLs that no longer exist: {stale}"
    assert set(OBJECT_DECIDES) <= set(PERMISSION)


def _user(world, role):
    return world.user(f"{role}_a")


def _request(world, user, method, url, data, *, current_account=None):
    """One request in a savepoint: what one role does is undone before the next role asks."""
    with transaction.atomic():
        client = Client()
        client.force_login(user)
        if current_account is not None:
            session = client.session
            session[SESSION_KEY] = current_account.pk
            session.save()
        response = getattr(client, method)(url, data)
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("role", ROLES)
def test_every_url_answers_each_role_of_a_as_its_permissions_say(role, persona_world):
    """As that role, every URL with the persona table's request; and every account page
    with PUT (none takes it): 405 for a role that may use the URL, 403 for one that may not
    (the permission is checked first, so the method reveals nothing to a role without it)."""
    world = persona_world
    user = _user(world, role)
    patterns = _callbacks()
    wrong = []
    # A URL without a persona entry fails test_personas.py; it joins this matrix with one.
    for name in sorted(set(url_names()) & set(EXPECTATIONS)):
        method, kwargs_for, data_for, expected = EXPECTATIONS[name]
        url = reverse(name, kwargs=kwargs_for(world) if kwargs_for else None)
        permission = PERMISSION.get(name)
        allowed = permission is None or role_can(role, permission)
        want = expected["owner_a"] if allowed else 403
        want = OBJECT_DECIDES.get(name, {}).get(role, want)
        data = data_for(world) if data_for else {}
        status = _request(world, user, method, url, data).status_code
        if status != want:
            wrong.append(f"{method.upper()} {url} ({name}): {status}, expected {want}")
        declared = declared_permission(patterns[name].callback)
        if declared is None:
            continue  # Django's own views take PUT as POST; the API's answer their own 405
        want_put = 405 if role_can(role, declared) else 403
        if name == "overview":
            want_put = 200  # it only reads, whatever the method
        status = _request(world, user, "put", url, "").status_code
        if status != want_put:
            wrong.append(f"PUT {url} ({name}): {status}, expected {want_put}")
    assert not wrong, f"as {role} of A:\n" + "\n".join(wrong)


# --- (b) A's ids from account B ---------------------------------------------------------------

# Every URL with an object in its path: A's object, and the methods the URL takes.
OBJECTS_OF_A = {
    "member_role": (lambda w: {"membership_id": w.developer_a.pk}, {"post"}),
    "member_remove": (lambda w: {"membership_id": w.developer_a.pk}, {"get", "post"}),
    "invitation_revoke": (lambda w: {"invitation_id": w.invitation_a.pk}, {"post"}),
    "projects:detail": (lambda w: {"project_id": w.project_a.pk}, {"get"}),
    "projects:edit": (lambda w: {"project_id": w.project_a.pk}, {"post"}),
    "projects:cap": (lambda w: {"project_id": w.project_a.pk}, {"post"}),
    "projects:archive": (lambda w: {"project_id": w.project_a.pk}, {"get", "post"}),
    "keys:detail": (lambda w: {"key_id": w.key_a.pk}, {"get"}),
    "keys:edit": (lambda w: {"key_id": w.key_a.pk}, {"post"}),
    "keys:revoke": (lambda w: {"key_id": w.key_a.pk}, {"get", "post"}),
    "keys:rotate": (lambda w: {"key_id": w.key_a.pk}, {"post"}),
    "usage:project_panel": (lambda w: {"project_id": w.project_a.pk}, {"get"}),
    "usage:key_panel": (lambda w: {"key_id": w.key_a.pk}, {"get"}),
    "usage:request_cost": (lambda w: {"log_id": w.log_a.pk}, {"get"}),
    "billing:payment": (lambda w: {"payment_id": w.payment_a.pk}, {"get"}),
    "billing:payment_cancel": (lambda w: {"payment_id": w.payment_a.pk}, {"post"}),
    "billing:card_default": (lambda w: {"card_id": w.card_a.pk}, {"post"}),
    "billing:card_remove": (lambda w: {"card_id": w.card_a.pk}, {"get", "post"}),
    "billing:receipt": (lambda w: {"entry_id": w.recharge_entry_a.pk}, {"get"}),
    "billing:invoice_pdf": (lambda w: {"invoice_id": w.invoice_a.pk}, {"get"}),
    # A month is no object, but A's stored statement of last month is: B has none for it.
    "billing:statement_csv": (lambda w: {"month": w.statement_month_a}, {"get"}),
    "billing:statement_pdf": (lambda w: {"month": w.statement_month_a}, {"get"}),
    "history:detail": (lambda w: {"log_id": w.log_a.pk}, {"get"}),
    "history:export_status": (lambda w: {"export_id": w.export_a.pk}, {"get"}),
    "history:export_download": (lambda w: {"export_id": w.export_a.pk}, {"get"}),
    "notifications:read": (lambda w: {"notification_id": w.notification_a.pk}, {"post"}),
    **{
        f"notifications:{name}": (lambda w: {"endpoint_id": w.webhook_a.pk}, methods)
        for name, methods in [
            ("webhook_detail", {"get"}),
            ("webhook_reveal", {"post"}),
            ("webhook_rotate", {"post"}),
            ("webhook_enabled", {"post"}),
            ("webhook_test", {"post"}),
            ("webhook_delete", {"get", "post"}),
        ]
    },
    "playground_result": (lambda w: {"request_id": w.playground_request_a}, {"get"}),
}

# URLs whose path holds something that is not an object of an account, and why.
NOT_OBJECTS = {
    "verify_email": "the signed token is the secret, checked by signature",
    "password_reset_confirm": "Django's signed reset link",
    "invitation_accept": "the token is the secret: whoever holds the link sees the invitation",
    "billing:buy_pack": "a product of the shared catalogue, not of an account",
    "two_factor_staff_link_open": "a staff user's one-time link, bound to that user: "
    "tests/console/test_staff_two_factor_link.py::test_another_users_link_is_refused",
}


def test_every_url_with_an_id_has_an_object_of_a():
    patterns = _callbacks()
    with_kwargs = {name for name in url_names() if patterns[name].pattern.regex.groupindex}
    missing = sorted(with_kwargs - set(OBJECTS_OF_A) - set(NOT_OBJECTS))
    assert not missing, f"URLs with an id but no object of A in OBJECTS_OF_A: {missing}"
    stale = sorted((set(OBJECTS_OF_A) | set(NOT_OBJECTS)) - with_kwargs)
    assert not stale, f"entries for URLs without kwargs (or gone): {stale}"


@pytest.fixture
def two_accounts(persona_world):
    """A as in the persona table, plus A's traffic and a stored statement; B with one member
    of every role, and a user who belongs to both and works in B."""
    world = persona_world
    settle_one(world.key_a, project=world.project_a)
    last_month = previous_month(current_month(account=world.account_a))
    statement_generate(account=world.account_a, month=last_month)
    world.statement_month_a = f"{last_month:%Y-%m}"
    world.members_b = {Role.OWNER: world.owner_b}
    for role in ROLES[1:]:
        world.members_b[role] = add_member(
            world.account_b, role, make_user(f"{role}@b.example")
        ).user
    world.both = make_user("both@example.com")
    add_member(world.account_b, Role.ADMIN, world.both)
    add_member(world.account_a, Role.OWNER, world.both)
    return world


def _b_personas(world):
    """(label, user, the role it holds in B)."""
    personas = [(f"{role} of B", world.members_b[role], role) for role in ROLES]
    return [*personas, ("admin of B who owns A too, working in B", world.both, Role.ADMIN)]


def test_no_role_of_b_reaches_an_object_of_a(two_accounts):
    """A's id from B: 404 wherever B's role could reach such an object of its own (403 where
    the role may not use the URL at all, 405 for a method the URL never takes: both answer
    the same for any id, so neither says A's object exists). A's rows never move."""
    world = two_accounts
    before = account_rows(world.account_a)
    wrong = []
    for label, user, role in _b_personas(world):
        client = Client()
        client.force_login(user)
        session = client.session
        session[SESSION_KEY] = world.account_b.pk
        session.save()
        for name, (kwargs_for, methods) in sorted(OBJECTS_OF_A.items()):
            url = reverse(name, kwargs=kwargs_for(world))
            _method, _kwargs, data_for, _expected = EXPECTATIONS[name]
            for method in ("get", "post"):
                if not role_can(role, PERMISSION[name]):
                    want = 403
                elif method not in methods:
                    want = 405
                else:
                    want = 404
                data = data_for(world) if data_for and method == "post" else {}
                response = getattr(client, method)(url, data)
                if response.status_code != want:
                    wrong.append(
                        f"{label}: {method.upper()} {url} → {response.status_code}, want {want}"
                    )
    assert not wrong, "\n".join(wrong)
    assert not rows_changed(before, account_rows(world.account_a))


def test_a_missing_id_and_an_id_of_a_answer_alike(two_accounts):
    """The same answer, byte for byte in status and nearly in length, for A's id and for an
    id no account has: nothing tells B that A's object exists."""
    world = two_accounts
    client = Client()
    client.force_login(world.owner_b)
    for name, (kwargs_for, methods) in sorted(OBJECTS_OF_A.items()):
        kwargs = kwargs_for(world)
        missing = {
            key: (value + 10**6 if isinstance(value, int) else "0" * 32)
            for key, value in kwargs.items()
        }
        if name.startswith("billing:statement_"):
            missing = {"month": "2001-01"}
        for method in methods:
            of_a = getattr(client, method)(reverse(name, kwargs=kwargs))
            nobody = getattr(client, method)(reverse(name, kwargs=missing))
            assert of_a.status_code == nobody.status_code == 404, name
            assert abs(len(of_a.content) - len(nobody.content)) < 16, name


# A's ids in the fields of B's forms, not in the path: refused like an id nobody has.
IDS_OF_A_IN_FIELDS = {
    "keys:create": (
        lambda w: {
            "label": "k",
            "project": w.project_a.pk,
            "scope": "inference",
            "environment": "test",
        },
        422,
    ),
    "billing:recharge_start": (lambda w: {"amount": "100", "method": f"card:{w.card_a.pk}"}, 422),
    "history:export_start": (
        lambda w: {"range": "7d", "format": "csv", "project": w.project_a.pk},
        422,
    ),
    "account_switch": (lambda w: {"account": w.account_a.pk}, 404),
}


def test_ids_of_a_in_the_fields_of_b_s_forms_are_refused(two_accounts):
    world = two_accounts
    before = account_rows(world.account_a)
    b_before = account_rows(world.account_b)
    client = Client()
    client.force_login(world.owner_b)
    for name, (data_for, want) in sorted(IDS_OF_A_IN_FIELDS.items()):
        response = client.post(reverse(name), data_for(world))
        assert response.status_code == want, name
    for params in ({"project": world.project_a.pk}, {"key": world.key_a.pk}):
        response = client.get(reverse("history:search"), params)
        assert response.status_code == 422 and b"A's secret prompt" not in response.content
    assert not rows_changed(before, account_rows(world.account_a))
    assert not rows_changed(b_before, account_rows(world.account_b))


# --- (c) the JSON APIs and the gateway --------------------------------------------------------


def _totals(payload) -> tuple[int, set]:
    """What a usage or cost page counts (requests, or money in any of its parts) and the
    (project, key) ids it names."""
    counted, ids = 0, set()
    for bucket in payload["data"]:
        for result in bucket["results"]:
            counted += result.get("requests", 0)
            for part in ("amount", "recharge", "bonus", "arrears"):
                if part in result and result[part]["value"] != "0.000000000":
                    counted += 1
            ids.add(("project", result.get("project_id")))
            ids.add(("key", result.get("api_key_id")))
    return counted, ids


@pytest.mark.parametrize("endpoint", ["usage_api:usage", "usage_api:costs"])
def test_a_filters_with_ids_of_a_give_b_nothing_of_a(endpoint, two_accounts):
    world = two_accounts
    start = int((world.key_a.created_at - timedelta(days=2)).timestamp())
    query = {
        "project_ids": str(world.project_a.pk),
        "api_key_ids": str(world.key_a.pk),
        "group_by": "project_id,api_key_id,model",
        "bucket_width": "1d",
        "start_time": str(start),
        "limit": "31",
    }
    url = reverse(endpoint)
    # A's owner sees A's request through these filters: the filters work.
    owner_a = Client()
    owner_a.force_login(world.owner_a)
    _counted, ids = _totals(json.loads(owner_a.get(url, query).content))
    assert ("project", world.project_a.pk) in ids and ("key", world.key_a.pk) in ids

    admin_read = api_key_create(
        account=world.account_b,
        project=world.account_b.projects.get(is_default=True),
        label="reader",
        scope=Scope.ADMIN_READ,
        actor=world.owner_b,
    ).raw
    callers = [("B's admin-read key", Client(HTTP_AUTHORIZATION=f"Bearer {admin_read}"))]
    for role, user in world.members_b.items():
        client = Client()
        client.force_login(user)
        callers.append((f"{role} of B", client))
    both = Client()
    both.force_login(world.both)
    session = both.session
    session[SESSION_KEY] = world.account_b.pk
    session.save()
    callers.append(("a member of both, working in B", both))
    for label, client in callers:
        response = client.get(url, query)
        assert response.status_code == 200, label
        counted, ids = _totals(json.loads(response.content))
        assert counted == 0, label
        assert ("project", world.project_a.pk) not in ids, label
        assert ("key", world.key_a.pk) not in ids, label


def test_the_usage_page_and_history_filters_with_ids_of_a_show_b_nothing_of_a(two_accounts):
    world = two_accounts
    client = Client()
    client.force_login(world.owner_b)
    ids = {"project": world.project_a.pk, "key": world.key_a.pk}
    for name in ("usage:index", "usage:csv"):
        response = client.get(reverse(name), ids)
        assert response.status_code == 200
        assert world.project_a.name.encode() not in response.content
        assert world.key_a.label.encode() not in response.content
    for params in ({"project": world.project_a.pk}, {"key": world.key_a.pk}):
        response = client.get(reverse("history:search"), params)
        assert response.status_code in (200, 422)
        assert b"A's secret prompt" not in response.content
        response = client.get(reverse("history:export"), params)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"A's secret prompt" not in content


@pytest.mark.usefixtures("fresh_shared_state")
def test_b_keys_reach_nothing_of_a_through_the_gateway(two_accounts):
    """B's keys: a project of A named in the body is not A's project (the key decides), the
    usage API is not for an inference key, and A's rows never move."""
    world = two_accounts
    recharge(account=world.account_b, amount_nano=10 * NANO_PER_UNIT, reference="b-funds")
    project_b = world.account_b.projects.get(is_default=True)
    raw = api_key_create(
        account=world.account_b, project=project_b, label="b", actor=world.owner_b
    ).raw
    a_records = UsageRecord.objects.filter(account=world.account_a).count()
    before = account_rows(world.account_a)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    body = {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "hello"}],
        "project": world.project_a.pk,
        "project_id": world.project_a.pk,
        "api_key_id": world.key_a.pk,
    }
    response = client.post(
        reverse("gateway_chat"), json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200
    record = UsageRecord.objects.get(request_id=response["x-request-id"])
    assert (record.account_id, record.project_id) == (world.account_b.pk, project_b.pk)
    assert LedgerEntry.objects.filter(request_id=record.request_id).get().account_id == (
        world.account_b.pk
    )
    for name in ("usage_api:usage", "usage_api:costs"):
        response = client.get(reverse(name), {"project_ids": world.project_a.pk})
        assert response.status_code == 401
        assert json.loads(response.content)["error"]["code"] == "1000"
    # A's key is not B's either way: B's session cannot use it in the playground.
    console = Client()
    console.force_login(world.owner_b)
    response = console.post(
        reverse("playground_chat"),
        json.dumps({**body, "project": world.project_a.pk}),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert UsageRecord.objects.filter(account=world.account_a).count() == a_records
    assert not rows_changed(before, account_rows(world.account_a))


def test_an_export_of_b_holds_nothing_of_a(two_accounts):
    """A background export B starts, with A's ids in its filters, holds none of A's rows."""
    world = two_accounts
    export = history_export_start(
        account=world.account_b,
        user=world.owner_b,
        query={"range": "7d", "project": str(world.project_a.pk)},
        fmt="csv",
    )
    history_export_build(export_id=export.pk)
    export.refresh_from_db()
    if export.file:
        assert b"A's secret prompt" not in export.file.open("rb").read()
