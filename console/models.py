"""Accounts (the tenant), their members and roles, tiers, invitations and the audit trail."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from console.roles import Role
from console.secrets_at_rest import decrypt_text, encrypt_text, keyed_hash


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email, password, **fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **fields):
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True, email_verified=True)
        return self._create(email, password, **fields)

    def get_by_natural_key(self, username):
        # Addresses are stored lower-cased; people type them any way they like.
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Signs in with an email address; belongs to accounts through memberships."""

    email = models.EmailField(_("email address"), max_length=254, unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    email_verified = models.BooleanField(_("email verified"), default=False)
    language = models.CharField(
        _("language"), max_length=10, blank=True, choices=settings.LANGUAGES
    )
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # The starter pack is a person's, once: it goes to the account their own sign-up created,
    # when they verify their address through the emailed link (docs/decisions.md, issue 20).
    starter_pack_account = models.ForeignKey(
        "console.Account",
        verbose_name=_("starter pack account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("The account their sign-up created: it gets the starter pack on verification."),
    )
    accounts_max = models.PositiveSmallIntegerField(
        _("accounts they may own"),
        null=True,
        blank=True,
        help_text=_("Empty: the site's limit (ACCOUNTS_PER_OWNER_MAX)."),
    )

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


# The names migration 0002 seeds, translated for display (see Tier.display_name).
SEEDED_TIER_NAMES = {
    "Free": pgettext_lazy("tier", "Free"),
    "Standard": pgettext_lazy("tier", "Standard"),
    "Pro": pgettext_lazy("tier", "Pro"),
    "Enterprise": pgettext_lazy("tier", "Enterprise"),
}


class Tier(models.Model):
    """A usage level (staff-editable). Limits apply per account, across models."""

    slug = models.SlugField(_("slug"), unique=True, max_length=32)
    name = models.CharField(_("name"), max_length=64)
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("Higher ranks are better tiers.")
    )
    retention_days = models.PositiveIntegerField(_("history retention (days)"))
    requests_per_minute = models.PositiveIntegerField(_("requests per minute"))
    concurrency = models.PositiveIntegerField(_("concurrent requests"))
    # Cumulative paid recharge (in nano of the account's currency) that promotes an account
    # to this tier; one threshold per currency, so no exchange rate enters a promotion.
    promotion_threshold_cny_nano = models.BigIntegerField(
        _("promotion threshold, CNY (nano)"), default=0
    )
    promotion_threshold_usd_nano = models.BigIntegerField(
        _("promotion threshold, USD (nano)"), default=0
    )

    class Meta:
        ordering = ["rank"]
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(promotion_threshold_cny_nano__gte=0)
                & models.Q(promotion_threshold_usd_nano__gte=0),
                name="tier_thresholds_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        """The name in the reader's language while it is still the one the tiers were seeded
        with; a name staff typed is shown as typed (the catalogue has no translation of it)."""
        return str(SEEDED_TIER_NAMES.get(self.name, self.name))

    def promotion_threshold_nano(self, currency: str) -> int:
        return {
            "CNY": self.promotion_threshold_cny_nano,
            "USD": self.promotion_threshold_usd_nano,
        }[currency]


class Account(models.Model):
    """The tenant and billing entity. Every piece of tenant data hangs off one."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    name = models.CharField(_("name"), max_length=100)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default=settings.DEFAULT_ACCOUNT_TIME_ZONE
    )
    currency = models.CharField(
        _("currency"), max_length=3, choices=settings.CURRENCIES, default=settings.DEFAULT_CURRENCY
    )
    # Set by the wallet when the first ledger entry is written; from then on the currency
    # cannot change (every amount in the ledger is in it).
    money_moved_at = models.DateTimeField(_("first money movement"), null=True, blank=True)
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, verbose_name=_("tier"))
    tier_pinned = models.BooleanField(
        _("tier pinned by staff"),
        default=False,
        help_text=_("A pinned tier is not changed by automatic promotion."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # Privacy: with this off, the prompt log keeps metadata only (no messages or answers).
    store_prompt_content = models.BooleanField(
        _("store prompt content"),
        default=True,
        help_text=_("Off: prompt history keeps times, models, tokens and costs, not the text."),
    )
    # The optional account-wide monthly budget: works like a project cap, over all projects.
    monthly_budget_nano = models.BigIntegerField(_("monthly budget (nano)"), null=True, blank=True)
    budget_mode = models.CharField(
        _("budget mode"),
        max_length=8,
        choices=[("block", _("Block requests")), ("alert", _("Alert only"))],
        default="block",
    )

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        # The back-office's staff actions, each checked with user.has_perm("console.<codename>");
        # the groups that hold them are made by the staff_groups migration.
        permissions = [
            ("staff_grant_bonus", _("Can grant bonus credit")),
            ("staff_confirm_transfer", _("Can confirm a bank-transfer recharge")),
            ("staff_refund", _("Can refund a recharge")),
            ("staff_grant_pack", _("Can grant a resource pack")),
            ("staff_change_tier", _("Can change or pin an account's tier")),
            ("staff_suspend_account", _("Can suspend or restore an account")),
            ("staff_revoke_key", _("Can revoke an API key")),
            ("staff_export_finance", _("Can download finance exports")),
            ("staff_manage_plan", _("Can grant, extend, change or end a coding plan")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(currency__in=["CNY", "USD"]), name="account_currency_known"
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_budget_nano__isnull=True)
                | models.Q(monthly_budget_nano__gt=0),
                name="account_budget_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def currency_locked(self) -> bool:
        return self.money_moved_at is not None

    @property
    def is_suspended(self) -> bool:
        return self.status == self.Status.SUSPENDED


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(_("joined"), default=timezone.now)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="membership_unique"),
        ]
        indexes = [
            # The account switcher and the current-account lookup: a user's memberships.
            models.Index(fields=["user", "account"], name="membership_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} as {self.role}"


class Invitation(models.Model):
    """An invitation by email. Only a hash of its token is stored; the link carries the token."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            # At most one open invitation per address and account: inviting again resends it.
            models.UniqueConstraint(
                "account",
                Lower("email"),
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.account}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AuditEvent(models.Model):
    """One row per change to keys, caps, members, tiers and money. Never edited."""

    class ActorKind(models.TextChoices):
        USER = "user", _("User")
        STAFF = "staff", _("Staff")
        SYSTEM = "system", _("System")
        API_KEY = "api_key", _("API key")

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    action = models.CharField(max_length=64, help_text=_("Dotted, e.g. api_key.revoke"))
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            # An account's audit log, newest first (console page and admin filter).
            models.Index(fields=["account", "-created_at"], name="audit_account_time_idx"),
            # The admin's filter by action over all accounts.
            models.Index(fields=["action", "-created_at"], name="audit_action_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_kind} at {self.created_at:%Y-%m-%d %H:%M}"


class Announcement(models.Model):
    """A notice staff publish on the overview: for everyone, or for one tier or currency,
    within a publish window (no end: until staff end it)."""

    class Level(models.TextChoices):
        INFO = "info", _("Information")
        WARNING = "warning", _("Warning")

    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("text"), max_length=4000, blank=True)
    level = models.CharField(_("level"), max_length=16, choices=Level.choices, default="info")
    link = models.URLField(_("link"), blank=True, help_text=_("Optional: a page to read more."))
    # The audience: every account, or only those of this tier and/or currency.
    tier = models.ForeignKey(
        Tier,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty: every tier."),
    )
    currency = models.CharField(
        _("currency"),
        max_length=3,
        choices=settings.CURRENCIES,
        blank=True,
        help_text=_("Empty: every currency."),
    )
    starts_at = models.DateTimeField(_("published from"))
    ends_at = models.DateTimeField(_("published until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("announcement")
        verbose_name_plural = _("announcements")
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="announcement_window_valid",
            ),
        ]
        indexes = [
            # The overview: announcements published now, newest first.
            models.Index(fields=["-starts_at", "ends_at"], name="announcement_window_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class JobRun(models.Model):
    """One run of a periodic job (an entry of config/schedule.py), written by the Celery
    signal handlers in portal/jobs.py for the staff job status page. Purged after 30 days."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", _("Success")
        FAILURE = "failure", _("Failure")
        RETRY = "retry", _("Retry")

    task_name = models.CharField(_("task"), max_length=200)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    # What the task returned, or the error's class and first line: never arguments or secrets.
    summary = models.CharField(_("summary"), max_length=300, blank=True)
    hostname = models.CharField(_("worker"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ["-started_at"]
        indexes = [
            # The staff job page: a task's latest run and latest failure.
            models.Index(fields=["task_name", "-started_at"], name="jobrun_task_time_idx"),
            # The 30-day purge.
            models.Index(fields=["started_at"], name="jobrun_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M}"


# --- Two-factor authentication ----------------------------------------------------------------
# django-otp's own TOTPDevice and StaticToken keep the seed and the codes in plain text
# (`key`, a hex column of 80 characters; `token`, 16): no room for a ciphertext or a hash, and
# a proxy model cannot change a column. These are django-otp devices of the console's own
# (django-otp finds every concrete Device subclass), the same fields and the same library code
# for checking a code, with the secrets at rest as console/secrets_at_rest.py says.


def new_encrypted_totp_key() -> str:
    """A new seed of 20 random bytes (django-otp's default), encrypted."""
    return encrypt_text(random_hex(20))


class AuthenticatorApp(TimestampMixin, ThrottlingMixin, Device):
    """A TOTP authenticator app: django-otp's TOTPDevice with its seed encrypted at rest."""

    key_encrypted = models.TextField(default=new_encrypted_totp_key)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    # The time step of the last code accepted: a code is never accepted twice.
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = _("authenticator app")
        verbose_name_plural = _("authenticator apps")

    @property
    def bin_key(self) -> bytes:
        return bytes.fromhex(decrypt_text(self.key_encrypted))

    # django-otp's TOTP code, unchanged: it reads only `bin_key` and the fields above, so the
    # checking of codes (tolerance, drift, replay, throttling) stays the library's.
    verify_token = TOTPDevice.verify_token
    get_throttle_factor = TOTPDevice.get_throttle_factor
    config_url = TOTPDevice.config_url
    _read_str_from_settings = TOTPDevice._read_str_from_settings


RECOVERY_CODE_PURPOSE = "two-factor-recovery-code"


class RecoveryCodeSet(TimestampMixin, ThrottlingMixin, Device):
    """A user's recovery codes (django-otp's StaticDevice), each kept only as a keyed hash."""

    class Meta(Device.Meta):
        verbose_name = _("recovery codes")
        verbose_name_plural = _("recovery codes")

    get_throttle_factor = StaticDevice.get_throttle_factor

    def verify_token(self, token) -> bool:
        """Use up the code that matches `token` (normalised by the caller). Every stored hash
        is compared in constant time; the delete's row count decides which of two requests
        with the same code used it."""
        allowed, _reason = self.verify_is_allowed()
        if not allowed:
            return False
        hashes = {}
        match = None
        for code in self.codes.all():
            if code.pepper_version not in settings.API_KEY_PEPPERS:
                continue  # hashed with a pepper since removed: it can match nothing
            if code.pepper_version not in hashes:
                hashes[code.pepper_version] = keyed_hash(
                    str(token),
                    purpose=RECOVERY_CODE_PURPOSE,
                    pepper_version=code.pepper_version,
                )
            if constant_time_compare(code.code_hash, hashes[code.pepper_version]):
                match = code
        used = match is not None and RecoveryCode.objects.filter(pk=match.pk).delete()[0] == 1
        if used:
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
        else:
            self.throttle_increment()
        return used


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryCodeSet, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64)
    pepper_version = models.PositiveSmallIntegerField()

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")

    def __str__(self) -> str:
        return f"{self.device} #{self.pk}"  # never the code: only its hash is kept


class StaffTwoFactorLink(models.Model):
    """A one-time link with which a staff member sets up two-factor authentication: the
    password alone must not be enough to enrol an authenticator app. Only a keyed hash of
    its token is stored; it works for its user only, once, until it expires."""

    class Via(models.TextChoices):
        EMAIL = "email", _("Email")
        COMMAND = "command", _("Management command")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_two_factor_links"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    pepper_version = models.PositiveSmallIntegerField()
    via = models.CharField(max_length=16, choices=Via.choices)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("staff two-factor link")
        verbose_name_plural = _("staff two-factor links")
        indexes = [
            # A user's live link (is one out already? which is the newest?).
            models.Index(fields=["user", "-created_at"], name="stafflink_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.via} {self.created_at:%Y-%m-%d %H:%M}"


class OutgoingEmail(models.Model):
    """One email to one address: the outbox every mail of the console goes through
    (console.emails.email_queue). Written in the caller's transaction, sent by a Celery task
    after commit, retried with backoff and re-sent by the sweep when the task was lost, until
    EMAIL_MAX_ATTEMPTS; then failed, for staff to see. The body is encrypted at rest and
    erased once the email is sent or given up on: it can hold one-time links."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    # What the email is ("verify_email", "invitation", "password_reset", ...), for staff.
    kind = models.CharField(_("kind"), max_length=40)
    recipient = models.EmailField(_("recipient"), max_length=254)
    subject = models.CharField(_("subject"), max_length=300)
    # Fernet-encrypted (console.emails); emptied once sent or failed.
    body_encrypted = models.TextField(blank=True)
    html_body_encrypted = models.TextField(blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # When the next attempt is due; while an attempt runs, a lease, so that the sweep and a
    # duplicate task do not send the same email at once.
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    # The error's class name only: an SMTP server's text may echo addresses or the message.
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("outgoing email")
        verbose_name_plural = _("outgoing emails")
        indexes = [
            # The sweep: pending emails whose next attempt is due.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="outgoing_email_due",
            ),
            # The admin's list, newest first, and the purge of old sent rows.
            models.Index(fields=["created_at"], name="outgoing_email_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.recipient}"
