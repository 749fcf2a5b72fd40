"""The back-office (Django's admin) behind a second factor. Imported while the app registry
loads (ConsoleAdminConfig): what needs models is imported inside the methods.

Staff reach it only from a session verified with two-factor authentication; everyone signs in
through the console's own sign-in page, so there is one login to throttle (django-axes) and one
place that asks for the code.
"""

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


class ConsoleAdminSite(AdminSite):
    def has_permission(self, request):
        # Deferred: this module loads with INSTALLED_APPS, before two_factor's models can.
        from console.two_factor import session_is_verified

        return super().has_permission(request) and session_is_verified(request)

    def login(self, request, extra_context=None):
        """No login form of its own: the console's sign-in (with its throttling and second
        step), then, for staff whose session is not verified yet, the code or the setup."""
        from django.contrib.auth.views import redirect_to_login

        # Deferred, as above.
        from console.two_factor import staff_two_factor_redirect

        target = request.GET.get(REDIRECT_FIELD_NAME, "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = reverse("admin:index", current_app=self.name)
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(target)
        if not (user.is_active and user.is_staff):
            # Not part of the console this person knows (as the staff pages answer).
            raise Http404
        if not self.has_permission(request):
            return staff_two_factor_redirect(request, target)
        return HttpResponseRedirect(target)


class ConsoleAdminConfig(AdminConfig):
    """Django's admin app, serving ConsoleAdminSite as `admin.site`."""

    default_site = "console.admin_site.ConsoleAdminSite"
