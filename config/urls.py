from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import security_views, views
from console.forms import PasswordResetForm
from console.throttling import throttle_posts
from portal import health
from portal import views as portal_views

urlpatterns = [
    path("", portal_views.overview, name="overview"),
    # Sign-up, email verification, sign-in and passwords (Django's auth views).
    path("accounts/signup/", portal_views.signup, name="signup"),
    path("accounts/verify/<str:token>/", portal_views.verify_email, name="verify_email"),
    path("accounts/verify-resend/", views.verify_email_resend, name="verify_email_resend"),
    # The password, then (with two-factor authentication on) the code: console/security_views.py.
    path("accounts/login/", security_views.SignInView.as_view(), name="login"),
    path("accounts/login/verify/", security_views.login_verify, name="login_verify"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path(
        "accounts/password/reset/",
        throttle_posts("password_reset", "PASSWORD_RESETS_PER_HOUR_PER_IP")(
            # The outbox's form: the email is retried when the mail server fails.
            auth_views.PasswordResetView.as_view(form_class=PasswordResetForm)
        ),
        name="password_reset",
    ),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # Two-factor authentication (under the user menu).
    path("account/security/", security_views.two_factor_page, name="two_factor"),
    path("account/security/setup/", security_views.two_factor_setup, name="two_factor_setup"),
    path("account/security/disable/", security_views.two_factor_disable, name="two_factor_disable"),
    path(
        "account/security/recovery-codes/",
        security_views.two_factor_recovery_codes,
        name="two_factor_recovery_codes",
    ),
    path(
        "account/security/staff-link/",
        security_views.two_factor_staff_link,
        name="two_factor_staff_link",
    ),
    path(
        "account/security/staff-link/<str:token>/",
        security_views.two_factor_staff_link_open,
        name="two_factor_staff_link_open",
    ),
    # Accounts and members.
    path("accounts/new/", portal_views.account_create, name="account_create"),
    path("accounts/switch/", views.account_switch, name="account_switch"),
    path("settings/", portal_views.account_settings, name="account_settings"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "members/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("language/", views.set_language, name="set_language"),
    path("audit/", views.audit_log, name="audit_log"),
    path("projects/", include("billing.project_urls")),
    path("api-keys/", include("keys.urls")),
    path("billing/alerts/", include("alerts.urls")),
    path("billing/", include("billing.urls")),
    path("history/", include("history.urls")),
    path("notifications/", include("notifications.urls")),
    path("usage/", include("usage.urls")),
    path("subscription/", include("plans.urls")),
    path("api/console/v1/", include("usage.api_urls")),
    # The coding plan's quota API, in the vendor's shape (issue 22).
    path("api/monitor/usage/", include("plans.api_urls")),
    path("", include("gateway.urls")),
    # Operations.
    path("staff/jobs/", portal_views.staff_jobs, name="staff_jobs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
