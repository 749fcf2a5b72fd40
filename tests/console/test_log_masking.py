"""No log line shows an API key or a bearer token: the filter on every handler of
settings.LOGGING masks them (message, arguments, tracebacks) to their last four characters.

The output checked is the configured handler's own, writing to a stream: the loggers the
project really logs through (django.request, Celery's, the gateway's, uvicorn's access log)."""

import io
import logging

import pytest
from django.conf import settings

from console.log_masking import KeyMaskingFilter, mask_secrets, mask_server_handlers

KEY_ID = "0123456789abcdef0123456789abcdef"
SECRET = "s3cr3t-Secret_value-0123456789wxyz"  # 32 characters, as keys/services.py makes
KEY = f"{KEY_ID}.{SECRET}"
UPSTREAM_TOKEN = "sk-upstream-9f8e7d6c5b4a39281706"


@pytest.fixture
def log_output():
    """The configured console handler (the one with the filter), writing to a buffer."""
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(item, KeyMaskingFilter) for item in handler.filters)
    ]
    assert handlers, "the root logger has no handler with the key-masking filter"
    buffer = io.StringIO()
    previous = [handler.setStream(buffer) for handler in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def test_the_shapes_are_masked_to_the_last_four_characters():
    assert mask_secrets(f"key={KEY}&x=1") == "key=…wxyz&x=1"
    assert mask_secrets(f"Authorization: Bearer {UPSTREAM_TOKEN}") == "Authorization: Bearer …1706"
    assert mask_secrets("authorization: bearer short") == "authorization: bearer …"
    assert mask_secrets(f"BEARER {KEY}") == "BEARER …wxyz"
    # Masking twice changes nothing; ordinary text is left alone.
    once = mask_secrets(f"Bearer {UPSTREAM_TOKEN} and {KEY}")
    assert mask_secrets(once) == once
    assert mask_secrets("request_id=r-1001 model=glm-4.7 user=a@b.com") == (
        "request_id=r-1001 model=glm-4.7 user=a@b.com"
    )


def test_every_handler_in_the_settings_masks():
    handlers = settings.LOGGING["handlers"]
    assert handlers
    for name, handler in handlers.items():
        assert "mask_keys" in handler.get("filters", []), name
    assert settings.LOGGING["filters"]["mask_keys"]["()"] == "console.log_masking.KeyMaskingFilter"


@pytest.mark.parametrize(
    "logger_name",
    ["django.request", "django.server", "celery.app.trace", "gateway.views", "keys.tasks"],
)
def test_keys_in_messages_and_arguments_never_reach_the_output(log_output, logger_name):
    logger = logging.getLogger(logger_name)
    logger.error("refused %s with header %r", KEY, {"Authorization": f"Bearer {UPSTREAM_TOKEN}"})
    logger.error(f"Bad request: /api/paas/v4/models?api_key={KEY}")
    logger.error("%(who)s sent %(key)s", {"who": "client", "key": KEY})

    output = log_output.getvalue()
    assert output.count("\n") == 3, output
    assert SECRET not in output and UPSTREAM_TOKEN not in output
    assert KEY_ID not in output  # the whole key goes, not just its secret half
    assert "…wxyz" in output and "Bearer …1706" in output
    assert "client sent …wxyz" in output


def test_a_key_in_an_exception_is_masked_in_the_traceback(log_output):
    def call_upstream():
        raise RuntimeError(f"upstream said: invalid api key {KEY} (Bearer {UPSTREAM_TOKEN})")

    try:
        call_upstream()
    except RuntimeError:
        logging.getLogger("django.request").exception("Internal Server Error: %s", "/api/chat")

    output = log_output.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: upstream said: invalid api key …wxyz (Bearer …1706)" in output
    assert SECRET not in output and UPSTREAM_TOKEN not in output


def test_celery_workers_log_through_the_same_masked_handlers(log_output):
    """A worker replaces the root logger's handlers unless setup_logging has a receiver:
    config/celery.py's applies settings.LOGGING instead."""
    from celery import signals

    import config.celery  # noqa: F401  (connects the receiver)

    assert signals.setup_logging.receivers
    loggers = [logging.getLogger()] + [
        item
        for item in logging.Logger.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]
    before = {logger: (list(logger.handlers), logger.level, logger.propagate) for logger in loggers}
    try:
        signals.setup_logging.send(sender=None, loglevel=logging.INFO, logfile=None, format="")
        configured = [
            handler
            for handler in logging.getLogger().handlers
            if any(isinstance(item, KeyMaskingFilter) for item in handler.filters)
        ]
        assert configured
        buffer = io.StringIO()
        configured[0].setStream(buffer)
        logging.getLogger("celery.app.trace").error("Task failed: args=(%r,)", KEY)
        assert SECRET not in buffer.getvalue() and "…wxyz" in buffer.getvalue()
    finally:
        # The test process keeps the logging it had (the receiver configured it afresh).
        for logger, (handlers, level, propagate) in before.items():
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def test_uvicorns_own_access_log_is_masked_and_keeps_its_format():
    """uvicorn configures its loggers before Django reads settings.LOGGING; config/asgi.py
    puts the filter on the handlers it finds there (with --no-access-log there are none)."""
    from pathlib import Path

    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.logging import AccessFormatter

    access = logging.getLogger("uvicorn.access")
    before = (list(access.handlers), access.propagate)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(AccessFormatter(LOGGING_CONFIG["formatters"]["access"]["fmt"]))
    access.handlers[:] = [handler]
    access.propagate = False
    try:
        mask_server_handlers()  # what config/asgi.py runs once the application is built
        # As uvicorn's protocols log each request.
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "203.0.113.7:5123",
            "GET",
            f"/api/paas/v4/models?key={KEY}",
            "1.1",
            200,
        )
    finally:
        access.handlers[:], access.propagate = before
    asgi = (Path(__file__).resolve().parents[2] / "config" / "asgi.py").read_text()
    assert "\nmask_server_handlers()" in asgi
    output = buffer.getvalue()
    assert '203.0.113.7:5123 - "GET /api/paas/v4/models?key=…wxyz HTTP/1.1" 200' in output
    assert SECRET not in output


@pytest.mark.parametrize(
    "path",
    [
        "/account/security/staff-link/Xk3v9_pQ-2mN8tZr5wYb7cJd1fHs4gLe/",
        "/accounts/verify/eyJ1c2VyIjoyLCJlbWFpbCI6Im5ld2RldiJ9:1vRsTx:AbCdEf/",
        "/invitations/aCc_QSscICUcK73VW5QpYq2FIYD3_A_rwjj_sq6aacM/",
        "/accounts/password/reset/Mg/cz8k1q-4b3e9f0a1c2d3e4f5a6b7c8d9e0f1a2b/",
        "/account/security/staff-link/Xk3v9_pQ-2mN8tZr5wYb7cJd1fHs4gLe/?next=/admin/",
    ],
)
def test_one_time_links_in_a_path_lose_their_token(path, log_output):
    """A staff two-factor link, a verification, an invitation or a reset link that reaches a
    log line (uvicorn's access log, Django's "Not Found") is useless to whoever reads it."""
    token = path.split("?")[0].rstrip("/").split("/")[-1]
    logging.getLogger("django.request").warning("Not Found: %s", path)
    output = log_output.getvalue()
    assert token not in output
    assert "Not Found: /" in output and "/…" in output
    assert mask_secrets(mask_secrets(path)) == mask_secrets(path)


def test_other_paths_are_left_alone():
    for path in ("/account/security/staff-link/", "/invitations/", "/api-keys/12/", "/history/"):
        assert mask_secrets(f"GET {path} 200") == f"GET {path} 200"
