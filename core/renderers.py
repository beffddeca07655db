from typing import Any

from rest_framework.renderers import JSONRenderer

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
