"""The usage page in Chromium: plotly draws every chart under the CSP (no console errors,
no CSP violations), an htmx filter change redraws them, and the overview's sparkline shows;
the panels the project and key pages load with htmx draw too, and a prompt's page its cost.
And the subscription page's prompt chart, with its range switch."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.services import recharge
from console.money import NANO_PER_UNIT, format_amount
from history.models import PromptLog
from keys.services import api_key_create
from plans.models import Plan
from plans.services import plan_subscribe
from projects.services import project_create
from tests.billing.traffic import mixed_traffic
from tests.browser.session import sign_in
from tests.factories import make_account, make_user
from usage.models import UsageRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_usage_charts_render_and_redraw_under_the_csp(
    page, live_server, console_errors, screenshot
):
    owner = make_user("charts@example.com")
    account = make_account(owner, name="Charts Co", starter_pack=False)
    recharge(account=account, amount_nano=500 * NANO_PER_UNIT, reference="fund")
    project = account.projects.get(is_default=True)
    # A name with markup plotly.js would otherwise render (a link, in bold) in its legend.
    hostile = project_create(
        account=account, name='<a href="https://evil.example/">Renew</a>', actor=None
    )
    keys = [
        api_key_create(account=account, project=project, label="web", actor=None).key,
        api_key_create(account=account, project=hostile, label="batch", actor=None).key,
    ]
    mixed_traffic(keys, days=25)

    sign_in(page, live_server.url, "charts@example.com")
    page.locator(".sparkline svg").wait_for()
    page.get_by_role("link", name="Usage", exact=True).first.click()
    page.wait_for_url(f"{live_server.url}/usage/")
    for chart in ("chart-cost", "chart-tokens", "chart-requests"):
        page.locator(f"#{chart} .main-svg").first.wait_for()
    assert page.locator("#chart-cost .legend .traces").count() >= 2  # one series per model
    page.wait_for_timeout(500)
    screenshot("usage-by-model")

    page.get_by_label("Group by").select_option("key")
    page.wait_for_url("**/usage/?*group=key*")
    page.locator("#chart-cost .main-svg").first.wait_for()
    legend = page.locator("#chart-cost .legend").text_content()
    assert "web" in legend and "batch" in legend
    # Redrawn after htmx settled: plotly's classes (and so its stylesheet) still apply.
    position = page.evaluate(
        "getComputedStyle(document.querySelector('#chart-cost .modebar')).position"
    )
    assert position == "absolute"
    page.wait_for_timeout(500)  # let plotly's transition finish before the screenshot
    screenshot("usage-by-key")

    page.get_by_label("Group by").select_option("project")
    page.wait_for_url("**/usage/?*group=project*")
    page.locator("#chart-cost .main-svg").first.wait_for()
    legend = page.locator("#chart-cost .legend")
    assert '<a href="https://evil.example/">Renew</a>' in legend.text_content()
    assert legend.locator("a").count() == 0  # shown as text, not as a link

    # The project and key pages load their panel from the usage app (htmx) and draw it.
    for url in (
        reverse("projects:detail", args=[hostile.pk]),
        reverse("keys:detail", args=[keys[1].pk]),
    ):
        page.goto(f"{live_server.url}{url}")
        panel = page.locator("section[aria-labelledby=usage-panel-title]")
        panel.locator("#chart-cost .main-svg").first.wait_for()
        assert panel.get_by_role("link", name="Open in Usage").count() == 1
        assert page.get_by_role("heading", name="Usage, last 30 days").count() == 1
    screenshot("usage-panel-of-a-key")

    # A prompt's page loads what the request was charged from the usage app, in its card.
    record = UsageRecord.objects.filter(account=account, status=200, fee_nano__gt=0).first()
    log = PromptLog.objects.get(account=account, request_id=record.request_id)
    page.goto(f"{live_server.url}{reverse('history:detail', args=[log.pk])}")
    fee = format_amount(record.fee_nano, account.currency, places=None)
    page.locator("dl.facts dd", has_text=fee).first.wait_for()  # the fee (and the recharge)
    assert page.locator("dl.facts dt", has_text="From packs").count() == 1
    assert page.locator("dl.facts > div").count() == 0  # the placeholder row was replaced
    screenshot("history-request-cost")
    assert console_errors == []


def test_the_plans_prompt_chart_draws_and_switches_range_under_the_csp(
    page, live_server, console_errors, screenshot
):
    owner = make_user("coder@example.com")
    account = make_account(owner, name="Coders", starter_pack=False)
    recharge(account=account, amount_nano=500 * NANO_PER_UNIT, reference="fund")
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="pro"), period="month", actor=None
    )
    term = subscription.terms.get()
    now = timezone.now()
    for index, (minutes_ago, model, milli) in enumerate(
        [
            (5, "glm-4.7", 1000),
            (70, "glm-5", 3000),
            (130, "glm-4.7", 67),
            (60 * 50, "glm-4.6", 1000),
        ]
    ):
        UsageRecord.objects.create(
            account=account,
            request_id=f"plan-{index}",
            model=model,
            status=200,
            plan_term_id=term.pk,
            quota_milli=milli,
            created_at=now - timedelta(minutes=minutes_ago),
        )

    sign_in(page, live_server.url, "coder@example.com")
    page.goto(f"{live_server.url}{reverse('plans:subscription')}")
    page.locator("#chart-plan-prompts .main-svg").first.wait_for()
    page.locator("#chart-plan-models .main-svg").first.wait_for()
    legend = page.locator("#chart-plan-prompts .legend").text_content()
    assert "glm-4.7" in legend and "glm-5" in legend and "glm-4.6" not in legend
    page.wait_for_timeout(500)  # let plotly's transition finish before the screenshot
    screenshot("subscription-prompts-5h")

    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url("**/subscription/?range=7d")
    page.locator("#chart-plan-prompts .legend").filter(has_text="glm-4.6").wait_for()
    # Redrawn after htmx settled: plotly's classes (and so its stylesheet) still apply.
    position = page.evaluate(
        "getComputedStyle(document.querySelector('#chart-plan-prompts .modebar')).position"
    )
    assert position == "absolute"
    assert page.locator("h1").count() == 1  # the region was swapped, not the page nested
    page.wait_for_timeout(500)
    screenshot("subscription-prompts-7d")
    assert console_errors == []
