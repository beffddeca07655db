"""Where a request comes from, with the same answer for lockouts (django-axes) and rate limits.

Behind TRUSTED_PROXY_COUNT reverse proxies, each appends the address it received the request
from to X-Forwarded-For, so the client is the entry that many places from the right; entries
further left were written by the client and prove nothing. With no trusted proxy (the
default) X-Forwarded-For is ignored and the socket's address is the client.
"""

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """The client address of a Django or DRF request (see the module docstring)."""
    meta = request.META
    remote_addr = str(meta.get("REMOTE_ADDR") or "")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote_addr
    addresses = [address.strip() for address in str(forwarded).split(",") if address.strip()]
    if not addresses:
        return remote_addr
    return addresses[-min(proxies, len(addresses))]
