"""Create a key (shown once, copied), reload (only the mask), revoke (confirm)."""

import re

import pytest

from keys.selectors import Authenticated, KeyRejected, api_key_authenticate
from tests.factories import PASSWORD, make_account, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_key_is_shown_once_then_only_its_mask(page, live_server, console_errors, screenshot):
    owner = make_user("keys@example.com")
    make_account(owner, name="Keys Co")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email address").fill("keys@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")

    page.get_by_role("link", name="API Keys").click()
    assert page.get_by_text("No API keys yet").is_visible()
    page.get_by_label("Label").fill("journey")
    page.get_by_label("Environment").fill("staging")
    page.get_by_role("button", name="Create key").click()

    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    raw = page.locator("#new-key").input_value()
    assert re.fullmatch(r"[0-9a-f]{32}\.[A-Za-z0-9_-]+", raw)
    assert "will not be shown again" in dialog.inner_text()
    screenshot("keys-created")
    dialog.get_by_role("button", name="Copy").click()
    dialog.get_by_role("button", name="Copied").wait_for()
    assert isinstance(api_key_authenticate(raw), Authenticated)

    page.get_by_role("link", name="I have copied it").click()
    page.reload()
    body = page.content()
    assert raw.split(".")[1] not in body
    assert "…" + raw[-4:] in body

    page.get_by_role("link", name="journey").click()
    page.get_by_role("link", name="Revoke key").click()
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("revoked: requests with it are refused").wait_for()
    assert api_key_authenticate(raw) == KeyRejected("revoked")
    assert console_errors == []
