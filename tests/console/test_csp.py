"""Django's CSP is on for every page, and our pages need nothing it would block."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["overview", "members", "account_settings", "account_create", "password_change"]


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline_scripts, self.styled, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs:
            self.inline_scripts.append(attrs.get("nonce"))
        if "style" in attrs or tag == "style":
            self.styled.append(tag)
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if tag in ("script", "link", "img") and re.match(r"(https?:)?//", value):
                self.external.append(value)


def _check(response):
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assets = _Assets()
    assets.feed(response.content.decode())
    assert all(found == nonce for found in assets.inline_scripts), "inline script without nonce"
    assert assets.styled == [], "inline styles are blocked by style-src 'self'"
    assert assets.external == [], f"assets from another origin: {assets.external}"


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_signed_in_pages_work_under_the_policy(client, world, name):
    client.force_login(world.owner_a)
    response = client.get(reverse(name))
    assert response.status_code == 200
    _check(response)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["login", "signup", "password_reset"])
def test_public_pages_work_under_the_policy(client, name):
    _check(client.get(reverse(name)))


def test_htmx_is_served_from_this_site():
    base = (ROOT / "templates" / "base.html").read_text()
    assert "{% htmx_script %}" in base
    assert "includeIndicatorStyles" in base  # htmx would otherwise inject a <style>


def test_template_comments_are_single_line():
    """`{# #}` spans one line only; a multi-line one is printed into the page as text."""
    for template in (ROOT / "templates").rglob("*.html"):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            if "{#" in line:
                assert "#}" in line, f"{template}:{number}: use {{% comment %}} across lines"


def test_plotlys_stylesheet_and_map_style_id_match_the_installed_plotly():
    """plotly.js injects inline <style> unless our page provides its rules and ids (the CSP
    refuses inline styles): after a plotly upgrade, scripts/plotly-csp-css must be re-run."""
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = runpy.run_path(str(root / "scripts" / "plotly-csp-css"))
    current = (root / "static" / "vendor" / "plotly-csp.css").read_text(encoding="utf-8")
    assert current == script["generate"](), "run scripts/plotly-csp-css"
    source = script["plotly_js"]().read_text(encoding="utf-8")
    assets = (root / "templates" / "billing" / "_chart_assets.html").read_text(encoding="utf-8")
    assert f'id="{script["maplibre_style_id"](source)}"' in assets
