"""A logging filter that masks API keys, bearer tokens and the tokens of one-time links
(settings.LOGGING puts it on every handler).

A key can reach a log line by many roads: a client pasting it into a URL, an upstream error
echoing a header, an exception message, a task's arguments. Whatever the road, the written line
shows at most the last four characters, as the console does (`…abcd`). Imported by the logging
configuration before Django's apps are ready: plain Python only.
"""

import logging
import re
from collections.abc import Mapping

# keys/services.py: `<32 hex key id>.<secret>`, the secret token_urlsafe (32 characters today;
# the gateway accepts 16 to 128).
API_KEY = re.compile(r"[0-9a-f]{32}\.[A-Za-z0-9_-]{16,}")
# `Authorization: Bearer <anything>`: an upstream's secret, a malformed key. A value already
# masked (starting with …) is left alone, so masking twice changes nothing.
BEARER = re.compile(r"\b(bearer\s+)(?!…)([A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
# One-time links carry their token in the path (config/urls.py): the staff two-factor link,
# email verification, invitations and password reset (`<uidb64>/<token>`). An access log line
# or Django's "Not Found: /…" must not hand a reader a link that still works.
ONE_TIME_LINK = re.compile(
    r"(/(?:account/security/staff-link|accounts/verify|invitations|accounts/password/reset)/)"
    r"(?!…)([^/\s?#\"']+(?:/(?!…)[^/\s?#\"']+)?)"
)
SHORTEST_KEPT = 16  # below this, even the last four characters are not shown


def _mask(secret: str) -> str:
    return "…" + secret[-4:] if len(secret) >= SHORTEST_KEPT else "…"


def mask_secrets(text: str) -> str:
    text = API_KEY.sub(lambda match: _mask(match.group(0)), text)
    text = ONE_TIME_LINK.sub(lambda match: match.group(1) + "…", text)
    return BEARER.sub(lambda match: match.group(1) + _mask(match.group(2)), text)


def _mask_argument(value):
    return mask_secrets(value) if isinstance(value, str) else value


class KeyMaskingFilter(logging.Filter):
    """Masks the message and its arguments, the traceback and the stack. Never drops a record.

    String arguments are masked in place, so a formatter that reads `record.args` itself
    (uvicorn's access log) still finds them; a secret inside another kind of argument (a dict,
    an exception) is caught in the formatted message, which then replaces message and
    arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_mask_argument(value) for value in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _mask_argument(value) for key, value in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: the handler reports it as it always does
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # What Formatter.format would compute, computed here so it can be masked (the
            # formatter then uses this text instead of formatting the exception again).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


# Loggers whose handlers the ASGI server set up before Django's settings were read (uvicorn
# configures its own logging first; --no-access-log leaves the access logger without any).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def mask_server_handlers() -> None:
    """Put the filter on the server's own handlers too (config/asgi.py calls this), keeping
    the server's formats and its choice of what to log."""
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(item, KeyMaskingFilter) for item in handler.filters):
                handler.addFilter(KeyMaskingFilter())
