import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.database import is_database_unavailable
from core.exceptions import DATABASE_UNAVAILABLE_BODY, DATABASE_UNAVAILABLE_HEADERS, error_body

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Answer 413 before reading a body whose declared length is over the limit.

    Django itself only notices an oversized body when it is read, and then answers 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.REQUEST_BODY_MAX_BYTES:
            return JsonResponse(
                error_body(
                    message=(
                        f"The request body is {length} bytes; the limit is {settings.REQUEST_BODY_MAX_BYTES} bytes."
                    ),
                    status_code=413,
                    code="request_too_large",
                ),
                status=413,
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Answer 503 in the error envelope when the database cannot be reached (any view)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_unavailable(exception):
            logger.exception("Database unavailable while handling %s", request.path)
            return JsonResponse(DATABASE_UNAVAILABLE_BODY, status=503, headers=DATABASE_UNAVAILABLE_HEADERS)
        return None
