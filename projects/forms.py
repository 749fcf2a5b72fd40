from django import forms
from django.utils.translation import gettext_lazy as _

from console.forms import AmountField
from projects.models import CapMode


class ProjectForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    description = forms.CharField(
        label=_("Description"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError(_("Enter a name."))
        return name


class CapForm(forms.Form):
    amount = AmountField(
        label=_("Monthly cap"),
        required=False,
        help_text=_("Leave empty for no cap. Tokens covered by resource packs do not count."),
    )
    mode = forms.ChoiceField(
        label=_("When reached"),
        choices=CapMode.choices,
    )

    def __init__(self, *args, amount_label=None, **kwargs):
        super().__init__(*args, **kwargs)
        if amount_label:
            self.fields["amount"].label = amount_label
