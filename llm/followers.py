"""Who may watch a reply's stream: the follower cap per user, and stream tickets.

Follower cap: each attached stream holds one of REPLY_FOLLOWERS_PER_USER slots in the cache
(shared by every worker and instance with Redis; per process with the local-memory cache).
A slot expires unless its stream renews it with each heartbeat, so a worker that dies while
streaming frees its slots by itself. While the cache is down the cap is not enforced (a cache
outage must not become an outage).

Stream tickets: browsers' EventSource cannot send an Authorization header. Same-origin pages
use the session cookie. A token client on another origin first asks for a ticket (with its
token), then opens `.../stream/?ticket=...`: a signed, short-lived (REPLY_STREAM_TICKET_SECONDS)
credential valid for that one reply of that one user, so a leaked URL (logs, history) lets
nobody read anything else, nor this reply for long.
"""

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from core.cache import cache_call
from core.errors import ApplicationError

TICKET_SALT = "llm.reply-stream-ticket"


class TooManyFollowers(ApplicationError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "too_many_streams"
    default_message = "You are following too many reply streams at once; close one first."


class FollowerSlot:
    """A held place among the user's followers; renew() with each heartbeat, release() at the end."""

    def __init__(self, key: str | None, token: str) -> None:
        self.key = key
        self.token = token

    @staticmethod
    def ttl() -> int:
        return int(settings.REPLY_STREAM_HEARTBEAT_SECONDS * 2 + settings.REPLY_STREAM_WAIT_SECONDS + 5)

    def renew(self) -> None:
        key = self.key
        if key is not None:
            cache_call("follower_renew", lambda: cache.touch(key, self.ttl()), False)

    def release(self) -> None:
        key = self.key
        if key is not None and cache_call("follower_get", lambda: cache.get(key), None) == self.token:
            cache_call("follower_release", lambda: cache.delete(key), False)


def follower_slot_acquire(*, user_id: Any) -> FollowerSlot:
    """Take one of the user's follower slots, or raise TooManyFollowers (429)."""
    token = uuid.uuid4().hex
    for index in range(settings.REPLY_FOLLOWERS_PER_USER):
        key = f"reply-followers:{user_id}:{index}"
        taken = cache_call("follower_acquire", lambda key=key: cache.add(key, token, FollowerSlot.ttl()), None)  # type: ignore[misc]
        if taken is None:
            return FollowerSlot(None, token)  # The cache is down: no cap rather than no streams.
        if taken:
            return FollowerSlot(key, token)
    raise TooManyFollowers()


@contextlib.contextmanager
def follower_slot(*, user_id: Any) -> Iterator[FollowerSlot]:
    slot = follower_slot_acquire(user_id=user_id)
    try:
        yield slot
    finally:
        slot.release()


def stream_ticket_issue(*, user: User, reply_id: uuid.UUID) -> str:
    return signing.dumps({"u": user.pk, "r": str(reply_id)}, salt=TICKET_SALT)


class StreamTicketAuthentication(BaseAuthentication):
    """Authenticates `?ticket=` on the reply stream it was issued for, and nowhere else."""

    def authenticate(self, request: Request) -> tuple[User, str] | None:
        ticket = request.query_params.get("ticket")
        if not ticket:
            return None
        try:
            claims = signing.loads(ticket, salt=TICKET_SALT, max_age=settings.REPLY_STREAM_TICKET_SECONDS)
        except signing.SignatureExpired as exc:
            raise exceptions.AuthenticationFailed("This stream ticket has expired; ask for a new one.") from exc
        except signing.BadSignature as exc:
            raise exceptions.AuthenticationFailed("Invalid stream ticket.") from exc
        reply_id = (request.parser_context or {}).get("kwargs", {}).get("pk")
        if claims.get("r") != reply_id:
            raise exceptions.AuthenticationFailed("This stream ticket is for another reply.")
        user = User.objects.filter(pk=claims.get("u"), is_active=True).first()
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid stream ticket.")
        return user, ticket

    def authenticate_header(self, request: Request) -> str:
        return "Ticket"


class StreamTicketScheme(OpenApiAuthenticationExtension):
    target_class = StreamTicketAuthentication
    name = "streamTicket"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "query", "name": "ticket"}
