"""The messages of an interaction.

Served through llm.views.ChatMessageViewSet, which adds streaming and retry on top.
"""

import hashlib
import json
from typing import Any

from django.http.response import HttpResponseBase
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.auth import request_user
from core.errors import ApplicationError, Conflict
from core.pagination import ListPagination
from core.serializers import parse_id
from interactions.cache import cached
from interactions.models import Interaction
from interactions.selectors import interaction_get
from messages_app.errors import ReplyFailed
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.selectors import message_get, message_get_by_idempotency_key, message_list, message_reply_get
from messages_app.serializers import MessageInputSerializer, MessageSerializer
from messages_app.services import message_create

IDEMPOTENCY_KEY_MAX_CHARS = 255


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."


def request_fingerprint(data: dict[str, Any]) -> str:
    """What makes two message requests 'the same' for idempotency (streaming or not is not part)."""
    canonical = json.dumps({"role": data["role"], "content": data["content"]}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class MessageViewSet(viewsets.ViewSet):
    lookup_value_regex = "[^/]+"
    pagination_class = ListPagination
    list_sort_field = "created_at"
    list_default_order = "asc"
    # For drf-spectacular only: list() is paginated, path ids are UUIDs.
    serializer_class = MessageSerializer
    queryset = Message.objects.none()

    def _interaction(self, request: Request, interaction_id: str) -> Interaction:
        return interaction_get(
            owner=request_user(request), interaction_id=parse_id(interaction_id, param="interaction_id")
        )

    def list(self, request: Request, interaction_id: str) -> Response:
        interaction = self._interaction(request, interaction_id)
        key = f"messages:list:{interaction.pk}:{interaction.version}:{request.GET.urlencode()}"

        def page() -> dict[str, Any]:
            paginator = ListPagination()
            rows = paginator.paginate_queryset(message_list(interaction=interaction), request, view=self)
            return paginator.page_body(MessageSerializer(rows, many=True).data)

        return Response(cached(key, page))

    def retrieve(self, request: Request, interaction_id: str, pk: str) -> Response:
        interaction = self._interaction(request, interaction_id)
        message = message_get(interaction=interaction, message_id=parse_id(pk, param="message_id"))
        return Response(MessageSerializer(message).data)

    def create(self, request: Request, interaction_id: str) -> HttpResponseBase:
        interaction = self._interaction(request, interaction_id)
        serializer = MessageInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        stream = data.pop("stream") or request.query_params.get("stream", "").lower() in ("true", "1")
        idempotency_key = self._idempotency_key(request)
        fingerprint = request_fingerprint(data) if idempotency_key else ""
        if idempotency_key:
            earlier = message_get_by_idempotency_key(interaction=interaction, idempotency_key=idempotency_key)
            if earlier is not None:
                return self._replay(earlier, fingerprint)
        if stream and data["role"] == MessageRole.USER:
            return self.create_streaming(
                interaction=interaction,
                content=data["content"],
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
            )
        message = message_create(
            interaction=interaction,
            role=data["role"],
            content=data["content"],
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )
        return self._created_response(message)

    def create_streaming(
        self, *, interaction: Interaction, content: str, idempotency_key: str | None, request_fingerprint: str
    ) -> HttpResponseBase:
        raise ApplicationError("Streaming is not available here.", code="streaming_unavailable", param="stream")

    @staticmethod
    def _idempotency_key(request: Request) -> str | None:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return None
        if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
            raise ApplicationError(
                f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} characters.",
                code="invalid_idempotency_key",
                param="Idempotency-Key",
            )
        return key

    def _replay(self, earlier: Message, fingerprint: str) -> Response:
        if earlier.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(param="Idempotency-Key")
        response = self._created_response(earlier)
        response["Idempotent-Replayed"] = "true"
        return response

    @staticmethod
    def _created_response(message: Message) -> Response:
        reply = message_reply_get(message=message) if message.role == MessageRole.USER else None
        if reply is not None and reply.status == MessageStatus.IN_PROGRESS:
            raise Conflict(
                "The reply to this request is still being generated; list the messages to see it.",
                code="reply_in_progress",
                details={"message_id": str(message.pk), "reply_id": str(reply.pk)},
            )
        if reply is not None and reply.status == MessageStatus.FAILED:
            raise ReplyFailed(message=message, reply=reply)
        body = {
            "message": MessageSerializer(message).data,
            "reply": MessageSerializer(reply).data if reply is not None else None,
        }
        return Response(body, status=status.HTTP_201_CREATED)
