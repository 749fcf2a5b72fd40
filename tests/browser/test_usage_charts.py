"""The usage page in Chromium: plotly draws every chart under the CSP (no console errors,
no CSP violations), an htmx filter change redraws them, and the overview's sparkline shows."""

import pytest

from billing.services import recharge
from console.money import NANO_PER_UNIT
from keys.services import api_key_create
from projects.services import project_create
from tests.billing.traffic import mixed_traffic
from tests.browser.session import sign_in
from tests.factories import make_account, make_user

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
    assert console_errors == []
