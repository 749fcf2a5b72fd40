from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from console.forms import AmountField


class AlertSettingsForm(forms.Form):
    balance_below = AmountField(
        label=_("Alert when the balance falls below"),
        required=False,
        help_text=_("Recharge plus bonus. Empty: no balance alert."),
    )
    caps = forms.BooleanField(
        label=_("Alert when a project reaches 50, 80 and 100 percent of its monthly cap"),
        help_text=_("And the account at those shares of its monthly budget."),
        required=False,
    )
    spike = forms.DecimalField(
        label=_("Alert when a day's spend exceeds the 7-day average by"),
        help_text=_("A multiple, e.g. 3 for three times. Empty: no spike alert."),
        required=False,
        min_value=Decimal("1.1"),
        max_value=Decimal("100"),
        decimal_places=1,
        max_digits=4,
    )
    pack_low_percent = forms.IntegerField(
        label=_("Alert when a resource pack has less than this percent left"),
        required=False,
        min_value=1,
        max_value=99,
    )
    pack_expiry_days = forms.IntegerField(
        label=_("Alert when a resource pack expires within this many days"),
        required=False,
        min_value=1,
        max_value=90,
    )
    email = forms.BooleanField(label=_("By email"), required=False)
    in_app = forms.BooleanField(label=_("In the console's notifications"), required=False)
    webhook = forms.BooleanField(label=_("To the account's webhooks"), required=False)

    @classmethod
    def initial_from(cls, settings_row) -> dict:
        return {
            "balance_below": settings_row.balance_below_nano,
            "caps": settings_row.caps,
            "spike": Decimal(settings_row.spike_tenths) / 10 if settings_row.spike_tenths else None,
            "pack_low_percent": settings_row.pack_low_percent,
            "pack_expiry_days": settings_row.pack_expiry_days,
            "email": settings_row.email,
            "in_app": settings_row.in_app,
            "webhook": settings_row.webhook,
        }

    def values(self) -> dict:
        """The cleaned form as the AlertSettings fields."""
        data = self.cleaned_data
        return {
            "balance_below_nano": data["balance_below"],
            "caps": data["caps"],
            "spike_tenths": int(data["spike"] * 10) if data["spike"] is not None else None,
            "pack_low_percent": data["pack_low_percent"],
            "pack_expiry_days": data["pack_expiry_days"],
            "email": data["email"],
            "in_app": data["in_app"],
            "webhook": data["webhook"],
        }
