import csv
import io

import pytest
from django.urls import reverse

from billing.models import LedgerEntry, PackProduct, ResourcePack
from billing.services import recharge
from console.money import NANO_PER_UNIT
from console.roles import Role
from gateway.settlement import charge_usage
from tests.factories import add_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded(world):
    account = world.account_a
    recharge(
        account=account,
        amount_nano=90 * NANO_PER_UNIT,
        bonus_nano=10 * NANO_PER_UNIT,
        reference="r",
    )
    project = account.projects.get(is_default=True)
    for index in range(7):
        charge_usage(
            account=account,
            model="glm-4.7",
            input_tokens=4_000_000 if index == 0 else 1_000,
            output_tokens=1_000,
            request_id=f"req-{index}",
            project=project,
        )
    return account


def test_the_balance_page_shows_recharge_bonus_and_packs(client, world, funded):
    client.force_login(world.finance_a.user)
    page = client.get(reverse("billing:index")).content.decode()
    assert "Recharge" in page and "Bonus" in page and "Starter pack" in page
    assert "req-" not in page  # request ids are in the CSV, not the summary


def test_a_charge_shows_its_breakdown(client, world, funded):
    client.force_login(world.owner_a)
    page = client.get(reverse("billing:transactions") + "?kind=charge").content.decode()
    assert "from Starter pack" in page
    assert "in + 1,000 out tokens" in page


def test_keyset_pages_walk_every_entry_once(client, world, funded):
    client.force_login(world.owner_a)
    from billing import selectors

    selectors_page_size = selectors.PAGE_SIZE
    selectors.PAGE_SIZE = 3
    try:
        seen, url = [], reverse("billing:transactions")
        for _ in range(10):
            response = client.get(url)
            seen += [e.pk for e in response.context["entries"]]
            if not response.context["next_query"]:
                break
            url = reverse("billing:transactions") + "?" + response.context["next_query"]
    finally:
        selectors.PAGE_SIZE = selectors_page_size
    expected = list(
        LedgerEntry.objects.filter(account=world.account_a)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert seen == expected


def test_filters_keep_their_state_in_the_url_and_htmx_gets_the_rows_only(client, world, funded):
    client.force_login(world.owner_a)
    response = client.get(
        reverse("billing:transactions") + "?kind=recharge", HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert 'id="transactions"' in body and "<html" not in body
    assert [e.kind for e in response.context["entries"]] == ["recharge"]


@pytest.mark.parametrize(
    "query", ["?kind=theft", "?since=yesterday", "?since=2026-05-02&until=2026-05-01"]
)
def test_bad_filters_are_refused_with_a_message(client, world, funded, query):
    client.force_login(world.owner_a)
    response = client.get(reverse("billing:transactions") + query)
    assert response.status_code == 422


def test_a_garbage_cursor_is_ignored(client, world, funded):
    client.force_login(world.owner_a)
    for cursor in ("nonsense", "2026-01-01T00:00:00_" + "9" * 40, "_12"):
        response = client.get(reverse("billing:transactions") + f"?before={cursor}")
        assert response.status_code == 200


def test_the_csv_export_has_every_entry_with_exact_amounts(client, world, funded):
    client.force_login(world.finance_a.user)
    response = client.get(reverse("billing:transactions_csv") + "?kind=charge")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["time", "kind", "currency", "recharge_change"]
    assert len(rows) == 1 + 7
    first_charge = next(row for row in rows[1:] if row[12] == "req-0")
    assert first_charge[6] == "0.000000000"  # the starter pack covered it: no fee
    assert all(row[1] == "charge" for row in rows[1:])


def test_buying_a_pack_from_the_page(client, world, funded):
    product = PackProduct.objects.get(name__startswith="GLM-4.7 · 10M")
    client.force_login(world.finance_a.user)
    client.post(reverse("billing:buy_pack", args=[product.pk]))
    assert ResourcePack.objects.filter(account=world.account_a, product=product).exists()


def test_buying_beyond_the_balance_changes_nothing(client, world):
    product = PackProduct.objects.get(name__startswith="GLM-4.7 · 100M")
    client.force_login(world.owner_a)
    entries = LedgerEntry.objects.count()
    response = client.post(reverse("billing:buy_pack", args=[product.pk]), follow=True)
    assert "too low" in response.content.decode()
    assert LedgerEntry.objects.count() == entries


def test_a_viewer_sees_no_money(client, world):
    viewer = add_member(world.account_a, Role.VIEWER)
    client.force_login(viewer.user)
    assert client.get(reverse("billing:index")).status_code == 403
