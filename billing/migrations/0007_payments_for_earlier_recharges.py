"""Every paid recharge recorded before payments existed gets its payment row (method
manual, the staff reference as the provider's), so replaying a staff top-up's reference
with the `recharge` command is still a replay, and every paid recharge shows on the
recharge page. A reference already used by another account's payment keeps the entry's
own id as a suffix: replaying it is then refused as "another account's" rather than
credited twice."""

from django.db import migrations


def backfill(apps, schema_editor):
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    Payment = apps.get_model("billing", "Payment")
    Account = apps.get_model("console", "Account")
    currencies = dict(Account.objects.values_list("pk", "currency"))
    for entry in LedgerEntry.objects.filter(kind="recharge", payment__isnull=True).order_by("pk"):
        bonus = (
            LedgerEntry.objects.filter(
                account_id=entry.account_id, kind="bonus_grant", reference=entry.reference
            )
            .values_list("metadata", flat=True)
            .first()
        )
        provider_reference = entry.reference
        if Payment.objects.filter(
            provider="manual", provider_reference=provider_reference
        ).exists():
            provider_reference = f"{entry.reference}#{entry.pk}"[:100]
        Payment.objects.create(
            account_id=entry.account_id,
            method=entry.metadata.get("method", "manual")
            if entry.metadata.get("method") in ("card", "bank_transfer", "manual")
            else "manual",
            provider="manual",
            reference=f"man_legacy_{entry.pk}",
            provider_reference=provider_reference,
            amount_nano=entry.recharge_delta_nano - entry.arrears_delta_nano,
            currency=currencies[entry.account_id],
            bonus_nano=int((bonus or {}).get("granted_nano", 0)),
            status="succeeded",
            ledger_entry_id=entry.pk,
            created_at=entry.created_at,
            settled_at=entry.created_at,
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_seed_promotions")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
