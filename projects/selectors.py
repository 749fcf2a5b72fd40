from django.db.models import QuerySet

from console.models import Account
from projects.models import Project


def project_list(*, account: Account, include_archived: bool = False) -> QuerySet[Project]:
    projects = Project.objects.filter(account=account)
    if not include_archived:
        projects = projects.filter(archived_at__isnull=True)
    return projects.order_by("-is_default", "name", "pk")
