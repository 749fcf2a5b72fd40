"""The sandbox card provider credits any test card: a production deployment (`check
--deploy`, or HTTPS=true at start-up) refuses it unless ALLOW_SANDBOX_CARDS says so, while the
demo and CI (no HTTPS, no DEBUG) keep it."""

import subprocess
import sys

import pytest
from django.core import checks
from django.test import override_settings
from django.urls import reverse

from billing.models import BillingProfile, LedgerEntry, Payment, PaymentMethod, Wallet
from billing.payments import auto_recharge_configure, auto_recharge_run, payment_start_card
from billing.providers import card_provider
from config.celery import refuse_to_work_unsafely
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from tests.billing.factories import funded_account
from tests.billing.test_payments import add_card
from tests.conftest import ROOT

PRODUCTION_EXAMPLE = ROOT / ".env.production.example"
UNIT = NANO_PER_UNIT


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


def _production_process(env_changes: dict, tmp_path, arguments) -> subprocess.CompletedProcess:
    """Run Python with the production example's settings."""
    values = dict(
        line.split("=", 1)
        for line in PRODUCTION_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    values.update(env_changes)
    env = {key: value for key, value in values.items() if value is not None}
    env.update(PATH="/usr/bin:/bin", CONSOLE_IGNORE_DOTENV="1", CONSOLE_VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _serve(env_changes: dict, tmp_path) -> subprocess.CompletedProcess:
    """Load the ASGI application as uvicorn does."""
    return _production_process(env_changes, tmp_path, ["-c", "import config.asgi"])


def test_a_production_server_will_not_start_on_the_sandbox(tmp_path):
    refused = _serve({"CARD_PROVIDER": None}, tmp_path)
    assert refused.returncode != 0
    assert "billing.E001" in refused.stderr and "ALLOW_SANDBOX_CARDS" in refused.stderr
    allowed = _serve({"CARD_PROVIDER": "sandbox", "ALLOW_SANDBOX_CARDS": "true"}, tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert _serve({}, tmp_path).returncode == 0


# --- Cards saved with a provider no longer configured ---------------------------------------


def _recharges(account) -> int:
    return LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.RECHARGE).count()


@pytest.mark.django_db
def test_a_sandbox_card_saved_before_the_switch_is_never_charged_after_it():
    account = funded_account(recharge_units=5)
    card = add_card(account)  # on the sandbox, the default provider
    with override_settings(CARD_PROVIDER="none"), pytest.raises(ServiceError, match="no longer"):
        payment_start_card(account=account, amount_nano=100 * UNIT, payment_method=card, actor=None)
    assert not Payment.objects.filter(account=account).exists()
    assert _recharges(account) == 1  # the factory's funding only
    assert Wallet.objects.get(account=account).recharge_nano == 5 * UNIT


@pytest.mark.django_db
def test_the_recharge_page_neither_offers_nor_charges_a_card_of_another_provider(client, world):
    client.force_login(world.owner_a)
    card = add_card(world.account_a)
    with override_settings(CARD_PROVIDER="none"):
        page = client.get(reverse("billing:recharge")).content.decode()
        assert f"card:{card.pk}" not in page
        cards_page = client.get(reverse("billing:cards")).content.decode()
        assert "no longer in use: cannot be charged" in cards_page
        response = client.post(
            reverse("billing:recharge_start"), {"amount": "100", "method": f"card:{card.pk}"}
        )
    assert response.status_code == 422
    assert not Payment.objects.filter(account=world.account_a).exists()


@pytest.mark.django_db
def test_auto_recharge_on_a_sandbox_card_turns_off_and_says_why_after_the_switch(
    mailoutbox, django_capture_on_commit_callbacks
):
    account = funded_account(recharge_units=5)
    add_card(account)
    auto_recharge_configure(
        account=account,
        enabled=True,
        threshold_nano=20 * UNIT,
        amount_nano=100 * UNIT,
        monthly_limit_nano=300 * UNIT,
        actor=None,
    )
    with override_settings(CARD_PROVIDER="none"), django_capture_on_commit_callbacks(execute=True):
        assert auto_recharge_run(account_id=account.pk) is None
    assert not Payment.objects.filter(account=account).exists()
    assert _recharges(account) == 1
    profile = BillingProfile.objects.get(account=account)
    assert not profile.auto_recharge_enabled
    assert "no longer uses" in profile.auto_recharge_disabled_reason
    assert Wallet.objects.get(account=account).auto_recharge_below_nano is None
    assert len(mailoutbox) == 1 and "no longer uses" in mailoutbox[0].body


@pytest.mark.django_db
def test_auto_recharge_cannot_be_turned_on_with_a_card_of_another_provider():
    account = funded_account(recharge_units=50)
    add_card(account)
    with override_settings(CARD_PROVIDER="none"), pytest.raises(ServiceError, match="no longer"):
        auto_recharge_configure(
            account=account,
            enabled=True,
            threshold_nano=20 * UNIT,
            amount_nano=100 * UNIT,
            monthly_limit_nano=300 * UNIT,
            actor=None,
        )
    assert not BillingProfile.objects.filter(account=account, auto_recharge_enabled=True).exists()


# --- The Celery worker ----------------------------------------------------------------------


@override_settings(CARD_PROVIDER="sandbox", ALLOW_SANDBOX_CARDS=False, HTTPS=True)
def test_a_production_worker_refuses_to_start_on_the_sandbox():
    # Celery logs and ignores an exception from a worker_init handler: it must exit.
    with pytest.raises(SystemExit, match=r"billing\.E001"):
        refuse_to_work_unsafely()


@pytest.mark.parametrize(
    "changes",
    [
        {"CARD_PROVIDER": "sandbox", "HTTPS": False},  # the demo and CI
        {"CARD_PROVIDER": "sandbox", "HTTPS": True, "ALLOW_SANDBOX_CARDS": True},  # staging
        {"CARD_PROVIDER": "none", "HTTPS": True},  # the production example
    ],
    ids=["demo", "staging", "production"],
)
def test_a_worker_starts_where_the_web_would(changes):
    with override_settings(**{"ALLOW_SANDBOX_CARDS": False, **changes}):
        refuse_to_work_unsafely()


def test_a_production_celery_worker_exits_on_the_sandbox(tmp_path):
    # The real command: the signal is connected, and the exit is not swallowed.
    refused = _production_process(
        {"CARD_PROVIDER": None},
        tmp_path,
        ["-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"],
    )
    assert refused.returncode != 0
    assert "billing.E001" in refused.stderr and "ALLOW_SANDBOX_CARDS" in refused.stderr
