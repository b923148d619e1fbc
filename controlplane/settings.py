"""Settings of the control plane, read from the environment (django-environ).

Defaults run the one-machine demo safely (eager tasks, DEBUG must be asked for, and
the demo's embedded PostgreSQL under ``var/``, which ``make run`` starts). PostgreSQL
is the only database: any other engine is refused. With DEBUG off the process refuses
to start on a default secret, a default database or a missing broker: production
never runs on demo values.
"""

import ipaddress
import ssl
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from controlplane.ratelimit import Rate

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A marker, not a secret: refused whenever DEBUG is off.
DEMO_SECRET_KEY = "insecure-demo-key-never-use-in-production"  # noqa: S105
# The demo's database: the embedded PostgreSQL that ``make run`` starts with its data in
# var/postgres (devtools/embedded_postgres.py, a dev tool), on its unix socket there.
DEMO_DATABASE_URL = f"postgres://postgres@/controlplane?host={BASE_DIR / 'var' / 'postgres'}"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEMO_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATABASES = {"default": env.db_url("DATABASE_URL", default=DEMO_DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    # One engine: every rule (placement, roll-ups, audit triggers) is written for it.
    raise ImproperlyConfigured(
        "DATABASE_URL must name a PostgreSQL database (postgres://...), the only database "
        f"this service runs on; it names {DATABASES['default']['ENGINE']!r}."
    )
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A database host that drops packets must fail a request in seconds (503, see
# controlplane/outage.py), not hang it until gunicorn kills the worker.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT_SECONDS", default=5)
)
# Server-side prepared statements: the login path's queries are planned once per
# connection. Turn off behind a PgBouncer older than 1.21 in transaction mode.
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)

# A shared cache (Redis) across web replicas; sessions live there when it is set, so a
# login costs no database commit for the session itself. Without it (the demo),
# sessions stay in the database.
CACHE_URL = env.str("CACHE_URL", default="")
# Redis over TLS (``rediss://``): the server's certificate is always verified,
# against the system's authorities or the one in ``REDIS_TLS_CA_FILE`` (a managed
# Redis's own CA). kombu alone would connect without checking (CERT_NONE), and
# Celery's result backend refuses a rediss:// URL that does not say.
REDIS_TLS_CA_FILE = env.str("REDIS_TLS_CA_FILE", default="")
REDIS_TLS = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
if REDIS_TLS_CA_FILE:
    REDIS_TLS["ssl_ca_certs"] = REDIS_TLS_CA_FILE
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "controlplane.cache.SharedClientRedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "controlplane",
        }
    }
    if CACHE_URL.startswith("rediss://"):
        CACHES["default"]["OPTIONS"] = dict(REDIS_TLS)
    SESSION_ENGINE = "controlplane.sessions"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Celery: no broker means eager tasks, which only the demo (DEBUG on) may use.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_BROKER_URL.startswith("rediss://"):
    CELERY_BROKER_USE_SSL = dict(REDIS_TLS)
if CELERY_RESULT_BACKEND.startswith("rediss://"):
    CELERY_REDIS_BACKEND_USE_SSL = dict(REDIS_TLS)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_TASK_MAX_RETRIES = env.int("CELERY_TASK_MAX_RETRIES", default=5)
# Redis transport: a message a worker took and never acknowledged (tasks are acked
# late; the worker was killed) goes back on its queue after the visibility timeout.
# It applies to every message, including those of tasks still running or waiting for
# their retry countdown, so it must exceed the longest task's hard time limit (usage
# retention: 3,300 s) plus a retry's countdown, or such tasks run twice. Allocation
# does not wait for it: beat's placement sweep asks again for lost placements.
CELERY_VISIBILITY_TIMEOUT_SECONDS = env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600)
# A worker refuses to start when a task it consumes has a hard time limit (plus a
# retry's countdown) at or above the visibility timeout (controlplane/celery.py).
# Only fault tests turn the check off, to see a killed worker's task come back at once.
CELERY_VISIBILITY_TIMEOUT_CHECK = env.bool("CELERY_VISIBILITY_TIMEOUT_CHECK", default=True)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    # Workers look for such messages every tenth of the timeout (1 s to 60 s; kombu's
    # own default is every 100 s, whatever the timeout).
    "unacked_restore_interval": max(1, min(60, CELERY_VISIBILITY_TIMEOUT_SECONDS // 10)),
    "unacked_restore_throttle": 1,
}
# Celery's Django fixup closes the database connection around every task unless told
# to reuse it: a new PostgreSQL session per task costs more than placing a room.
# Connections are still closed every N tasks and whenever CONN_MAX_AGE expires.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# One queue per kind of work, so that placing a meeting never waits behind a report.
CELERY_QUEUES = {
    "default": "Anything not routed elsewhere.",
    "allocation": "Placing rooms on media nodes: latency-critical.",
    "health": "Probing media nodes and reconciling their rooms.",
    "provisioning": "Agent imports and directory sync.",
    "reports": "Usage roll-ups, exports and monthly reports.",
    "audit": "Audit-trail verification.",
}
CELERY_TASK_ROUTES = {
    "media_nodes.tasks.room_*": {"queue": "allocation"},
    "media_nodes.tasks.media_node_*": {"queue": "health"},
    "accounts.tasks.*": {"queue": "provisioning"},
    "scim.tasks.*": {"queue": "provisioning"},
    "licensing.tasks.*": {"queue": "reports"},
    "audit.tasks.*": {"queue": "audit"},
    "usage.tasks.*": {"queue": "reports"},
}

# Fernet keys encrypting media nodes' API secrets, newest first (rotation); derived
# from SECRET_KEY when unset (demo).
MEDIA_NODE_SECRET_KEYS = env.list("MEDIA_NODE_SECRET_KEYS", default=[])
# Calls to media nodes (probes, reconciliation) and health thresholds: a node is down
# after N failed probes and back only after M good ones, so a flapping node does not
# bounce meetings.
MEDIA_NODE_TIMEOUT_SECONDS = env.float("MEDIA_NODE_TIMEOUT_SECONDS", default=2.0)
MEDIA_NODE_PROBE_EVERY_SECONDS = env.float("MEDIA_NODE_PROBE_EVERY_SECONDS", default=3.0)
MEDIA_NODE_DOWN_AFTER_FAILURES = env.int("MEDIA_NODE_DOWN_AFTER_FAILURES", default=3)
MEDIA_NODE_UP_AFTER_SUCCESSES = env.int("MEDIA_NODE_UP_AFTER_SUCCESSES", default=3)
MEDIA_NODE_REPLACE_BATCH = env.int("MEDIA_NODE_REPLACE_BATCH", default=100)
# Joining: how long a join waits for the allocation task before answering 202, and
# how long the LiveKit access token it returns is valid.
JOIN_WAIT_SECONDS = env.float("JOIN_WAIT_SECONDS", default=3.0)
# Placement requests are coalesced: up to ALLOCATION_DRAINERS tasks at once each place
# ALLOCATION_BATCH rooms per pop (see media_nodes/queueing.py).
ALLOCATION_DRAINERS = env.int("ALLOCATION_DRAINERS", default=4)
ALLOCATION_BATCH = env.int("ALLOCATION_BATCH", default=50)
JOIN_TOKEN_TTL_SECONDS = env.int("JOIN_TOKEN_TTL_SECONDS", default=300)
# Placement requests are also kept in the database until answered; beat pushes again
# those older than this (Redis restarted, a drainer killed), every as many seconds.
PLACEMENT_SWEEP_EVERY_SECONDS = env.float("PLACEMENT_SWEEP_EVERY_SECONDS", default=5.0)

# Usage roll-up and personal data. The roll-up runs every N seconds on the days that
# changed; each run re-reads sessions changed up to OVERLAP seconds before its last
# watermark (webhook transactions committing late). Participant sessions are
# pseudonymised after their ministry's retention (``Ministry.retention_days``; this
# default for sessions without a ministry) and deleted PURGE_AFTER days later.
USAGE_ROLLUP_EVERY_SECONDS = env.float("USAGE_ROLLUP_EVERY_SECONDS", default=600)
USAGE_ROLLUP_OVERLAP_SECONDS = env.int("USAGE_ROLLUP_OVERLAP_SECONDS", default=300)
USAGE_RETENTION_EVERY_SECONDS = env.float("USAGE_RETENTION_EVERY_SECONDS", default=24 * 3600)
USAGE_DEFAULT_RETENTION_DAYS = env.int("USAGE_DEFAULT_RETENTION_DAYS", default=365)
USAGE_PURGE_AFTER_DAYS = env.int("USAGE_PURGE_AFTER_DAYS", default=365)
# Key of the HMAC that turns identities into pseudonyms; derived from SECRET_KEY when
# unset. Changing it splits an agent's old and new pseudonyms.
USAGE_PSEUDONYM_KEY = env.str("USAGE_PSEUDONYM_KEY", default="")
# Webhook receipts (replay protection) are kept this long, then purged nightly.
WEBHOOK_RECEIPT_KEEP_DAYS = env.int("WEBHOOK_RECEIPT_KEEP_DAYS", default=7)

# Crontab schedules below are in the service's time zone (interval ones have none).
CELERY_TIMEZONE = "Europe/Paris"
CELERY_BEAT_SCHEDULE = {
    # The month before's reports, made on the 1st; run every night, so that a 1st
    # beat missed (down at 02:00, or restarted with its schedule file lost) is
    # caught up the next night. Reports already made are kept, so the other nights
    # cost one query.
    "usage-monthly-reports": {
        "task": "usage.tasks.monthly_reports",
        "schedule": crontab(minute=0, hour=2),
    },
    "usage-rollup": {
        "task": "usage.tasks.usage_rollup",
        "schedule": USAGE_ROLLUP_EVERY_SECONDS,
        "options": {"expires": USAGE_ROLLUP_EVERY_SECONDS},
    },
    "usage-retention-daily": {
        "task": "usage.tasks.usage_retention",
        "schedule": USAGE_RETENTION_EVERY_SECONDS,
    },
    "audit-chain-verify-nightly": {
        "task": "audit.tasks.audit_chain_verify_task",
        "schedule": env.float("AUDIT_VERIFY_EVERY_SECONDS", default=24 * 3600),
    },
    "media-nodes-probe": {
        "task": "media_nodes.tasks.media_node_probe_all",
        "schedule": MEDIA_NODE_PROBE_EVERY_SECONDS,
        "options": {"expires": MEDIA_NODE_PROBE_EVERY_SECONDS},
    },
    "rooms-placement-sweep": {
        "task": "media_nodes.tasks.room_placement_sweep",
        "schedule": PLACEMENT_SWEEP_EVERY_SECONDS,
        "options": {"expires": PLACEMENT_SWEEP_EVERY_SECONDS},
    },
    "media-nodes-reconcile": {
        "task": "media_nodes.tasks.media_node_reconcile_all",
        "schedule": env.float("MEDIA_NODE_RECONCILE_EVERY_SECONDS", default=300),
    },
    "rooms-webhook-receipts-purge": {
        "task": "rooms.tasks.webhook_receipts_purge",
        "schedule": crontab(minute=30, hour=3),
    },
    "agents-erase-due-hourly": {
        "task": "scim.tasks.agents_erase_due_task",
        "schedule": env.float("ERASURE_EVERY_SECONDS", default=3600),
    },
}
# Nobody reads the results of beat's tasks. Sent without one, beat does not subscribe
# to it in the result store first: while Redis is away that subscription held beat
# up to 20 s per task (and every other entry with it), and Redis kept the results.
for _entry in CELERY_BEAT_SCHEDULE.values():
    _entry.setdefault("options", {})["ignore_result"] = True

if not DEBUG:
    problems = []
    if SECRET_KEY == DEMO_SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY is the demo default or shorter than 50 characters")
    if "DATABASE_URL" not in env:
        problems.append(
            "DATABASE_URL is not set (the embedded PostgreSQL under var/ is for the demo only)"
        )
    if not CELERY_BROKER_URL:
        problems.append("CELERY_BROKER_URL is not set (eager tasks are for the demo only)")
    if problems:
        raise ImproperlyConfigured(
            "Refusing to start with DEBUG off: " + "; ".join(problems) + ". "
            "Set them in the environment, or set DEBUG=1 for the local demo."
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "dsfr",
    "controlplane",
    "audit",
    "accounts",
    "licensing",
    "media_nodes",
    "rooms",
    "console",
    "scim",
    "usage",
]

MIDDLEWARE = [
    # Outermost: every answer, even a redirect to HTTPS, has an id, a log line and a count.
    "controlplane.logs.RequestIdMiddleware",
    "controlplane.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "controlplane.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "console.middleware.FrenchFirstLocaleMiddleware",
    "controlplane.sessions.SessionStoreGuard",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.oidc.views.ProConnectSessionRefresh",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.console",
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.Agent"
AUTHENTICATION_BACKENDS = [
    "accounts.oidc.backend.ProConnectBackend",
    # Django admin accounts with a password (staff only) and the demo's account picker.
    "django.contrib.auth.backends.ModelBackend",
]

# ProConnect (OpenID Connect). Endpoints and keys come from the discovery document.
OIDC_OP_DISCOVERY_URL = env.str("OIDC_OP_DISCOVERY_URL", default="")
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_ENABLED = bool(OIDC_OP_DISCOVERY_URL and OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET)
OIDC_RP_SCOPES = env.str(
    "OIDC_RP_SCOPES",
    default="openid given_name usual_name email uid siret idp_id organizational_unit",
)
OIDC_ACR_VALUES = env.str("OIDC_ACR_VALUES", default="eidas1")
OIDC_MIN_ACR = env.str("OIDC_MIN_ACR", default="eidas1")
OIDC_AUTH_REQUEST_EXTRA_PARAMS = {"acr_values": OIDC_ACR_VALUES}
OIDC_USE_PKCE = env.bool("OIDC_USE_PKCE", default=True)
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_STATE_SIZE = 48  # ProConnect requires at least 32 characters
OIDC_NONCE_SIZE = 48
OIDC_USERINFO_ACCEPT_JSON = env.bool("OIDC_USERINFO_ACCEPT_JSON", default=True)
OIDC_TIMEOUT = (3.05, env.float("OIDC_TIMEOUT_SECONDS", default=10.0))
# Egress proxy towards ProConnect, if the platform needs one (the environment's
# HTTP(S)_PROXY variables are not read: looking them up costs on every call).
OIDC_PROXY = env.str("OIDC_PROXY", default="")
OIDC_DISCOVERY_TTL_SECONDS = env.int("OIDC_DISCOVERY_TTL_SECONDS", default=3600)
# The issuer the discovery document must name (OpenID Connect Discovery 4.3); empty
# means the discovery URL without its "/.well-known/openid-configuration".
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default="")
# Signing keys are fetched again after this long, so a key the provider dropped stops
# being trusted; a token naming an unknown kid (or failing with a known one) fetches
# them at once, but at most once per OIDC_JWKS_MIN_REFETCH_SECONDS for all processes.
OIDC_JWKS_TTL_SECONDS = env.int("OIDC_JWKS_TTL_SECONDS", default=3600)
OIDC_JWKS_MIN_REFETCH_SECONDS = env.float("OIDC_JWKS_MIN_REFETCH_SECONDS", default=60.0)
# Before sending an agent to the provider, ask it again when it has been silent (or
# failing) for this long, so that a provider that is down gets a clear page here.
OIDC_PROVIDER_CHECK_SECONDS = env.float("OIDC_PROVIDER_CHECK_SECONDS", default=5.0)
OIDC_CLOCK_SKEW_SECONDS = env.int("OIDC_CLOCK_SKEW_SECONDS", default=60)
# Silent re-authentication (prompt=none) once the ID token is this old.
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env.int("OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS", default=900)
OIDC_EXEMPT_URLS = ["/healthz", "/readyz", "console:login", "oidc_logout_callback"]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"

# The demo's console login lists the demo accounts; it exists only with DEBUG on.
DEMO_LOGIN = DEBUG and env.bool("DEMO_LOGIN", default=True)

LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND",
            default="whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Security: safe defaults behind a TLS-terminating load balancer.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # the provider's redirect back to the callback is top-level
# No script of this site reads the CSRF cookie (forms carry the token; Swagger UI gets
# it in its script), so scripts may not read it at all.
CSRF_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
# Behind the load balancer, audit events take the client address from the last
# X-Forwarded-For entry (the one the balancer appended); never trust it otherwise.
TRUST_X_FORWARDED_FOR = env.bool("TRUST_X_FORWARDED_FOR", default=False)
# Content Security Policy (controlplane/security.py): no inline script or style, no
# third-party origin. Forms may also post (and redirect) to these origins, besides the
# identity provider's, which is added from OIDC_OP_DISCOVERY_URL.
CSP_FORM_ACTION_EXTRA = env.list("CSP_FORM_ACTION_EXTRA", default=[])


def _rate(name: str, default: str) -> Rate:
    try:
        return Rate.parse(env.str(name, default=default), name=name)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


# Rate limits (controlplane/ratelimit.py), "N/period" with period s, m, h or d (e.g.
# 5m); "0/m" turns one off. Shared by the replicas through CACHE_URL (per process
# without it). Login limits count per client address, and a ministry behind one NAT
# shares one: LOGIN counts login starts (/oidc/authenticate/; silent re-logins do not
# pass there), LOGIN_FAILURES refused callbacks (forged or replayed answers), after
# which that address's callbacks get 429 until the window ends.
RATE_LIMIT_LOGIN = _rate("RATE_LIMIT_LOGIN", "600/m")
RATE_LIMIT_LOGIN_FAILURES = _rate("RATE_LIMIT_LOGIN_FAILURES", "30/m")
RATE_LIMIT_TOKENS = _rate("RATE_LIMIT_TOKENS", "20/h")
# SCIM: a directory token that authenticated has its own bucket, sized so that a first
# sync (two requests a user: the probe, then the create; Entra ID does not slow down
# before a 429) runs at the service's speed: 20,000 agents at 150 users/s is 300
# requests a second. Requests that fail to authenticate (no token, unknown, revoked,
# malformed) count against their client address, with a tight limit of their own.
RATE_LIMIT_SCIM = _rate("RATE_LIMIT_SCIM", "30000/m")
RATE_LIMIT_SCIM_FAILURES = _rate("RATE_LIMIT_SCIM_FAILURES", "120/m")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.ReadOnlyUnlessAdmin"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "controlplane.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Visio control plane API",
    "DESCRIPTION": "Ministries, agents, roles, API tokens and audit trail of the "
    "sovereign videoconference service.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "accounts.models.Role",
        "TokenRoleEnum": "accounts.models.TOKEN_ROLE_CHOICES",
        "MinistryStateEnum": "accounts.models.Ministry.State",
        "RolloutStatusEnum": "usage.selectors.ROLLOUT_STATUS_CHOICES",
    },
}

# CSV imports larger than this are refused with a size message.
AGENT_IMPORT_MAX_BYTES = env.int("AGENT_IMPORT_MAX_BYTES", default=50_000_000)

# Usage exports: the longest period one export may cover, in days.
EXPORT_MAX_DAYS = env.int("EXPORT_MAX_DAYS", default=3660)

# API tokens: how long one lives unless the creator says otherwise.
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
API_TOKEN_MAX_DAYS = env.int("API_TOKEN_MAX_DAYS", default=366)
# Directory (SCIM) tokens: their lifetime (the default, and the most an admin may
# choose), how long a replaced token stays valid beside its successor (an admin may
# choose 0 to SCIM_TOKEN_MAX_OVERLAP_DAYS), and how early the console and the
# visio_directory_tokens gauge flag a token as expiring.
SCIM_TOKEN_LIFETIME_DAYS = env.int("SCIM_TOKEN_LIFETIME_DAYS", default=365)
SCIM_TOKEN_OVERLAP_DAYS = env.int("SCIM_TOKEN_OVERLAP_DAYS", default=7)
SCIM_TOKEN_MAX_OVERLAP_DAYS = env.int("SCIM_TOKEN_MAX_OVERLAP_DAYS", default=30)
SCIM_TOKEN_WARN_DAYS = env.int("SCIM_TOKEN_WARN_DAYS", default=14)
# The readiness probe gives the broker this long to answer.
READYZ_TIMEOUT_SECONDS = env.float("READYZ_TIMEOUT_SECONDS", default=2.0)

# Prometheus (controlplane/metrics.py). /metrics answers a bearer METRICS_TOKEN, or a
# direct request (not through the load balancer) from METRICS_ALLOWED_NETWORKS.
# PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself) shares counters between
# the processes of a pod; workers serve theirs on CELERY_METRICS_PORT (0: off).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not a network (e.g. 10.0.0.0/8)"
        ) from exc
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
CELERY_METRICS_ADDR = env.str("CELERY_METRICS_ADDR", default="0.0.0.0")  # noqa: S104

# Logs go to stderr: one JSON object per line in production, readable lines with
# DEBUG; both carry the request id and are redacted (controlplane/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "controlplane.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "controlplane.logs.JsonFormatter"},
        "text": {"()": "controlplane.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own handlers would print unredacted lines: everything goes through
        # the one above. runserver's request lines carry query strings (OIDC codes):
        # the access log (controlplane.access) replaces them.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "level": "WARNING", "propagate": True},
    },
}
