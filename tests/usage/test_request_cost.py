"""What a request was charged, on its prompt-history page: the usage app serves the rows
(history sits below usage), the page loads them with htmx and links to them without
JavaScript."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.services import recharge
from console.money import NANO_PER_UNIT, format_amount
from console.roles import Role
from history.models import PromptLog
from history.services import prompt_log_write
from keys.services import api_key_create
from tests.billing.traffic import settle_one
from tests.factories import add_member, make_account, make_user
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def charged(world):
    # No starter pack (it would cover the tokens): the request is paid for, a fee to show.
    account = make_account(make_user("payer@example.com"), name="Paying", starter_pack=False)
    recharge(account=account, amount_nano=10 * NANO_PER_UNIT, reference="fund")
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    request_id = "t-cost-of-one"
    settle_one(key, request_id=request_id)
    record = UsageRecord.objects.get(request_id=request_id)
    return record, PromptLog.objects.get(request_id=request_id), account


def test_the_history_page_loads_the_cost_of_its_request(client, world, charged):
    record, log, account = charged
    client.force_login(add_member(account, Role.DEVELOPER).user)
    page = client.get(reverse("history:detail", args=[log.pk])).content.decode()
    url = re.search(r'<div hx-get="([^"]+)" hx-trigger="load" hx-swap="outerHTML">', page)
    assert url.group(1) == reverse("usage:request_cost", args=[log.pk])
    assert f'<a href="{url.group(1)}">' in page  # the same, without JavaScript

    rows = client.get(url.group(1), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in rows and "<h1" not in rows  # the rows only
    assert record.fee_nano > 0
    for amount in (record.fee_nano, record.recharge_nano, record.bonus_nano):
        assert format_amount(amount, "CNY", places=None) in rows
    assert "<dt>From packs</dt>" in rows

    whole = client.get(url.group(1)).content.decode()  # a page of its own
    assert "<h1>Usage and cost</h1>" in whole
    assert format_amount(record.fee_nano, "CNY", places=None) in whole
    assert f"{record.input_tokens:,} input" in whole


def test_a_request_without_a_usage_record_shows_only_its_tokens(client, world, charged):
    _record, log, account = charged
    unrecorded = prompt_log_write(
        account=account,
        project=log.project,
        api_key=log.api_key,
        request_id="t-never-charged",
        model="glm-4.7",
        messages=[{"role": "user", "content": "hi"}],
        parameters={},
        response_text="ok",
        status=200,
        input_tokens=3,
        output_tokens=2,
        latency_ms=1,
        first_token_ms=None,
        created_at=timezone.now(),
    )
    client.force_login(account.memberships.get().user)
    url = reverse("usage:request_cost", args=[unrecorded.pk])
    rows = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert rows.strip() == ""  # htmx removes the placeholder row: the card shows the tokens


def test_another_accounts_request_is_a_404_and_finance_reads_no_history(client, world, charged):
    _record, log, account = charged
    url = reverse("usage:request_cost", args=[log.pk])
    client.force_login(world.owner_b)
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 404
    client.force_login(add_member(account, Role.FINANCE).user)
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 403
