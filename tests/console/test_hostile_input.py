"""Hostile input (issue 12, part 4): NUL bytes, invalid UTF-8, CR/LF, strings past every
limit, wrong types, bodies over the size caps and JSON nested 10,000 deep. Whatever arrives,
the answer is a 4xx or the form again with its errors, never a 500; a refused request creates
and changes nothing, and nothing is ever charged by one.

Schema-driven fuzzing of the documented API is tests/gateway/test_schema_fuzz.py.
"""

import json

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import billing.forms
import billing.views
import console.forms
import history.forms
import keys.forms
import notifications.forms
import projects.forms
from billing.models import LedgerEntry, Wallet
from console.models import Account, User
from console.shared_state import concurrency_key, reservation_keys
from gateway import simulator
from gateway.models import UpstreamRoute
from history.models import PromptLog
from keys.services import api_key_create
from notifications.models import WebhookEndpoint
from tests.billing.factories import funded_account
from tests.console import test_personas
from tests.console.test_personas import EXPECTATIONS
from tests.snapshots import account_rows, rows_changed
from usage.api import PARAMETERS as API_PARAMETERS
from usage.models import UsageRecord
from usage.selectors import PAGE_PARAMETERS

persona_world = test_personas.persona_world

pytestmark = pytest.mark.filterwarnings(
    # A streamed answer is read to its end here, synchronously, as the test client does.
    "ignore:StreamingHttpResponse must consume asynchronous iterators:Warning"
)

# Our own address: the per-IP throttles of the sign-up and reset forms count this test's posts
# apart from every other test's.
HOSTILE_IP = "203.0.113.66"

FORM_MODULES = [
    console.forms,
    billing.forms,
    billing.views,
    keys.forms,
    projects.forms,
    history.forms,
    notifications.forms,
]


def _field_names() -> list[str]:
    """Every field of every console form, and every query parameter a page or the usage API
    reads, plus the prefixed card fields of the recharge form."""
    from django import forms

    names = set(PAGE_PARAMETERS) | set(API_PARAMETERS)
    names |= {"action", "page", "archived", "format", "next", "username"}
    for module in FORM_MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, forms.BaseForm):
                names |= set(value.base_fields)
    names |= {f"card-{name}" for name in billing.forms.CardFields.base_fields}
    return sorted(names)


FIELD_NAMES = _field_names()

# Kinds of trouble, sent in every field of every URL at once: one kind a pass, or several
# taking turns from field to field.
LONG = "9" * 2500  # past every max_length; digits, so number fields see a number no column holds
SWEEP = {
    "nul": ["a\x00b"],
    "crlf": ["x\r\nSet-Cookie: injected=1"],
    "long, formula or not a number": [LONG, '=HYPERLINK("http://evil.example","x")', "-1e400"],
}


# A URL whose whole point is to spend: buying a pack takes it from the balance, whatever
# else the request carries.
SPENDS = {"billing:buy_pack"}


def _charged(accounts=None) -> tuple:
    """What money and metering look like for `accounts` (ids; default: every account now; a
    new account's own starter pack is not a charge)."""
    if accounts is None:
        accounts = list(Account.objects.values_list("pk", flat=True))
    return (
        accounts,
        LedgerEntry.objects.filter(account_id__in=accounts).count(),
        UsageRecord.objects.filter(account_id__in=accounts).count(),
        sorted(
            Wallet.objects.filter(account_id__in=accounts).values_list(
                "pk", "recharge_nano", "bonus_nano", "arrears_nano"
            )
        ),
    )


def _signed_in(user) -> Client:
    client = Client(REMOTE_ADDR=HOSTILE_IP)
    if user is not None:
        client.force_login(user)
    return client


def _send(client, method, url, data, **extra):
    """One request in a savepoint, undone before the next, and the client's cookies put
    back (a sign-out, a new account, a switch last only for that request): its status, and
    whether anything was charged."""
    cookies = client.cookies
    client.cookies = type(cookies)(cookies)
    with transaction.atomic():
        before = _charged()
        try:
            response = getattr(client, method)(url, data, **extra)
            status = response.status_code
            if getattr(response, "streaming", False):
                b"".join(response)
        except Exception as error:  # the test client re-raises what became a 500
            status = f"{type(error).__name__}: {str(error)[:120]}"
        charged = _charged(before[0]) != before
        transaction.set_rollback(True)
    client.cookies = cookies
    return status, charged


@pytest.mark.parametrize("kind", sorted(SWEEP))
@pytest.mark.usefixtures("fresh_shared_state")
def test_every_url_answers_hostile_values_in_every_field_without_a_500(kind, persona_world):
    """Every URL, GET and POST, signed in as A's owner (and signed out where a page is for
    the signed-out), with one hostile value in every field a form or page reads."""
    world = persona_world
    values = SWEEP[kind]
    data = {name: values[index % len(values)] for index, name in enumerate(FIELD_NAMES)}
    owner, anonymous = _signed_in(world.owner_a), _signed_in(None)
    wrong = []
    for name, (_method, kwargs_for, _data, expected) in sorted(EXPECTATIONS.items()):
        url = reverse(name, kwargs=kwargs_for(world) if kwargs_for else None)
        clients = [("owner", owner)]
        if expected["anonymous"] == 200:
            clients.append(("signed out", anonymous))
        for who, client in clients:
            for method in ("get", "post"):
                status, charged = _send(client, method, url, data)
                charged = charged and name not in SPENDS
                if not isinstance(status, int) or status >= 500 or charged:
                    wrong.append(f"{who} {method.upper()} {url}: {status}, charged={charged}")
    assert not wrong, "\n".join(wrong)


# Raw bytes that are not UTF-8 (an overlong slash, a lone continuation byte, 0xFF), in a
# query string and in a form body, percent-encoded and not.
INVALID_UTF8_QUERY = "q=%FF%FE&name=%C0%AF&label=%80abc&next=%ED%A0%80&url=\xff\xfe"
INVALID_UTF8_BODY = (
    b"name=%FF%FE&email=%C0%AF%40example.com&label=\xff\xfe&url=https://%ED%A0%80.example/"
    b"&amount=1%FF&title=\x80&description=\xc3\x28&q=\xe2\x28\xa1"
)


@pytest.mark.usefixtures("fresh_shared_state")
def test_every_url_answers_invalid_utf8_without_a_500(persona_world):
    world = persona_world
    owner = _signed_in(world.owner_a)
    wrong = []
    for name, (_method, kwargs_for, _data, _expected) in sorted(EXPECTATIONS.items()):
        url = reverse(name, kwargs=kwargs_for(world) if kwargs_for else None)
        for method, data, extra in [
            ("get", None, {"QUERY_STRING": INVALID_UTF8_QUERY}),
            (
                "post",
                INVALID_UTF8_BODY,
                {"content_type": "application/x-www-form-urlencoded"},
            ),
        ]:
            status, charged = _send(owner, method, url, data, **extra)
            charged = charged and name not in SPENDS
            if not isinstance(status, int) or status >= 500 or charged:
                wrong.append(f"{method.upper()} {url}: {status}, charged={charged}")
    assert not wrong, "\n".join(wrong)


# --- Each console form, field by field, under hypothesis ------------------------------------

FIXED_HOSTILE = [
    "a\x00b",
    "\x00",
    "\r\nX-Injected: 1",
    "x" * 20_000,
    '=HYPERLINK("http://evil.example","x")',
    "+1",
    "-1",
    "@SUM(A1:A9)",
    "\t=1+1",
    "0",
    "-0",
    "1e400",
    "NaN",
    "Infinity",
    "99999999999999999999999999999",
    "0.0000000000000000001",
    "2026-02-30",
    "9999-12-31",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202eevil",
    "\ufeff",
    "𝕏" * 300,
    "",
    " ",
    "null",
    "[]",
    "{}",
    "card:999999999999999999999",
    "javascript:alert(1)",
    "http://127.0.0.1/",
    "//evil.example/",
]

HOSTILE_VALUES = st.one_of(
    st.sampled_from(FIXED_HOSTILE),
    st.text(max_size=40),
    st.text(min_size=200, max_size=2_000),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(repr),
    # The field sent more than once: a list where one value is expected.
    st.lists(st.sampled_from(FIXED_HOSTILE[:12]), min_size=2, max_size=3),
)

# A form, its valid submission, and who sends it. Each example replaces one field.
FORMS = {
    "signup": (
        "anonymous",
        lambda w: {
            "email": "new@hostile.example",
            "name": "New",
            "password": "correct-horse-battery-staple-42",
            "account_name": "New Co",
            "currency": "CNY",
        },
    ),
    "account_create": (
        "owner",
        lambda w: {"name": "Second", "currency": "CNY", "time_zone": "Asia/Shanghai"},
    ),
    "account_settings": (
        "owner",
        lambda w: {
            "name": "Account A",
            "time_zone": "Asia/Shanghai",
            "currency": "CNY",
            "store_prompt_content": "on",
        },
    ),
    "member_invite": ("owner", lambda w: {"email": "x@hostile.example", "role": "viewer"}),
    "set_language": ("owner", lambda w: {"language": "zh-hans", "next": "/"}),
    "projects:create": ("owner", lambda w: {"name": "P", "description": "d"}),
    "projects:edit": ("owner", lambda w: {"name": "P", "description": "d"}),
    "projects:cap": ("owner", lambda w: {"amount": "10", "mode": "alert"}),
    "projects:budget": ("owner", lambda w: {"amount": "10", "mode": "block"}),
    "keys:create": (
        "owner",
        lambda w: {
            "label": "k",
            "project": w.project_a.pk,
            "scope": "inference",
            "environment": "test",
            "expires_on": "",
        },
    ),
    "keys:edit": ("owner", lambda w: {"label": "k", "environment": "test"}),
    "keys:rotate": ("owner", lambda w: {"grace_seconds": "0"}),
    "billing:recharge_start": ("owner", lambda w: {"amount": "100", "method": "bank_transfer"}),
    "billing:card_add": (
        "owner",
        lambda w: {
            "number": "4242424242424242",
            "exp_month": "12",
            "exp_year": "2040",
            "cvc": "123",
        },
    ),
    "billing:invoice_details": (
        "owner",
        lambda w: {
            "buyer_type": "company",
            "title": "Zhipu",
            "tax_id": "91110000000000000X",
            "address": "Beijing",
            "phone": "010",
            "bank_name": "Bank",
            "bank_account": "1",
            "invoice_email": "f@hostile.example",
        },
    ),
    "billing:invoice_request": (
        "owner",
        lambda w: {"amount": "10", "buyer_type": "individual", "title": "Zhang San"},
    ),
    "billing:auto_recharge": (
        "owner",
        lambda w: {"enabled": "on", "threshold": "10", "amount": "100", "monthly_limit": "500"},
    ),
    "alerts:settings": (
        "owner",
        lambda w: {
            "balance_below": "10",
            "caps": "on",
            "spike": "3",
            "pack_low_percent": "10",
            "pack_expiry_days": "7",
            "email": "on",
        },
    ),
    "billing:statement_generate": ("owner", lambda w: {"month": "2000-01"}),
    "notifications:webhook_create": (
        "owner",
        lambda w: {"url": "https://hooks.example.com/x", "description": "d"},
    ),
    "notifications:webhook_enabled": ("owner", lambda w: {"enabled": "0"}),
    "history:export_start": ("owner", lambda w: {"range": "7d", "format": "csv", "q": "x"}),
    "member_role": ("owner", lambda w: {"role": "viewer"}),
    "account_switch": ("owner", lambda w: {"account": w.account_a.pk}),
}
# GET forms: filters of pages (nothing to create, only never a 500).
SEARCHES = {
    "history:search": lambda w: {"range": "7d", "q": "x", "model": "glm-4.7", "status": "ok"},
    "history:export": lambda w: {"range": "7d", "format": "csv"},
    "billing:transactions": lambda w: {"kind": "charge", "since": "2026-01-01"},
    "usage:index": lambda w: {"start": "2026-01-01", "group": "model", "bucket": "day"},
    "usage_api:usage": lambda w: {
        "group_by": "model",
        "bucket_width": "1h",
        "limit": "24",
        "models": "glm-4.7",
        "project_ids": str(w.project_a.pk),
    },
    "audit_log": lambda w: {"action": "project", "page": "1"},
    "plans:subscription": lambda w: {"range": "7d"},
}


def _form_url(name, world):
    _method, kwargs_for, _data, _expected = EXPECTATIONS[name]
    return reverse(name, kwargs=kwargs_for(world) if kwargs_for else None)


def _counts() -> tuple:
    return (User.objects.count(), Account.objects.count())


EXAMPLES = hypothesis_settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible, CI is stable
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.usefixtures("fresh_shared_state")
def test_a_form_refuses_hostile_values_and_a_refusal_changes_nothing(name, persona_world):
    world = persona_world
    who, valid_for = FORMS[name]
    url = _form_url(name, world)
    valid = valid_for(world)

    @EXAMPLES
    @given(field=st.sampled_from(sorted(valid)), value=HOSTILE_VALUES)
    def submit(field, value):
        data = {**valid, field: value}
        with transaction.atomic():
            client = Client(REMOTE_ADDR=HOSTILE_IP)
            if who == "owner":
                client.force_login(world.owner_a)
            before = (account_rows(world.account_a), _counts(), _charged())
            response = client.post(url, data)
            after = (account_rows(world.account_a), _counts(), _charged(before[2][0]))
            transaction.set_rollback(True)
        status = response.status_code
        assert status < 500, (field, value)
        assert after[2] == before[2], f"{field}={value!r} charged or metered something"
        if status >= 400:
            assert not rows_changed(before[0], after[0]), (field, value, status)
            assert after[1] == before[1], (field, value, status)

    submit()


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_a_search_answers_hostile_values_without_a_500(name, persona_world):
    world = persona_world
    url = _form_url(name, world)
    valid = SEARCHES[name](world)
    client = Client()
    client.force_login(world.owner_a)

    @EXAMPLES
    @given(field=st.sampled_from(sorted(valid)), value=HOSTILE_VALUES)
    def search(field, value):
        response = client.get(url, {**valid, field: value})
        assert response.status_code < 500, (field, value)

    search()


# --- Oversized bodies ------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_shared_state")
def test_a_form_body_over_the_upload_limit_is_a_400_and_creates_nothing(persona_world):
    world = persona_world
    client = Client(REMOTE_ADDR=HOSTILE_IP)
    client.force_login(world.owner_a)
    huge = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    for name, field in [
        ("projects:create", "name"),
        ("keys:create", "label"),
        ("billing:recharge_start", "amount"),
        ("billing:invoice_details", "title"),
        ("notifications:webhook_create", "url"),
        ("member_invite", "email"),
    ]:
        before = account_rows(world.account_a)
        response = client.post(_form_url(name, world), {field: huge})
        assert response.status_code == 400, name
        assert not rows_changed(before, account_rows(world.account_a)), name
    # More fields than Django reads is refused the same way.
    fields = {f"f{index}": "1" for index in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    assert client.post(_form_url("projects:create", world), fields).status_code == 400
    anonymous = Client(REMOTE_ADDR=HOSTILE_IP)
    users = User.objects.count()
    response = anonymous.post(reverse("signup"), {"email": "a@b.example", "name": huge})
    assert response.status_code == 400 and User.objects.count() == users


# --- Header injection ------------------------------------------------------------------------


def test_a_redirect_target_with_cr_lf_goes_nowhere_else(persona_world):
    """`next` of the language switch: a target with CR/LF (or another host) is not followed,
    and no header is ever injected."""
    world = persona_world
    client = Client()
    client.force_login(world.owner_a)
    for target in [
        "/\r\nSet-Cookie: injected=1",
        "/%0d%0aSet-Cookie:%20injected=1",
        "https://evil.example/",
        "//evil.example/",
        "/\x00",
    ]:
        for language in ("zh-hans", "not-a-language"):
            response = client.post(reverse("set_language"), {"language": language, "next": target})
            assert response.status_code == 302, target
            location = response["Location"]
            assert "\r" not in location and "\n" not in location, target
            assert "evil.example" not in location, target
            assert "injected" not in str(response.cookies), target
    response = Client().get(reverse("login"), {"next": "/\r\nSet-Cookie: injected=1"})
    assert response.status_code < 500 and "injected" not in str(response.cookies)


def test_download_names_come_from_the_server_not_the_request(persona_world):
    """CSV and PDF downloads name their file from validated values: a month with CR/LF is a
    404, an export format that is not csv or jsonl a 422, and every Content-Disposition sent
    is one clean line."""
    world = persona_world
    client = Client()
    client.force_login(world.owner_a)
    for month in ["2026-01\r\nX: y", "2026-01\x00", "2026-01 ", "2026-1"]:
        for name in ("billing:statement_csv", "billing:statement_pdf"):
            response = client.get(reverse(name, kwargs={"month": month}))
            assert response.status_code == 404, (name, month)
    response = client.get(reverse("history:export"), {"format": "csv\r\nX: y"})
    assert response.status_code == 422
    downloads = [
        reverse("billing:transactions_csv"),
        reverse("billing:statement_csv", kwargs={"month": world.this_month}),
        reverse("usage:csv") + "?start=2026-01-01%0d%0aX:%20y&end=x%0aY",
        reverse("history:export") + "?format=csv&q=%0d%0aX:%20y",
        reverse("history:export_download", kwargs={"export_id": world.export_a.pk}),
    ]
    for url in downloads:
        response = client.get(url)
        assert response.status_code == 200, url
        disposition = response["Content-Disposition"]
        assert disposition.startswith("attachment; filename=") and "\n" not in disposition


def test_a_webhook_url_with_cr_lf_is_refused_and_creates_nothing(persona_world):
    world = persona_world
    client = Client()
    client.force_login(world.owner_a)
    endpoints = WebhookEndpoint.objects.count()
    for url in [
        "https://hooks.example.com/\r\nHost: evil.example",
        "https://hooks.example.com/%0d%0aX: y\n",
        "https://hooks.example.com/\x00",
        "https://hooks.example.com/ x",
    ]:
        response = client.post(reverse("notifications:webhook_create"), {"url": url})
        assert response.status_code == 422, url
    assert WebhookEndpoint.objects.count() == endpoints


# --- The gateway -----------------------------------------------------------------------------

CHAT = "/api/paas/v4/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def _body(**fields) -> str:
    return json.dumps({"model": "glm-4.7", "messages": MESSAGES, **fields})


NESTED_ARRAY = "[" * 10_000 + "]" * 10_000
NESTED_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
# Each: a body the gateway must refuse with 400, whoever sends it.
GATEWAY_REFUSES = {
    "an array 10,000 deep": NESTED_ARRAY,
    "an object 10,000 deep": NESTED_OBJECT,
    "a parameter 10,000 deep": _body()[:-1] + ', "x": ' + NESTED_ARRAY + "}",
    "NUL in a message": _body(messages=[{"role": "user", "content": "a\x00b"}]),
    "NUL in the model": _body(model="glm\x00"),
    "an unpaired surrogate": _body()[:-1] + ', "x": "\\ud800"}',
    "a surrogate in the model": '{"model": "\\udfff", "messages": [{"role": "user"}]}',
    "NaN": _body()[:-1] + ', "temperature": NaN}',
    "NaN elsewhere": _body()[:-1] + ', "x": NaN}',
    "Infinity": _body()[:-1] + ', "x": -Infinity}',
    "a number too large to be finite": _body()[:-1] + ', "x": 1e400}',
    "an integer of 5,000 digits": _body()[:-1] + ', "x": ' + "9" * 5000 + "}",
    "invalid UTF-8": b'{"model": "glm-4.7", "messages": [{"role": "user", "content": "\xff"}]}',
    "a UTF-8 overlong slash": b'{"model": "glm-4.7\xc0\xaf", "messages": []}',
    "CR/LF in request_id": _body(request_id="a\r\nX-Injected: 1"),
    "CR/LF in request_id, streamed": _body(stream=True, request_id="a\r\nSet-Cookie: x=1"),
    "a request_id of 300 characters, and no model": json.dumps(
        {"messages": MESSAGES, "request_id": "x" * 300}
    ),
    "a request_id that is a list, and a bad model": json.dumps(
        {"model": 5, "messages": MESSAGES, "request_id": [1, 2]}
    ),
    "a request_id that is an object": _body(request_id={"a": 1}),
    "content that is a number": _body(messages=[{"role": "user", "content": 5}]),
    "a text part that is a number": _body(messages=[{"role": "user", "content": [{"text": 5}]}]),
    "a message that is a string": _body(messages=["hi"]),
    "a role that is an object": _body(messages=[{"role": {"user": 1}, "content": "hi"}]),
    "a role that is a list": _body(messages=[{"role": ["user"], "content": "hi"}]),
    "messages that are an object": _body(messages={"role": "user"}),
    "max_tokens of 10**30": _body(max_tokens=10**30),
    "max_tokens that is true": _body(max_tokens=True),
    "temperature as a string": _body(temperature="0.5"),
    "stream as a string": _body(stream="yes"),
    "stream_options as a list": _body(stream=True, stream_options=[1]),
    "a model that is a list": _body(model=["glm-4.7"]),
    "a model of 65 characters": _body(model="m" * 65),
    "null": "null",
    "a string": '"hello"',
    "an empty body": "",
    "a form body": "model=glm-4.7&messages=hi",
}
# Bodies the gateway answers (the simulator's knobs are the client's to set): never a 500.
GATEWAY_ANSWERS = {
    "a simulator knob that is a word": _body(simulator={"output_tokens": "x"}),
    "a simulator knob that is a list": _body(simulator={"chunk_ms": [1]}),
    "a simulator knob of 10**30, streamed": _body(
        stream=True, max_tokens=20, simulator={"first_token_ms": "x", "output_tokens": 10**30}
    ),
    "a simulator that is a string": _body(simulator="fast"),
    "stream_options with a list": _body(stream=True, stream_options={"include_usage": [1]}),
    "a model nobody routes": _body(model="模" * 64),
}


@pytest.fixture
def keyed(db, fresh_shared_state, settings):
    """A funded account's inference key; the simulator answers at once."""
    settings.SIMULATOR_FIRST_TOKEN_MS = 0
    settings.SIMULATOR_CHUNK_MS = 0
    account = funded_account(recharge_units=100)
    created = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    )
    return account, created.raw, fresh_shared_state


def _gateway(raw, body, **extra):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}") if raw else Client()
    content_type = extra.pop("content_type", "application/json")
    response = client.post(CHAT, body, content_type=content_type, **extra)
    content = b"".join(response) if response.streaming else response.content
    return response, content


def _nothing_held(account, state) -> bool:
    """No concurrency slot or reservation left behind."""
    held, _project = reservation_keys(account_id=account.pk, project_id=0)
    return state.slot_count(concurrency_key(account.pk)) == 0 and state.held(held) == 0


@pytest.mark.parametrize("case", sorted(GATEWAY_REFUSES))
def test_the_gateway_refuses_a_hostile_body_with_its_error_and_charges_nothing(case, keyed):
    account, raw, state = keyed
    for key in (raw, None):
        before = _charged()
        response, content = _gateway(raw=key, body=GATEWAY_REFUSES[case])
        assert response.status_code == (400 if key else 401), (case, content[:200])
        error = json.loads(content)["error"]
        assert error["code"] in ("1001", "1210", "1214") and error["message"]
        assert response["x-request-id"] and "x-client-request-id" not in response
        # A refused request may be counted (a record costing nothing), never charged.
        after = _charged(before[0])
        assert (after[1], after[3]) == (before[1], before[3])
        assert sum(UsageRecord.objects.values_list("fee_nano", flat=True)) == 0
        assert not PromptLog.objects.filter(account=account).exists()
        assert _nothing_held(account, state)


@pytest.mark.parametrize("case", sorted(GATEWAY_ANSWERS))
def test_the_gateway_answers_odd_but_valid_bodies_without_a_500(case, keyed):
    account, raw, state = keyed
    response, content = _gateway(raw=raw, body=GATEWAY_ANSWERS[case])
    assert response.status_code in (200, 400), (case, content[:200])
    if response.status_code == 400:
        assert json.loads(content)["error"]["code"] == "1211"
    else:
        assert b'"error"' not in content
    assert _nothing_held(account, state)


def test_a_body_over_the_gateway_cap_is_a_413_before_anything_is_read(keyed, settings):
    account, raw, state = keyed
    settings.GATEWAY_MAX_BODY_BYTES = 10_000
    body = _body(messages=[{"role": "user", "content": "x" * 20_000}])
    records = UsageRecord.objects.count()
    for key in (raw, None):
        response, content = _gateway(raw=key, body=body)
        assert response.status_code == 413
        assert json.loads(content)["error"]["code"] == "1210"
    assert UsageRecord.objects.count() == records
    # The playground has the same cap.
    world_owner = account.memberships.get().user
    client = Client()
    client.force_login(world_owner)
    response = client.post(reverse("playground_chat"), body, content_type="application/json")
    assert response.status_code == 413
    assert _nothing_held(account, state)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer a\x00b",
        "Bearer 1.\x00",
        "Bearer " + "9" * 100 + ".secret",
        "Bearer -1.secret",
        "Bearer " + "x" * 20_000,
        "Bearer\tabc",
        "Basic dXNlcjpwYXNz",
        "Bearer 🤖.🔑",
    ],
)
def test_a_hostile_authorization_header_is_a_401(header, keyed):
    account, _raw, _state = keyed
    client = Client(HTTP_AUTHORIZATION=header)
    response = client.post(CHAT, _body(), content_type="application/json")
    assert response.status_code == 401
    assert json.loads(response.content)["error"]["code"] in ("1001", "1002")
    for name in ("usage_api:usage", "usage_api:costs"):
        assert client.get(reverse(name)).status_code == 401
    assert client.get(reverse("gateway_models")).status_code == 401


# --- The Anthropic-compatible endpoint (issue 23): the same bodies, with max_tokens --------

MESSAGES_URL = "/api/anthropic/v1/messages"
# Fields the Anthropic API does not know, so the endpoint accepts them (never 400 for a new
# field); what the OpenAI endpoint refuses them for never reaches a header or the upstream.
ANTHROPIC_ACCEPTS = {
    "CR/LF in request_id",
    "CR/LF in request_id, streamed",
    "a request_id that is an object",
    "stream_options as a list",
}
# Well-formed here (Anthropic's model names run to 100 characters), and served by nobody.
ANTHROPIC_NOT_FOUND = {"a model of 65 characters"}


def _with_max_tokens(body):
    """The body with max_tokens first (a later, hostile max_tokens wins, as JSON's last key)."""
    if isinstance(body, bytes):
        return body.replace(b"{", b'{"max_tokens": 5, ', 1) if body.startswith(b"{") else body
    return body.replace("{", '{"max_tokens": 5, ', 1) if body.startswith('{"') else body


def _messages(raw, body):
    client = Client(HTTP_X_API_KEY=raw) if raw else Client()
    response = client.post(MESSAGES_URL, _with_max_tokens(body), content_type="application/json")
    content = b"".join(response) if response.streaming else response.content
    return response, content


@pytest.mark.parametrize("case", sorted(set(GATEWAY_REFUSES) - ANTHROPIC_ACCEPTS))
def test_the_anthropic_endpoint_refuses_a_hostile_body_in_its_shape(case, keyed):
    account, raw, state = keyed
    for key in (raw, None):
        before = _charged()
        response, content = _messages(key, GATEWAY_REFUSES[case])
        status, expected = (
            (401, "authentication_error")
            if not key
            else (404, "not_found_error")
            if case in ANTHROPIC_NOT_FOUND
            else (400, "invalid_request_error")
        )
        assert response.status_code == status, (case, content[:200])
        body = json.loads(content)
        assert body["type"] == "error" and body["request_id"] == response["request-id"]
        assert body["error"]["type"] == expected and body["error"]["message"]
        after = _charged(before[0])
        assert (after[1], after[3]) == (before[1], before[3])
        assert sum(UsageRecord.objects.values_list("fee_nano", flat=True)) == 0
        assert not PromptLog.objects.filter(account=account).exists()
        assert _nothing_held(account, state)


@pytest.mark.parametrize("case", sorted(ANTHROPIC_ACCEPTS))
def test_the_anthropic_endpoint_accepts_fields_it_does_not_know(case, keyed):
    account, raw, state = keyed
    response, content = _messages(raw, GATEWAY_REFUSES[case])
    assert response.status_code == 200, (case, content[:200])
    assert b"Injected" not in b"".join(f"{k}{v}".encode() for k, v in response.items())
    assert b'"type":"error"' not in content and b'"type": "error"' not in content
    assert _nothing_held(account, state)


@pytest.mark.parametrize("header", ["a\x00b", "1.\x00", "x" * 20_000, "🤖.🔑", "", "Bearer 1.x"])
def test_a_hostile_x_api_key_is_a_401(header, keyed):
    response = Client(HTTP_X_API_KEY=header).post(
        MESSAGES_URL, _with_max_tokens(_body()), content_type="application/json"
    )
    assert response.status_code == 401
    assert json.loads(response.content)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "case", ["an array 10,000 deep", "NUL in a message", "NaN", "an unpaired surrogate"]
)
def test_the_playground_and_the_simulator_refuse_what_the_gateway_refuses(case, keyed):
    account, _raw, state = keyed
    client = Client()
    client.force_login(account.memberships.get().user)
    # The playground's body names the project (its first field, so the rest stays as is).
    body = GATEWAY_REFUSES[case]
    if body.startswith("{"):
        body = f'{{"project": {account.projects.get().pk}, ' + body[1:]
    response = client.post(reverse("playground_chat"), body, content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == "1210"
    response = Client().post(
        reverse("simulator_chat"), GATEWAY_REFUSES[case], content_type="application/json"
    )
    assert response.status_code == 400
    assert _nothing_held(account, state)


@pytest.mark.parametrize(
    "knobs",
    [
        {"output_tokens": 10**30, "first_token_ms": 10**12, "chunk_ms": -5},
        {"output_tokens": "many", "first_token_ms": [1], "chunk_ms": float("inf")},
        {"output_tokens": True, "first_token_ms": None, "chunk_ms": {"a": 1}},
    ],
)
def test_the_simulators_knobs_are_bounded_and_never_fail(knobs):
    """A client sets them: a billion words or a day's sleep would be its to ask for."""
    plan = simulator.Plan({"model": "glm-4.7", "messages": MESSAGES, "simulator": knobs})
    assert 1 <= plan.completion_tokens <= simulator.MAX_OUTPUT_TOKENS
    assert 0 <= plan.first_token_ms <= simulator.MAX_DELAY_MS
    assert 0 <= plan.chunk_ms <= simulator.MAX_DELAY_MS


def test_the_simulator_route_exists(db):
    """The gateway cases above reach the in-process simulator."""
    assert UpstreamRoute.objects.filter(model="glm-4.7", enabled=True).exists()


@pytest.mark.usefixtures("fresh_shared_state")
def test_signing_in_with_hostile_credentials_is_refused_without_a_500(db):
    """The sign-in form: an address past the column's 255 characters, NUL, CR/LF, a list."""
    for username in ["x" * 300 + "@example.com", "a\x00b@example.com", "a\r\nb@example.com"]:
        for password in ["wrong", "x" * 5000, "\x00"]:
            client = Client(REMOTE_ADDR=HOSTILE_IP)
            response = client.post(reverse("login"), {"username": username, "password": password})
            assert response.status_code in (200, 400, 403, 422, 429), (username[:20], password)
    response = Client(REMOTE_ADDR=HOSTILE_IP).post(
        reverse("login"), {"username": ["a@example.com", "b@example.com"], "password": "x"}
    )
    assert response.status_code < 500
