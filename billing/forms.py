from django import forms
from django.utils.translation import gettext_lazy as _

from billing.invoices import Buyer
from console.forms import AmountField

# --- Payments -------------------------------------------------------------------------------


class NeverEchoedInput(forms.TextInput):
    """A card number or security code is never rendered back into a page, not even into
    the form that refused it."""

    def format_value(self, value):
        return None


class CardFields(forms.Form):
    number = forms.CharField(
        label=_("Card number"),
        max_length=30,
        widget=NeverEchoedInput(attrs={"inputmode": "numeric", "autocomplete": "cc-number"}),
        help_text=_("Sandbox: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined."),
    )
    exp_month = forms.IntegerField(
        label=_("Expiry month"),
        min_value=1,
        max_value=12,
        widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-month"}),
    )
    exp_year = forms.IntegerField(
        label=_("Expiry year"),
        min_value=2000,
        max_value=2100,
        widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-year"}),
    )
    cvc = forms.CharField(
        label=_("Security code"),
        max_length=4,
        widget=NeverEchoedInput(attrs={"inputmode": "numeric", "autocomplete": "cc-csc"}),
    )


class CardForm(CardFields):
    make_default = forms.BooleanField(label=_("Make this the default card"), required=False)


class RechargeForm(forms.Form):
    """An amount and how to pay: a saved card, a new card (saved for next time), or a bank
    transfer. The new card's fields are checked only when it is chosen."""

    NEW_CARD, BANK_TRANSFER = "new_card", "bank_transfer"

    amount = AmountField(label=_("Amount"))
    method = forms.ChoiceField(label=_("Pay with"), widget=forms.RadioSelect)

    def __init__(self, *args, cards=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.cards = {str(card.pk): card for card in cards}
        self.fields["method"].choices = [
            *((f"card:{card.pk}", str(card)) for card in cards),
            (self.NEW_CARD, _("A new card")),
            (self.BANK_TRANSFER, _("Bank transfer (credited when it arrives)")),
        ]
        self.fields["method"].initial = f"card:{cards[0].pk}" if cards else self.NEW_CARD
        self.card_form = CardFields(*args, prefix="card", **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("method") == self.NEW_CARD and not self.card_form.is_valid():
            raise forms.ValidationError(_("Check the new card's details below."))
        return cleaned

    @property
    def saved_card(self):
        method = self.cleaned_data["method"]
        return self.cards.get(method.removeprefix("card:")) if method.startswith("card:") else None


class AutoRechargeForm(forms.Form):
    enabled = forms.BooleanField(label=_("Recharge automatically"), required=False)
    threshold = AmountField(label=_("When the balance falls below"), required=False)
    amount = AmountField(label=_("Recharge"), required=False)
    monthly_limit = AmountField(
        label=_("At most per month"),
        required=False,
        help_text=_("Auto-recharge stops for the month once this much has been charged."),
    )


class BuyerFields(forms.Form):
    buyer_type = forms.ChoiceField(
        label=_("Buyer"),
        choices=[("company", _("Company")), ("individual", _("Individual"))],
        widget=forms.RadioSelect,
        initial="company",
    )
    title = forms.CharField(
        label=_("Invoice title"),
        max_length=100,
        help_text=_("The company's registered name, or the person's name."),
    )
    tax_id = forms.CharField(
        label=_("Tax id"),
        max_length=30,
        required=False,
        help_text=_("Companies: the 18-character unified social credit code."),
    )
    address = forms.CharField(label=_("Registered address"), max_length=200, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=30, required=False)
    bank_name = forms.CharField(label=_("Bank"), max_length=100, required=False)
    bank_account = forms.CharField(label=_("Bank account"), max_length=40, required=False)

    DETAILS = ("title", "tax_id", "address", "phone", "bank_name", "bank_account")

    @classmethod
    def initial_from(cls, buyer: Buyer) -> dict:
        return {"buyer_type": buyer.type, **{name: getattr(buyer, name) for name in cls.DETAILS}}

    def buyer(self) -> Buyer:
        data = self.cleaned_data
        return Buyer(type=data["buyer_type"], **{name: data[name] for name in self.DETAILS})


class InvoiceDetailsForm(BuyerFields):
    invoice_email = forms.EmailField(label=_("Send invoices to"), max_length=254, required=False)


class InvoiceRequestForm(BuyerFields):
    amount = AmountField(label=_("Amount"))
    save_details = forms.BooleanField(
        label=_("Save these details for next time"), required=False, initial=True
    )

    field_order = ["amount"]


class StatementForm(forms.Form):
    month = forms.ChoiceField(label=_("Month"))

    def __init__(self, *args, months=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["month"].choices = [(f"{m:%Y-%m}", f"{m:%Y-%m}") for m in months]
