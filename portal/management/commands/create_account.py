import argparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from console.models import AuditEvent, Tier
from console.services import ServiceError
from portal.services import user_signup


class Command(BaseCommand):
    help = (
        "Create a verified, active owner with a new account. Prints the account id as the "
        "last line (every --account option accepts it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--password", required=True)
        parser.add_argument("--tier", help="Tier slug (default: the lowest tier).")
        parser.add_argument("--name", default="", help="The owner's name.")
        parser.add_argument("--account-name", help="Default: the part of the email before @.")
        parser.add_argument("--currency", default=settings.DEFAULT_CURRENCY, choices=["CNY", "USD"])
        parser.add_argument(
            "--starter-pack",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="Grant the owner's one starter pack to the new account (default: none).",
        )

    def handle(self, *args, email, password, tier, name, account_name, currency, **options):
        starter_pack = options["starter_pack"]
        try:
            validate_email(email)
        except ValidationError as error:
            raise CommandError(f"Invalid email address: {email}") from error
        tier_obj = None
        if tier:
            tier_obj = Tier.objects.filter(slug=tier).first()
            if tier_obj is None:
                known = ", ".join(Tier.objects.values_list("slug", flat=True))
                raise CommandError(f"Unknown tier {tier!r}; known tiers: {known}")
        try:
            user, account = user_signup(
                email=email,
                password=password,
                name=name,
                account_name=account_name or email.split("@")[0],
                currency=currency,
                email_verified=True,
                tier=tier_obj,
                actor_kind=AuditEvent.ActorKind.SYSTEM,
                starter_pack=starter_pack,
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Created owner {user.email} of account {account.name!r} "
            f"(tier {account.tier.slug}, {account.currency})."
        )
        self.stdout.write(str(account.pk))
