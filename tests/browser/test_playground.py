"""Chat in the playground: the reply appears, then its tokens and cost from its usage record;
a refusal reads as a sentence, not a broken stream."""

import pytest

from billing.services import recharge
from console.money import NANO_PER_UNIT, format_amount
from gateway.settlement import charge_usage
from tests.factories import PASSWORD, make_account, make_user
from usage.models import UsageRecord

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # live_server is WSGI: it buffers the stream (and says so); uvicorn streams it
    # (tests/gateway/test_playground.py).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous"),
]


def test_a_message_is_answered_and_its_cost_shown(page, live_server, console_errors, screenshot):
    owner = make_user("play@example.com")
    account = make_account(owner, name="Play Co", starter_pack=False)
    recharge(account=account, amount_nano=50 * NANO_PER_UNIT, reference="play-fund")
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email address").fill("play@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")

    page.get_by_role("link", name="Playground").click()
    assert page.get_by_text("billed like API calls").is_visible()
    page.get_by_label("Model").select_option("glm-4.7")
    page.get_by_label("Project").select_option(label="Default project")
    page.get_by_label("System prompt").fill("Answer briefly.")
    page.get_by_label("Message").fill("你好，智谱！")
    page.get_by_label("Message").press("Enter")

    usage = page.locator(".playground-usage .usage-cost")
    usage.wait_for()
    record = UsageRecord.objects.get(account=account)
    assert (record.source, record.api_key_id, record.status) == ("console", None, 200)
    assert usage.inner_text() == format_amount(record.fee_nano, "CNY", places=None)
    reply = page.locator(".message-assistant .content").first.inner_text()
    assert reply and len(reply.split()) == record.output_tokens
    assert page.get_by_label("Message").input_value() == ""
    screenshot("playground-answered")

    # A second message carries the conversation; Shift+Enter is a new line, not a send.
    page.get_by_label("Message").fill("And again")
    page.get_by_label("Message").press("Shift+Enter")
    assert UsageRecord.objects.filter(account=account).count() == 1
    page.get_by_role("button", name="Send").click()
    page.locator(".playground-usage .usage-cost").nth(1).wait_for()
    second = UsageRecord.objects.filter(account=account).latest("pk")
    assert second.input_tokens > record.input_tokens  # the first exchange was sent along

    # In arrears: the refusal is a sentence with a way out, and the message can be resent.
    charge_usage(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=10**7, request_id="big"
    )
    page.get_by_role("button", name="Clear").click()
    assert page.locator(".message").count() == 0
    page.get_by_label("Message").fill("Still there?")
    page.get_by_label("Message").press("Enter")
    alert = page.locator(".playground-error")
    alert.wait_for()
    assert "recharge to continue" in alert.inner_text()
    assert "1113" in alert.inner_text()
    assert alert.get_by_role("link", name="Recharge").is_visible()
    assert page.get_by_label("Message").input_value() == "Still there?"
    screenshot("playground-refused")
    # The refusal's 429 is how the page learns of it: not an error of the page.
    assert [error for error in console_errors if "status of 429" not in error] == []
