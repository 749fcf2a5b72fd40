"""Finance exports in the back-office: a month across accounts, as CSV, summing to the ledger."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from billing.exports import finance_export_rows
from billing.invoices import Buyer, invoice_request, invoice_void
from billing.models import LedgerEntry
from billing.payments import payment_record_manual
from billing.selectors import current_month
from billing.services import refund
from console.models import Account
from console.money import NANO_PER_UNIT, to_decimal
from gateway.settlement import charge_usage
from tests.factories import login_verified, make_account, make_user

pytestmark = pytest.mark.django_db

URL = "admin:console_account_finance_export"


def exporter():
    user = make_user(is_staff=True)
    permission, _created = Permission.objects.get_or_create(
        codename="staff_export_finance",
        content_type=ContentType.objects.get_for_model(Account),
        defaults={"name": "Can export finance"},
    )
    user.user_permissions.add(permission)
    return user


@pytest.fixture
def books():
    """Two accounts with recharges, usage, a refund, an invoice and its reversal."""
    accounts = []
    for index, name in enumerate(['=HYPERLINK("x")', "Plain Co"]):
        account = make_account(make_user(), name=name, starter_pack=False)
        payment_record_manual(
            account=account, amount_nano=(100 + index) * NANO_PER_UNIT, reference=f"top-{index}"
        )
        for request in range(3):
            charge_usage(
                account=account,
                model="glm-4.7",
                input_tokens=10_000,
                output_tokens=5_000,
                request_id=f"r{index}-{request}",
            )
        accounts.append(account)
    refund(account=accounts[0], amount_nano=10 * NANO_PER_UNIT, reference="rf-1", reason="dup")
    invoice = invoice_request(
        account=accounts[1],
        amount_nano=20 * NANO_PER_UNIT,
        buyer=Buyer(type="company", title="Acme", tax_id="91350100M000100Y43"),
        actor=None,
    )
    invoice_void(invoice=invoice, actor=None, reason="wrong title")
    return accounts


def parse(response):
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_each_export_sums_to_the_ledger_for_the_month(client, books):
    month = current_month(account=books[0])
    login_verified(client, exporter())

    def download(kind):
        response = client.get(reverse(URL), {"month": f"{month:%Y-%m}", "kind": kind})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        return parse(response)

    recharges = download("recharges")
    recharged = LedgerEntry.objects.filter(kind="recharge").aggregate(
        total=Sum("recharge_delta_nano")
    )["total"]
    assert sum(Decimal(row["amount"]) for row in recharges) == to_decimal(recharged)

    refunds = download("refunds")
    assert [(row["amount"], row["reason"]) for row in refunds] == [("10.000000000", "dup")]

    invoices = download("invoices")
    assert sorted(row["kind"] for row in invoices) == ["invoice", "reversal"]
    assert sum(Decimal(row["amount"]) for row in invoices) == 0

    consumption = download("consumption")
    charges = LedgerEntry.objects.filter(kind="charge")
    for row in consumption:
        mine = charges.filter(account_id=row["account_id"]).aggregate(
            fee=Sum("fee_nano"), recharge=Sum("recharge_delta_nano"), bonus=Sum("bonus_delta_nano")
        )
        assert Decimal(row["fee"]) == to_decimal(mine["fee"])
        assert Decimal(row["recharge_part"]) == to_decimal(-mine["recharge"])
        assert Decimal(row["bonus_part"]) == to_decimal(-mine["bonus"])
        assert int(row["charges"]) == 3
    assert sum(Decimal(row["fee"]) for row in consumption) == to_decimal(
        charges.aggregate(total=Sum("fee_nano"))["total"]
    )


def test_cells_that_would_run_as_formulas_are_kept_as_text(books):
    month = current_month(account=books[0])
    rows = finance_export_rows(kind="consumption", month=month)
    names = [row[1] for row in rows[1:]]
    assert '\'=HYPERLINK("x")' in names


def test_another_month_is_empty(books):
    rows = finance_export_rows(
        kind="recharges", month=timezone.now().date().replace(year=2001, day=1)
    )
    assert len(rows) == 1  # the header only


def test_the_page_offers_a_month_chooser_and_refuses_a_bad_month(client):
    login_verified(client, exporter())
    assert client.get(reverse(URL)).status_code == 200
    assert client.get(reverse(URL), {"month": "2026-13", "kind": "refunds"}).status_code == 400


def test_staff_without_the_permission_and_non_staff_get_nothing(client):
    login_verified(client, make_user(is_staff=True))
    assert client.get(reverse(URL), {"month": "2026-01", "kind": "refunds"}).status_code == 403
    client.force_login(make_user())
    response = client.get(reverse(URL))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
