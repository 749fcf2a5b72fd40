"""The Chinese interface has no untranslated string: every GET page of the console, rendered
in Simplified Chinese for an account full of data, shows no English word outside a short list
of names.

What is read: the text a person sees or hears (element text, the page title, and the
attributes shown or spoken: placeholder, title, aria-label, alt, a button's value, the
confirmation and "copied" texts of console.js). What is not: scripts and styles; <code>, <pre>
and <textarea> (API names, snippets, payloads and values stay as they are); elements marked
translate="no" (identifiers shown as they are: time zones, job names, references, API roles)
or lang="en" (English on purpose, such as the developer docstrings on the staff job page);
email addresses and URLs; and identifiers (a token with a digit, an underscore, an inner dot or
slash, a leading dot or "x-", or a key's "…" mask: glm-4.5-air, alert.balance_low,
Asia/Shanghai, .mjs, x-request-id). The seeded data is named in Chinese or with digits, and so
are the operator's catalogue (packs) and seller details, so a leak is always the
interface's own.
"""

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from billing.models import PackProduct
from tests.every_page import (
    KWARGS,
    SIGNED_OUT,
    STAFF,
    STATUS,
    build_page_world,
    page_names,
    page_url,
)
from tests.factories import login_verified

pytestmark = pytest.mark.embedded

# English words a Chinese page may show (compared ignoring case), each a name rather than a
# translatable word.
ALLOWED = {
    word.lower()
    for word in [
        "English",  # the language selector names each language in that language
        "BigModel",  # the product's name
        "API",  # written so in Chinese (API 密钥)
        "Key",  # the catalogue writes "API Key", as BigModel's own Chinese console does
        "tokens",  # the billing unit keeps its English name in Chinese consoles
        "token",  # the singular, as in 首 token (the first token's latency)
        "Webhook",  # the usual Chinese term
        "CSV",  # a file format
        "PDF",  # a file format
        "JSON",  # a data format
        "JSONL",  # a data format (one JSON object a line)
        "URL",  # written so in Chinese
        "HTTP",  # the protocol
        "POST",  # the HTTP method
        "SDK",  # written so in Chinese
        "OpenAI",  # the compatible SDK's and its package's name
        "cURL",  # a tool's name (copy as cURL)
        "Python",  # a language's name (the quickstart's snippets)
        "JavaScript",  # a language's name
        "Celery",  # the scheduler's name (the staff job page) ...
        "beat",  # ... and its process's name: "Celery beat"
        "UTC",  # the time zone's name
        "CNY",  # a currency code
        "USD",  # a currency code
        "Visa",  # a card brand
        "Enter",  # key caps are labelled in English
        "Shift",  # key caps are labelled in English
        # The coding plan: its product name and the plans' names, as BigModel's Chinese
        # console writes them ("GLM Coding Plan", Lite / Pro / Max), the coding tools'
        # names, MCP, and "prompt" (its Chinese pages count quota in prompts).
        "GLM",
        "Coding",
        "Plan",
        "Lite",
        "Pro",
        "Max",
        "Claude",
        # Operating systems and shells, named in the quickstart's recipes (issue 23).
        "macOS",
        "Linux",
        "Windows",
        "PowerShell",
        "Code",
        "Cline",
        "Cursor",
        "Roo",
        "MCP",
        "prompt",
        "Anthropic",  # the company, and its API's name ("Anthropic-compatible")
        "production",  # the environment labels the key form suggests, typed as they are
        "staging",
        "test",
    ]
}

SKIPPED_ELEMENTS = {"script", "style", "code", "pre", "textarea"}
SPOKEN_ATTRIBUTES = {"placeholder", "title", "aria-label", "alt", "data-confirm", "data-copied"}
VOID_ELEMENTS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip

EMAIL_OR_URL = re.compile(r"\S+@\S+|\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
# A key's mask is "…" and its last four characters, which may start with "-" ("…-psE"):
# the "-" belongs to the token, so the mask stays one identifier.
TOKEN = re.compile(r"[.…]?-?[A-Za-z0-9_][A-Za-z0-9_./'’-]*")
IDENTIFIER = re.compile(r"[0-9_]|\w[./]\w|^[.…]|^x-", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z]{3,}")


class VisibleText(HTMLParser):
    """The pieces of text a person sees or hears, in document order (the parser reports an
    element's start and end; a skipped element is left at its matching end tag)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping: str | None = None  # the tag whose content is skipped
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        if self._skipping:
            if tag == self._skipping:
                self._depth += 1
            return
        attributes = dict(attrs)
        if tag in VOID_ELEMENTS:
            pass
        elif (
            tag in SKIPPED_ELEMENTS
            or attributes.get("translate") == "no"
            or (attributes.get("lang") or "").startswith("en")
        ):
            self._skipping, self._depth = tag, 1
            return
        for name, value in attributes.items():
            if value and name in SPOKEN_ATTRIBUTES:
                self.pieces.append(value)
        if tag == "input" and attributes.get("type") in {"submit", "button", "reset"}:
            self.pieces.append(attributes.get("value") or "")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self._skipping == tag and tag not in VOID_ELEMENTS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if self._skipping == tag:
            self._depth -= 1
            if self._depth == 0:
                self._skipping = None

    def handle_data(self, data):
        if not self._skipping and data.strip():
            self.pieces.append(" ".join(data.split()))


def english_words(text: str) -> list[str]:
    """The English words of `text` that are not on the list (identifiers are no words)."""
    found = []
    for token in TOKEN.findall(EMAIL_OR_URL.sub(" ", text)):
        if IDENTIFIER.search(token):
            continue
        found += [word for word in WORD.findall(token) if word.lower() not in ALLOWED]
    return found


def leaks(html: str) -> list[tuple[str, list[str]]]:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return [(piece, words) for piece in parser.pieces if (words := english_words(piece))]


def test_the_check_finds_english_and_spares_names_and_identifiers():
    html = (
        '<html lang="zh-hans"><head><title>概览 · BigModel</title><style>p{x:1}</style></head>'
        '<body><p>余额 Balance</p><p title="Hidden title">模型 glm-4.5-air,alert.balance_low</p>'
        '<input type="hidden" name="next" value="/usage/">'
        '<input type="submit" value="Save"><code>curl https://x</code><pre>print()</pre>'
        '<span lang="en">Docstring text</span><p>owner@example.com https://a.example/hook</p>'
        '<script>var words = "never seen";</script><button data-confirm="Sure?">删除</button>'
        '<select translate="no"><option>Asia/Shanghai</option><option>Japan</option></select>'
        "<textarea>curl -H 'Authorization: Bearer'</textarea><p>密钥 生产 1 (…hOKy), Tokens</p>"
        "</body></html>"
    )
    assert leaks(html) == [
        ("余额 Balance", ["Balance"]),
        ("Hidden title", ["Hidden", "title"]),
        ("Save", ["Save"]),
        ("Sure?", ["Sure"]),
    ]


def test_every_page_has_its_kwargs():
    """A new detail page needs its object in tests/every_page.py's KWARGS."""
    missing = []
    for name in page_names():
        if name not in KWARGS:
            try:
                reverse(name)
            except NoReverseMatch:
                missing.append(name)
    assert not missing, f"GET pages without kwargs in tests/every_page.py KWARGS: {missing}"


def name_the_catalogue_in_chinese(settings):
    """Packs and the seller are the operator's data (staff edit them, SELLER_* set the seller),
    in one language: a Chinese deployment names them in Chinese. The seeded tiers keep their
    names: those are translated for display (Tier.display_name)."""
    settings.SELLER = {
        "name": "演示科技有限公司",
        "tax_id": "91110108000000000",
        "address": "北京市海淀区",
        "bank_name": "演示银行北京分行",
        "bank_account": "1100 0000 0000 0000 000",
    }
    for product in PackProduct.objects.all():
        PackProduct.objects.filter(pk=product.pk).update(name=f"资源包 {product.pk}")


@pytest.mark.django_db
def test_the_chinese_interface_has_no_untranslated_string(
    mailoutbox, django_capture_on_commit_callbacks, settings
):
    name_the_catalogue_in_chinese(settings)
    world = build_page_world(
        mailoutbox=mailoutbox,
        capture_on_commit=django_capture_on_commit_callbacks,
        language="zh-hans",
    )
    clients = {
        "signed_out": Client(HTTP_ACCEPT_LANGUAGE="zh-hans"),
        "owner": Client(HTTP_ACCEPT_LANGUAGE="zh-hans"),
        "staff": Client(HTTP_ACCEPT_LANGUAGE="zh-hans"),
    }
    clients["owner"].force_login(world.owner)
    login_verified(clients["staff"], world.staff)
    problems = []
    for name in page_names():
        who = "signed_out" if name in SIGNED_OUT else "staff" if name in STAFF else "owner"
        url = page_url(name, world)
        response = clients[who].get(url, follow=True)
        expected = STATUS.get(name, 200)
        assert response.status_code == expected, f"{name} ({url}): {response.status_code}"
        assert response.headers["Content-Language"] == "zh-hans", f"{name} ({url})"
        for text, words in leaks(response.content.decode()):
            problem = f"{name} ({url}): {', '.join(words)} in {text[:160]!r}"
            if problem not in problems:  # a table repeats the same leak on every row
                problems.append(problem)
    assert not problems, "English on Chinese pages:\n" + "\n".join(problems)
