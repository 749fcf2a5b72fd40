import zoneinfo
from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from console.forms import IdChoiceField
from history.selectors import Filters
from keys.models import ApiKey
from projects.models import Project

RANGES = [
    ("today", _("Today")),
    ("7d", _("Last 7 days")),
    ("30d", _("Last 30 days")),
    ("custom", _("Custom")),
]


class HistoryFilterForm(forms.Form):
    range = forms.ChoiceField(label=_("Period"), choices=RANGES, required=False, initial="7d")
    since = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(
        label=_("Text"),
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Search prompts and answers")}
        ),
    )
    key = IdChoiceField(
        label=_("API key"),
        queryset=ApiKey.objects.none(),
        required=False,
        empty_label=_("All keys"),
    )
    project = IdChoiceField(
        label=_("Project"),
        queryset=Project.objects.none(),
        required=False,
        empty_label=_("All projects"),
    )
    model = forms.CharField(label=_("Model"), required=False, max_length=64)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("Any status")), ("ok", _("Succeeded")), ("error", _("Failed"))],
    )
    before = forms.CharField(required=False, widget=forms.HiddenInput, max_length=64)

    def __init__(self, data=None, *args, account, **kwargs):
        if data is not None and not data.get("range"):
            # A link with only ?q=… searches the default period; the select must say so
            # rather than show its first choice (Today) over last week's results.
            data = data.copy()
            data["range"] = self.base_fields["range"].initial
        super().__init__(data, *args, **kwargs)
        self.account = account
        self.fields["key"].queryset = ApiKey.objects.filter(account=account).order_by("label")
        self.fields["project"].queryset = Project.objects.filter(account=account).order_by("name")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("range") == "custom":
            since, until = cleaned.get("since"), cleaned.get("until")
            if not since or not until:
                raise forms.ValidationError(_("Choose both dates for a custom period."))
            if since > until:
                raise forms.ValidationError(_("The start date is after the end date."))
        return cleaned

    def filters(self) -> Filters:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        zone = zoneinfo.ZoneInfo(self.account.time_zone)
        today = timezone.now().astimezone(zone).date()
        span = data.get("range") or "7d"
        if span == "custom":
            first, last = data["since"], data["until"]
        else:
            first, last = today - timedelta(days={"today": 0, "7d": 6, "30d": 29}[span]), today
        return Filters(
            since=datetime.combine(first, time.min, tzinfo=zone),
            until=datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone),
            text=(data.get("q") or "").strip(),
            api_key_id=data["key"].pk if data.get("key") else None,
            project_id=data["project"].pk if data.get("project") else None,
            model=(data.get("model") or "").strip(),
            status=data.get("status") or "",
        )
