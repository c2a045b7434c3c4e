"""Anchor settings. Everything a deployment changes comes from the environment."""

from __future__ import annotations

import shutil
import sys
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from anchor_site.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_decimal,
    env_float,
    env_int,
    env_list,
    env_str,
    sqlite_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DEBUG = env_bool("DEBUG", False)
TESTING = "pytest" in sys.modules or env_bool("ANCHOR_TESTING", False)

# Runtime files (SQLite database, demo site state). Tests keep theirs apart from a running demo's.
VAR_DIR = Path(env_str("ANCHOR_VAR_DIR", str(BASE_DIR / "var" / ("test" if TESTING else ""))))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# The SQLite database (sessions included) and the admin's first password live here: task code, which runs
# as a uid of its own, must not enter. A directory someone else owns is left as its owner set it.
for _runtime_dir in {VAR_DIR, BASE_DIR / "var"}:  # the test suite's VAR_DIR sits inside a demo's var/
    try:
        _runtime_dir.chmod(0o700)
    except (PermissionError, FileNotFoundError):
        pass

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"

# Secrets at rest are encrypted with this key (Fernet); it defaults to one derived from SECRET_KEY.
SECRETS_ENCRYPTION_KEY = env_str("SECRETS_ENCRYPTION_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG or TESTING else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "channels",
    "ninja",  # serves the API docs' Swagger UI from static files, so /api/v1/docs works offline
    "tasks_app",
    "healing_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collectstatic output in production too, so one ASGI process is a complete deployment.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "anchor_site.middleware.SecurityHeadersMiddleware",
    "anchor_site.middleware.ApiMethodsMiddleware",
    "anchor_site.middleware.FormAddressVisitedMiddleware",
    "anchor_site.middleware.NulInUrlMiddleware",
    "anchor_site.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that the 413 page it answers with passes back through every middleware above (X-Frame-Options too).
    "anchor_site.middleware.FormTooLargeMiddleware",
]

ROOT_URLCONF = "anchor_site.urls"
WSGI_APPLICATION = "anchor_site.wsgi.application"
ASGI_APPLICATION = "anchor_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tasks_app.demo.context.demo",
            ],
        },
    }
]

DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {
    "default": database_from_url(DATABASE_URL, base_dir=BASE_DIR)
    if DATABASE_URL
    else sqlite_database(VAR_DIR / "anchor.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Tests use their own Redis database so they never consume a running product's queues.
REDIS_URL = env_str("TEST_REDIS_URL", "redis://127.0.0.1:6379/9") if TESTING else env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# django-rq would also serve its queue pages inside the admin, to any staff member: only /django-rq/, for
# superusers (anchor_site/urls.py).
RQ_SHOW_ADMIN_LINK = False
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": timeout}
    for name, timeout in (("runs", 600), ("healing", 600), ("webhooks", 60))
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis waits for messages with a 5 s BZPOPMIN; redis-py's default 5 s socket timeout
            # made every idle websocket consumer crash after 5 s. The health check replaces connections
            # that a Redis restart left dead before they are used.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5, "health_check_interval": 10}],
            "prefix": env_str("CHANNELS_PREFIX", "anchor"),
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Security: strict by default; HTTPS-only cookies and HSTS when the deployment says it is on HTTPS.
SECURE_HTTPS = env_bool("SECURE_HTTPS", not DEBUG and not TESTING)
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_SSL_REDIRECT = SECURE_HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)

# Where this server is reachable from its own workers (the demo tasks use it for the bundled demo site).
ANCHOR_SITE_URL = env_str("ANCHOR_SITE_URL", "http://127.0.0.1:8000")

# The browser and the runner.
CHROMIUM_PATH = env_str("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
RUN_WALL_TIMEOUT_S = env_float("RUN_WALL_TIMEOUT_S", 90.0, minimum=1.0)
RUN_ACTION_TIMEOUT_MS = env_int("RUN_ACTION_TIMEOUT_MS", 5000, minimum=100)
# A run whose worker stopped sending heartbeats for this long is declared lost (see README "Reliability").
RUN_STALE_AFTER_S = env_int("RUN_STALE_AFTER_S", 60, minimum=5)
# A queued run (or a healed run awaiting its new version), or a code generation, whose RQ job is gone this long
# is enqueued again.
RUN_REQUEUE_AFTER_S = env_int("RUN_REQUEUE_AFTER_S", 30, minimum=5)

# Healing agents.
HEALING_AGENT = env_choice("HEALING_AGENT", "auto", ("auto", "heuristic", "llm"))
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
OPENAI_TIMEOUT_S = env_float("OPENAI_TIMEOUT_S", 30.0, minimum=1.0)
# USD per 1M tokens (prompt, completion); unknown models fall back to "default".
LLM_PRICES = {
    "default": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
}
LLM_MONTHLY_BUDGET_USD = env_decimal("LLM_MONTHLY_BUDGET_USD", Decimal("50"), minimum=Decimal(0))
# Bounds on one LLM takeover: model turns, seconds, tokens, and retries of a failed request.
LLM_MAX_STEPS = env_int("LLM_MAX_STEPS", 12, minimum=1, maximum=100)
LLM_TAKEOVER_SECONDS = env_float("LLM_TAKEOVER_SECONDS", 60.0, minimum=5.0)
LLM_MAX_TOKENS_PER_HEAL = env_int("LLM_MAX_TOKENS_PER_HEAL", 60_000, minimum=1_000)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0, maximum=10)

# Webhooks. Private addresses are refused unless this is on (development and tests only).
WEBHOOKS_ALLOW_PRIVATE = env_bool("WEBHOOKS_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT_S = env_float("WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1)

# API rate limits: requests per minute per key, and failed authentications per minute per client address.
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600, minimum=1)
API_AUTH_FAILURES_PER_MINUTE = env_int("API_AUTH_FAILURES_PER_MINUTE", 20, minimum=1)
# Where those per-minute counters live in Redis (tests give each test its own).
API_RATE_LIMIT_PREFIX = "anchor:api"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "tasks_app.logging.MaskSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Declared to drop the console handler Django gives this logger under DEBUG, which prints each line
        # a second time without the mask_secrets filter; its lines reach the root's handler instead.
        "django": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "rq.worker": {"level": env_str("RQ_LOG_LEVEL", "INFO")},
    },
}
