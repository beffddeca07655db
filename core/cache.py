"""Cache access that never fails a request: errors are logged, counted and skipped."""

import logging
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter

logger = logging.getLogger(__name__)

T = TypeVar("T")

cache_errors = Counter("chat_cache_errors_total", "Cache operations that failed and were skipped.", ["operation"])


def cache_call(operation: str, call: Callable[[], T], fallback: T) -> T:
    try:
        return call()
    except Exception:
        cache_errors.labels(operation).inc()
        logger.warning("cache %s failed; carrying on without the cache", operation, exc_info=True)
        return fallback
