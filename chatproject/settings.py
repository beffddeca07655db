"""Settings for the chat backend, read from the environment (see .env.example).

Without any environment the service runs on embedded defaults: SQLite, local-memory
cache and the offline reply provider. Production values come only from the environment.
"""

import logging
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import environ
from csp.constants import NONCE, NONE, SELF

from core.logs import logging_config, structlog_configure

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The built-in key is for DEBUG only. Without DEBUG and without DJANGO_SECRET_KEY the key stays
# empty: tools that sign nothing (collectstatic, makemigrations, mypy) still work, while the
# server refuses to start (chatproject/wsgi.py) and `check` reports core.E001, both saying how
# to set one. scripts/run writes a generated key to .env on its first run.
DEVELOPMENT_SECRET_KEY = "django-insecure-local-development-key-do-not-use-in-production-0123456789"  # noqa: S105
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if SECRET_KEY == DEVELOPMENT_SECRET_KEY or not SECRET_KEY:
    SECRET_KEY = DEVELOPMENT_SECRET_KEY if DEBUG else ""
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

MONGODB_URI = env.str("MONGODB_URI", default="")
USE_MONGODB = bool(MONGODB_URI)

if USE_MONGODB:
    # MongoDB needs ObjectIdAutoField primary keys in the contrib apps that have models.
    CONTRIB_MODEL_APPS = [
        "chatproject.mongo_apps.MongoAdminConfig",
        "chatproject.mongo_apps.MongoAuthConfig",
        "chatproject.mongo_apps.MongoContentTypesConfig",
    ]
    AXES_APP = "chatproject.mongo_apps.MongoAxesConfig"
else:
    CONTRIB_MODEL_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
    ]
    AXES_APP = "axes"

INSTALLED_APPS = [
    *CONTRIB_MODEL_APPS,
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "django_structlog",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "csp",
    AXES_APP,
    # After axes: core.admin replaces its admin pages (no date hierarchy on MongoDB).
    "core",
    "interactions",
    "messages_app",
    "llm",
    "usage",
    "audit",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Request id, the request's log context and the access line: before everything that logs.
    "core.middleware.RequestIdMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "core.middleware.AccessLogMiddleware",
    # Before anything that answers on its own (413, 400 below), so browsers can read those too.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "core.middleware.ApiPathMiddleware",
    "core.middleware.ApiInputMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
WSGI_APPLICATION = "chatproject.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
# MONGODB_URI selects MongoDB (django-mongodb-backend); otherwise DATABASE_URL, which
# defaults to a SQLite file beside manage.py.
MONGODB_SERVER_SELECTION_TIMEOUT_MS = env.int("MONGODB_SERVER_SELECTION_TIMEOUT_MS", default=3000)
MONGODB_SOCKET_TIMEOUT_MS = env.int("MONGODB_SOCKET_TIMEOUT_MS", default=10000)
# How MongoDB is used as a replica set (production runs one; so does docker-compose.yml).
# These are MongoClient options: one named in MONGODB_URI's query string wins (pymongo lets
# keyword options override the URI, so only the options the URI leaves out are passed).
#   w=majority: a write is acknowledged once a majority of members has it, so a stored
#     message, reply or reply-slot claim survives a failover (writes are not split by kind:
#     the backend has one client, and every write this service makes is one of those or
#     counts them); wTimeoutMS bounds the wait for that acknowledgement.
#   retryWrites / retryReads: a write or read interrupted by a failover or a network blip
#     is retried once on the new primary (every write here is a single-document or
#     conditional update or an insert, which MongoDB can retry safely).
#   readPreference=primary: reads see the service's own writes (a POST then a GET, the
#     conditional reply-slot claim); secondaries may lag.
MONGODB_WRITE_TIMEOUT_MS = env.int("MONGODB_WRITE_TIMEOUT_MS", default=5000)
MONGODB_CLIENT_DEFAULTS = {
    "serverSelectionTimeoutMS": MONGODB_SERVER_SELECTION_TIMEOUT_MS,
    "connectTimeoutMS": MONGODB_SERVER_SELECTION_TIMEOUT_MS,
    "socketTimeoutMS": MONGODB_SOCKET_TIMEOUT_MS,
    "w": "majority",
    "wTimeoutMS": MONGODB_WRITE_TIMEOUT_MS,
    "retryWrites": True,
    "retryReads": True,
    "readPreference": "primary",
}
_URI_OPTIONS = {name.lower() for name in parse_qs(urlsplit(MONGODB_URI).query)}
if USE_MONGODB:
    DATABASES = {
        "default": {
            "ENGINE": "django_mongodb_backend",
            # The backend reads the database name from the URI's path when NAME is empty.
            "HOST": MONGODB_URI,
            "NAME": env.str("MONGODB_NAME", default=""),
            "OPTIONS": {
                name: value for name, value in MONGODB_CLIENT_DEFAULTS.items() if name.lower() not in _URI_OPTIONS
            },
        }
    }
    DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
    # Contrib apps get migrations generated for ObjectIdAutoField primary keys.
    MIGRATION_MODULES = {
        "admin": "mongo_migrations.admin",
        "auth": "mongo_migrations.auth",
        "contenttypes": "mongo_migrations.contenttypes",
        "authtoken": "mongo_migrations.authtoken",
        "axes": "mongo_migrations.axes",
    }
else:
    DATABASES = {
        "default": {
            **env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
            # Kept open across requests (the gevent worker closes a client connection's
            # database connection when the client goes, see chatproject/gunicorn_worker.py),
            # and checked before reuse after an error.
            "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE_SECONDS", default=600),
            "CONN_HEALTH_CHECKS": True,
        }
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = {
            # WAL and synchronous=NORMAL are set on each new connection by core.sqlite.
            # SQLite's own busy handler sleeps inside the C library, stopping every request
            # of a gevent worker: off. core.sqlite waits for the lock instead, yielding.
            "timeout": 0,
            # Atomic blocks take the write lock up front instead of failing on upgrade.
            "transaction_mode": "IMMEDIATE",
            **DATABASES["default"].get("OPTIONS", {}),
        }
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# How long a write waits for another connection's write lock before failing with "database
# is locked" (503). Writes here are single statements of well under a millisecond.
SQLITE_BUSY_TIMEOUT_SECONDS = env.float("SQLITE_BUSY_TIMEOUT_SECONDS", default=2.0)

# --- Cache ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CACHE_SOCKET_TIMEOUT_SECONDS = env.float("CACHE_SOCKET_TIMEOUT_SECONDS", default=0.25)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chat",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": CACHE_SOCKET_TIMEOUT_SECONDS,
                "SOCKET_TIMEOUT": CACHE_SOCKET_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "chat",
        }
    }
API_CACHE_TIMEOUT_SECONDS = env.int("API_CACHE_TIMEOUT_SECONDS", default=300)

# django-axes checks every authenticate() call (admin login, token exchange) first.
AUTHENTICATION_BACKENDS = [
    "core.auth.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]

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

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Hashed, compressed file names once collectstatic has run (the Docker image, the run
# script); plain names served from the apps' folders before that (tests). The run of
# collectstatic that writes the first manifest cannot find one: it says so with
# DJANGO_STATIC_MANIFEST=true (the Dockerfile, scripts/run).
_COLLECTED = env.bool("DJANGO_STATIC_MANIFEST", default=(STATIC_ROOT / "staticfiles.json").exists())
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if _COLLECTED
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not _COLLECTED

# --- Request limits -------------------------------------------------------------------
REQUEST_BODY_MAX_BYTES = env.int("REQUEST_BODY_MAX_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES
# An over-limit body up to this size is read and dropped before the 413, so the connection
# stays usable for the client's next request (core.middleware.RequestBodyLimitMiddleware).
REQUEST_BODY_DRAIN_MAX_BYTES = env.int("REQUEST_BODY_DRAIN_MAX_BYTES", default=4 * REQUEST_BODY_MAX_BYTES)
MESSAGE_CONTENT_MAX_CHARS = env.int("MESSAGE_CONTENT_MAX_CHARS", default=32_000)
INTERACTION_PROMPT_MAX_CHARS = env.int("INTERACTION_PROMPT_MAX_CHARS", default=32_000)

# --- Client address ---------------------------------------------------------------------
# How many reverse proxies in front of the service append to X-Forwarded-For. 0: the header
# is ignored (a client could write anything in it). Used by the lockouts and the rate limits.
TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0)

# --- REST framework and OpenAPI -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "core.renderers.SafeJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON only, nesting and strings checked before anything is stored (core.parsers).
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.ContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    # Cache errors are caught where the cache is used (core.cache), so that they are counted.
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.FailOpenUserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_RATE", default="600/minute"),
        "anon": env.str("API_ANON_THROTTLE_RATE", default="60/minute"),
        # Posting (and retrying) messages spends model money: a stricter limit of its own.
        "message_post": env.str("API_MESSAGE_POST_THROTTLE_RATE", default="30/minute"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # The client address comes from core.network.client_ip (TRUSTED_PROXY_COUNT); this is the
    # same number for anything in DRF that reads it itself.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Chat backend API",
    "DESCRIPTION": (
        "Conversations (interactions) with an LLM. Every error answers with the envelope "
        '`{"error": {"message", "type", "param", "code"}}`.'
    ),
    "VERSION": "1.0.0",
    # OpenAPI 3.1 (JSON Schema 2020-12): `propertyNames` states metadata's key-length limit,
    # which 3.0 cannot express (a client generator or fuzzer would send keys the API refuses).
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags and operation ids start after /api/v1 (interactions_list, not api_v1_interactions_list).
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    # core.schema.postprocess_schema: UUID path ids, every error status, closed input objects.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.postprocess_schema"],
    "ENUM_NAME_OVERRIDES": {
        "MessageRoleEnum": "messages_app.models.MessageRole",
        "MessageStatusEnum": "messages_app.models.MessageStatus",
        "PromptRoleEnum": "interactions.models.PromptRole",
    },
}

# --- LLM provider ---------------------------------------------------------------------
# "auto" uses the OpenAI-compatible provider when OPENAI_API_KEY or OPENAI_BASE_URL is
# set and the offline provider otherwise; "openai" and "offline" force one of them.
LLM_PROVIDER = env.str("LLM_PROVIDER", default="auto")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
LLM_DEFAULT_MODEL = env.str("LLM_DEFAULT_MODEL", default="gpt-4o-mini")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=60.0)
LLM_CONNECT_TIMEOUT_SECONDS = env.float("LLM_CONNECT_TIMEOUT_SECONDS", default=5.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=1)
# Calls to the provider in flight at once per worker process (its connection pool's size);
# more wait for a free connection. Per instance: GUNICORN_WORKERS times this.
LLM_MAX_CONCURRENT_CALLS = env.int("LLM_MAX_CONCURRENT_CALLS", default=250)
LLM_MAX_OUTPUT_TOKENS = env.int("LLM_MAX_OUTPUT_TOKENS", default=4096)
LLM_HISTORY_TOKEN_BUDGET = env.int("LLM_HISTORY_TOKEN_BUDGET", default=12_000)
# A claim on an interaction's reply slot older than this is considered abandoned
# (a worker died mid-reply) and may be taken over.
LLM_REPLY_LEASE_SECONDS = env.int("LLM_REPLY_LEASE_SECONDS", default=300)

# --- Replies the user stays in control of (follow, resume, cancel) ---------------------
# While a reply is generated its text is stored every LLM_REPLY_PROGRESS_INTERVAL_SECONDS
# or every LLM_REPLY_PROGRESS_CHARS characters, whichever comes first, but only once it
# grew by LLM_REPLY_PROGRESS_GROWTH of what is stored, so the characters written per reply
# stay under (2 + 1/growth) times its length.
LLM_REPLY_PROGRESS_INTERVAL_SECONDS = env.float("LLM_REPLY_PROGRESS_INTERVAL_SECONDS", default=0.5)
LLM_REPLY_PROGRESS_CHARS = env.int("LLM_REPLY_PROGRESS_CHARS", default=400)
LLM_REPLY_PROGRESS_GROWTH = env.float("LLM_REPLY_PROGRESS_GROWTH", default=0.25)
# How often the process generating replies looks for cancel requests, and how long the
# cancel endpoint waits for the reply's outcome before answering 202.
LLM_REPLY_CANCEL_POLL_SECONDS = env.float("LLM_REPLY_CANCEL_POLL_SECONDS", default=0.25)
# After a failed write whose clean-up failed too, how often the clean-up is retried (messages_app.claim_finaliser).
LLM_REPLY_FINALISE_RETRY_SECONDS = env.float("LLM_REPLY_FINALISE_RETRY_SECONDS", default=1.0)
LLM_REPLY_CANCEL_WAIT_SECONDS = env.float("LLM_REPLY_CANCEL_WAIT_SECONDS", default=3.0)
# Redis carrying live text to followers (Redis Streams); defaults to REDIS_URL; empty: followers
# read the stored progress.
REPLY_RELAY_REDIS_URL = env.str("REPLY_RELAY_REDIS_URL", default=REDIS_URL)
REPLY_RELAY_MAX_ENTRIES = env.int("REPLY_RELAY_MAX_ENTRIES", default=2000)
REPLY_RELAY_TTL_SECONDS = env.int("REPLY_RELAY_TTL_SECONDS", default=900)
REPLY_RELAY_SOCKET_TIMEOUT_SECONDS = env.float("REPLY_RELAY_SOCKET_TIMEOUT_SECONDS", default=0.5)
REPLY_RELAY_BREAKER_SECONDS = env.float("REPLY_RELAY_BREAKER_SECONDS", default=10.0)
REPLY_RELAY_QUEUE_MAX = env.int("REPLY_RELAY_QUEUE_MAX", default=10_000)
REPLY_RELAY_MAX_CONNECTIONS = env.int("REPLY_RELAY_MAX_CONNECTIONS", default=500)
# Followers: how long one wait for new text lasts, how often the stored reply is polled
# without the relay, the heartbeat comment and the reconnection delay suggested to clients.
REPLY_STREAM_WAIT_SECONDS = env.float("REPLY_STREAM_WAIT_SECONDS", default=1.0)
REPLY_STREAM_POLL_SECONDS = env.float("REPLY_STREAM_POLL_SECONDS", default=0.5)
REPLY_STREAM_HEARTBEAT_SECONDS = env.float("REPLY_STREAM_HEARTBEAT_SECONDS", default=15.0)
REPLY_STREAM_RETRY_MS = env.int("REPLY_STREAM_RETRY_MS", default=2000)
REPLY_FOLLOWERS_PER_USER = env.int("REPLY_FOLLOWERS_PER_USER", default=10)
REPLY_STREAM_TICKET_SECONDS = env.int("REPLY_STREAM_TICKET_SECONDS", default=60)

# --- Security (production) ------------------------------------------------------------
# X-Forwarded-Proto says the request came over HTTPS only when trusted proxies set it: without
# one (DJANGO_TRUSTED_PROXY_COUNT=0) any client could write it, get https:// links (stream_url)
# and skip SECURE_SSL_REDIRECT. gunicorn.conf.py leaves the decision to this setting.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT > 0 else None
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Health checks and the metrics scrape come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

CSRF_FAILURE_VIEW = "core.views.csrf_failure"

# --- Staff admin ----------------------------------------------------------------------
# An interaction's admin page shows its latest messages, and links to the rest.
ADMIN_TRANSCRIPT_MESSAGES = env.int("ADMIN_TRANSCRIPT_MESSAGES", default=50)

# --- Health ---------------------------------------------------------------------------
# /readyz answers 503 while the cache is down unless the cache is declared optional (the
# service does run without it: every cache error is skipped, counted and logged).
# Every instance shares one Redis, and the service runs without it (fail-open): a cache outage
# that took every instance out of rotation would become a full outage.
READINESS_CACHE_OPTIONAL = env.bool("READINESS_CACHE_OPTIONAL", default=True)

# --- Logs -----------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line; console: key=value lines. Every line of a
# request carries its request_id (X-Request-ID, validated, or generated) and user_id.
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
structlog_configure()
# core.middleware.RequestIdMiddleware validates the header before django-structlog reads it.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
# django-structlog's own request_started/finished lines are left to DEBUG: the access line
# (core.middleware.AccessLogMiddleware) is the one line per request. request_failed (with
# the traceback) stays an ERROR.
DJANGO_STRUCTLOG_STATUS_DEFAULT_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_STATUS_4XX_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_STATUS_5XX_LOG_LEVEL = logging.DEBUG

# --- Failed logins (django-axes) --------------------------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# locked out for the cool-off; staff unlock earlier by deleting the attempt in the admin.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.network.client_ip"
AXES_VERBOSE = False

# --- Content-Security-Policy (django-csp) -----------------------------------------------
# Every answer carries it; the admin and the docs pages are what it protects. Nothing loads
# from another origin; scripts only from our static files or with the page's nonce (Redoc's
# start-up script). The docs views widen style-src for the styles Swagger UI and Redoc inject.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- CORS for browser front ends on other origins (django-cors-headers) ----------------
# Off by default: no origin is allowed until listed. Token authentication, so no cookies.
CORS_ALLOWED_ORIGINS = env.list("DJANGO_CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/v1/.*$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "idempotency-key"]
CORS_EXPOSE_HEADERS = ["idempotent-replayed", "retry-after"]

# --- /metrics ---------------------------------------------------------------------------
# Answered only to a request with `Authorization: Bearer <METRICS_BEARER_TOKEN>` (when set) or
# from an address in METRICS_ALLOWED_IPS (addresses or networks; loopback by default).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
