import re

from django.views.debug import SafeExceptionReporterFilter


class SecretsFilter(SafeExceptionReporterFilter):
    """Error reports (the DEBUG page, mails to ADMINS) redact the API key in the
    Authorization header and the peppers, besides Django's usual names."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|AUTHORIZATION|PEPPER", flags=re.I
    )
