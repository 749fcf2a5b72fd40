"""Interface behaviour every page shares: a posted form shows it is working and cannot be sent
twice, and a destructive action asks first (dismissing the question changes nothing)."""

import pytest

from keys.models import ApiKey
from keys.services import api_key_create
from projects.models import Project
from tests.browser.session import sign_in
from tests.factories import make_account, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_posted_form_shows_progress_and_a_second_click_sends_nothing(
    page, live_server, console_errors
):
    owner = make_user("busy@example.com")
    make_account(owner, name="Busy Co")
    sign_in(page, live_server.url, "busy@example.com")
    # A slow server, on demand: the form's submission is counted and then stopped on its way
    # out (after the console's own handler has seen it), so the page stays to be looked at.
    page.add_init_script(
        """window.submits = 0;
        window.addEventListener("submit", function (event) {
          window.submits += 1; event.preventDefault();
        });"""
    )
    page.goto(f"{live_server.url}/projects/")
    page.get_by_label("Name").first.fill("Only once")
    button = page.get_by_role("button", name="Create project")
    button.click()
    page.locator("form[aria-busy=true] button[data-busy]").wait_for()
    assert button.is_disabled()
    button.click(force=True)  # a disabled button submits nothing
    assert page.evaluate("window.submits") == 1
    # Back from the history cache (or after a long wait) the form can be used again.
    page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow'))")
    assert button.is_enabled() and page.locator("form[aria-busy]").count() == 0
    assert console_errors == []


def test_a_dismissed_confirmation_changes_nothing(page, live_server, console_errors):
    owner = make_user("confirm@example.com")
    account = make_account(owner, name="Confirm Co")
    project = Project.objects.get(account=account, is_default=True)
    key = api_key_create(account=account, project=project, label="careful", actor=None).key
    sign_in(page, live_server.url, "confirm@example.com")
    page.goto(f"{live_server.url}/api-keys/{key.pk}/")

    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Rotate key").click()
    assert questions and "grace period" in questions[0]
    assert ApiKey.objects.filter(account=account).count() == 1

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate key").click()
    page.get_by_role("dialog").wait_for()  # the replacement, shown once
    assert ApiKey.objects.filter(account=account).count() == 2
    assert console_errors == []
