"""WSGI-level wrapping of the Django application (chatproject/wsgi.py)."""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
CHUNKED_BODY_OVER_LIMIT = "chat.chunked_body_over_limit"


def is_chunked_without_length(environ: dict[str, Any]) -> bool:
    transfer_coding = str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return "chunked" in transfer_coding and not environ.get("CONTENT_LENGTH")


def chunked_bodies_read(application: WSGIApplication) -> WSGIApplication:
    """Give Django the body of a request sent with `Transfer-Encoding: chunked`.

    Django reads a body only as far as its Content-Length, so a chunked body (no length) would
    be taken for an empty one and the request served without its data. When the server marks
    its input as terminated (`wsgi.input_terminated`: gunicorn decodes the chunks and ends the
    stream at the body's end), the body is read here, up to one byte over
    REQUEST_BODY_MAX_BYTES, and handed on with its length; a larger one is marked for
    RequestBodyLimitMiddleware's 413 without being read further. Without that mark the body
    cannot be read safely, and the middleware answers 411.
    """

    def application_with_chunked_bodies(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("wsgi.input_terminated") and is_chunked_without_length(environ):
            limit = settings.REQUEST_BODY_MAX_BYTES
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                environ[CHUNKED_BODY_OVER_LIMIT] = True
            else:
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
        return application(environ, start_response)

    return application_with_chunked_bodies
