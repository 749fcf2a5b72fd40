from django.db import transaction
from django.utils.translation import gettext as _

from console.models import Account, AuditEvent, User
from console.services import audit_record
from projects.models import Project


def project_create(
    *,
    account: Account,
    name: str,
    description: str = "",
    is_default: bool = False,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
) -> Project:
    with transaction.atomic():
        project = Project.objects.create(
            account=account, name=name, description=description, is_default=is_default
        )
        audit_record(
            action="project.create",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=project,
            metadata={"name": name, "default": is_default},
        )
    return project


def default_project_name() -> str:
    return _("Default project")
