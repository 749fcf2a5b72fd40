from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from console.models import Account, AuditEvent, User
from console.services import ServiceError, audit_record, changed_fields
from projects.models import CapMode, Project


def project_create(
    *,
    account: Account,
    name: str,
    description: str = "",
    is_default: bool = False,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
    ip: str | None = None,
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
            ip=ip,
            metadata={"name": name, "default": is_default},
        )
    return project


def default_project_name() -> str:
    return _("Default project")


def project_update(
    *, project: Project, name: str, description: str, actor: User, ip: str | None = None
) -> Project:
    changes = changed_fields(project, name=name, description=description)
    if changes:
        with transaction.atomic():
            Project.objects.filter(pk=project.pk).update(name=name, description=description)
            project.name, project.description = name, description
            audit_record(
                action="project.update",
                account=project.account,
                actor=actor,
                target=project,
                ip=ip,
                metadata={"changes": changes},
            )
    return project


def project_archive(*, project: Project, actor: User, ip: str | None = None) -> Project:
    """Archive: the project's keys stop working at once (the gateway checks the project on
    every request)."""
    if project.is_default:
        raise ServiceError(_("The Default project cannot be archived."))
    with transaction.atomic():
        updated = Project.objects.filter(pk=project.pk, archived_at__isnull=True).update(
            archived_at=timezone.now()
        )
        if updated:
            audit_record(
                action="project.archive",
                account=project.account,
                actor=actor,
                target=project,
                ip=ip,
                metadata={"name": project.name},
            )
    project.refresh_from_db()
    return project


def project_set_cap(
    *,
    project: Project,
    cap_nano: int | None,
    mode: str,
    actor: User,
    ip: str | None = None,
) -> Project:
    """Set (or with None, remove) the monthly spend cap."""
    if mode not in CapMode.values:
        raise ServiceError(_("Unknown cap mode."))
    before = [project.monthly_cap_nano, project.cap_mode]
    if before == [cap_nano, mode]:
        return project
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(monthly_cap_nano=cap_nano, cap_mode=mode)
        project.monthly_cap_nano, project.cap_mode = cap_nano, mode
        audit_record(
            action="project.cap_change",
            account=project.account,
            actor=actor,
            target=project,
            ip=ip,
            metadata={"from": before, "to": [cap_nano, mode]},
        )
    return project


def account_set_budget(
    *,
    account: Account,
    budget_nano: int | None,
    mode: str,
    actor: User,
    ip: str | None = None,
) -> Account:
    """Set (or remove) the account-wide monthly budget; it works like a project cap."""
    if mode not in CapMode.values:
        raise ServiceError(_("Unknown cap mode."))
    before = [account.monthly_budget_nano, account.budget_mode]
    if before == [budget_nano, mode]:
        return account
    with transaction.atomic():
        Account.objects.filter(pk=account.pk).update(
            monthly_budget_nano=budget_nano, budget_mode=mode
        )
        account.monthly_budget_nano, account.budget_mode = budget_nano, mode
        audit_record(
            action="account.budget_change",
            account=account,
            actor=actor,
            target=account,
            ip=ip,
            metadata={"from": before, "to": [budget_nano, mode]},
        )
    return account
