"""A brand-new account's pages say what to do next instead of showing empty tables."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tests.factories import make_account, make_user

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

# page → words of its empty state that point to the next step
NEXT_STEPS = {
    "overview": "Create an API key",
    "keys:list": "Create one below, then call the API with it.",
    "usage:index": "Create an API key and call the API, or widen the dates.",
    "history:search": "requests made with your API keys appear here",
    "billing:index": "Recharges, charges for API usage and resource packs appear here.",
    "billing:transactions": "recharge to start",
    "billing:packs": "Buy one below",
    "billing:recharge": "Your first recharge appears here",
    "billing:cards": "Add one to recharge in one click",
    "billing:invoices": "Recharge first, then come back here.",
    "alerts:settings": "Set a balance threshold above",
    "notifications:list": "Alerts you set up for this account will appear here.",
    "notifications:webhooks": "Add one below to receive alerts in your own systems.",
    "members": "Invite a teammate below",
}


@pytest.mark.parametrize("name", NEXT_STEPS)
def test_an_empty_page_says_what_to_do_next(client, name):
    owner = make_user(f"new-{name.replace(':', '-')}@example.com")
    make_account(owner, name="Brand New", starter_pack=False)
    client.force_login(owner)
    text = empty_state_text(client.get(reverse(name)).content.decode())
    assert text is not None, f"{name} shows no empty state"
    assert NEXT_STEPS[name] in text


class _EmptyState(HTMLParser):
    """The text of the first element whose class list has "empty"."""

    VOID = {"br", "img", "input", "hr", "meta", "link"}

    def __init__(self):
        super().__init__()
        self.depth, self.words = 0, None

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        if self.depth:
            self.depth += 1
        elif self.words is None and "empty" in (dict(attrs).get("class") or "").split():
            self.depth, self.words = 1, []

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.words.extend(data.split())


def empty_state_text(html: str) -> str | None:
    parser = _EmptyState()
    parser.feed(html)
    return None if parser.words is None else " ".join(parser.words)
