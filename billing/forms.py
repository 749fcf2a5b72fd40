from django import forms
from django.utils.translation import gettext_lazy as _

from billing.money import AmountError, parse_amount, typed_text
from projects.models import CapMode


class AmountField(forms.CharField):
    """A typed amount in the account's currency → nano (int). Empty → None when optional."""

    def __init__(self, *, allow_zero: bool = False, **kwargs):
        self.allow_zero = allow_zero
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return typed_text(value) if isinstance(value, int) else value

    def clean(self, value):
        # Length and required checks run on the text; the parser turns it into nano.
        text = super().clean(value)
        if text in self.empty_values:
            return None
        try:
            return parse_amount(text, allow_zero=self.allow_zero)
        except AmountError as error:
            raise forms.ValidationError(str(error), code="amount") from error


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
