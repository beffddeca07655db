"""Response caching for what clients poll, with invalidation that cannot serve stale pages.

- An interaction's detail and message pages are keyed by its `version` column, which
  every write bumps in the same update as the write. The key is read from the database
  row that the ownership check loads anyway, so a failed cache write cannot make a later
  read stale.
- A user's interaction list is keyed by a per-owner version kept in the cache and
  replaced on every write. If that replacement fails (cache outage), the list pages
  cached before it expire after LIST_CACHE_TIMEOUT_SECONDS at the latest.

Cache errors never fail a request: they are counted and the request reads the database.
"""

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from prometheus_client import Counter

from core.cache import cache_call as _safe

T = TypeVar("T")
LIST_CACHE_TIMEOUT_SECONDS = 60

cache_requests = Counter("chat_api_cache_requests_total", "API response cache look-ups.", ["result"])


def _owner_version_key(owner_id: Any) -> str:
    return f"interactions:owner:{owner_id}:version"


def owner_list_version(owner_id: Any) -> str:
    key = _owner_version_key(owner_id)
    version = _safe("get", lambda: cache.get(key), None)
    if version is None:
        version = uuid.uuid4().hex
        _safe("set", lambda: cache.add(key, version, timeout=None), False)
    return str(version)


def interaction_cache_invalidate(*, owner_id: Any, interaction_id: Any) -> None:
    """Called after every write. Detail and message keys need nothing: they carry `version`."""
    _safe("set", lambda: cache.set(_owner_version_key(owner_id), uuid.uuid4().hex, timeout=None), None)


def cached(key: str, compute: Callable[[], T], *, timeout: int | None = None) -> T:
    hit = _safe("get", lambda: cache.get(key), None)
    if hit is not None:
        cache_requests.labels("hit").inc()
        return hit
    cache_requests.labels("miss").inc()
    value = compute()
    ttl = settings.API_CACHE_TIMEOUT_SECONDS if timeout is None else timeout
    _safe("set", lambda: cache.set(key, value, timeout=ttl), None)
    return value
