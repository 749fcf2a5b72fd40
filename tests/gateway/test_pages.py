"""The pricing and quickstart pages: what a member of an account reads before calling the API."""

import html
import re
import shutil
import subprocess
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import ModelPrice
from console.money import NANO_PER_UNIT
from gateway.models import ModelAlias, UpstreamRoute
from gateway.selectors import price_list
from keys.services import api_key_create
from tests.conftest import requires_postgres
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db


def _prices(page: str) -> str:
    """The price table (the pack table below it names models too)."""
    match = re.search(r'<table id="prices">.*?</table>', page, flags=re.S)
    return match.group(0) if match else ""


def _row(page: str, model: str) -> str:
    """The price table's row of `model` (exactly that name: glm-4.6 is not glm-4.6v)."""
    for row in re.findall(r"<tr>.*?</tr>", _prices(page), flags=re.S):
        if f"<code>{model}</code>" in row:
            return row
    raise AssertionError(f"no row for {model}")


def _aliases(page: str) -> str:
    """The quickstart's alias table (Claude names to served models)."""
    match = re.search(r'<table id="aliases">.*?</table>', page, flags=re.S)
    return match.group(0) if match else ""


def _without_aliases(page: str) -> str:
    return page.replace(_aliases(page), "")


def _page(client, user, name: str) -> str:
    client.force_login(user)
    response = client.get(reverse(name))
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_each_account_the_prices_of_its_own_currency(client, world):
    usd_owner = make_user("owner@usd.example")
    make_account(usd_owner, name="Dollar account", currency="USD")

    cny = _row(_page(client, world.owner_a, "pricing"), "glm-4.7")
    assert "¥4.32" in cny and "¥15.84" in cny and "$" not in cny

    client.logout()
    usd_page = _page(client, usd_owner, "pricing")
    usd = _row(usd_page, "glm-4.7")
    assert "$0.60" in usd and "$2.20" in usd and "¥" not in usd
    assert "¥4.32" not in usd_page


def test_it_shows_prices_exactly_rather_than_rounded_to_cents(client, world):
    usd_owner = make_user("owner@usd.example")
    make_account(usd_owner, name="Dollar account", currency="USD")
    # glm-5's USD output price is 3.888888889 per 1M: ¥3.89 would not be what is charged.
    assert "$3.888888889" in _row(_page(client, usd_owner, "pricing"), "glm-5")


def test_it_shows_a_free_model_as_free(client, world):
    row = _row(_page(client, world.viewer_a.user, "pricing"), "glm-4.7-flash")
    assert "Free" in row and "¥" not in row


def test_it_shows_a_future_price_as_upcoming_and_not_as_current(client, world):
    ModelPrice.objects.create(
        model="glm-4.7",
        currency="CNY",
        input_per_million_nano=5 * NANO_PER_UNIT,
        output_per_million_nano=20 * NANO_PER_UNIT,
        effective_from=timezone.now() + timedelta(days=10),
    )
    row = _row(_page(client, world.developer_a.user, "pricing"), "glm-4.7")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    assert cells[1] == "¥4.32" and cells[2] == "¥15.84"  # still the price in force
    assert "From " in cells[3] and "¥5.00 input, ¥20.00 output" in cells[3]


def test_it_uses_the_latest_price_already_in_force(world):
    now = timezone.now()
    for days, units in ((-2, 3), (-1, 4), (5, 9), (9, 11)):
        ModelPrice.objects.create(
            model="glm-4.5",
            currency="CNY",
            input_per_million_nano=units * NANO_PER_UNIT,
            output_per_million_nano=units * NANO_PER_UNIT,
            effective_from=now + timedelta(days=days),
        )
    row = next(row for row in price_list(currency="CNY") if row.model == "glm-4.5")
    assert row.current.input_per_million_nano == 4 * NANO_PER_UNIT
    assert row.upcoming.input_per_million_nano == 9 * NANO_PER_UNIT  # the next change only
    # Ten days on, the last row is in force and nothing is scheduled.
    later = next(
        row
        for row in price_list(currency="CNY", at=now + timedelta(days=10))
        if row.model == "glm-4.5"
    )
    assert later.current.input_per_million_nano == 11 * NANO_PER_UNIT and later.upcoming is None


def test_it_lists_only_models_one_can_call(client, world):
    UpstreamRoute.objects.filter(model="glm-4.6").update(enabled=False)
    # Priced but never routed, and routed but priced only from next week: neither answers.
    ModelPrice.objects.create(
        model="glm-unrouted",
        currency="CNY",
        input_per_million_nano=1,
        output_per_million_nano=1,
        effective_from=timezone.now() - timedelta(days=1),
    )
    UpstreamRoute.objects.create(model="glm-next-week", base_url="simulator")
    ModelPrice.objects.create(
        model="glm-next-week",
        currency="CNY",
        input_per_million_nano=1,
        output_per_million_nano=1,
        effective_from=timezone.now() + timedelta(days=7),
    )
    page = _prices(_page(client, world.finance_a.user, "pricing"))
    for hidden in ("glm-4.6", "glm-unrouted", "glm-next-week"):
        assert f"<code>{hidden}</code>" not in page
    assert "<code>glm-4.6v</code>" in page and "<code>glm-4.7</code>" in page


def test_it_says_which_models_the_simulator_serves(client, world):
    UpstreamRoute.objects.filter(model="glm-4.5").update(base_url="https://upstream.example/v1")
    page = _page(client, world.owner_a, "pricing")
    assert "Built-in simulator" in _row(page, "glm-4.7")
    row = _row(page, "glm-4.5")
    assert "Built-in simulator" not in row and "upstream.example" not in page


def test_it_lists_the_packs_on_sale_in_the_account_currency(client, world):
    page = _page(client, world.owner_a, "pricing")
    packs = re.search(r'<table id="packs">.*?</table>', page, flags=re.S).group(0)
    assert "GLM-4.7 · 10M tokens · 30 days" in packs and "¥39.00" in packs
    assert "How a request is charged" in page


def test_it_shows_an_empty_state_when_no_model_can_be_called(client, world):
    UpstreamRoute.objects.update(enabled=False)
    page = _page(client, world.owner_a, "pricing")
    assert "No model can be called in CNY yet" in page
    assert _prices(page) == ""


def test_it_gives_the_absolute_base_url_and_a_callable_model(client, world):
    page = _page(client, world.developer_a.user, "quickstart")
    assert 'value="http://testserver/api/paas/v4/"' in page
    assert "curl http://testserver/api/paas/v4/chat/completions" in page
    assert 'base_url="http://testserver/api/paas/v4/"' in page
    assert 'baseURL: "http://testserver/api/paas/v4/"' in page
    assert '"model": "glm-4.7"' in page and 'model="glm-4.7"' in page
    assert 'model: "glm-4.7"' in page


def test_it_names_another_model_when_the_default_one_cannot_be_called(client, world):
    UpstreamRoute.objects.filter(model="glm-4.7").update(enabled=False)
    page = _page(client, world.owner_a, "quickstart")
    # Only the alias table, which shows staff's aliases as they are, still names it.
    assert 'model="glm-4.5"' in page and "glm-4.7" not in _without_aliases(page)
    assert "ANTHROPIC_DEFAULT_OPUS_MODEL=glm-4.5\n" in page


def test_it_never_shows_a_key_of_the_account(client, world):
    project = world.account_a.projects.get(is_default=True)
    created = api_key_create(
        account=world.account_a, project=project, label="prod", actor=world.owner_a
    )
    key_id, secret = created.raw.split(".", 1)
    page = _page(client, world.owner_a, "quickstart")
    assert created.raw not in page and secret not in page and key_id not in page
    assert "Bearer &lt;your API key&gt;" in page
    assert 'api_key="&lt;your API key&gt;"' in page


def test_it_offers_to_create_a_key_only_to_roles_that_may(client, world):
    developer = _page(client, world.developer_a.user, "quickstart")
    assert "Create an API key" in developer and reverse("keys:list") + "#create-key" in developer
    client.logout()
    finance = _page(client, world.finance_a.user, "quickstart")
    assert "Create an API key" not in finance and reverse("keys:list") not in finance
    assert "ask an owner, admin or developer" in finance


def test_it_gives_every_snippet_a_copy_button_and_no_inline_code(client, world):
    page = _page(client, world.owner_a, "quickstart")
    snippets = ("curl", "curl-stream", "python", "python-stream", "node", "node-stream")
    claude_code = ("claude-code-sh", "claude-code-ps", "anthropic-python")
    for snippet in snippets + claude_code:
        assert f'<code id="snippet-{snippet}">' in page
        assert f'data-copy="#snippet-{snippet}"' in page
    # The CSP allows only our own script file and stylesheet.
    assert "<script>" not in page and "style=" not in page
    assert "1113" in page and "1302" in page and "1303" in page and "1122" in page


def test_it_points_claude_code_at_the_anthropic_endpoint_of_this_site(client, world):
    page = _page(client, world.developer_a.user, "quickstart")
    assert 'value="http://testserver/api/anthropic"' in page
    assert "export ANTHROPIC_BASE_URL=http://testserver/api/anthropic\n" in page
    assert '$env:ANTHROPIC_BASE_URL = "http://testserver/api/anthropic"' in page
    assert 'base_url="http://testserver/api/anthropic",' in page
    assert 'export ANTHROPIC_AUTH_TOKEN="&lt;your API key&gt;"' in page
    assert '$env:ANTHROPIC_AUTH_TOKEN = "&lt;your API key&gt;"' in page
    assert "export API_TIMEOUT_MS=3000000" in page and '$env:API_TIMEOUT_MS = "3000000"' in page
    # The optional tier variables name what the default aliases serve, as the vendor's guide.
    assert "export ANTHROPIC_DEFAULT_OPUS_MODEL=glm-4.7\n" in page
    assert "export ANTHROPIC_DEFAULT_SONNET_MODEL=glm-4.7\n" in page
    assert "export ANTHROPIC_DEFAULT_HAIKU_MODEL=glm-4.5-air\n" in page
    assert '$env:ANTHROPIC_DEFAULT_HAIKU_MODEL = "glm-4.5-air"' in page


def test_it_says_who_pays_for_claude_code_requests(client, world):
    page = _page(client, world.viewer_a.user, "quickstart")
    assert "counts as a prompt in the plan's windows and the balance is untouched" in page
    assert "it is billed from the balance" in page


def test_it_shows_the_alias_table_as_staff_left_it(client, world):
    ModelAlias.objects.create(pattern="claude-3-5-sonnet-20241022", model="glm-4.5")
    ModelAlias.objects.filter(pattern="claude-*opus*").update(model="glm-4.5")
    table = _aliases(_page(client, world.owner_a, "quickstart"))
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td><code>(.*?)</code>", table)
    assert rows == [
        ("claude-*haiku*", "glm-4.5-air"),
        ("claude-*opus*", "glm-4.5"),
        ("claude-*sonnet*", "glm-4.7"),
        ("claude-3-5-sonnet-20241022", "glm-4.5"),
    ]


def test_it_marks_an_alias_whose_model_cannot_be_called(client, world):
    UpstreamRoute.objects.filter(model="glm-4.5-air").update(enabled=False)
    page = _page(client, world.owner_a, "quickstart")
    haiku = re.search(r"<tr><td><code>claude-\*haiku\*</code>.*?</tr>", _aliases(page)).group(0)
    assert "not served at the moment" in haiku
    assert "export ANTHROPIC_DEFAULT_HAIKU_MODEL=glm-4.7\n" in page


def test_it_says_so_when_staff_removed_every_alias(client, world):
    ModelAlias.objects.all().delete()
    page = _page(client, world.owner_a, "quickstart")
    assert _aliases(page) == ""
    assert "No Claude names are mapped to a model" in page
    # The tier variables then name a model one can call, so Claude Code still works.
    assert "export ANTHROPIC_DEFAULT_HAIKU_MODEL=glm-4.7\n" in page


@pytest.mark.parametrize("name", ["pricing", "quickstart"])
def test_it_sends_anonymous_visitors_to_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["pricing", "quickstart"])
def test_it_is_in_the_navigation_of_every_role(client, world, name):
    page = _page(client, world.viewer_a.user, "overview")
    assert f'href="{reverse(name)}"' in page


def _snippet(page: str, name: str, raw_key: str) -> str:
    code = re.search(rf'<code id="snippet-{name}">(.*?)</code>', page, flags=re.S).group(1)
    return html.unescape(code).replace("<your API key>", raw_key)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_gives_snippets_that_work_as_copied(uvicorn_site, funded, client, capfd):
    """The Python and curl snippets, run as a reader copies them, against the real server."""
    account, raw, _key = funded
    client.force_login(account.memberships.get().user)
    host = urlsplit(uvicorn_site).netloc
    page = client.get(reverse("quickstart"), HTTP_HOST=host).content.decode()
    assert f'base_url="{uvicorn_site}/api/paas/v4/"' in page
    for name in ("python", "python-stream"):
        exec(_snippet(page, name, raw), {})  # our own page's snippet, as a reader runs it
        assert capfd.readouterr().out.strip()
    if shutil.which("curl"):
        for name in ("curl", "curl-stream"):
            command = ["sh", "-c", _snippet(page, name, raw)]
            output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
            assert '"choices"' in output and '"error"' not in output
        assert "data: [DONE]" in output


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_gives_an_anthropic_snippet_that_works_as_copied(uvicorn_site, funded, client, capfd):
    """The anthropic SDK snippet, run as a reader copies it, against the real server."""
    account, raw, _key = funded
    client.force_login(account.memberships.get().user)
    host = urlsplit(uvicorn_site).netloc
    page = client.get(reverse("quickstart"), HTTP_HOST=host).content.decode()
    assert f'base_url="{uvicorn_site}/api/anthropic",' in page
    exec(_snippet(page, "anthropic-python", raw), {})  # our own page's snippet
    assert capfd.readouterr().out.strip()
