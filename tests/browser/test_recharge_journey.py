"""Top up in a real browser: a refused amount shown in place, a declined card, and a pending
card that the page follows by itself (htmx polling) until the payment is confirmed."""

import pytest

from billing.models import Payment, Wallet
from billing.payments import payment_confirm_pending
from console.money import NANO_PER_UNIT
from tests.factories import PASSWORD, make_account, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fill_new_card(page, number):
    page.get_by_label("A new card").check()
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2035")
    page.get_by_label("Security code").fill("123")


def test_top_up_states_in_the_browser(page, live_server, console_errors, screenshot, settings):
    settings.SANDBOX_PENDING_SECONDS = 0
    owner = make_user("pay@example.com")
    account = make_account(owner, name="Pay Co", starter_pack=False)
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email address").fill("pay@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/billing/recharge/")
    assert page.get_by_text("No payments yet").is_visible()

    # A refused amount comes back in place, in the form.
    page.get_by_label("Amount (CNY)").fill("10.005")
    page.get_by_role("button", name="Pay").click()
    page.get_by_text("Use at most 2 decimal places").wait_for()

    # A declined card: nothing credited.
    page.get_by_label("Amount (CNY)").fill("50")
    fill_new_card(page, "4000 0000 0000 0002")
    page.get_by_role("button", name="Pay").click()
    page.get_by_text("Payment declined").wait_for()
    screenshot("recharge-declined")

    # A card the issuer confirms later: the page shows it pending and follows it.
    page.get_by_role("link", name="Make another recharge").click()
    page.get_by_label("Amount (CNY)").fill("1000")
    fill_new_card(page, "4000 0000 0000 3220")
    page.get_by_role("button", name="Pay").click()
    page.get_by_text("Confirming your payment").wait_for()
    screenshot("recharge-pending")
    payment = Payment.objects.get(account=account, status="pending")
    payment_confirm_pending(payment_id=payment.pk)  # what the confirmation task does
    page.get_by_text("Payment received").wait_for(timeout=15_000)
    assert page.get_by_text("with ¥50.00 bonus").is_visible()
    screenshot("recharge-succeeded")

    wallet = Wallet.objects.get(account=account)
    assert (wallet.recharge_nano, wallet.bonus_nano) == (1_000 * NANO_PER_UNIT, 50 * NANO_PER_UNIT)
    page.reload()
    assert "4000000000003220" not in page.content() and "•••• 3220" in page.content()
    assert console_errors == []
