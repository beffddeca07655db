from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.schema import error_responses
from core.serializers import parse_id
from interactions.models import Interaction
from llm.services import reply_retry, reply_retry_start, reply_start
from llm.streaming import ReplyEventStream
from messages_app.errors import ReplyFailed
from messages_app.models import MessageRole, MessageStatus
from messages_app.selectors import message_get
from messages_app.serializers import MessageCreatedSerializer, MessageInputSerializer, MessageSerializer
from messages_app.services import message_create
from messages_app.views import MessageViewSet

STREAM_DESCRIPTION = (
    "With `stream=true` (body field or query parameter) the answer is `text/event-stream`: "
    "`message.created` (the stored user message), `reply.created` (the stored in-progress reply), "
    '`reply.delta` events (`{"id", "delta"}`), then `reply.completed` (the stored reply, with usage '
    "and timings) or `error` (the error envelope; the stored reply is in `error.details.reply`). "
    "If the client disconnects, the reply is still generated and stored."
)
STREAM_PARAMETER = OpenApiParameter(
    "stream", OpenApiTypes.BOOL, description="Stream the reply as server-sent events.", required=False
)
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Repeat a request safely: the same key with the same body answers the stored result and "
        "creates nothing; with a different body it answers 422."
    ),
)
EVENT_STREAM = OpenApiResponse(
    OpenApiTypes.STR,
    description=STREAM_DESCRIPTION,
    examples=[
        OpenApiExample(
            "event stream",
            value='event: reply.delta\ndata: {"id":"…","delta":"Hel"}\n\n',
            media_type="text/event-stream",
        )
    ],
)


def _event_stream_response(stream: ReplyEventStream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Tells nginx-style proxies not to buffer the events.
    response["X-Accel-Buffering"] = "no"
    return response


@extend_schema_view(
    list=extend_schema(
        summary="List the messages of an interaction, oldest first",
        responses={200: MessageSerializer(many=True), **error_responses(400, 404)},
    ),
    retrieve=extend_schema(summary="Get one message", responses={200: MessageSerializer, **error_responses(400, 404)}),
    create=extend_schema(
        summary="Post a message; a user message gets the assistant's reply",
        description=(
            "A `user` message is stored first, then the assistant reply is generated and stored; "
            "the answer holds both. If the model provider fails, the reply is stored as failed and the "
            "answer is an error (502, 503 with Retry-After, or 504) naming both messages in "
            "`error.details`, so the reply can be retried. " + STREAM_DESCRIPTION
        ),
        request=MessageInputSerializer,
        parameters=[STREAM_PARAMETER, IDEMPOTENCY_PARAMETER],
        responses={
            (201, "application/json"): MessageCreatedSerializer,
            (200, "text/event-stream"): EVENT_STREAM,
            **error_responses(400, 404, 409, 413, 422, 502, 503, 504),
        },
    ),
    retry=extend_schema(
        summary="Generate a failed or incomplete reply again",
        description="Regenerates the reply in place (same id) without repeating the user message.",
        request=None,
        parameters=[STREAM_PARAMETER],
        responses={
            (200, "application/json"): MessageSerializer,
            (200, "text/event-stream"): EVENT_STREAM,
            **error_responses(400, 404, 409, 502, 503, 504),
        },
    ),
)
@extend_schema(tags=["messages"])
class ChatMessageViewSet(MessageViewSet):
    """The messages of an interaction, with the model's replies streamed and retried."""

    def create_streaming(
        self, *, interaction: Interaction, content: str, idempotency_key: str | None, request_fingerprint: str
    ) -> StreamingHttpResponse:
        user_message = message_create(
            interaction=interaction,
            role=MessageRole.USER,
            content=content,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            reply_deferred=True,
        )
        reply = reply_start(user_message=user_message)
        return _event_stream_response(ReplyEventStream(reply=reply, user_message=user_message))

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, interaction_id: str, pk: str) -> Response | StreamingHttpResponse:
        interaction = self._interaction(request, interaction_id)
        reply = message_get(interaction=interaction, message_id=parse_id(pk, param="message_id"))
        if request.query_params.get("stream", "").lower() in ("true", "1"):
            reply = reply_retry_start(reply=reply)
            return _event_stream_response(ReplyEventStream(reply=reply, user_message=None))
        reply = reply_retry(reply=reply)
        if reply.status == MessageStatus.FAILED and reply.reply_to is not None:
            raise ReplyFailed(message=reply.reply_to, reply=reply)
        return Response(MessageSerializer(reply).data)
