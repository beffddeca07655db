"""The export's two formats as DRF renderers, picked by content negotiation:
`Accept: text/markdown` or `application/json`, or `?format=markdown|json` (DRF's format
override). A renderer streams an export with stream(); render() serves the error
envelope when the request fails before any export starts."""

import json
from collections.abc import Iterator
from typing import Any

from rest_framework.renderers import BaseRenderer

from interactions.models import Interaction
from messages_app.export import (
    interaction_export_json,
    interaction_export_markdown,
    interactions_export_json,
    interactions_export_markdown,
)


class ExportRenderer(BaseRenderer):
    charset = "utf-8"
    extension = ""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return json.dumps(data, ensure_ascii=False).encode()

    def stream(self, *, interaction: Interaction) -> Iterator[str]:
        raise NotImplementedError

    def stream_many(self, *, interactions: list[Interaction]) -> Iterator[str]:
        raise NotImplementedError


class ExportJSONRenderer(ExportRenderer):
    media_type = "application/json"
    format = "json"
    extension = "json"

    def stream(self, *, interaction: Interaction) -> Iterator[str]:
        return interaction_export_json(interaction=interaction)

    def stream_many(self, *, interactions: list[Interaction]) -> Iterator[str]:
        return interactions_export_json(interactions=interactions)


class ExportMarkdownRenderer(ExportRenderer):
    media_type = "text/markdown"
    format = "markdown"
    extension = "md"

    def stream(self, *, interaction: Interaction) -> Iterator[str]:
        return interaction_export_markdown(interaction=interaction)

    def stream_many(self, *, interactions: list[Interaction]) -> Iterator[str]:
        return interactions_export_markdown(interactions=interactions)


EXPORT_RENDERERS = {renderer.format: renderer for renderer in (ExportJSONRenderer, ExportMarkdownRenderer)}
