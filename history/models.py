"""The prompt log: one row per forwarded request, with its content (retention by tier).

The gateway issue lays the model and its write service; the history issue builds search,
detail, export and retention on it."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

# Bodies over this size are cut, with a visible marker.
MAX_BODY_CHARACTERS = 256 * 1024
TRUNCATION_MARKER = "\n…[truncated]"


class PromptLog(models.Model):
    # No index of its own: prompt_account_time_idx leads with the account (a second index on
    # it cost every insert and misled the planner into bitmap-ANDing 1/20 of the table).
    account = models.ForeignKey(
        "console.Account", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    project = models.ForeignKey(
        "projects.Project", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    request_id = models.CharField(_("request id"), max_length=64)
    model = models.CharField(_("model"), max_length=64)
    messages = models.JSONField(_("messages"))
    parameters = models.JSONField(_("parameters"), default=dict)
    response_text = models.TextField(_("response"), blank=True)
    status = models.PositiveSmallIntegerField(_("HTTP status"))
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(_("time"))
    # The text search reads one column: every message's text and the response. On
    # PostgreSQL a GIN index on history_search_keys(account_id, search_text), the account's
    # upper-case character pairs, narrows case-insensitive substring search in any language
    # to the account's matches (migration 0005, PostgreSQL only).
    search_text = models.TextField(blank=True)
    # The beginning of the last user message, for result rows.
    preview = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = _("prompt log")
        verbose_name_plural = _("prompt logs")
        constraints = [
            models.UniqueConstraint(fields=["account", "request_id"], name="prompt_request_unique"),
        ]
        indexes = [
            # Search within an account and a date range, newest first (and keyset pages): a
            # common text fills its page from here, a 1-character one is bounded by it.
            # Retention walks it too, oldest first, one account at a time.
            models.Index(fields=["account", "-created_at", "-id"], name="prompt_account_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model}"


class HistoryExport(models.Model):
    """An export too large to stream while the person waits: a Celery job writes the file,
    the page polls its progress, and the file is downloaded from the account's own URL."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("Running")
        DONE = "done", _("Ready")
        FAILED = "failed", _("Failed")

    account = models.ForeignKey("console.Account", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        "console.User", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    query = models.JSONField(_("filters"), default=dict)
    format = models.CharField(max_length=8)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="history-exports/", blank=True)
    created_at = models.DateTimeField(_("created"))
    finished_at = models.DateTimeField(null=True, blank=True)
    # Why a failed export failed, for the page to explain: "not_started" when no worker took
    # it within HISTORY_EXPORT_START_MINUTES (the broker was down), "interrupted" when it ran
    # past any task's time limit (its worker and message were lost); empty otherwise.
    failure = models.CharField(max_length=32, blank=True)

    class Meta:
        verbose_name = _("history export")
        verbose_name_plural = _("history exports")
        indexes = [
            # The sweep: exports still waiting for a worker, oldest first.
            models.Index(
                fields=["created_at"], condition=Q(status="pending"), name="history_export_waiting"
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return 100 if not self.rows_total else min(100, self.rows_done * 100 // self.rows_total)
