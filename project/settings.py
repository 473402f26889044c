"""Settings of the example project, all from environment variables (twelve-factor).

SQLite is the default database; ``DATABASE_URL`` selects PostgreSQL (Aurora/RDS on AWS).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.websockets_env import websockets_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def deployed_secret_key_problem(key: str) -> str:
    """Why ``key`` cannot sign a deployed site's sessions and tokens ("" if it can)."""
    if not key:
        return "is not set"
    lowered = key.lower()
    if any(word in lowered for word in ("replace", "change-me", "changeme", "insecure", "secret")):
        return "is a placeholder"
    # Django's own deployment check (security.W009) asks for 50 characters, 5 distinct.
    if len(key) < 50 or len(set(key)) < 5:
        return "is too short (at least 50 random characters)"
    return ""


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not DEBUG and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    problem = deployed_secret_key_problem(SECRET_KEY)
    if problem:
        # The value itself is never repeated: it may be a real, if weak, secret.
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY {problem}: set a long random value in the function's "
            "environment (zappa aws_environment_variables), e.g. the output of "
            '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
        )
elif not SECRET_KEY:
    # Local development and tests only; a deployed function refuses to start without one.
    SECRET_KEY = "insecure-local-development-key-change-me"

# API Gateway (*.execute-api.<region>.amazonaws.com) and function URLs (*.on.aws) set Host.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],.amazonaws.com,.on.aws")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_aws_api_gateway_websockets",
    "websocket_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the JS client, admin) from the same function or local gateway.
    "project.middleware.LazyWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# serverless-offline (which sets IS_OFFLINE for its handlers) strips trailing slashes from HTTP
# paths: serve /rooms/general as /rooms/general/ instead of redirecting in a loop.
if env_bool("IS_OFFLINE"):
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.common.CommonMiddleware"),
        "django_aws_api_gateway_websockets.middleware.RestoreTrailingSlashMiddleware",
    )

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Lambda containers are reused: keep the connection, but check it before each event.
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
        # RDS Proxy / pgbouncer in transaction mode cannot hold the server-side cursors that
        # streaming fan-out uses.
        disable_server_side_cursors=env_bool("DJANGO_DISABLE_SERVER_SIDE_CURSORS"),
    )
}
if DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # A database the function cannot reach (security group, routes) would otherwise hang the
    # connect until Lambda's timeout, with no line naming DATABASE_URL.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", int(os.environ.get("DJANGO_DB_CONNECT_TIMEOUT", "10"))
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue up instead of failing, and rate-limit checks stay exact under bursts.
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Absolute, so the storage below (not Django, once, on first use) adds the stage prefix of
# each request: the site answers on /dev/ of zappa's REST API and on other URLs without it.
STATIC_URL = os.environ.get("DJANGO_STATIC_URL", "/static/")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django_aws_api_gateway_websockets.serverless.staticfiles."
        "ScriptPrefixStaticFilesStorage"
    },
}
# Set (and run collectstatic) only to publish files elsewhere, e.g. S3 behind CloudFront.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None
# Serve straight from the apps' static folders: no collectstatic step before packaging.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# URL names, not paths: reversed, they keep a stage prefix (zappa's /dev/) in SCRIPT_NAME.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "index"

# API Gateway and the Lambda adapter terminate TLS and say so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool(
    "DJANGO_SECURE_COOKIES", not DEBUG and "AWS_LAMBDA_FUNCTION_NAME" in os.environ
)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# AWS: Lambda sets AWS_REGION itself; AWS_GATEWAY_REGION_NAME overrides it.
AWS_GATEWAY_REGION_NAME = os.environ.get("AWS_GATEWAY_REGION_NAME") or os.environ.get(
    "AWS_REGION", ""
)
AWS_IAM_PROFILE = os.environ.get("AWS_IAM_PROFILE", "")

# Every key of the library's WEBSOCKETS setting, as WEBSOCKETS_<KEY> (README: Configuration).
# Unset, the library's defaults fit a deployment: a token is bound to the site's session only
# where the socket receives its cookie, and the site that issued it is an allowed origin.
WEBSOCKETS = websockets_from_environment(os.environ)
# The example chat's connect and disconnect write only its own rows and the library's, all
# rolled back, so SnapStart may rehearse them before the snapshot (serverless-notes.md).
WEBSOCKETS.setdefault("snapstart_rehearsal", True)
# ".example.com" lets a socket on ws.example.com receive the session cookie of example.com.
SESSION_COOKIE_DOMAIN = os.environ.get("DJANGO_SESSION_COOKIE_DOMAIN") or None
CSRF_COOKIE_DOMAIN = SESSION_COOKIE_DOMAIN

ADMINS = [("Admin", email) for email in env_list("DJANGO_ADMIN_EMAILS")]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
