"""Monthly statements: sums equal the ledger, the month follows the account's time zone, the
job on the 1st stores each closed month once, and the CSV and PDF carry the same numbers."""

import csv
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from billing.documents import statement_pdf
from billing.models import LedgerEntry, Statement
from billing.payments import payment_record_manual
from billing.services import pack_grant, refund
from billing.statements import (
    statement_csv,
    statement_data,
    statement_generate,
    statement_months,
    statements_generate_due,
)
from console.money import NANO_PER_UNIT, decimal_string, format_amount
from gateway.settlement import charge_usage
from projects.services import project_create
from tests.billing.factories import funded_account
from tests.billing.test_refunds_invoices import pdf_text

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def october(db):
    """An account created in September with October traffic in two projects and two models,
    a pack, a recharge with a bonus and a refund; plus charges either side of the month's
    edges in Shanghai time."""
    account = funded_account()
    account.created_at = datetime(2026, 9, 20, tzinfo=SHANGHAI)
    account.save(update_fields=["created_at"])
    default = account.projects.get()
    bot = project_create(account=account, name="机器人 bot")

    def paid(reference, amount, bonus, at):
        payment, _replayed = payment_record_manual(
            account=account, amount_nano=amount * UNIT, bonus_nano=bonus * UNIT, reference=reference
        )
        LedgerEntry.objects.filter(reference=payment.reference).update(created_at=at)

    def charge(request_id, at, project, model="glm-4.7", tokens=(1_000_000, 200_000)):
        charge_usage(
            account=account,
            model=model,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            request_id=request_id,
            project=project,
            at=at,
        )

    paid("september", 500, 50, datetime(2026, 9, 25, tzinfo=SHANGHAI))
    # 23:59 on 30 September in Shanghai is still September; 00:00 on 1 November is not October.
    charge("sept", datetime(2026, 9, 30, 23, 59, tzinfo=SHANGHAI), default)
    pack_grant(account=account, tokens=3_000, reference="pack")
    paid("october", 100, 10, datetime(2026, 10, 10, tzinfo=SHANGHAI))
    charge("a", datetime(2026, 10, 1, 0, 0, tzinfo=SHANGHAI), default)
    charge("b", datetime(2026, 10, 15, tzinfo=SHANGHAI), default, model="glm-5")
    charge("c", datetime(2026, 10, 31, 23, 59, tzinfo=SHANGHAI), bot)
    charge("nov", datetime(2026, 11, 1, 0, 0, tzinfo=SHANGHAI), bot)
    return account


def test_the_statement_sums_equal_the_months_ledger_entries(october):
    data = statement_data(account=october, month=date(2026, 10, 1))
    charges = LedgerEntry.objects.filter(account=october, request_id__in=["a", "b", "c"])
    assert data["totals"]["requests"] == 3
    assert data["totals"]["fee_nano"] == sum(e.fee_nano for e in charges)
    assert data["totals"]["recharge_nano"] == -sum(e.recharge_delta_nano for e in charges)
    assert data["totals"]["bonus_nano"] == -sum(e.bonus_delta_nano for e in charges)
    assert data["totals"]["pack_tokens"] == 3_000  # the pack took the first charge's tokens
    assert [(line["project"], line["model"]) for line in data["lines"]] == [
        ("Default project", "glm-4.7"),
        ("Default project", "glm-5"),
        ("机器人 bot", "glm-4.7"),
    ]
    assert data["movements"]["recharges_nano"] == 100 * UNIT
    assert data["movements"]["bonus_granted_nano"] == 10 * UNIT
    assert data["opening"]["recharge"] + data["opening"]["bonus"] < 550 * UNIT  # September spent
    # Opening + movements − usage = closing.
    opening = data["opening"]["recharge"] + data["opening"]["bonus"]
    closing = data["closing"]["recharge"] + data["closing"]["bonus"] - data["closing"]["arrears"]
    moved = data["movements"]["recharges_nano"] + data["movements"]["bonus_granted_nano"]
    assert opening - data["opening"]["arrears"] + moved - data["totals"]["fee_nano"] == closing


def test_refunds_show_in_the_month_they_happened(october):
    refund(account=october, amount_nano=10 * UNIT, reference="r", reason="asked")
    LedgerEntry.objects.filter(kind="refund").update(
        created_at=datetime(2026, 10, 20, tzinfo=SHANGHAI)
    )
    data = statement_data(account=october, month=date(2026, 10, 1))
    assert data["movements"]["refunds_nano"] == 10 * UNIT
    assert data["movements"]["bonus_clawed_back_nano"] == 1 * UNIT


def test_the_job_on_the_1st_stores_the_closed_month_once_in_the_accounts_time_zone(october):
    # 1 November 00:30 in Shanghai is still 31 October in UTC: October has ended there.
    now = datetime(2026, 11, 1, 0, 30, tzinfo=SHANGHAI)
    assert statements_generate_due(now=now) == 1
    assert statements_generate_due(now=now) == 0
    statement = Statement.objects.get(account=october)
    assert statement.month == date(2026, 10, 1)
    assert statement.data == statement_data(account=october, month=date(2026, 10, 1))
    # An account in New York is not there yet: its last closed month is September.
    new_york = funded_account(time_zone="America/New_York")
    new_york.created_at = datetime(2026, 9, 1, tzinfo=SHANGHAI)
    new_york.save(update_fields=["created_at"])
    assert statements_generate_due(now=now) == 1
    assert Statement.objects.get(account=new_york).month == date(2026, 9, 1)


def test_only_ended_months_are_stored(october):
    with pytest.raises(ValueError, match="ended"):
        statement_generate(account=october, month=date(2099, 1, 1))
    first, created = statement_generate(account=october, month=date(2026, 10, 1))
    again, created_again = statement_generate(account=october, month=date(2026, 10, 1))
    assert created and not created_again and first.pk == again.pk


def test_months_run_from_the_accounts_creation(october):
    months = statement_months(account=october, now=datetime(2026, 11, 23, tzinfo=SHANGHAI))
    assert months == [date(2026, 11, 1), date(2026, 10, 1), date(2026, 9, 1)]


def test_the_csv_and_the_pdf_carry_the_same_totals(october):
    data = statement_data(account=october, month=date(2026, 10, 1))
    rows = list(csv.DictReader(io.StringIO(statement_csv(data))))
    assert [row["project"] for row in rows] == [
        "Default project",
        "Default project",
        "机器人 bot",
        "TOTAL",
    ]
    assert rows[-1]["fee"] == decimal_string(data["totals"]["fee_nano"])
    assert sum(int(row["requests"]) for row in rows[:-1]) == int(rows[-1]["requests"]) == 3
    text = pdf_text(statement_pdf(data, partial=False))
    assert "2026-10" in text and "机器人" in text and "glm-5" in text
    # The last column (bonus) fits on the page.
    assert format_amount(data["totals"]["bonus_nano"], "CNY", places=None) in text
