import zoneinfo

from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import password_validation
from django.template import loader
from django.utils.translation import gettext_lazy as _

from console.emails import email_queue
from console.models import Account, User
from console.money import AmountError, parse_amount, typed_text
from console.roles import Role


def no_control_characters(value: str) -> None:
    """Names travel into email subjects and headers: no line breaks or other controls."""
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise forms.ValidationError(_("Use letters, digits and punctuation only (no line breaks)."))


# Sorted once; the list of IANA zones does not change while the process runs.
TIME_ZONE_CHOICES = [(zone, zone) for zone in sorted(zoneinfo.available_timezones())]


class TimeZoneSelect(forms.Select):
    """IANA names, which no one translates (nor should a browser's translation)."""

    def __init__(self, attrs=None, choices=()):
        super().__init__({"translate": "no", **(attrs or {})}, choices)


class SignupForm(forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=254)
    name = forms.CharField(
        label=_("Your name"), max_length=150, required=False, validators=[no_control_characters]
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    account_name = forms.CharField(
        label=_("Account name"),
        max_length=100,
        validators=[no_control_characters],
        help_text=_("Your company or team; you can change it later."),
    )
    currency = forms.ChoiceField(
        label=_("Currency"),
        choices=settings.CURRENCIES,
        initial=settings.DEFAULT_CURRENCY,
        help_text=_("Balances and prices are in this currency. It is fixed once money moves."),
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                _("An account with this email address already exists. Sign in instead.")
            )
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = User(email=cleaned.get("email", ""), name=cleaned.get("name", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class AccountCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Account name"), max_length=100, validators=[no_control_characters]
    )
    currency = forms.ChoiceField(
        label=_("Currency"), choices=settings.CURRENCIES, initial=settings.DEFAULT_CURRENCY
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        choices=TIME_ZONE_CHOICES,
        initial=settings.DEFAULT_ACCOUNT_TIME_ZONE,
        widget=TimeZoneSelect,
    )


class AccountSettingsForm(forms.Form):
    name = forms.CharField(
        label=_("Account name"), max_length=100, validators=[no_control_characters]
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        choices=TIME_ZONE_CHOICES,
        help_text=_("Monthly caps and statements follow this time zone."),
        widget=TimeZoneSelect,
    )
    currency = forms.ChoiceField(label=_("Currency"), choices=settings.CURRENCIES)
    store_prompt_content = forms.BooleanField(
        label=_("Store prompt content in the history"),
        required=False,
        help_text=_("Off: prompt history keeps times, models, tokens and costs, not the text."),
    )

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, **kwargs)
        if account.currency_locked:
            self.fields["currency"].disabled = True
            self.fields["currency"].help_text = _("Fixed: money has already moved in this account.")


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=254)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.DEVELOPER)

    def __init__(self, *args, roles: list[Role], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(role.value, role.label) for role in roles]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class SwitchAccountForm(forms.Form):
    account = forms.IntegerField(min_value=1, max_value=2**63 - 1)


class LanguageForm(forms.Form):
    language = forms.ChoiceField(choices=settings.LANGUAGES)
    next = forms.CharField(required=False, max_length=2000)


class IdChoiceField(forms.ModelChoiceField):
    """A ModelChoiceField that treats ids no 64-bit column can hold as an invalid choice
    (SQLite would raise OverflowError on them, a 500)."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) > 18:
            raise forms.ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice"
            )
        return super().to_python(value)


# --- Two-factor authentication ---------------------------------------------------------------


class TwoFactorCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        help_text=_("The 6-digit code from your authenticator app, or one of your recovery codes."),
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )


class TwoFactorConfirmForm(forms.Form):
    code = forms.CharField(
        label=_("Code from the app"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False, max_length=2000)


class TwoFactorDisableForm(forms.Form):
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        help_text=_("From your authenticator app, or a recovery code."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("That is not your password."))
        return password


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's form, but the email goes through the outbox (retried when the mail server
    fails) instead of being sent in the request, where a failure is only logged."""

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ):
        email_queue(
            kind="password_reset",
            to=to_email,
            subject=loader.render_to_string(subject_template_name, context),
            body=loader.render_to_string(email_template_name, context),
            html_body=(
                loader.render_to_string(html_email_template_name, context)
                if html_email_template_name
                else ""
            ),
        )


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
