from typing import Any

from core.errors import ApplicationError
from messages_app.models import Message, ReplyErrorCode

REPLY_ERROR_STATUS: dict[str, int] = {
    ReplyErrorCode.UPSTREAM_TIMEOUT: 504,
    ReplyErrorCode.UPSTREAM_UNREACHABLE: 502,
    ReplyErrorCode.UPSTREAM_RATE_LIMITED: 503,
    ReplyErrorCode.UPSTREAM_ERROR: 502,
    ReplyErrorCode.UPSTREAM_BAD_RESPONSE: 502,
    ReplyErrorCode.STREAM_INTERRUPTED: 502,
    ReplyErrorCode.INTERNAL_ERROR: 500,
    ReplyErrorCode.REPLY_ABANDONED: 503,
}
# When a rate-limited provider does not say how long to wait.
RATE_LIMITED_RETRY_AFTER_SECONDS = 10


class ReplyFailed(ApplicationError):
    """The user message is stored, its reply failed and is stored as failed: retry it."""

    error_type = "upstream_error"

    def __init__(self, *, message: Message, reply: Message) -> None:
        self.status_code = REPLY_ERROR_STATUS.get(reply.error_code, 502)
        headers = {}
        if reply.error_code == ReplyErrorCode.UPSTREAM_RATE_LIMITED:
            headers["Retry-After"] = str(reply.retry_after_seconds or RATE_LIMITED_RETRY_AFTER_SECONDS)
        if reply.error_code in (ReplyErrorCode.REPLY_ABANDONED, ReplyErrorCode.INTERNAL_ERROR):
            self.error_type = "api_error"
        super().__init__(
            f"The reply could not be generated: {reply.error_message or reply.error_code}. "
            f"Your message is stored; retry the reply with POST .../messages/{reply.pk}/retry/.",
            code=reply.error_code or "reply_failed",
            details={"message_id": str(message.pk), "reply_id": str(reply.pk)},
            headers=headers,
        )


class WriteFailed(ApplicationError):
    """A write failed after the user's message was, or may have been, stored.

    `error.details` names what was stored (`message_id`, and `reply_id` where a reply row
    exists) so that nothing is lost: the reply is made with POST .../messages/{id}/retry/
    on either id. Where the service could not find out whether a write committed (the
    database went away), it names the ids it had assigned and lists them in
    `may_have_been_stored`.
    """

    error_type = "api_error"

    def __init__(
        self,
        *,
        database: bool,
        message_id: str | None,
        reply_id: str | None,
        may_have_been_stored: list[str],
    ) -> None:
        self.status_code = 503 if database else 500
        details: dict[str, Any] = {}
        if message_id:
            details["message_id"] = message_id
        if reply_id:
            details["reply_id"] = reply_id
        if may_have_been_stored:
            details["may_have_been_stored"] = may_have_been_stored
        cause = "The database failed" if database else "The server failed"
        if not message_id:
            text = f"{cause} before your message was stored. Nothing was stored; send it again."
        elif may_have_been_stored:
            text = (
                f"{cause} while storing your message; it may have been stored with the ids in error.details. "
                "List the messages to see, or repeat the request with its Idempotency-Key."
            )
        else:
            text = (
                f"{cause} after your message was stored. Get its reply with "
                f"POST .../messages/{reply_id or message_id}/retry/."
            )
        super().__init__(
            text,
            code="database_unavailable" if database else "internal_error",
            details=details,
            headers={"Retry-After": "5"} if database else {},
        )
