"""What readiness checks: the database, the cache and the model provider.

Each check answers quickly (the database and cache clients have short timeouts) and
never raises: a failure is reported as `unavailable`, logged with its reason.
"""

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from core.database import is_database_unavailable

logger = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"
OPTIONAL_UNAVAILABLE = "optional_unavailable"
NOT_CONFIGURED = "not_configured"
READY_VALUES = (OK, OPTIONAL_UNAVAILABLE)
CACHE_PROBE_KEY = "readiness:probe"


def readiness_checks() -> dict[str, str]:
    return {"database": database_check(), "cache": cache_check(), "provider": provider_check()}


def database_check() -> str:
    try:
        connection.ensure_connection()
        if connection.vendor == "mongodb":
            connection.connection.admin.command("ping")
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        logger.warning("readiness: database unavailable: %s", type(exc).__name__)
        return UNAVAILABLE
    return OK


def cache_check() -> str:
    """A write and a read of one key. The service runs without its cache (every cache
    error is skipped), so READINESS_CACHE_OPTIONAL may declare it optional."""
    token = uuid.uuid4().hex
    try:
        cache.set(CACHE_PROBE_KEY, token, timeout=10)
        if cache.get(CACHE_PROBE_KEY) != token:
            raise ConnectionError("the cache did not return what was written")
    except Exception as exc:
        logger.warning("readiness: cache unavailable: %s", type(exc).__name__)
        return OPTIONAL_UNAVAILABLE if settings.READINESS_CACHE_OPTIONAL else UNAVAILABLE
    return OK


def provider_check() -> str:
    """The model provider is configured (not called: readiness must not spend tokens).

    LLM_PROVIDER=openai with neither OPENAI_API_KEY nor OPENAI_BASE_URL would send every
    reply to api.openai.com without a key: not configured.
    """
    from llm.providers import provider_get  # core does not depend on llm at import time

    if settings.LLM_PROVIDER == "openai" and not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        logger.warning("readiness: LLM_PROVIDER=openai without OPENAI_API_KEY or OPENAI_BASE_URL")
        return NOT_CONFIGURED
    try:
        provider_get()
    except ValueError as exc:
        logger.warning("readiness: provider not configured: %s", exc)
        return NOT_CONFIGURED
    return OK
