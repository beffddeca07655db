from typing import Any, TypeVar

from django.http.response import HttpResponseBase
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.text import scrubbed


class SafeJSONRenderer(JSONRenderer):
    """JSON that always encodes: a stored string holding a lone surrogate (written before the
    parser refused them) renders with U+FFFD in its place instead of failing the whole answer.

    The common case pays nothing: the data is scrubbed only after encoding it failed.
    """

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return super().render(scrubbed(data), accepted_media_type, renderer_context)


class EventStreamRenderer(BaseRenderer):
    """Lets a client that accepts only `text/event-stream` (what EventSource-style SSE clients
    send) through content negotiation on the operations that can stream.

    The stream itself is a StreamingHttpResponse and never goes through a renderer. Anything
    else answered to such a request, an error found before the first byte above all, is
    answered as JSON with its own status (see `json_unless_streamed`).
    """

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return SafeJSONRenderer().render(data, "application/json", renderer_context)


def asks_for_event_stream(request: Request) -> bool:
    """Whether content negotiation chose the event stream (the client accepts nothing else)."""
    return isinstance(getattr(request, "accepted_renderer", None), EventStreamRenderer)


AnyResponse = TypeVar("AnyResponse", bound=HttpResponseBase)


def json_unless_streamed(response: AnyResponse) -> AnyResponse:
    """A DRF answer negotiated as an event stream is sent as the JSON it is, with its status."""
    if isinstance(response, Response) and isinstance(response.accepted_renderer, EventStreamRenderer):
        response.accepted_renderer = SafeJSONRenderer()
        response.accepted_media_type = "application/json"
    return response
