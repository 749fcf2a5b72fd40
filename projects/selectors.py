from dataclasses import dataclass

from django.db.models import Count, QuerySet
from django.utils import timezone

from billing.selectors import account_month_spend, project_month_spend
from console.models import Account
from keys.models import ApiKey
from projects.models import Project


def project_list(*, account: Account, include_archived: bool = False) -> QuerySet[Project]:
    projects = Project.objects.filter(account=account)
    if not include_archived:
        projects = projects.filter(archived_at__isnull=True)
    return projects.order_by("-is_default", "name", "pk")


@dataclass(frozen=True)
class CapUsage:
    """Month-to-date spend against a cap (None: no cap)."""

    spent_nano: int
    cap_nano: int | None
    mode: str

    @property
    def percent(self) -> int | None:
        if not self.cap_nano:
            return None
        return min(100, self.spent_nano * 100 // self.cap_nano)

    @property
    def reached(self) -> bool:
        return self.cap_nano is not None and self.spent_nano >= self.cap_nano


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    active_keys: int
    usage: CapUsage


def project_rows(*, account: Account, include_archived: bool = False) -> list[ProjectRow]:
    """The project list: each project with its active key count and month-to-date spend."""
    now = timezone.now()
    projects = project_list(account=account, include_archived=include_archived).annotate(
        active_keys=Count("api_keys", filter=ApiKey.usable_q(now, prefix="api_keys__"))
    )
    spend = project_month_spend(account=account)
    return [
        ProjectRow(
            project=project,
            active_keys=project.active_keys,
            usage=CapUsage(spend.get(project.pk, 0), project.monthly_cap_nano, project.cap_mode),
        )
        for project in projects
    ]


def project_usage(*, project: Project) -> CapUsage:
    spend = project_month_spend(account=project.account).get(project.pk, 0)
    return CapUsage(spend, project.monthly_cap_nano, project.cap_mode)


def account_budget_usage(*, account: Account) -> CapUsage:
    return CapUsage(
        account_month_spend(account=account), account.monthly_budget_nano, account.budget_mode
    )
