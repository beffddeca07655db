"""Content negotiation: DRF's, answering in each renderer's own media type."""

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.utils.mediatypes import _MediaType


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with three differences a client can see:

    - The answer's Content-Type is the renderer's media type. DRF copies the parameters of the
      client's Accept into it, so `Accept: application/json; charset=latin-1` labelled a UTF-8
      body latin-1, and `application/json;q=0` came back as the Content-Type.
    - A media range with `q=0` is refused, as HTTP says (RFC 9110, 12.5.1), not chosen.
    - A `?format=` that no renderer of the operation offers answers 406 (DRF answers 404, as
      if the resource did not exist).
    """

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        refused = [_MediaType(token) for token in super().get_accept_list(request) if _refused(token)]
        # A type refused by name stays refused under a wildcard that accepts the rest.
        renderers = [
            renderer
            for renderer in renderers
            if not any(_MediaType(renderer.media_type).match(media_range) for media_range in refused)
        ]
        if not renderers:
            raise NotAcceptable("None of the answer's formats is acceptable (q=0).")
        renderer, _ = super().select_renderer(request, renderers, format_suffix)
        return renderer, renderer.media_type

    def get_accept_list(self, request: Request) -> list[str]:
        return [token for token in super().get_accept_list(request) if not _refused(token)]

    def filter_renderers(self, renderers: Iterable[BaseRenderer], format: str) -> list[BaseRenderer]:
        renderers = list(renderers)
        offered = [renderer for renderer in renderers if renderer.format == format]
        if not offered:
            formats = ", ".join(sorted({str(renderer.format) for renderer in renderers}))
            raise NotAcceptable(f"Query parameter format: {format!r} is not offered here (offered: {formats}).")
        return offered


def _refused(token: str) -> bool:
    quality: Any = _MediaType(token).params.get("q", "1")
    try:
        return float(quality) == 0
    except ValueError:
        return False
