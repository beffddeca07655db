from typing import Any

from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.auth import request_user
from core.pagination import ListPagination
from core.schema import NOT_MODIFIED, error_responses
from core.serializers import parse_id
from interactions.cache import cached_response, version_etag
from interactions.models import Interaction
from interactions.selectors import interaction_list
from interactions.serializers import InteractionInputSerializer, InteractionSerializer
from interactions.services import interaction_create, interaction_delete, interaction_update
from messages_app.renderers import ExportJSONRenderer, ExportMarkdownRenderer, ExportRenderer
from messages_app.serializers import MessageSerializer
from messages_app.services import interaction_get_finalised, owner_abandoned_replies_finalise

EXPORT_DESCRIPTION = (
    "The whole conversation, oldest message first, streamed as it is read (in keyset chunks). "
    "JSON (`Accept: application/json` or `?format=json`, the default) is "
    '`{"object": "interaction.export", "interaction": {...}, "messages": [...]}` with the same '
    "representations as the rest of the API; Markdown (`Accept: text/markdown` or `?format=markdown`) "
    "is a readable transcript in which failed and incomplete replies are marked. Any other `Accept` "
    "answers 406."
)


@extend_schema_view(
    list=extend_schema(
        summary="List your interactions, most recent activity first",
        responses={200: InteractionSerializer(many=True), 304: NOT_MODIFIED, **error_responses(400)},
    ),
    create=extend_schema(
        summary="Create an interaction",
        request=InteractionInputSerializer,
        responses={201: InteractionSerializer, **error_responses(400, 413)},
    ),
    retrieve=extend_schema(
        summary="Get an interaction",
        responses={200: InteractionSerializer, 304: NOT_MODIFIED, **error_responses(400, 404)},
    ),
    partial_update=extend_schema(
        summary="Change an interaction's title or settings",
        request=InteractionInputSerializer,
        responses={200: InteractionSerializer, **error_responses(400, 404, 413)},
    ),
    destroy=extend_schema(
        summary="Delete an interaction and its messages",
        responses={204: None, **error_responses(400, 404)},
    ),
)
class InteractionViewSet(viewsets.ViewSet):
    """Interactions of the authenticated user, and the export of one."""

    lookup_value_regex = "[^/]+"
    pagination_class = ListPagination
    list_sort_field = "last_activity_at"
    list_default_order = "desc"
    # For drf-spectacular only: list() is paginated, path ids are UUIDs.
    serializer_class = InteractionSerializer
    queryset = Interaction.objects.none()

    def _interaction(self, request: Request, pk: str) -> Interaction:
        # Abandoned replies are finalised before anything is read from the cache.
        return interaction_get_finalised(
            owner=request_user(request), interaction_id=parse_id(pk, param="interaction_id")
        )

    def list(self, request: Request) -> HttpResponseBase:
        owner = request_user(request)
        # Abandoned replies are finalised (counters and versions updated) before the cache is read.
        owner_abandoned_replies_finalise(owner=owner)
        paginator = ListPagination()
        rows = paginator.paginate_queryset(interaction_list(owner=owner), request, view=self)
        # The page is keyed by what it shows: its rows' ids and versions, and whether more follow.
        stamp = version_etag(owner.pk, paginator.has_more, *(f"{row.pk}.{row.version}" for row in rows))

        def page() -> dict[str, Any]:
            return paginator.page_body(InteractionSerializer(rows, many=True).data)

        return cached_response(request, key=f"interactions:list:{owner.pk}:{stamp}", compute=page, etag=stamp)

    def create(self, request: Request) -> Response:
        serializer = InteractionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        interaction = interaction_create(owner=request_user(request), **serializer.validated_data)
        return Response(InteractionSerializer(interaction).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: str) -> HttpResponseBase:
        interaction = self._interaction(request, pk)
        return cached_response(
            request,
            key=f"interactions:detail:{interaction.pk}:{interaction.version}",
            compute=lambda: InteractionSerializer(interaction).data,
            etag=version_etag(interaction.pk, interaction.version),
        )

    def partial_update(self, request: Request, pk: str) -> Response:
        interaction = self._interaction(request, pk)
        serializer = InteractionInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        interaction = interaction_update(interaction=interaction, **serializer.validated_data)
        return Response(InteractionSerializer(interaction).data)

    def destroy(self, request: Request, pk: str) -> Response:
        interaction = self._interaction(request, pk)
        interaction_delete(interaction=interaction)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Export an interaction's conversation as JSON or Markdown",
        description=EXPORT_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=["json", "markdown"], required=False, description="Overrides Accept."
            )
        ],
        responses={
            (200, "application/json"): inline_serializer(
                "InteractionExport",
                {
                    "object": serializers.CharField(default="interaction.export"),
                    "interaction": InteractionSerializer(),
                    "messages": MessageSerializer(many=True),
                },
            ),
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description="A Markdown transcript."),
            **error_responses(400, 404, 406),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[ExportJSONRenderer, ExportMarkdownRenderer])
    def export(self, request: Request, pk: str) -> StreamingHttpResponse:
        interaction = self._interaction(request, pk)
        renderer = request.accepted_renderer
        if not isinstance(renderer, ExportRenderer):
            raise TypeError("export renderers only")
        response = StreamingHttpResponse(
            (part.encode() for part in renderer.stream(interaction=interaction)),
            content_type=f"{renderer.media_type}; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="interaction-{interaction.pk}.{renderer.extension}"'
        return response

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Response:
        # An export that fails before it starts answers the JSON error envelope, whatever
        # format was asked for.
        if isinstance(response, Response) and response.status_code >= 400 and self.action == "export":
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
