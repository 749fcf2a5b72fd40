"""Two whole journeys in Chromium.

1. A new developer, from the sign-up form to a revoked key, against the site under uvicorn
   (a real ASGI server in a subprocess), calling the gateway with the official openai SDK
   and the key the browser copied.
2. A finance member, who joins by invitation and works with money, never with prompts.
"""

import email
import email.policy
import re
from pathlib import Path

import openai
import pytest
from django.test import override_settings

from billing.models import LedgerEntry, Wallet
from billing.payments import payment_record_manual
from console.emails import email_deliver
from console.models import OutgoingEmail, User
from console.money import NANO_PER_UNIT, format_amount
from console.roles import Role
from console.services import invitation_create
from history.models import PromptLog
from keys.services import api_key_create
from tests.conftest import requires_postgres
from tests.factories import PASSWORD, make_account, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), requires_postgres]

PROMPT = "请用一句话介绍智谱清言的长文本能力"
# A starter pack that covers the first request (about 15 prompt + 40 completion tokens) and
# runs out during the second, so the journey sees both a pack-covered request and a charge
# split between recharge and bonus. The real size (20 million tokens) would hide the split.
STARTER_PACK_TOKENS = 100
STYLESHEET_APPLIED = """[...document.styleSheets].some(
    (sheet) => sheet.href && sheet.href.endsWith("/static/console/console.css")
        && sheet.cssRules.length > 0)"""
SUCCEEDED_IN_CHART = """document.getElementById("chart-requests").data
    .filter((trace) => trace.name === "Succeeded")
    .reduce((sum, trace) => sum + trace.y.reduce((a, b) => a + b, 0), 0)"""


@pytest.fixture
def uvicorn_env():
    return {"STARTER_PACK_TOKENS": str(STARTER_PACK_TOKENS)}


def nav(page, name):
    """A link of the main navigation (pages repeat some names, e.g. "← Projects")."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def subnav(page, name):
    return page.get_by_role("navigation", name="Billing").get_by_role("link", name=name, exact=True)


def emails_to(mailbox, address):
    """Messages the server's file mail backend wrote for `address`, oldest first."""
    send_the_outbox(mailbox)
    messages = []
    for path in sorted(mailbox.glob("*.log")):
        # The backend writes each message followed by a line of 79 dashes.
        for raw in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if raw.strip():
                message = email.message_from_bytes(raw, policy=email.policy.default)
                if address in message["To"]:
                    messages.append(message)
    return messages


def send_the_outbox(mailbox):
    """The server queues each email in the outbox for a Celery worker (console/emails.py);
    this suite runs none, so the test sends what is queued, as the worker would, through the
    server's file mail backend."""
    backend = {"BACKEND": "django.core.mail.backends.filebased.EmailBackend"}
    with override_settings(
        MAILERS={"default": {**backend, "OPTIONS": {"file_path": str(mailbox)}}}
    ):
        for email_id in OutgoingEmail.objects.filter(status="pending").values_list("pk", flat=True):
            email_deliver(email_id=email_id)


def body_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_a_new_developer_from_sign_up_to_a_revoked_key(
    page, uvicorn_site, uvicorn_mailbox, console_errors, screenshot
):
    site = uvicorn_site
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])

    # --- Sign up, then verify the address through the emailed link.
    page.goto(f"{site}/accounts/signup/")
    page.get_by_label("Email address").fill("dev@journey.example")
    page.get_by_label("Your name").fill("Li Lei")
    page.get_by_label("Password").fill("long-context-journey-2025")
    page.get_by_label("Account name").fill("Journey Co")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{site}/")
    page.get_by_text("We sent a verification link to dev@journey.example").wait_for()
    assert page.get_by_text("Verify your email address: we sent a link").is_visible()
    # uvicorn served the stylesheet and htmx too (WhiteNoise, from collected files): a page
    # without them would still pass every text check here.
    assert page.evaluate(STYLESHEET_APPLIED) and page.evaluate("typeof htmx === 'object'")
    screenshot("journey-01-signed-up")
    (verification,) = emails_to(uvicorn_mailbox, "dev@journey.example")
    link = re.search(rf"{re.escape(site)}/accounts/verify/\S+/", body_of(verification)).group(0)
    page.goto(link)
    page.get_by_text("Your email address dev@journey.example is verified.").wait_for()
    assert not page.get_by_text("Verify your email address: we sent a link").is_visible()
    assert User.objects.get(email="dev@journey.example").email_verified

    # --- A project, and a key in it: shown once, copied, then only its mask.
    nav(page, "Projects").click()
    page.get_by_label("Name", exact=True).fill("Long-context bot")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Project Long-context bot created.").wait_for()
    assert page.get_by_role("heading", name="Long-context bot").is_visible()
    screenshot("journey-02-project")
    page.get_by_role("link", name="Create an API key").click()
    page.get_by_label("Label").fill("journey-key")
    page.get_by_label("Project").select_option(label="Long-context bot")
    page.get_by_label("Environment").fill("production")
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "will not be shown again" in dialog.inner_text()
    dialog.get_by_role("button", name="Copy").click()
    dialog.get_by_role("button", name="Copied").wait_for()
    raw_key = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(r"[0-9a-f]{32}\.[A-Za-z0-9_-]+", raw_key)
    assert raw_key == page.locator("#new-key").input_value()
    screenshot("journey-03-key-created")
    page.get_by_role("link", name="I have copied it").click()
    page.reload()
    listing = page.content()
    assert raw_key.split(".")[1] not in listing
    assert "…" + raw_key[-4:] in listing

    # --- The official SDK, with the copied key, against the same server.
    client = openai.OpenAI(api_key=raw_key, base_url=f"{site}/api/paas/v4/", max_retries=0)
    reply = client.chat.completions.create(
        model="glm-4.7", messages=[{"role": "user", "content": PROMPT}], max_tokens=40
    )
    assert reply.choices[0].message.content
    first_tokens = reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert first_tokens <= STARTER_PACK_TOKENS  # covered by the starter pack

    # --- Prompt history: the text search finds it by a Chinese term, and only by a matching one.
    nav(page, "Prompt history").click()
    search = page.get_by_label("Text")
    search.fill("多模态")
    search.press("Enter")
    page.get_by_text("0 requests match.").wait_for()
    search.fill("长文本")
    search.press("Enter")
    page.get_by_text("1 request matches.").wait_for()
    assert "q=" in page.url
    row = page.locator("#results tbody tr")
    assert row.count() == 1
    assert PROMPT in row.inner_text() and "journey-key" in row.inner_text()
    screenshot("journey-04-history")

    # --- Usage: the chart is drawn and the totals count the one request, tokens from the pack.
    nav(page, "Usage").click()
    for chart in ("chart-cost", "chart-tokens", "chart-requests"):
        page.locator(f"#{chart} .main-svg").first.wait_for()
    # The request is in the figure plotly drew, not only in the totals under it.
    assert page.evaluate(SUCCEEDED_IN_CHART) == 1
    requests_card = page.locator("section.card").filter(
        has=page.get_by_role("heading", name="Requests", exact=True)
    )
    assert requests_card.locator(".metric").inner_text() == "1"
    assert f"{first_tokens} from packs" in page.locator("#usage-report").inner_text()
    page.wait_for_timeout(500)  # plotly's transition, so the screenshot shows the bars
    screenshot("journey-05-usage")

    # --- Top up ¥1,000 with a sandbox card: the seeded promotion adds 5% bonus.
    nav(page, "Billing").click()
    subnav(page, "Recharge").click()
    assert page.get_by_text("From ¥1,000.00: +5% bonus credit").is_visible()
    page.get_by_label("Amount (CNY)").fill("1000")
    page.get_by_label("A new card").check()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2035")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Pay").click()
    page.get_by_text("Payment received").wait_for()
    assert page.get_by_text("with ¥50.00 bonus").is_visible()
    screenshot("journey-06-recharged")

    # --- A second request outgrows what is left of the pack: its fee is split between the
    # recharge and bonus balances in proportion (1,000 : 50).
    client.chat.completions.create(
        model="glm-4.7",
        messages=[{"role": "user", "content": "长文本能力可以处理多少字？"}],
        max_tokens=1000,
        extra_body={"simulator": {"output_tokens": 1000, "chunk_ms": 0}},
    )
    charge = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CHARGE, fee_nano__gt=0)
    bonus_part = charge.fee_nano * 50 // 1050
    assert (charge.recharge_delta_nano, charge.bonus_delta_nano) == (
        -(charge.fee_nano - bonus_part),
        -bonus_part,
    )
    assert bonus_part > 0
    subnav(page, "Transactions").click()
    newest = page.locator("#transactions tbody tr").first
    cells = newest.locator("td")
    assert "API usage" in cells.nth(1).inner_text()
    assert cells.nth(2).inner_text() == format_amount(
        charge.recharge_delta_nano, "CNY", places=None
    )
    assert cells.nth(3).inner_text() == format_amount(charge.bonus_delta_nano, "CNY", places=None)
    details = cells.nth(4).inner_text()
    assert "from Starter pack" in details
    assert f"fee {format_amount(charge.fee_nano, 'CNY', places=None)}" in details
    screenshot("journey-07-split")

    # --- An invoice for the recharge, downloaded as a PDF.
    subnav(page, "Invoices").click()
    page.get_by_label("Company").check()
    page.get_by_label("Tax id").fill("91350100M000100Y43")
    page.once("dialog", lambda confirm: confirm.accept())  # "Issued invoices cannot be edited"
    page.get_by_role("button", name="Issue invoice").click()
    page.get_by_text(re.compile(r"Invoice \S+ issued\.")).wait_for()
    pdf_link = page.get_by_role("link", name="PDF", exact=True)
    with page.expect_download() as download:
        pdf_link.click()
    assert download.value.suggested_filename.endswith(".pdf")
    assert pdf_bytes(download.value).startswith(b"%PDF-")
    # The same URL with the browser's cookies, for the header a download hides.
    response = page.request.get(site + pdf_link.get_attribute("href"))
    assert response.headers["content-type"] == "application/pdf"
    screenshot("journey-08-invoice")

    # --- A block-mode cap below this month's spend: the next request is refused.
    nav(page, "Projects").click()
    page.get_by_role("link", name="Long-context bot").click()
    page.get_by_label("Monthly cap").fill("0.01")
    page.get_by_label("When reached").select_option(label="Block requests")
    page.get_by_role("button", name="Save cap").click()
    page.get_by_text("Monthly cap saved.").wait_for()
    assert page.get_by_text("reached: requests refused").is_visible()
    screenshot("journey-09-cap")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model="glm-4.7", messages=[{"role": "user", "content": PROMPT}], max_tokens=40
        )
    assert refused.value.status_code == 429
    assert refused.value.body["code"] == "1122"  # the project's cap (docs/api.md)

    # --- Revoke the key (with confirmation): the very next call is refused as unauthorised.
    nav(page, "API Keys").click()
    page.get_by_role("link", name="journey-key").click()
    page.get_by_role("link", name="Revoke key").click()
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("revoked: requests with it are refused").wait_for()
    screenshot("journey-10-revoked")
    with pytest.raises(openai.AuthenticationError) as unauthorised:
        client.chat.completions.create(
            model="glm-4.7", messages=[{"role": "user", "content": PROMPT}], max_tokens=40
        )
    assert unauthorised.value.status_code == 401
    assert unauthorised.value.body["code"] == "1004"

    wallet = Wallet.objects.get(account__name="Journey Co")
    assert wallet.recharge_nano + wallet.bonus_nano == 1_050 * NANO_PER_UNIT - charge.fee_nano
    assert console_errors == []


# Distinctive, so any page or file that leaks prompt content is caught by a plain search.
SECRET_PROMPT = "机密提示词：季度并购计划 ZX-4471"
FINANCE_NAVIGATION = [
    "Overview",
    "Subscription",
    "Projects",
    "Usage",
    "Billing",
    "Members",
    "Pricing",
    "Quickstart",
]


def test_a_finance_member_works_with_money_and_never_sees_a_prompt(
    page, live_server, mailoutbox, fresh_shared_state, console_errors, screenshot
):
    site = live_server.url
    owner = make_user("owner@ledger.example")
    account = make_account(owner, name="Ledger Co", starter_pack=False)
    payment_record_manual(account=account, amount_nano=500 * NANO_PER_UNIT, reference="wire-1")
    key = api_key_create(
        account=account,
        project=account.projects.get(is_default=True),
        label="support-bot",
        actor=owner,
    )
    # A real, charged request through the gateway, so history holds the prompt and billing
    # holds its cost.
    client = openai.OpenAI(api_key=key.raw, base_url=f"{site}/api/paas/v4/", max_retries=0)
    reply = client.chat.completions.create(
        model="glm-4.7", messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=30
    )
    log = PromptLog.objects.get(account=account)
    assert log.messages[0]["content"] == SECRET_PROMPT
    secrets = [SECRET_PROMPT, "ZX-4471", reply.choices[0].message.content]
    finance = make_user("finance@ledger.example", name="Han Meimei")
    invitation_create(
        account=account,
        inviter=account.memberships.get(user=owner),
        email=finance.email,
        role=Role.FINANCE,
    )
    invitation_path = re.search(r"/invitations/[^/\s]+/", mailoutbox[-1].body).group(0)

    seen = []  # every page and file the finance member reached

    def remember():
        seen.append(page.content())

    # --- The invitation link, signing in on the way, then joining as finance.
    page.goto(site + invitation_path)
    assert page.get_by_text("as Finance").is_visible()
    page.get_by_role("link", name="Sign in to accept").click()
    page.get_by_label("Email address").fill(finance.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Accept and join").click()
    page.get_by_text("You joined Ledger Co.").wait_for()
    remember()
    screenshot("finance-01-joined")

    # --- The navigation offers what finance may use: no keys, no history, no playground.
    main_navigation = page.get_by_role("navigation", name="Main").get_by_role("link")
    assert main_navigation.all_inner_texts() == FINANCE_NAVIGATION

    # --- Billing: balance, recharge, transactions.
    nav(page, "Billing").click()
    wallet = Wallet.objects.get(account=account)
    assert 0 < 500 * NANO_PER_UNIT - wallet.recharge_nano < NANO_PER_UNIT  # the request's fee
    assert page.locator(".metric").first.inner_text() == format_amount(wallet.recharge_nano, "CNY")
    remember()
    screenshot("finance-02-balance")
    subnav(page, "Recharge").click()
    assert page.get_by_role("button", name="Pay").is_visible()  # finance may pay
    remember()
    subnav(page, "Transactions").click()
    usage_row = page.locator("#transactions tbody tr").filter(has_text="API usage")
    assert "glm-4.7" in usage_row.inner_text()
    remember()
    with page.expect_download() as receipt:
        page.get_by_role("link", name="Receipt (PDF)").click()
    assert pdf_bytes(receipt.value).startswith(b"%PDF-")

    # --- An invoice, issued and downloaded.
    subnav(page, "Invoices").click()
    page.get_by_label("Individual").check()
    page.get_by_label("Invoice title").fill("Han Meimei")
    page.get_by_label("Amount").fill("200")
    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Issue invoice").click()
    page.get_by_text(re.compile(r"Invoice \S+ issued\.")).wait_for()
    remember()
    screenshot("finance-03-invoice")
    with page.expect_download() as invoice:
        page.get_by_role("link", name="PDF", exact=True).click()
    assert pdf_bytes(invoice.value).startswith(b"%PDF-")

    # --- This month's statement, as PDF and CSV: consumption by model, no content.
    subnav(page, "Statements").click()
    remember()
    month_row = page.locator("tbody tr").filter(has_text="In progress")
    with page.expect_download() as statement_pdf:
        month_row.get_by_role("link", name="PDF").click()
    assert pdf_bytes(statement_pdf.value).startswith(b"%PDF-")
    with page.expect_download() as statement_csv:
        month_row.get_by_role("link", name="CSV").click()
    csv_text = Path(statement_csv.value.path()).read_text(encoding="utf-8-sig")
    assert "glm-4.7" in csv_text
    seen.append(csv_text)
    screenshot("finance-04-statements")

    # --- Usage and projects: numbers, never keys or prompts.
    nav(page, "Usage").click()
    page.locator("#chart-cost .main-svg").first.wait_for()
    remember()
    nav(page, "Projects").click()
    page.get_by_role("link", name="Default").click()
    assert not page.get_by_role("heading", name="API keys").is_visible()
    remember()

    assert console_errors == []  # every page finance may use

    # --- Prompt history, a prompt of it, and key pages typed in directly: not allowed.
    forbidden = ("/history/", f"/history/{log.pk}/", "/api-keys/", "/playground/")
    for path in forbidden:
        response = page.goto(site + path)
        assert response.status == 403, path
        assert page.get_by_role("heading", name="Not allowed").is_visible()
        remember()
    screenshot("finance-05-history-refused")

    for text in secrets:
        assert not any(text in content for content in seen), text
    # Chromium logs each refused navigation as a failed load; nothing else may appear.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ] * len(forbidden)


def pdf_bytes(download) -> bytes:
    return Path(download.path()).read_bytes()
