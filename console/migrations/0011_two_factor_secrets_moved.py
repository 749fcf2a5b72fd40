"""Authenticator apps and recovery codes move out of django-otp's plain-text tables: each
TOTP seed is encrypted into console.AuthenticatorApp, each unused recovery code hashed into
console.RecoveryCode, and the plain rows are deleted. Sessions verified by an old device ask
for a code again (its id names the old table)."""

from django.db import migrations

from console.secrets_at_rest import current_pepper_version, encrypt_text, keyed_hash

# The value console.models.RECOVERY_CODE_PURPOSE had when this migration was written.
RECOVERY_CODE_PURPOSE = "two-factor-recovery-code"
_DEVICE_FIELDS = [
    "user_id",
    "name",
    "confirmed",
    "last_used_at",
    "throttling_failure_timestamp",
    "throttling_failure_count",
]


def _keep_created_at(model, new, old):
    # created_at is auto_now_add: create() sets it to now; the app was added back then.
    model.objects.filter(pk=new.pk).update(created_at=old.created_at)


def move_secrets(apps, schema_editor):
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    StaticDevice = apps.get_model("otp_static", "StaticDevice")
    StaticToken = apps.get_model("otp_static", "StaticToken")
    AuthenticatorApp = apps.get_model("console", "AuthenticatorApp")
    RecoveryCodeSet = apps.get_model("console", "RecoveryCodeSet")
    RecoveryCode = apps.get_model("console", "RecoveryCode")

    for old in TOTPDevice.objects.order_by("pk"):
        new = AuthenticatorApp.objects.create(
            **{name: getattr(old, name) for name in _DEVICE_FIELDS},
            key_encrypted=encrypt_text(old.key),
            step=old.step,
            t0=old.t0,
            digits=old.digits,
            tolerance=old.tolerance,
            drift=old.drift,
            last_t=old.last_t,
        )
        _keep_created_at(AuthenticatorApp, new, old)
    TOTPDevice.objects.all().delete()

    version = current_pepper_version()
    for old in StaticDevice.objects.order_by("pk"):
        new = RecoveryCodeSet.objects.create(
            **{name: getattr(old, name) for name in _DEVICE_FIELDS}
        )
        _keep_created_at(RecoveryCodeSet, new, old)
        RecoveryCode.objects.bulk_create(
            RecoveryCode(
                device=new,
                # Codes are lower case without separators, as the sign-in normalises them.
                code_hash=keyed_hash(
                    token.token.lower(), purpose=RECOVERY_CODE_PURPOSE, pepper_version=version
                ),
                pepper_version=version,
            )
            for token in StaticToken.objects.filter(device=old)
        )
    StaticDevice.objects.all().delete()  # their tokens go with them


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0010_two_factor_secrets_at_rest"),
        ("otp_static", "0003_add_timestamps"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    # Not reversible: the plain secrets are what this removes.
    operations = [migrations.RunPython(move_secrets, migrations.RunPython.noop, elidable=False)]
