"""Domain errors raised by services and turned into API errors by one exception handler.

Each error carries the HTTP status, the OpenAI-style error `type` and a stable `code`
that clients can branch on.
"""

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"
    default_message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.code = code or type(self).code
        self.param = param
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"
    default_message = "No such object."


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class ServiceUnavailable(ApplicationError):
    status_code = 503
    error_type = "api_error"
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable. Try again shortly."
