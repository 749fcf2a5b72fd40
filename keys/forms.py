import re
import zoneinfo
from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from console.forms import IdChoiceField
from console.models import Account
from keys.models import ENVIRONMENT_SUGGESTIONS, Scope
from keys.services import GRACE_PERIODS
from projects.models import Project

_ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def _clean_label(value: str) -> str:
    value = value.strip()
    if not value:
        raise forms.ValidationError(_("Enter a label, e.g. the app or service using the key."))
    return value


def _clean_environment(value: str) -> str:
    value = value.strip().lower()
    if not _ENVIRONMENT.fullmatch(value):
        raise forms.ValidationError(
            _("Use up to 32 lower-case letters, digits, - or _ (e.g. production, staging, test).")
        )
    return value


class ApiKeyCreateForm(forms.Form):
    label = forms.CharField(label=_("Label"), max_length=100)
    project = IdChoiceField(label=_("Project"), queryset=Project.objects.none())
    scope = forms.ChoiceField(label=_("Scope"), choices=Scope.choices, initial=Scope.INFERENCE)
    environment = forms.CharField(
        label=_("Environment"),
        initial="production",
        max_length=32,
        widget=forms.TextInput(attrs={"list": "environment-suggestions"}),
        help_text=_("A tag for your own sorting: production, staging, test, or your own."),
    )
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Optional. The key stops working at the end of this day (account time)."),
    )

    def __init__(self, *args, account: Account, scopes: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account
        self.fields["project"].queryset = Project.objects.filter(
            account=account, archived_at__isnull=True
        ).order_by("-is_default", "name")
        self.fields["project"].empty_label = None
        self.fields["scope"].choices = [
            (value, label) for value, label in Scope.choices if value in scopes
        ]
        self.environment_suggestions = ENVIRONMENT_SUGGESTIONS

    def clean_label(self) -> str:
        return _clean_label(self.cleaned_data["label"])

    def clean_environment(self) -> str:
        return _clean_environment(self.cleaned_data["environment"])

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        zone = zoneinfo.ZoneInfo(self.account.time_zone)
        today = timezone.now().astimezone(zone).date()
        if day < today:
            raise forms.ValidationError(_("The expiry must be today or later."))
        if day > today.replace(year=today.year + 10):
            raise forms.ValidationError(_("The expiry must be within 10 years."))
        return day

    @property
    def expires_at(self) -> datetime | None:
        """The end of the chosen day in the account's time zone."""
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        zone = zoneinfo.ZoneInfo(self.account.time_zone)
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


class ApiKeyEditForm(forms.Form):
    label = forms.CharField(label=_("Label"), max_length=100)
    environment = forms.CharField(
        label=_("Environment"),
        max_length=32,
        widget=forms.TextInput(attrs={"list": "environment-suggestions"}),
    )

    def clean_label(self) -> str:
        return _clean_label(self.cleaned_data["label"])

    def clean_environment(self) -> str:
        return _clean_environment(self.cleaned_data["environment"])


GRACE_LABELS = {
    0: _("Revoke the old key now"),
    3600: _("Keep the old key for 1 hour"),
    24 * 3600: _("Keep the old key for 24 hours"),
    7 * 24 * 3600: _("Keep the old key for 7 days"),
}


class RotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        label=_("The old key"),
        coerce=int,
        choices=[(seconds, GRACE_LABELS[seconds]) for seconds in GRACE_PERIODS],
        initial=0,
    )
