"""English and Simplified Chinese: a complete catalogue, compiled, and remembered per user."""

from pathlib import Path

import polib
import pytest
from django.urls import reverse

from tests.factories import make_account, make_user

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"

pytestmark = pytest.mark.embedded


def test_every_message_has_a_chinese_translation():
    catalogue = polib.pofile(str(CATALOGUE))
    untranslated = [entry.msgid for entry in catalogue.untranslated_entries()]
    fuzzy = [entry.msgid for entry in catalogue.fuzzy_entries()]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy: {fuzzy}"


def test_the_compiled_catalogue_matches_the_source():
    source = polib.pofile(str(CATALOGUE))
    compiled = polib.mofile(str(CATALOGUE.with_suffix(".mo")))
    expected = {(entry.msgid, entry.msgstr) for entry in source if not entry.msgid_plural}
    actual = {(entry.msgid, entry.msgstr) for entry in compiled if not entry.msgid_plural}
    assert expected - actual == set(), "run `make messages` to recompile django.mo"


def test_placeholders_survive_translation():
    import re

    for entry in polib.pofile(str(CATALOGUE)):
        names = set(re.findall(r"%\((\w+)\)s", entry.msgid))
        translated = entry.msgstr or " ".join(entry.msgstr_plural.values())
        assert set(re.findall(r"%\((\w+)\)s", translated)) == names, entry.msgid


@pytest.mark.django_db
def test_the_sign_in_page_follows_the_browser_language(client):
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert "登录" in page.content.decode()
    assert page["Content-Language"] == "zh-hans"


@pytest.mark.django_db
def test_the_choice_is_remembered_for_the_user_in_any_browser(client, django_user_model):
    user = make_user("lang@example.com")
    make_account(user)
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    user.refresh_from_db()
    assert user.language == "zh-hans"
    # A fresh browser with an English header still gets Chinese once signed in.
    from django.test import Client

    other = Client(HTTP_ACCEPT_LANGUAGE="en")
    other.force_login(user)
    page = other.get(reverse("overview")).content.decode()
    assert "概览" in page and "您的角色" in page


@pytest.mark.django_db
def test_an_unknown_language_changes_nothing(client):
    user = make_user("lang2@example.com")
    client.force_login(user)
    response = client.post(reverse("set_language"), {"language": "klingon", "next": "//evil.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("overview")
    user.refresh_from_db()
    assert user.language == ""


def test_the_catalogue_covers_every_marked_string_in_the_source(tmp_path):
    """Extract the messages afresh from a copy of the tree: any new string marked for
    translation that the committed catalogue lacks (or lacks a translation for) fails here."""
    import shutil
    import subprocess
    import sys

    if shutil.which("xgettext") is None:
        pytest.skip("needs GNU gettext (apt-get install gettext)")
    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", "var", ".git", "test-artifacts", "docs", "__pycache__", "*.png"
        ),
    )
    env = {
        "PATH": __import__("os").environ["PATH"],
        "CONSOLE_VAR_DIR": str(tmp_path / "var"),
        "CONSOLE_IGNORE_DOTENV": "1",
    }
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "zh_Hans",
            "--no-obsolete",
            "--ignore=tests",
            "--ignore=bench",
            "--ignore=var",
        ],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = polib.pofile(str(copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"))
    missing = [entry.msgid for entry in fresh if not entry.translated() or entry.fuzzy]
    assert not missing, f"run `make messages` and translate: {missing}"
