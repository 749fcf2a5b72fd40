import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from billing.models import LedgerEntry, PackProduct, ResourcePack, Wallet
from billing.reconciliation import audit_all
from billing.services import pack_buy, pack_grant, packs_expire, recharge, wallet_lock
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from tests.billing.factories import funded_account
from tests.factories import make_account, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_new_account_gets_the_starter_pack(settings):
    account = make_account(make_user())
    pack = ResourcePack.objects.get(account=account)
    assert (pack.source, pack.tokens_total, pack.model) == (
        "starter",
        settings.STARTER_PACK_TOKENS,
        "",
    )
    assert timedelta(days=29) < pack.expires_at - timezone.now() <= timedelta(days=30)
    assert LedgerEntry.objects.filter(account=account, kind="pack_grant").count() == 1


def test_create_account_can_skip_the_starter_pack():
    output = run(
        "create_account", "bare@example.com", "--password", "pw-bare-123", "--no-starter-pack"
    )
    account_id = int(output.strip().splitlines()[-1])
    assert not ResourcePack.objects.filter(account_id=account_id).exists()


def test_a_recharge_is_idempotent_on_its_reference_and_marks_money_moved():
    account = funded_account()
    first = recharge(
        account=account, amount_nano=5 * NANO_PER_UNIT, bonus_nano=NANO_PER_UNIT, reference="R1"
    )
    again = recharge(
        account=account, amount_nano=5 * NANO_PER_UNIT, bonus_nano=NANO_PER_UNIT, reference="R1"
    )
    assert again.replayed and again.entry.pk == first.entry.pk
    wallet = Wallet.objects.get(account=account)
    assert (wallet.recharge_nano, wallet.bonus_nano) == (5 * NANO_PER_UNIT, NANO_PER_UNIT)
    account.refresh_from_db()
    assert account.currency_locked
    assert AuditEvent.objects.filter(account=account, action="billing.recharge").count() == 1


@pytest.mark.parametrize("amount", [0, -5])
def test_a_recharge_of_nothing_is_refused(amount):
    account = funded_account()
    with pytest.raises(ServiceError):
        recharge(account=account, amount_nano=amount, reference="bad")
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_the_recharge_command_prints_and_replays(capsys):
    account = funded_account()
    out = run(
        "recharge",
        "--account",
        str(account.pk),
        "--amount",
        "100.00",
        "--bonus",
        "20.00",
        "--reference",
        "wire-1",
    )
    assert "Recorded: recharge ¥100.00 + bonus ¥20.00" in out
    replay = run(
        "recharge", "--account", str(account.pk), "--amount", "100.00", "--reference", "wire-1"
    )
    assert replay.startswith("Already recorded: recharge ¥100.00 + bonus ¥20.00")
    data = json.loads(run("show_balance", "--account", str(account.pk), "--json"))
    assert data == {
        "currency": "CNY",
        "recharge": "100.000000000",
        "bonus": "20.000000000",
        "arrears": "0.000000000",
        "packs": [],
    }


@pytest.mark.parametrize("amount", ["1.005", "-3", "0", "abc", ""])
def test_the_recharge_command_refuses_bad_amounts(amount):
    account = funded_account()
    with pytest.raises(CommandError):
        run("recharge", "--account", str(account.pk), "--amount", amount, "--reference", "x")
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_grant_pack_command_is_idempotent_and_refuses_unknown_models():
    account = funded_account()
    args = [
        "grant_pack",
        "--account",
        str(account.pk),
        "--tokens",
        "5000",
        "--model",
        "glm-4.7",
        "--reference",
        "promo",
    ]
    assert run(*args).startswith("Granted: pack")
    assert run(*args).startswith("Already granted: pack")
    assert ResourcePack.objects.filter(account=account).count() == 1
    with pytest.raises(CommandError, match="Unknown model"):
        run(
            "grant_pack",
            "--account",
            str(account.pk),
            "--tokens",
            "5",
            "--model",
            "gpt-17",
            "--reference",
            "p2",
        )
    with pytest.raises(CommandError):
        run("grant_pack", "--account", str(account.pk), "--tokens", "0", "--reference", "p3")
    data = json.loads(run("show_balance", "--account", str(account.pk), "--json"))
    assert data["packs"][0]["tokens_remaining"] == 5000 and data["packs"][0]["model"] == "glm-4.7"


def test_buying_a_pack_splits_its_price_and_refuses_beyond_the_balance():
    product = PackProduct.objects.get(name__startswith="GLM-4.7 · 10M")  # ¥39
    account = funded_account(recharge_units=20, bonus_units=10)
    entries = LedgerEntry.objects.filter(account=account).count()
    with pytest.raises(ServiceError, match="too low"):
        pack_buy(account=account, product=product, actor=None)
    assert LedgerEntry.objects.filter(account=account).count() == entries
    assert not ResourcePack.objects.filter(account=account).exists()
    recharge(account=account, amount_nano=10 * NANO_PER_UNIT, reference="more")
    pack = pack_buy(account=account, product=product, actor=None)
    assert (pack.tokens_total, pack.model) == (10_000_000, "glm-4.7")
    wallet = Wallet.objects.get(account=account)
    # 39 split over 30/10: bonus part floor(39 × 10 / 40) = 9.75, recharge part 29.25.
    assert (wallet.recharge_nano, wallet.bonus_nano) == (750_000_000, 250_000_000)


def test_the_expiry_job_closes_packs_with_a_ledger_record_once():
    account = funded_account()
    pack, _ = pack_grant(account=account, tokens=700, reference="p")
    ResourcePack.objects.filter(pk=pack.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert packs_expire() == 1
    assert packs_expire() == 0
    pack.refresh_from_db()
    assert pack.closed_at is not None and pack.tokens_remaining == 0
    entry = LedgerEntry.objects.get(account=account, kind="pack_expiry")
    assert entry.metadata == {"pack": pack.pk, "tokens_forfeited": 700}


@pytest.mark.billing_tamper
def test_billing_audit_reports_any_mismatch_and_exits_1():
    account = funded_account(recharge_units=10)
    assert audit_all()[1] == []
    assert "match their ledgers" in run("billing_audit")
    Wallet.objects.filter(account=account).update(recharge_nano=11 * NANO_PER_UNIT)
    pack, _ = pack_grant(account=account, tokens=100, reference="t")
    ResourcePack.objects.filter(pk=pack.pk).update(tokens_remaining=99)
    problems = [str(problem) for problem in audit_all()[1]]
    assert any("recharge balance" in problem for problem in problems)
    assert any(f"pack {pack.pk} tokens" in problem for problem in problems)
    with pytest.raises(SystemExit) as exit_info:
        call_command("billing_audit", stdout=StringIO(), stderr=StringIO())
    assert exit_info.value.code == 1


@pytest.mark.django_db(transaction=True)
def test_the_wallet_lock_refuses_to_run_outside_a_transaction():
    # Outside a transaction FOR UPDATE would end with its own statement: a charge relying on
    # it would race. The ORM's select_for_update refuses the same way.
    account = funded_account(recharge_units=1)
    with pytest.raises(TransactionManagementError):
        wallet_lock(account)
    with transaction.atomic():
        assert wallet_lock(account).recharge_nano == NANO_PER_UNIT
