from django.core.management.base import BaseCommand, CommandError

from console.models import Account, AuditEvent
from console.services import ServiceError
from keys.models import Scope
from keys.services import api_key_create
from projects.models import Project
from projects.services import project_create


class Command(BaseCommand):
    help = (
        "Create an API key in a project of an account (the project is created if missing). "
        "Prints the full key as the last line: it is shown nowhere else, ever."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int, help="The account id.")
        parser.add_argument("--project", required=True, help="Project name.")
        parser.add_argument("--label", default="cli")
        parser.add_argument("--scope", default=Scope.INFERENCE, choices=Scope.values)
        parser.add_argument("--environment", default="production")

    def handle(self, *args, account, project, label, scope, environment, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        if not label.strip() or len(label) > 100:
            raise CommandError("--label must be 1 to 100 characters.")
        project_obj = Project.objects.filter(
            account=account_obj, name=project, archived_at__isnull=True
        ).first()
        created_project = project_obj is None
        if created_project:
            project_obj = project_create(
                account=account_obj,
                name=project,
                actor=None,
                actor_kind=AuditEvent.ActorKind.SYSTEM,
            )
        try:
            created = api_key_create(
                account=account_obj,
                project=project_obj,
                label=label.strip(),
                scope=scope,
                environment=environment,
                actor=None,
                actor_kind=AuditEvent.ActorKind.SYSTEM,
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        new = " (new)" if created_project else ""
        self.stdout.write(
            f"Created {scope} key {created.key.mask} ({created.key.label!r}) in project "
            f"{project_obj.name!r}{new} of account {account_obj.pk}."
        )
        self.stdout.write(created.raw)
