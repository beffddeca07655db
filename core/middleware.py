import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import is_valid_path

from core.database import is_database_unavailable
from core.exceptions import DATABASE_UNAVAILABLE_HEADERS, database_unavailable_body, error_body
from core.text import printable
from core.wsgi import CHUNKED_BODY_OVER_LIMIT, is_chunked_without_length

API_PREFIX = "/api/"
# Every query parameter of the API is an id, a number or a word; anything longer is refused
# here, before it reaches a cache key or a query.
QUERY_VALUE_MAX_CHARS = 200
# `stream` (messages, retry) is a boolean wherever it is accepted, spelt as JSON spells it and as the
# body field takes it: `TRUE`, `1` or `0` are refused rather than guessed at (none was ever documented).
BOOLEAN_QUERY_VALUES = {"true", "false"}
# Idempotency-Key is an opaque string of visible ASCII (the IETF draft's sf-string): nothing
# that a proxy may re-encode on the way, and always storable.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

logger = logging.getLogger(__name__)
access_logger = structlog.get_logger("chat.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from a proxy or a client are kept when they look like ids (uuids, trace ids), up to
# 128 characters; anything else is replaced, so that a log line can never be forged or
# bloated through this header.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The validated id sent by the client or a proxy, or a new one."""
    if header and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return str(uuid.uuid4())


class RequestIdMiddleware:
    """Give every request an id: the client's `X-Request-ID` if valid, else a new one.

    Runs before django-structlog's RequestMiddleware (which trusts the header it finds,
    DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID) and puts the validated id in its place;
    django-structlog then binds it to every log line of the request. The response echoes it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        request.META["HTTP_X_REQUEST_ID"] = request_id
        # request.headers is cached on first access; drop it so it shows the validated id.
        request.__dict__.pop("headers", None)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class AccessLogMiddleware:
    """One access line per request: method, route, status, user id, duration.

    Sits inside django-structlog's RequestMiddleware, so the request's context is bound.
    A streamed response is logged when the stream ends (its duration includes sending it),
    and its chunks and its closing run with the request's context bound again: lines
    written while the reply is generated, after this middleware returned, carry the id.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        response = self.get_response(request)
        user_id = _user_id(request)
        structlog.contextvars.bind_contextvars(user_id=user_id)
        fields = {
            "method": request.method,
            "route": _route(request),
            "status": response.status_code,
            "user_id": user_id,
        }
        if isinstance(response, StreamingHttpResponse) and not response.is_async:
            _observe_stream(response, fields=fields, started=started)
        else:
            _log_access(fields, started=started, streamed=False)
        return response


def _user_id(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


def _route(request: HttpRequest) -> str:
    match = request.resolver_match
    if match is None:
        return "<unmatched>"
    return match.view_name or match.route


def _log_access(fields: dict[str, Any], *, started: float, streamed: bool, **extra: Any) -> None:
    access_logger.info(
        "request", **fields, duration_ms=round((time.monotonic() - started) * 1000, 1), streamed=streamed, **extra
    )


def _observe_stream(response: StreamingHttpResponse, *, fields: dict[str, Any], started: float) -> None:
    # Django closes a streamed response's resources (the reply stream finishes the reply
    # when the client went away) in response.close(), after every middleware returned.
    # They are taken over here, so that they run with the request's context bound.
    resource_closers: list[Callable[[], None]] = response._resource_closers  # type: ignore[attr-defined]
    closers = list(resource_closers)
    resource_closers.clear()
    response.streaming_content = _ObservedStream(
        iter(cast(Iterator[bytes], response.streaming_content)),
        closers=closers,
        context=structlog.contextvars.get_contextvars(),
        on_close=lambda completed: _log_access(fields, started=started, streamed=True, stream_completed=completed),
    )


class _ObservedStream:
    """A response stream whose iteration and closing run with `context` bound."""

    def __init__(
        self,
        content: Iterator[bytes],
        *,
        closers: list[Callable[[], None]],
        context: dict[str, Any],
        on_close: Callable[[bool], None],
    ) -> None:
        self._content = content
        self._closers = closers
        self._context = context
        self._on_close = on_close
        self._completed = False
        self._closed = False

    def __iter__(self) -> "_ObservedStream":
        return self

    def __next__(self) -> bytes:
        with structlog.contextvars.bound_contextvars(**self._context):
            try:
                return next(self._content)
            except StopIteration:
                self._completed = True
                raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with structlog.contextvars.bound_contextvars(**self._context):
            try:
                for close in self._closers:
                    close()
            finally:
                self._on_close(self._completed)


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
        if request.META.get(CHUNKED_BODY_OVER_LIMIT):
            return self._too_large(f"The request body is over the limit of {settings.REQUEST_BODY_MAX_BYTES} bytes.")
        if is_chunked_without_length(request.META):
            # A chunked body the server did not decode for us (core.wsgi): it cannot be read safely.
            return JsonResponse(
                error_body(
                    message="Send the request body with a Content-Length header (this server cannot read it chunked).",
                    status_code=411,
                    code="length_required",
                ),
                status=411,
            )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.REQUEST_BODY_MAX_BYTES:
            if length <= settings.REQUEST_BODY_DRAIN_MAX_BYTES:
                while request.read(64 * 1024):
                    pass
            return self._too_large(
                f"The request body is {length} bytes; the limit is {settings.REQUEST_BODY_MAX_BYTES} bytes."
            )
        return self.get_response(request)

    @staticmethod
    def _too_large(message: str) -> HttpResponse:
        return JsonResponse(error_body(message=message, status_code=413, code="request_too_large"), status=413)


class DatabaseUnavailableMiddleware:
    """Answer 503 in the error envelope when the database cannot be reached (any view)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_unavailable(exception):
            logger.exception("Database unavailable while handling %s", request.path)
            return JsonResponse(database_unavailable_body(), status=503, headers=DATABASE_UNAVAILABLE_HEADERS)
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

    Query values longer than QUERY_VALUE_MAX_CHARS, a `stream` that is not a boolean, and an
    Idempotency-Key that is not visible ASCII answer 400 naming the parameter; nothing else of
    the request is looked at.
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
        if request.GET.get("format") == "":
            # DRF takes an empty format for none and answers in the default one.
            return _bad_request("Query parameter format may not be empty.", code="invalid_format", param="format")
        if any(value not in BOOLEAN_QUERY_VALUES for value in request.GET.getlist("stream")):
            return _bad_request("Query parameter stream: `true` or `false`.", code="invalid_boolean", param="stream")
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
