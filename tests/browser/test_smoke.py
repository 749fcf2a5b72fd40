"""The browser harness: Playwright in Debian's Chromium against the live server."""

import pytest

from tests.factories import PASSWORD, make_account, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_and_see_the_overview(page, live_server, console_errors, screenshot):
    owner = make_user("smoke@example.com", name="Smoke Owner")
    make_account(owner, name="Smoke Test Co")

    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Email address").fill("smoke@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Smoke Test Co"
    assert page.get_by_text("Owner").first.is_visible()
    screenshot("smoke-overview")
    assert console_errors == []


def test_invite_a_member_with_htmx(page, live_server, console_errors):
    owner = make_user("htmx-owner@example.com")
    make_account(owner, name="Htmx Co")
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email address").fill("htmx-owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")

    page.get_by_role("link", name="Members", exact=True).click()
    # A refused invitation (422) is shown in place, and nothing is sent.
    page.get_by_label("Email address").fill("not-an-address")
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text("Enter a valid email address.").wait_for()
    page.get_by_label("Email address").fill("teammate@example.com")
    page.get_by_label("Role").last.select_option("finance")
    page.get_by_role("button", name="Send invitation").click()
    # htmx swaps the region in place: the invitation appears without a page load.
    page.get_by_role("cell", name="teammate@example.com").wait_for()
    assert page.get_by_text("Invitation sent to teammate@example.com.").is_visible()
    assert console_errors == []
