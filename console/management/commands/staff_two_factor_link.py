from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from console.models import AuditEvent, StaffTwoFactorLink
from console.services import ServiceError
from console.staff_two_factor import staff_link_issue


class Command(BaseCommand):
    help = (
        "Print a one-time link with which a staff member sets up two-factor authentication "
        "(for a superuser to hand over when the emailed link cannot be used). The link "
        "replaces any earlier one; it is not stored, only its hash."
    )

    def add_arguments(self, parser):
        parser.add_argument("email", help="The staff member's email address.")

    def handle(self, *args, email, **options):
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email address {email}.")
        try:
            issued = staff_link_issue(
                user=user,
                via=StaffTwoFactorLink.Via.COMMAND,
                actor_kind=AuditEvent.ActorKind.SYSTEM,
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        expires = issued.link.expires_at.isoformat(timespec="minutes")
        self.stdout.write(f"One-time link for {user.email} (works once, until {expires}):")
        self.stdout.write(issued.url)
