"""Every GET page of the console in a browser, in English and in Chinese, for an account with
data: no console error and no CSP violation, one <h1>, a name for every field, button and
link, <html lang> in the chosen language, and the htmx progress bar. And the keyboard: the
skip link first, then the main navigation.

The page list is tests/every_page.py's (derived from the URLconf through the persona table).
"""

import pytest
from django.conf import settings
from django.test import Client

from tests.every_page import (
    FRAGMENTS,
    SIGNED_OUT,
    STAFF,
    STATUS,
    build_page_world,
    owner_page_names,
    page_url,
)
from tests.factories import PASSWORD, login_verified

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before the page's own scripts on every navigation: CSP violations are recorded even
# when Chromium's console message about them is missed.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(
    event.violatedDirective + " blocked " + (event.blockedURI || "inline") + " at "
    + event.sourceFile + ":" + event.lineNumber
  );
});
"""

# The checks of one page, in the page: returns a list of problems.
AUDIT = """
(language) => {
  const problems = [];
  // Collapsed sections (the user menu, "copy as cURL") are checked opened.
  document.querySelectorAll("details").forEach((details) => { details.open = true; });
  const text = (element) => (element.textContent || "").replace(/\\s+/g, " ").trim();
  const visible = (element) =>
    element.getClientRects().length > 0 && getComputedStyle(element).visibility !== "hidden";
  const describe = (element) => element.outerHTML.replace(/\\s+/g, " ").slice(0, 160);
  const labelledBy = (element) => (element.getAttribute("aria-labelledby") || "")
    .split(/\\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)).filter(Boolean).map(text).join(" ").trim();
  const fieldName = (element) =>
    labelledBy(element)
    || (element.getAttribute("aria-label") || "").trim()
    || Array.from(element.labels || []).map(text).join(" ").trim();

  const headings = document.querySelectorAll("h1").length;
  if (headings !== 1) problems.push(`${headings} <h1> elements, not one`);
  if (document.documentElement.lang !== language) {
    problems.push(`<html lang="${document.documentElement.lang}">, not ${language}`);
  }
  if (!document.querySelector(".htmx-progress")) problems.push("no .htmx-progress element");

  const notFields = ["hidden", "submit", "button", "reset", "image"];
  for (const field of document.querySelectorAll("input, select, textarea")) {
    if (notFields.includes((field.getAttribute("type") || "").toLowerCase())) continue;
    if (visible(field) && !fieldName(field)) problems.push("field without a name: " + describe(field));
  }
  const controlName = (element) =>
    fieldName(element)
    || text(element)
    || Array.from(element.querySelectorAll("img[alt]")).map((image) => image.alt).join(" ").trim()
    || (element.getAttribute("title") || "").trim()
    || (element.tagName === "INPUT" ? (element.value || "").trim() : "");
  const controls = "a[href], button, input[type=submit], input[type=button], input[type=reset],"
    + " [role=button], summary";
  for (const control of document.querySelectorAll(controls)) {
    if (!controlName(control)) problems.push("button or link without a name: " + describe(control));
  }
  for (const violation of window.__cspViolations || []) problems.push("CSP: " + violation);
  return problems;
}
"""


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # English unless the language selector says otherwise, whatever the machine's locale.
    return {**browser_context_args, "locale": "en-US"}


def sign_in(page, base_url, email):
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form:has(input[name=password]) button[type=submit]")
    assert page.url == f"{base_url}/", f"signing in as {email} failed: {page.url}"


def session_cookie(user, base_url):
    """The staff user's session (verified by two-factor authentication, as staff pages
    require), without a second trip through the sign-in form."""
    client = Client()
    login_verified(client, user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {"name": settings.SESSION_COOKIE_NAME, "value": value, "url": base_url}


@pytest.fixture
def page_world(mailoutbox, django_capture_on_commit_callbacks):
    return build_page_world(
        mailoutbox=mailoutbox, capture_on_commit=django_capture_on_commit_callbacks
    )


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_every_page_is_sound(page, live_server, console_errors, page_world, language):
    world, base = page_world, live_server.url
    page.add_init_script(CSP_LISTENER)
    problems = []

    def visit(name):
        url = page_url(name, world)
        seen = len(console_errors)
        response = page.goto(f"{base}{url}")
        expected = STATUS.get(name, 200)
        if response.status != expected:
            problems.append(f"{name} ({url}): status {response.status}, expected {expected}")
        for problem in page.evaluate(AUDIT, language):
            problems.append(f"{name} ({url}): {problem}")
        for error in console_errors[seen:]:
            # The page shown with an error status on purpose logs that status, nothing else.
            if f"status of {expected}" not in error:
                problems.append(f"{name} ({url}): console: {error}")

    # Signed out, the language is chosen in the top bar (a cookie); the signed-in pages keep it.
    page.goto(f"{base}/accounts/login/")
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-switcher", language)
    for name in sorted(SIGNED_OUT):
        visit(name)
    sign_in(page, base, world.owner.email)
    pages = [name for name in owner_page_names() if name not in FRAGMENTS]
    for name in pages:
        visit(name)
    page.context.add_cookies([session_cookie(world.staff, base)])
    for name in sorted(STAFF):
        visit(name)
    assert not problems, f"{len(problems)} problem(s) in {language}:\n" + "\n".join(problems)
    assert len(pages) + len(SIGNED_OUT) + len(STAFF) > 40  # the list did not silently shrink


def test_the_audit_hears_a_csp_violation_and_sees_a_nameless_field(page, live_server):
    """The checks above can fail: an inline style is refused and reported, a bare input is
    named a problem."""
    page.add_init_script(CSP_LISTENER)
    page.goto(f"{live_server.url}/accounts/login/")
    page.evaluate(
        """() => {
          const style = document.createElement("style");
          style.textContent = "body { color: red; }";
          document.head.appendChild(style);
          document.querySelector("main").appendChild(document.createElement("input"));
        }"""
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    problems = page.evaluate(AUDIT, "en")
    assert any(problem.startswith("CSP: style-src") for problem in problems), problems
    assert any(problem.startswith("field without a name: <input>") for problem in problems)


def test_the_progress_bar_shows_while_an_htmx_request_is_in_flight(
    page, live_server, console_errors, page_world
):
    base = live_server.url
    sign_in(page, base, page_world.owner.email)
    held = []
    # The request is held until the bar has been looked at.
    page.route("**/projects/", lambda route: held.append(route))
    state = page.evaluate(
        """async () => {
          const bar = document.querySelector(".htmx-progress");
          const done = htmx.ajax("GET", "/projects/", {target: "#main", swap: "none"});
          await new Promise((resolve) => setTimeout(resolve, 400));
          const during = [bar.classList.contains("htmx-request"), bar.getBoundingClientRect().width];
          window.__done = done;
          return during;
        }"""
    )
    assert state[0] is True and state[1] > 100, f"the bar during the request: {state}"
    for route in held:
        route.continue_()
    page.evaluate("async () => { await window.__done; }")
    page.wait_for_function(
        "!document.querySelector('.htmx-progress').classList.contains('htmx-request')"
    )
    assert console_errors == []


def test_the_keyboard_reaches_the_skip_link_then_the_navigation(
    page, live_server, console_errors, page_world
):
    base = live_server.url
    sign_in(page, base, page_world.owner.email)
    page.goto(f"{base}/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.className")
    assert focused == "skip-link", f"the first Tab focuses {focused!r}"
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["x"] >= 0, "the focused skip link is on screen"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.goto(f"{base}/")
    navigation = page.eval_on_selector_all(
        "nav.sidebar a[href]", "links => links.map(link => link.getAttribute('href'))"
    )
    assert len(navigation) >= 5
    reached = set()
    for _ in range(len(navigation) + 20):
        page.keyboard.press("Tab")
        href = page.evaluate(
            "document.activeElement.closest('nav.sidebar') ? "
            "document.activeElement.getAttribute('href') : null"
        )
        if href:
            reached.add(href)
        if reached >= set(navigation):
            break
    assert set(navigation) <= reached, f"not reached with Tab: {set(navigation) - reached}"
    assert console_errors == []
