from dataclasses import dataclass

from django.db.models import QuerySet

from console.models import Account
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
