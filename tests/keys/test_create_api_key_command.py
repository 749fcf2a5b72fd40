from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from keys.selectors import Authenticated, api_key_authenticate
from projects.models import Project
from tests.factories import make_account, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def test_it_prints_a_working_key_last_and_creates_the_project_if_missing():
    account = make_account(make_user())
    output = run("--account", str(account.pk), "--project", "Batch jobs", "--label", "nightly")
    raw = output.strip().splitlines()[-1]
    result = api_key_authenticate(raw)
    assert isinstance(result, Authenticated)
    assert result.project.name == "Batch jobs" and result.key.label == "nightly"
    run("--account", str(account.pk), "--project", "Batch jobs")
    assert Project.objects.filter(account=account, name="Batch jobs").count() == 1


def test_an_admin_read_key():
    account = make_account(make_user())
    raw = run("--account", str(account.pk), "--project", "Ops", "--scope", "admin-read")
    assert api_key_authenticate(raw.strip().splitlines()[-1]).key.scope == "admin-read"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "999999", "--project", "x"], "No account"),
        (["--account", "{account}", "--project", "x", "--label", ""], "--label"),
        (["--account", "{account}", "--project", "x", "--label", "y" * 101], "--label"),
    ],
)
def test_bad_input_is_refused(args, message):
    account = make_account(make_user())
    args = [arg.format(account=account.pk) for arg in args]
    with pytest.raises(CommandError, match=message):
        run(*args)
