"""Response caching for what clients poll, with invalidation that cannot serve stale pages.

- An interaction's detail and message pages are keyed by its `version` column, which
  every write bumps in the same update as the write. The key is read from the database
  row that the ownership check loads anyway, so a failed cache write cannot make a later
  read stale.
- A user's interaction list page is keyed by the ids and versions of the rows it shows
  (and whether more follow), read by the page's own index-served query: any write to a
  listed interaction, a new one or a deleted one changes the key; a hit saves the
  serializing and rendering. Nothing about the list is
  kept in the cache but the rendered page, so a cache that is not shared between
  processes (the local-memory default, one per gunicorn worker) is as correct as Redis.

Cache errors never fail a request: they are counted and the request reads the database.

What is cached is the rendered JSON body (cached_response), so a hit costs one cache read:
no serializer, no rendering. Pollers get an ETag derived from the same database reads as
the keys above; `If-None-Match` with it answers 304 and no body, so an idle poll costs the
authentication, those indexed reads and nothing else.
"""

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.utils.http import parse_etags
from prometheus_client import Counter
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.cache import cache_call as _safe

T = TypeVar("T")

cache_requests = Counter("chat_api_cache_requests_total", "API response cache look-ups.", ["result"])


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


def version_etag(*parts: Any) -> str:
    """A weak ETag for a response that changes only when `parts` do (an id and version, list parameters)."""
    digest = hashlib.blake2b(":".join(str(part) for part in parts).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def cached_response(
    request: Request, *, key: str, compute: Callable[[], Any], etag: str | None = None, timeout: int | None = None
) -> HttpResponseBase:
    """A cacheable read's response: 304 when the client holds its ETag, else the body, rendered once and cached.

    `key` and `etag` must come from what this request read from the database (the
    interaction's version) or validated, never from the cache itself. The ETag sent is the
    representation's: `etag` and the negotiated media type, since the JSON and the browsable
    API's HTML of one version are different bytes (`Vary: Accept`). `If-None-Match: *` matches
    any representation (RFC 9110 13.1.2): the object exists once the view got this far. JSON
    clients get the cached rendered bytes; other renderers (the browsable API) get the cached
    data rendered.
    """
    if etag is not None:
        etag = version_etag(etag, getattr(request, "accepted_media_type", ""))
    if etag is not None and _none_match(request, etag):
        response: HttpResponseBase = HttpResponseNotModified()
    elif isinstance(getattr(request, "accepted_renderer", None), JSONRenderer):
        renderer: JSONRenderer = request.accepted_renderer  # type: ignore[assignment]
        media_type = request.accepted_media_type

        def rendered() -> bytes:
            return renderer.render(compute(), media_type, {"request": request})

        response = HttpResponse(cached(f"{key}:{media_type}", rendered, timeout=timeout), content_type=media_type)
    else:
        response = Response(cached(key, compute, timeout=timeout))
    if etag is not None:
        response["ETag"] = etag
    return response


def _none_match(request: Request, etag: str) -> bool:
    """Whether If-None-Match names `etag` (the weak comparison, as for a GET) or is `*`."""
    tags = parse_etags(request.headers.get("If-None-Match", ""))
    return "*" in tags or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in tags}
