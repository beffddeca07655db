from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from core.cache import cache_call
from core.network import client_ip


class FailOpenUserRateThrottle(UserRateThrottle):
    """Per-user rate limit that lets requests through while the cache is unreachable.

    Throttling protects capacity; refusing every request because Redis is down would
    turn a cache outage into a full outage.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        return cache_call("throttle", lambda: super(FailOpenUserRateThrottle, self).allow_request(request, view), True)

    def get_ident(self, request: Request) -> str:
        return client_ip(request)


class FailOpenAnonRateThrottle(AnonRateThrottle):
    """Per-address rate limit for unauthenticated endpoints (token exchange); fails open too."""

    def allow_request(self, request: Request, view: Any) -> bool:
        return cache_call("throttle", lambda: super(FailOpenAnonRateThrottle, self).allow_request(request, view), True)

    def get_ident(self, request: Request) -> str:
        return client_ip(request)


class MessagePostRateThrottle(FailOpenUserRateThrottle):
    """A stricter per-user limit on posting messages, besides the general one: each user
    message spends model money. Applies to POSTs only; reading stays under the general limit."""

    scope = "message_post"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)
