"""Staff set up two-factor authentication only through a one-time link.

The password alone must not let anyone enrol an authenticator app on a staff user: whoever
leaked it would add their own app and own the back-office. A staff member without two-factor
gets a link by email (to the address on their user, sent when they first reach a staff page)
or from a superuser (`manage.py staff_two_factor_link <email>` prints one). The link works
once, for its user only, until `STAFF_TWO_FACTOR_LINK_HOURS`; only a keyed hash of its token
is stored (console/secrets_at_rest.py). Opening it while signed in as that user lets this
session set the app up; setting it up uses the link.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from console.emails import email_queue
from console.models import AuditEvent, StaffTwoFactorLink
from console.secrets_at_rest import current_pepper_version, keyed_hash
from console.services import ServiceError, audit_record
from console.two_factor import two_factor_enabled

LINK_PURPOSE = "staff-two-factor-link"
SESSION_KEY = "staff_two_factor_link"


def _token_hash(token: str, version: int) -> str:
    return keyed_hash(token, purpose=LINK_PURPOSE, pepper_version=version)


def _live_links(**filters):
    """Links not yet used and not expired (the one rule of a link that still works)."""
    return StaffTwoFactorLink.objects.filter(
        used_at__isnull=True, expires_at__gt=timezone.now(), **filters
    )


def staff_link_url(token: str) -> str:
    return settings.SITE_URL + reverse("two_factor_staff_link_open", args=[token])


@dataclass(frozen=True)
class IssuedLink:
    link: StaffTwoFactorLink
    url: str  # holds the token: shown or emailed once, never stored


def staff_link_issue(
    *, user, via: str, actor=None, ip: str | None = None, actor_kind: str | None = None
) -> IssuedLink:
    """A new link for `user` (an active staff member without two-factor); any earlier link
    that was still open stops working. Emailed on commit when `via` is email."""
    if not (user.is_active and user.is_staff):
        raise ServiceError(_("Only active staff members set two-factor up with a link."))
    if two_factor_enabled(user=user):
        raise ServiceError(
            _(
                "This user already has two-factor authentication. To replace a lost phone, "
                "delete their authenticator app and recovery codes in the back-office first."
            )
        )
    token = secrets.token_urlsafe(32)
    version = current_pepper_version()
    now = timezone.now()
    with transaction.atomic():
        # One issue at a time per user: two first visits must not both email a link.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        _live_links(user=user).update(expires_at=now)
        link = StaffTwoFactorLink.objects.create(
            user=user,
            token_hash=_token_hash(token, version),
            pepper_version=version,
            via=via,
            created_at=now,
            expires_at=now + timedelta(hours=settings.STAFF_TWO_FACTOR_LINK_HOURS),
        )
        audit_record(
            action="user.two_factor_link_issue",
            actor=actor,
            actor_kind=actor_kind or AuditEvent.ActorKind.USER,
            target=user,
            ip=ip,
            metadata={"link": link.pk, "via": via, "expires_at": link.expires_at.isoformat()},
        )
        url = staff_link_url(token)
        if via == StaffTwoFactorLink.Via.EMAIL:
            _staff_link_send(link=link, url=url)
    return IssuedLink(link=link, url=url)


def _staff_link_send(*, link: StaffTwoFactorLink, url: str) -> None:
    # Through the outbox, in the link's transaction: sent after commit, retried if the mail
    # server fails (console/emails.py).
    email_queue(
        kind="staff_two_factor_link",
        to=link.user.email,
        subject=_("Set up two-factor authentication for BigModel Console staff"),
        body=render_to_string(
            "console/email/staff_two_factor_link.txt", {"link": link, "url": url}
        ),
    )


def staff_link_live(*, user) -> StaffTwoFactorLink | None:
    """The user's link that still works, if any."""
    return _live_links(user=user).order_by("-created_at").first()


def staff_link_live_or_emailed(*, user, ip: str | None = None) -> StaffTwoFactorLink:
    """The link that still works, or a new one emailed to the user (at most one email per
    link's lifetime, however often the page is opened)."""
    with transaction.atomic():
        # Under the user's lock: two first visits at once send one email, not two.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        link = staff_link_live(user=user)
        if link is None:
            via = StaffTwoFactorLink.Via.EMAIL
            link = staff_link_issue(user=user, via=via, actor=user, ip=ip).link
    return link


def staff_link_open(*, token: str, user, ip: str | None = None) -> StaffTwoFactorLink:
    """The link `token` names, when it may set up two-factor for `user` now; else
    ServiceError (`.gone` says whether the link existed for this user but is used up or
    expired). Refusing a real link is audited: someone holding a link that is not theirs, or
    an old one, is worth a look (a token that names no link is not: any signed-in visitor
    could write rows by making them up)."""
    hashes = [_token_hash(token, version) for version in settings.API_KEY_PEPPERS]
    link = StaffTwoFactorLink.objects.filter(token_hash__in=hashes).first()
    reason = None
    if link is None:
        reason = "unknown"
    elif link.user_id != user.pk or not (user.is_active and user.is_staff):
        reason = "other_user"
    elif link.used_at is not None:
        reason = "used"
    elif link.expires_at <= timezone.now():
        reason = "expired"
    if reason is None:
        return link
    if link is not None:
        audit_record(
            action="user.two_factor_link_refuse",
            actor=user,
            target=user,
            ip=ip,
            metadata={"reason": reason, "link": link.pk},
        )
    if reason in ("used", "expired"):
        error = ServiceError(
            _("This link was already used or has expired. Ask for a new one below.")
        )
        error.gone = True
    else:
        error = ServiceError(_("This link is not valid for the user you are signed in as."))
        error.gone = False
    raise error


def staff_link_remember(request, link: StaffTwoFactorLink) -> None:
    request.session[SESSION_KEY] = link.pk


def staff_link_from_session(request) -> StaffTwoFactorLink | None:
    """The link this session opened, while it still works for the signed-in user."""
    link_id = request.session.get(SESSION_KEY)
    if not isinstance(link_id, int):
        return None
    return _live_links(pk=link_id, user=request.user).first()


def staff_link_forget(request) -> None:
    request.session.pop(SESSION_KEY, None)


def staff_link_use(*, link_id: int, user) -> int:
    """Use the link up (inside the setup's transaction); ServiceError if it no longer works."""
    used = _live_links(pk=link_id, user=user).update(used_at=timezone.now())
    if not used:
        raise ServiceError(
            _("This link was already used or has expired. Ask for a new one to set up the app.")
        )
    return link_id
