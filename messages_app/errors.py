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
        super().__init__(
            f"The reply could not be generated: {reply.error_message or reply.error_code}. "
            f"Your message is stored; retry the reply with POST .../messages/{reply.pk}/retry/.",
            code=reply.error_code or "reply_failed",
            details={"message_id": str(message.pk), "reply_id": str(reply.pk)},
            headers=headers,
        )
