from django import forms
from django.utils.translation import gettext_lazy as _

from console.services import ServiceError
from notifications.webhooks import webhook_url_check


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label=_("Endpoint URL"),
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/console-events"}),
        help_text=_("http:// or https://, at most 500 characters, without credentials."),
    )
    description = forms.CharField(label=_("Description"), max_length=200, required=False)

    def clean_url(self) -> str:
        try:
            return webhook_url_check(self.cleaned_data["url"])
        except ServiceError as error:
            raise forms.ValidationError(str(error)) from error


class EnabledForm(forms.Form):
    enabled = forms.TypedChoiceField(
        choices=[("1", _("Enabled")), ("0", _("Disabled"))], coerce=lambda value: value == "1"
    )
