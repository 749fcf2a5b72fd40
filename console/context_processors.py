from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from console.roles import PERMISSIONS, role_can
from console.selectors import user_memberships
from console.tenancy import current_membership

# The navigation of every page: (url name, label, permission). Sections whose pages have not
# landed yet show as disabled items, so the layout does not move as they arrive.

NAVIGATION = [
    ("overview", _("Overview"), "overview.view"),
    ("keys:list", _("API Keys"), "keys.view"),
    ("plans:subscription", _("Subscription"), "usage.view"),
    ("projects:list", _("Projects"), "projects.view"),
    ("usage:index", _("Usage"), "usage.view"),
    ("history:search", _("Prompt history"), "history.view"),
    ("playground", _("Playground"), "playground.use"),
    ("billing:index", _("Billing"), "billing.view"),
    ("members", _("Members"), "members.view"),
    ("pricing", _("Pricing"), "overview.view"),
    ("quickstart", _("Quickstart"), "overview.view"),
]


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def console(request):
    membership = current_membership(request)
    if membership is None:
        return {"membership": None}
    role = membership.role
    path = request.path
    navigation = []
    for name, label, permission in NAVIGATION:
        if not role_can(role, permission):
            continue
        url = _url(name)
        active = url is not None and (path == url if url == "/" else path.startswith(url))
        navigation.append({"url": url, "label": label, "active": active})
    return {
        "membership": membership,
        "current_account": membership.account,
        "navigation": navigation,
        "switchable_memberships": user_memberships(user=request.user),
        # `{% if can.members_manage %}`: the permission map, with dots as underscores.
        "can": {name.replace(".", "_"): role_can(role, name) for name in PERMISSIONS},
    }
