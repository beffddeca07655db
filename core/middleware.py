import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import is_valid_path

from core.database import is_database_unavailable
from core.exceptions import DATABASE_UNAVAILABLE_BODY, DATABASE_UNAVAILABLE_HEADERS, error_body
from core.text import printable

API_PREFIX = "/api/"
# Every query parameter of the API is an id, a number or a word; anything longer is refused
# here, before it reaches a cache key or a query.
QUERY_VALUE_MAX_CHARS = 200
# Idempotency-Key is an opaque string of visible ASCII (the IETF draft's sf-string): nothing
# that a proxy may re-encode on the way, and always storable.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Answer 413 without parsing a body whose declared length is over the limit.

    Django itself only notices an oversized body when it is read, and then answers 400.
    The body is read and dropped first when it is at most REQUEST_BODY_DRAIN_MAX_BYTES long:
    gunicorn's threaded worker drains only 64 KB of a body the application left unread and
    then closes the connection, although the answer said keep-alive, so the client's next
    request on it would be lost. Drained, the connection stays usable. A larger body is not
    read (that would let a client make the server read without bound): gunicorn closes the
    connection after sending the 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.REQUEST_BODY_MAX_BYTES:
            if length <= settings.REQUEST_BODY_DRAIN_MAX_BYTES:
                while request.read(64 * 1024):
                    pass
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


class ApiPathMiddleware:
    """API routes answer with and without their trailing slash.

    Django's APPEND_SLASH answers a path without it with a redirect, which a client generator
    does not follow and which makes a POST lose its body; here the path is completed before
    URL resolution instead. Other pages (admin, docs) keep Django's redirect.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(API_PREFIX) and not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(path, urlconf) and is_valid_path(f"{path}/", urlconf):
                request.path_info = f"{path}/"
                request.path = f"{request.path}/"
        return self.get_response(request)


class ApiInputMiddleware:
    """Refuse, in the error envelope, API query values and headers that no operation accepts.

    Query values longer than QUERY_VALUE_MAX_CHARS, and an Idempotency-Key that is not visible
    ASCII, answer 400 naming the parameter; nothing else of the request is looked at.
    (Lone surrogates cannot arrive here: WSGI decodes headers as Latin-1 and Django decodes
    query strings with replacement characters; JSON bodies are checked by core.parsers.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest) -> JsonResponse | None:
        for name, values in request.GET.lists():
            for value in (name, *values):
                if len(value) > QUERY_VALUE_MAX_CHARS:
                    return _bad_request(
                        f"Query parameter {printable(name, max_chars=40)}: at most {QUERY_VALUE_MAX_CHARS} characters.",
                        code="query_value_too_long",
                        param=printable(name, max_chars=40),
                    )
        key = request.headers.get("Idempotency-Key")
        if key is not None and not _VISIBLE_ASCII.fullmatch(key):
            return _bad_request(
                "Idempotency-Key must be visible ASCII characters (no spaces or control characters).",
                code="invalid_idempotency_key",
                param="Idempotency-Key",
            )
        return None


def _bad_request(message: str, *, code: str, param: str) -> JsonResponse:
    return JsonResponse(error_body(message=message, status_code=400, code=code, param=param), status=400)
