"""With HTTPS=true (production behind TLS), responses carry HSTS, secure cookies, the CSP and
the other security headers, and plain HTTP is redirected, except the health probes.

The transport settings are computed when config/settings.py is imported, so the site runs in
a subprocess with the variable set (on the embedded default's SQLite, migrated in a temporary
folder) and answers through Django's test client there.
"""

import json

import pytest

from tests.console.test_settings import _clean_env, _python

SITE = """
import django, json
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment

call_command("migrate", verbosity=0)
setup_test_environment()
from console.models import User
User.objects.create_user(email="tls@example.com", password="correct-horse-battery-staple-42")

client = Client()
found = {}
for path in ["/accounts/login/", "/healthz", "/readyz"]:
    response = client.get(path)
    found["http " + path] = [response.status_code, response.get("Location")]
page = client.get("/accounts/login/", secure=True)
found["headers"] = dict(page.headers)
found["csrf_cookie"] = {flag: page.cookies["csrftoken"][flag] for flag in ("secure", "httponly")}
signed_in = client.post(
    "/accounts/login/",
    {"username": "tls@example.com", "password": "correct-horse-battery-staple-42"},
    secure=True,
)
found["sign_in"] = signed_in.status_code
cookie = signed_in.cookies["sessionid"]
found["session_cookie"] = {flag: cookie[flag] for flag in ("secure", "httponly", "samesite")}
print(json.dumps(found))
"""


def _site(tmp_path, **variables) -> dict:
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        # The manifest storage needs collectstatic; the pages only need their URLs.
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
        **variables,
    )
    return json.loads(_python(SITE, env).splitlines()[-1])


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    return _site(tmp_path_factory.mktemp("https"), HTTPS="true")


def test_hsts_for_a_year_with_subdomains_and_preload(production):
    hsts = production["headers"]["Strict-Transport-Security"]
    assert hsts == "max-age=31536000; includeSubDomains; preload"


def test_cookies_are_secure_and_the_session_cookie_is_http_only(production):
    assert production["sign_in"] == 302
    assert production["session_cookie"]["secure"] is True
    assert production["session_cookie"]["httponly"] is True
    assert production["session_cookie"]["samesite"] == "Lax"
    assert production["csrf_cookie"]["secure"] is True


def test_the_content_security_policy_allows_no_inline_script_or_style(production):
    policy = _directives(production["headers"]["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert any(value.startswith("'nonce-") for value in policy["script-src"])
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_the_other_security_headers(production):
    headers = production["headers"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_plain_http_is_redirected_except_the_health_probes(production):
    status, location = production["http /accounts/login/"]
    assert (status, location) == (301, "https://testserver/accounts/login/")
    assert production["http /healthz"][0] == 200
    assert production["http /readyz"][0] in (200, 503)  # answered, not redirected


def test_without_https_there_is_no_hsts_and_no_redirect(tmp_path):
    development = _site(tmp_path)
    assert "Strict-Transport-Security" not in development["headers"]
    assert development["http /accounts/login/"][0] == 200
    assert development["session_cookie"]["secure"] == ""
    assert development["session_cookie"]["httponly"] is True
