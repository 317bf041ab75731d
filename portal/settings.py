"""Corral settings: everything comes from the environment, with safe defaults."""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from portal.keys import load_keys

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CORRAL_DATA_DIR", BASE_DIR / "data"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


PRODUCTION = os.environ.get("CORRAL_ENV", "development").lower() == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
SECRET_KEY, ENCRYPTION_KEYS = load_keys(DATA_DIR, PRODUCTION)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "portal.apps.CorralAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.saml",
    "portal.apps.PortalConfig",
    "rbac.apps.RbacConfig",
    "clusters.apps.ClustersConfig",
    "backups.apps.BackupsConfig",
    "scans.apps.ScansConfig",
    "notifiers.apps.NotifiersConfig",
    "catalog.apps.CatalogConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from gunicorn (bin/up runs collectstatic)
    "portal.api.middleware.APIErrorMiddleware",  # early: /v3/ errors from any layer become the JSON error body
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.audit.AuditMiddleware",
]

ROOT_URLCONF = "portal.urls"
SESSION_ENGINE = "portal.sessions"  # refuses forged session keys before they reach the database
WSGI_APPLICATION = "portal.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'corral.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web server write concurrently: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATA_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# WhiteNoise serves STATIC_ROOT compressed; without a manifest, so templates render before collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Before any collectstatic (a fresh checkout, the tests) WhiteNoise looks files up per request
# instead of warning about a missing STATIC_ROOT; bin/up collects first and gets the fast path.
WHITENOISE_AUTOREFRESH = env_bool("WHITENOISE_AUTOREFRESH", DEBUG and not STATIC_ROOT.is_dir())

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
JOB_QUEUES = ("default", "clusters", "scans", "backups", "catalog")
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 6 * 3600} for name in JOB_QUEUES}
RQ_SHOW_ADMIN_LINK = True
# A running job writes a heartbeat this often; one silent for JOB_STALE_SECONDS has lost its worker.
JOB_HEARTBEAT_SECONDS = float(os.environ.get("CORRAL_JOB_HEARTBEAT_SECONDS", "5"))
JOB_STALE_SECONDS = float(os.environ.get("CORRAL_JOB_STALE_SECONDS", "30"))
# A worker is "seen recently" by /readyz when its RQ heartbeat is this fresh.
WORKER_SEEN_SECONDS = float(os.environ.get("CORRAL_WORKER_SEEN_SECONDS", "120"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.permissions.PortalPermission"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    # Bodies within limits (size, depth, UTF-8); forms stay for the browsable API and curl -d.
    "DEFAULT_PARSER_CLASSES": [
        "portal.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# Hostile bodies cost little: larger ones answer 413 before they are read, deeper ones 400 before parsing.
API_MAX_BODY_BYTES = 1024 * 1024
API_MAX_NESTING_DEPTH = 64

SPECTACULAR_SETTINGS = {
    "TITLE": "Corral API",
    "DESCRIPTION": "Manage fleets of Kubernetes clusters: inventory, upgrades, backups, scans, apps and access.",
    "VERSION": "3.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/admin/"
ACCOUNT_LOGIN_METHODS = {"username"}
SOCIALACCOUNT_ONLY = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "portal.crypto.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

JOB_RETENTION_DAYS = int(os.environ.get("CORRAL_JOB_RETENTION_DAYS", "30"))

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so RQ worker processes started by the tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_corral.sqlite3")}
# Global role every new user gets ("user", "user-base", or "" for none).
DEFAULT_GLOBAL_ROLE = os.environ.get("CORRAL_DEFAULT_GLOBAL_ROLE", "user")

# Inventory: how often the whole fleet is re-read, clusters per sync job, parallel reads per job.
CLUSTER_SYNC_INTERVAL = int(os.environ.get("CORRAL_CLUSTER_SYNC_INTERVAL", "300"))
CLUSTER_SYNC_BATCH = int(os.environ.get("CORRAL_CLUSTER_SYNC_BATCH", "100"))
CLUSTER_SYNC_THREADS = int(os.environ.get("CORRAL_CLUSTER_SYNC_THREADS", "16"))
# Node operations (clusters/nodeops): the node-config image tag Corral asks for, and how long it waits
# for a system-upgrade-controller it installed to become available.
NODE_CONFIG_IMAGE_VERSION = os.environ.get("CORRAL_NODE_CONFIG_IMAGE_VERSION", "v0.1.0")
SUC_INSTALL_TIMEOUT = float(os.environ.get("CORRAL_SUC_INSTALL_TIMEOUT", "120"))
# The corral/etcd-snapshot image tag (backups/images/etcd-snapshot) and how long one of its runs may take.
ETCD_SNAPSHOT_IMAGE_VERSION = os.environ.get("CORRAL_ETCD_SNAPSHOT_IMAGE_VERSION", "v0.1.0")
ETCD_SNAPSHOT_TIMEOUT = float(os.environ.get("CORRAL_ETCD_SNAPSHOT_TIMEOUT", "900"))
# Resource backups of imported clusters are kept here unless a backup target is given.
# A snapshot before every version upgrade and after an rke/k3s cluster is imported (SPEC §3).
SNAPSHOT_BEFORE_UPGRADE = env_bool("CORRAL_SNAPSHOT_BEFORE_UPGRADE", True)
SNAPSHOT_AFTER_IMPORT = env_bool("CORRAL_SNAPSHOT_AFTER_IMPORT", True)
BACKUP_SCHEDULE_SECONDS = int(os.environ.get("CORRAL_BACKUP_SCHEDULE_SECONDS", "300"))
BACKUP_DIR = Path(os.environ.get("CORRAL_BACKUP_DIR", DATA_DIR / "backups"))

# ---------------------------------------------------------------------------------------------
# SAML single sign-on (portal/sso). SSO providers and the local-login switch live in the
# database and are managed in the admin; these settings only wire them into allauth.
# ---------------------------------------------------------------------------------------------
INSTALLED_APPS += ["portal.sso.apps.SSOConfig"]  # admin, template tags, local_login command (models are in "portal")
AUTHENTICATION_BACKENDS = [
    "portal.sso.backends.LocalLoginGate",  # refuses password logins when local login is off
    *AUTHENTICATION_BACKENDS,
    "portal.sso.backends.SAMLBackend",  # sessions opened by SAML logins are recorded under it
]
ACCOUNT_ADAPTER = "portal.sso.adapter.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "portal.sso.adapter.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = {"saml": {"provider_class": "portal.sso.provider.CorralSAMLProvider"}}
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"  # the IdP vouches for its users; Corral sends no verification mail
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # never attach an IdP login to a local account by e-mail address
# Break-glass: while set, superusers may sign in with a password even when local login is turned off.
CORRAL_LOCAL_LOGIN_BREAK_GLASS = env_bool("CORRAL_LOCAL_LOGIN_BREAK_GLASS", False)

# ---------------------------------------------------------------------------------------------
# CIS scans and notifiers (scans/, notifiers/). Alerts link to reports under this address.
# ---------------------------------------------------------------------------------------------
CORRAL_URL = os.environ.get("CORRAL_URL", "http://127.0.0.1:8000")
