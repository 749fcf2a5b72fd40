"""The sandbox card provider credits any test card: a production deployment (`check
--deploy`, or HTTPS=true at start-up) refuses it unless ALLOW_SANDBOX_CARDS says so, while the
demo and CI (no HTTPS, no DEBUG) keep it."""

import subprocess
import sys

import pytest
from django.core import checks
from django.test import override_settings

from billing.models import PaymentMethod
from billing.providers import card_provider
from console.services import ServiceError
from tests.billing.factories import funded_account
from tests.billing.test_payments import add_card
from tests.conftest import ROOT

PRODUCTION_EXAMPLE = ROOT / ".env.production.example"


def billing_errors(*, deploy: bool) -> set[str]:
    return {
        message.id
        for message in checks.run_checks(include_deployment_checks=deploy)
        if message.id and message.id.startswith("billing.") and message.level >= checks.ERROR
    }


@override_settings(CARD_PROVIDER="sandbox", ALLOW_SANDBOX_CARDS=False, HTTPS=False)
def test_check_deploy_refuses_the_sandbox_card_provider():
    assert billing_errors(deploy=True) == {"billing.E001"}


@override_settings(CARD_PROVIDER="sandbox", ALLOW_SANDBOX_CARDS=False, HTTPS=True)
def test_the_production_switch_refuses_the_sandbox_without_check_deploy():
    assert billing_errors(deploy=False) == {"billing.E001"}


@pytest.mark.parametrize(
    "provider, allowed", [("sandbox", True), ("none", False)], ids=["allowed", "no-cards"]
)
def test_the_allow_setting_or_another_provider_passes_check_deploy(provider, allowed):
    with override_settings(CARD_PROVIDER=provider, ALLOW_SANDBOX_CARDS=allowed, HTTPS=True):
        assert billing_errors(deploy=True) == set()


@override_settings(CARD_PROVIDER="stripe", HTTPS=False)
def test_a_card_provider_name_that_names_none_is_an_error():
    assert billing_errors(deploy=False) == {"billing.E002"}


@override_settings(CARD_PROVIDER="sandbox", ALLOW_SANDBOX_CARDS=False, HTTPS=False, DEBUG=False)
def test_the_demo_and_ci_keep_the_sandbox():
    # make run, Procfile.dev and .ci/run's `check --fail-level WARNING`: no HTTPS, no DEBUG.
    assert billing_errors(deploy=False) == set()
    assert card_provider().name == "sandbox"


@pytest.mark.django_db
@override_settings(CARD_PROVIDER="none")
def test_without_a_card_provider_adding_a_card_is_refused_and_stores_nothing():
    account = funded_account()
    with pytest.raises(ServiceError, match="Card payments are not available"):
        add_card(account)
    assert not PaymentMethod.objects.filter(account=account).exists()


def _serve(env_changes: dict, tmp_path) -> subprocess.CompletedProcess:
    """Load the ASGI application as uvicorn does, with the production example's settings."""
    values = dict(
        line.split("=", 1)
        for line in PRODUCTION_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    values.update(env_changes)
    env = {key: value for key, value in values.items() if value is not None}
    env.update(PATH="/usr/bin:/bin", CONSOLE_IGNORE_DOTENV="1", CONSOLE_VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-c", "import console.asgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_production_server_will_not_start_on_the_sandbox(tmp_path):
    refused = _serve({"CARD_PROVIDER": None}, tmp_path)
    assert refused.returncode != 0
    assert "billing.E001" in refused.stderr and "ALLOW_SANDBOX_CARDS" in refused.stderr
    allowed = _serve({"CARD_PROVIDER": "sandbox", "ALLOW_SANDBOX_CARDS": "true"}, tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert _serve({}, tmp_path).returncode == 0
