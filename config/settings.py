"""Settings, all read from the environment (documented in `.env.example`).

With no variables at all this is the *embedded default*: SQLite in WAL mode, a Celery
broker on the local filesystem, in-process stand-ins for the Redis-backed parts, and a
`SECRET_KEY` and API-key pepper generated once into `var/local-secrets.json`. With
`DATABASE_URL` and `REDIS_URL` it is the production shape: PostgreSQL (psycopg 3, pooled)
and Redis for the cache, the Celery broker and the shared gateway state.
"""

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A developer's own `.env` (untracked) is read when present; real environment variables win.
if (BASE_DIR / ".env").is_file() and not os.environ.get("CONSOLE_IGNORE_DOTENV"):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Everything the embedded default writes (database, broker folders, generated secrets).
VAR_DIR = Path(env("CONSOLE_VAR_DIR", default=str(BASE_DIR / "var")))


def _local_secrets() -> dict:
    """Secrets generated once for this checkout, so sessions and API keys survive restarts.

    Created with O_EXCL so two processes starting together cannot write different values.
    """
    path = VAR_DIR / "local-secrets.json"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        values = {
            "secret_key": secrets.token_urlsafe(50),
            "api_key_pepper": secrets.token_urlsafe(32),
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle)
    return json.loads(path.read_text())


_env_secret_key = env("SECRET_KEY", default="")
_env_peppers = env("API_KEY_PEPPERS", default="")
_generated = {} if (_env_secret_key and _env_peppers) else _local_secrets()

SECRET_KEY = _env_secret_key or _generated["secret_key"]


def _parse_peppers(text: str) -> dict[int, str]:
    """`API_KEY_PEPPERS="2:new-secret,1:old-secret"`: version → pepper; the highest is current."""
    peppers = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        version, _sep, value = item.partition(":")
        if not version.isdigit() or len(value) < 16:
            raise ImproperlyConfigured(
                "API_KEY_PEPPERS must look like '2:<new secret>,1:<old secret>' "
                "(a number, a colon, at least 16 characters)."
            )
        peppers[int(version)] = value
    return peppers


API_KEY_PEPPERS = _parse_peppers(_env_peppers) or {1: _generated["api_key_pepper"]}

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # Django's admin with a site that asks staff for a second factor (console/admin_site.py).
    "console.admin_site.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "console",
    "projects",
    "keys",
    "billing",
    "history",
    "gateway",
    "notifications",
    "usage",
    "plans",
    "alerts",
    # The top app: pages and services over several apps (portal/apps.py).
    "portal",
]

MIDDLEWARE = [
    # The API's views skip the rest (its docstring says why; the security headers stay).
    "console.middleware.gateway_fast_path",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): the session passed the second factor (django-otp).
    "django_otp.middleware.OTPMiddleware",
    "console.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a refused sign-in into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.console",
                "notifications.context_processors.notifications",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if env("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections instead
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
            # After PostgreSQL went away, the pool retries with a doubling delay for this
            # long, then gives up and starts afresh at the next request. psycopg's default
            # (300 s) lets the delay grow past the outage: after a 17 s restart, requests to a web
            # process still waited up to ~9 s for a connection (drills/test_dependencies.py).
            "reconnect_timeout": env.float("DATABASE_POOL_RECONNECT_TIMEOUT", default=5),
        }
        # pg_trgm only sees CJK characters in a UTF-8 LC_CTYPE; the test database copies
        # this template's locale (see NOTES.md).
        if env("DATABASE_TEST_TEMPLATE", default=""):
            DATABASES["default"]["TEST"] = {"TEMPLATE": env("DATABASE_TEST_TEMPLATE")}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "console.sqlite3",
            # Web, worker and beat share the file: WAL lets readers run beside a writer,
            # IMMEDIATE takes the write lock up front and the timeout waits for it instead
            # of failing with "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker, shared gateway state -----------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "console",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Rate limits, concurrency slots and reservations: "redis" needs REDIS_URL; "local" is the
# in-process stand-in, correct only while one web process serves the gateway.
SHARED_STATE_BACKEND = env("SHARED_STATE_BACKEND", default="redis" if REDIS_URL else "local")

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
    # Twice the longest task's hard time limit: a task still running is never handed to a
    # second worker, and a task whose worker died comes back after this long.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=1800),
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    # The transport lists these folders and fails on a missing one. Its exchange tables go to
    # `control_folder`, by default `control/` under the working directory (the checkout).
    for _folder in (_broker_dir, VAR_DIR / "celery-processed", VAR_DIR / "celery-control"):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        {
            "data_folder_in": str(_broker_dir),
            "data_folder_out": str(_broker_dir),
            "processed_folder": str(VAR_DIR / "celery-processed"),
            "control_folder": str(VAR_DIR / "celery-control"),
            "store_processed": False,
        }
    )
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 900
CELERY_TASK_SOFT_TIME_LIMIT = 840
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A prompt-history export no worker has started within this many minutes (the broker was
# down) is failed with a message on its page; until then the sweep enqueues it again.
HISTORY_EXPORT_START_MINUTES = env.int("HISTORY_EXPORT_START_MINUTES", default=30)

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "console.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
# django-axes first: it refuses a locked-out sign-in before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
EMAIL_VERIFICATION_MAX_AGE = 3 * 24 * 3600
# Sign-in throttling (django-axes, attempts kept in the database): this many failed attempts
# for one email address from one IP address lock that pair out for the cool-off; a failure
# during the lockout starts it again. Other addresses and other IPs are not affected.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_USERNAME_FORM_FIELD = "username"
# Addresses are matched ignoring case: "A@x.com" must not get five more tries than "a@x.com".
AXES_USERNAME_CALLABLE = "console.two_factor.login_username"
# The lockout page in the console's layout, status 429.
AXES_LOCKOUT_CALLABLE = "console.security_views.locked_out"
AXES_RESET_ON_SUCCESS = True
# Failed attempts are what throttling needs; a row per successful sign-in is not kept.
AXES_DISABLE_ACCESS_LOG = True
# Per address, from every IP address together: past this many failed passwords within the
# window, signing in as that address waits for the window to end (429 with the time left).
# Refused attempts do not count or stretch the wait: it slows a guesser with many IP
# addresses without locking the owner out (console/throttling.py).
LOGIN_ADDRESS_FAILURE_CEILING = env.int("LOGIN_ADDRESS_FAILURE_CEILING", default=20)
LOGIN_ADDRESS_WINDOW_SECONDS = env.int("LOGIN_ADDRESS_WINDOW_SECONDS", default=300)
# Sign-up and password-reset requests per IP address and hour: sign-up answers whether an
# address is registered, password reset sends email; neither goes through authenticate().
SIGNUPS_PER_HOUR_PER_IP = env.int("SIGNUPS_PER_HOUR_PER_IP", default=10)
PASSWORD_RESETS_PER_HOUR_PER_IP = env.int("PASSWORD_RESETS_PER_HOUR_PER_IP", default=10)
# Two-factor authentication (django-otp): TOTP apps, plus single-use recovery codes. Optional
# for users, required for staff in the back-office and on the staff pages.
OTP_TOTP_ISSUER = "BigModel Console"
# The admin lists devices without their secrets (a TOTP key is a password).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Authenticator apps' seeds are encrypted at rest with this, as upstream secrets are with
# UPSTREAM_SECRET_KEY (default: derived from SECRET_KEY; set it before changing SECRET_KEY).
TWO_FACTOR_SECRET_KEY = env("TWO_FACTOR_SECRET_KEY", default="two-factor-secrets:" + SECRET_KEY)
# Staff set two-factor up only through a one-time link (emailed, or printed by
# `manage.py staff_two_factor_link`): this long, then it expires.
STAFF_TWO_FACTOR_LINK_HOURS = env.int("STAFF_TWO_FACTOR_LINK_HOURS", default=24)
INVITATION_VALID_DAYS = 7

# --- Email ----------------------------------------------------------------------------------
# Django 6.1's MAILERS, built from one EMAIL_URL (django-environ parses the URL).
_email = env.email_url_config(env("EMAIL_URL", default="consolemail://"))
_smtp_options = {
    "host": _email.get("EMAIL_HOST"),
    "port": _email.get("EMAIL_PORT"),
    "username": _email.get("EMAIL_HOST_USER"),
    "password": _email.get("EMAIL_HOST_PASSWORD"),
    "use_tls": _email.get("EMAIL_USE_TLS"),
    "use_ssl": _email.get("EMAIL_USE_SSL"),
    "timeout": 10,
}
MAILERS = {
    "default": {
        "BACKEND": _email["EMAIL_BACKEND"],
        "OPTIONS": (
            {key: value for key, value in _smtp_options.items() if value not in (None, "")}
            if _email["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
            # filemail:///path: the file backend refuses to start without its folder.
            else {"file_path": _email["EMAIL_FILE_PATH"]}
            if _email["EMAIL_BACKEND"].endswith("filebased.EmailBackend")
            else {}
        ),
    }
}
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="BigModel Console <console@localhost>")
# Every email goes through the outbox (console/emails.py): a failed send is retried after
# base × 2^(attempt − 1) seconds, up to the max attempts; then it is failed, shown to staff.
EMAIL_RETRY_BASE_SECONDS = env.int("EMAIL_RETRY_BASE_SECONDS", default=30)
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=6)

# --- Webhooks (notifications) ---------------------------------------------------------------
# A failed delivery is retried after base × 2^(attempt − 1) seconds, up to the max attempts.
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=30)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_TIMEOUT_SECONDS = 5
# Endpoints on loopback, private, link-local or reserved addresses turn "Send test" into a probe
# of internal services: refused unless this is set (local development and the tests only).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)

# --- i18n -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Dates and numbers per language: console/formats (over Django's own locale formats).
FORMAT_MODULE_PATH = ["console.formats"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True
DEFAULT_ACCOUNT_TIME_ZONE = "Asia/Shanghai"

# --- Static ---------------------------------------------------------------------------------
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.min.js straight from the plotly package (console/staticfiles.py).
    "console.staticfiles.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env(
            "STATICFILES_BACKEND",
            default="whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}

# --- Security -------------------------------------------------------------------------------
# Everything scripts need is served from this site; inline scripts carry the request's nonce.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
DEFAULT_EXCEPTION_REPORTER_FILTER = "console.reporting.SecretsFilter"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# HTTPS=true behind TLS turns on every transport setting `check --deploy` asks for.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if env.bool("BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Product settings -----------------------------------------------------------------------
# The reference's "20 million free tokens on registration": a pack for any model.
STARTER_PACK_TOKENS = env.int("STARTER_PACK_TOKENS", default=20_000_000)
STARTER_PACK_DAYS = env.int("STARTER_PACK_DAYS", default=30)
# Accounts one person may own (staff raise it per user in the back-office): each account has
# its own rate and concurrency limits, so accounts made in a loop would multiply them.
ACCOUNTS_PER_OWNER_MAX = env.int("ACCOUNTS_PER_OWNER_MAX", default=5)
# --- Payments, invoices, statements ---
# "sandbox": the built-in test-card provider (billing/providers.py lists its cards); "none":
# no card payments (recharges by bank transfer, recorded by staff). The sandbox credits any
# test card, so a production deployment (HTTPS=true, or `check --deploy`) refuses it unless
# ALLOW_SANDBOX_CARDS=true says so (a staging site): billing/checks.py.
CARD_PROVIDER = env("CARD_PROVIDER", default="sandbox")
ALLOW_SANDBOX_CARDS = env.bool("ALLOW_SANDBOX_CARDS", default=False)
# A sandbox card ending 3220 stays pending this long, then succeeds.
SANDBOX_PENDING_SECONDS = env.int("SANDBOX_PENDING_SECONDS", default=3)
# The smallest and largest recharge, in whole units of the account's currency.
RECHARGE_MINIMUM_UNITS = {
    "CNY": env.int("RECHARGE_MIN_CNY", default=10),
    "USD": env.int("RECHARGE_MIN_USD", default=2),
}
RECHARGE_MAXIMUM_UNITS = env.int("RECHARGE_MAX_UNITS", default=1_000_000)
# A card payment the provider never acknowledged is declined by the sweep after this long.
PAYMENT_PROVIDER_TIMEOUT_SECONDS = env.int("PAYMENT_PROVIDER_TIMEOUT_SECONDS", default=120)
# A bank transfer not confirmed by staff within this many days is cancelled.
BANK_TRANSFER_VALID_DAYS = env.int("BANK_TRANSFER_VALID_DAYS", default=14)
# The seller on invoices and receipts, and the account bank transfers go to.
SELLER = {
    "name": env("SELLER_NAME", default="BigModel Console Demo Co., Ltd. 演示科技有限公司"),
    "tax_id": env("SELLER_TAX_ID", default="91110108MA00000000"),
    "address": env("SELLER_ADDRESS", default="Beijing, China 北京市海淀区"),
    "bank_name": env("SELLER_BANK_NAME", default="Demo Bank, Beijing Branch 演示银行北京分行"),
    "bank_account": env("SELLER_BANK_ACCOUNT", default="1100 0000 0000 0000 000"),
}
# Invoice numbers restart each calendar year in this time zone.
INVOICE_TIME_ZONE = env("INVOICE_TIME_ZONE", default="Asia/Shanghai")
# --- Gateway ---
# Upstream secrets are encrypted at rest with this (default: derived from SECRET_KEY).
UPSTREAM_SECRET_KEY = env("UPSTREAM_SECRET_KEY", default="upstream-secrets:" + SECRET_KEY)
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=4 * 1024 * 1024)
# The Anthropic-compatible endpoint's own limit: coding tools send long contexts and images,
# and Anthropic accepts up to 32 MB. Read by the view from the request stream, so Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (the console's forms) stays small.
GATEWAY_ANTHROPIC_MAX_BODY_BYTES = env.int(
    "GATEWAY_ANTHROPIC_MAX_BODY_BYTES", default=32 * 1000 * 1000
)
# Seconds of upstream silence after which an Anthropic stream sends a `ping` event.
GATEWAY_ANTHROPIC_PING_SECONDS = env.float("GATEWAY_ANTHROPIC_PING_SECONDS", default=10)
# A crashed worker's reservations and concurrency slots expire after this long.
GATEWAY_RESERVATION_TTL = env.int("GATEWAY_RESERVATION_TTL", default=600)
# The API's wait for a pooled database connection: shorter than DATABASE_POOL_TIMEOUT, so
# while PostgreSQL is down each API request gets its 503 quickly instead of queueing.
GATEWAY_DATABASE_WAIT = env.float("GATEWAY_DATABASE_WAIT", default=3)
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES + 1024
SIMULATOR_FIRST_TOKEN_MS = env.int("SIMULATOR_FIRST_TOKEN_MS", default=30)
SIMULATOR_CHUNK_MS = env.int("SIMULATOR_CHUNK_MS", default=2)
SIMULATOR_OUTPUT_TOKENS = env.int("SIMULATOR_OUTPUT_TOKENS", default=60)
CURRENCIES = [("CNY", _("Chinese yuan (CNY)")), ("USD", _("US dollar (USD)"))]
DEFAULT_CURRENCY = "CNY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # On every handler: anything shaped like an API key or a bearer token is masked to its
    # last four characters, in the message, its arguments and tracebacks.
    "filters": {"mask_keys": {"()": "console.log_masking.KeyMaskingFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_keys"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own default handlers would print request errors unmasked: its records
        # go to the masked handler instead (uvicorn's handlers: config/asgi.py).
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # django-axes tells of every sign-in at INFO; lockouts are its warnings.
        "axes": {"level": "WARNING"},
        # WeasyPrint logs every rendering step at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        # httpx tells of every upstream call at INFO: a line per gateway request, which the
        # usage record already keeps.
        "httpx": {"level": "WARNING"},
    },
}
