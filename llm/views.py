"""The messages of an interaction: listing them, posting one (with its reply, streamed or
not, idempotent), retrying a reply. The views parse and serialise; llm.services decides.
"""

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from core.auth import request_user
from core.errors import ApplicationError, Conflict
from core.pagination import ListPagination, list_params_key
from core.renderers import EventStreamRenderer, asks_for_event_stream, json_unless_streamed
from core.schema import NOT_MODIFIED, error_responses
from core.serializers import StrictBooleanField, StrictInputSerializer, parse_id
from core.throttling import FailOpenUserRateThrottle, MessagePostRateThrottle
from interactions.cache import cached_response, version_etag
from interactions.models import Interaction
from llm.control import reply_abandoned_finalise, reply_cancel, reply_reload
from llm.events import EVENT_ID_PATTERN, StreamPosition, stream_position_parse
from llm.follow import ReplyFollower
from llm.followers import StreamTicketAuthentication, follower_slot_acquire, stream_ticket_issue
from llm.services import MessagePosted, message_post, reply_retry, reply_retry_start
from llm.streaming import ReplyEventStream, replayed_events, reply_terminal_event
from messages_app.errors import ReplyFailed
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.selectors import message_get, message_list
from messages_app.serializers import (
    STREAM_FIELD_HELP_TEXT,
    MessageCreatedSerializer,
    MessageInputSerializer,
    MessageSerializer,
)
from messages_app.services import interaction_get_finalised

IDEMPOTENCY_KEY_MAX_CHARS = 255
# On an answer that repeats the stored outcome of an earlier request with the same Idempotency-Key.
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"

STREAM_DESCRIPTION = (
    "With `stream=true` (body field or query parameter), or `Accept: text/event-stream` alone (what "
    "EventSource-style clients send), the answer is `text/event-stream`. An explicit `stream` outranks "
    "`Accept` and `?format=`: `stream=false` answers JSON whatever the client prefers. The query parameter "
    "outranks the body field. An error found before the "
    "first event answers JSON with its status, and an idempotent replay answers its stored result "
    "as events: "
    "`message.created` (the stored user message), `reply.created` (the stored in-progress reply), "
    '`reply.delta` events (`{"id", "delta"}`), then `reply.completed` (the stored reply, with usage '
    "and timings), `reply.cancelled` (the stored reply, stopped with `POST .../cancel/`) or `error` (the "
    "error envelope; the stored reply is in `error.details.reply`). Every event has an opaque `id`: "
    "`GET .../messages/{reply_id}/stream/` resumes after it. If the client disconnects, the reply is "
    "still generated and stored."
)
STREAM_PARAMETER = OpenApiParameter(
    "stream",
    OpenApiTypes.BOOL,
    description=(
        "`true`: stream the reply as server-sent events; `false`: answer JSON, whatever `Accept` or "
        "`?format=` prefers. Exactly `true` or `false` (anything else answers 400 `invalid_boolean`); "
        "outranks the body's `stream` when both are sent."
    ),
    required=False,
)
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Repeat a request safely: the same key with the same body answers the stored result (its reply, "
        "or its stored failure with the same error) with `Idempotent-Replayed: true`, and creates nothing; "
        "with a different body it answers 422."
    ),
)
IDEMPOTENT_REPLAYED_PARAMETER = OpenApiParameter(
    IDEMPOTENT_REPLAYED,
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    enum=["true"],
    response=[200, 201, 502, 503, 504],
    description="Present on an answer that repeats the stored outcome of an earlier request with this Idempotency-Key.",
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


ATTACH_DESCRIPTION = (
    "Follow a reply from anywhere (another tab or device, after a reload, on any instance): "
    "`text/event-stream` with the same events as the POST stream: `reply.created` (the reply, its text "
    "left out), `reply.delta` events (the first holds all the text so far), then `reply.completed`, "
    "`reply.cancelled` or `error` (for example `reply_abandoned` when the worker generating it died). "
    "A finished reply is sent whole at once. Every event has an opaque `id`; send the last one you got "
    "as `Last-Event-ID` (EventSource does so when it reconnects) or `last_event_id` to get exactly "
    "the text after it. Comment lines (`: keep-alive`) are heartbeats; `retry:` suggests a reconnection "
    "delay. Authenticate with a token, the session cookie, or `ticket` (from `stream-ticket/`) where "
    "EventSource cannot send a header. At most REPLY_FOLLOWERS_PER_USER streams per user (429)."
)
LAST_EVENT_ID_PARAMETERS = [
    OpenApiParameter(
        "Last-Event-ID",
        OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        required=False,
        description="Resume after this event id (opaque: send back the `id` of an event you got).",
        pattern=EVENT_ID_PATTERN,
    ),
    OpenApiParameter(
        "last_event_id",
        OpenApiTypes.STR,
        required=False,
        description="Resume after this event id (query form).",
        pattern=EVENT_ID_PATTERN,
    ),
    OpenApiParameter(
        "ticket", OpenApiTypes.STR, required=False, description="A stream ticket, instead of a header or cookie."
    ),
]


class ReplyRetryInputSerializer(StrictInputSerializer):
    """The body of a retry: optional as a whole (no body is `{}`), with no field but `stream`."""

    stream = StrictBooleanField(required=False, help_text=STREAM_FIELD_HELP_TEXT)


class StreamTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Pass as `?ticket=` to the reply's stream; valid for this reply only.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")
    stream_url = serializers.CharField(help_text="The stream's URL with the ticket.")


def _event_stream_response(stream: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Tells nginx-style proxies not to buffer the events.
    response["X-Accel-Buffering"] = "no"
    return response


@extend_schema_view(
    list=extend_schema(
        summary="List the messages of an interaction, oldest first",
        responses={200: MessageSerializer(many=True), 304: NOT_MODIFIED, **error_responses(400, 404)},
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
        parameters=[STREAM_PARAMETER, IDEMPOTENCY_PARAMETER, IDEMPOTENT_REPLAYED_PARAMETER],
        responses={
            (201, "application/json"): MessageCreatedSerializer,
            (200, "text/event-stream"): EVENT_STREAM,
            **error_responses(400, 404, 406, 409, 413, 422, 502, 503, 504),
        },
    ),
    stream=extend_schema(
        summary="Follow a reply as it is generated (server-sent events)",
        description=ATTACH_DESCRIPTION,
        parameters=LAST_EVENT_ID_PARAMETERS,
        responses={(200, "text/event-stream"): EVENT_STREAM, **error_responses(400, 401, 404, 406, 409, 429)},
    ),
    cancel=extend_schema(
        summary="Stop a reply being generated",
        description=(
            "Stops the reply whichever worker or instance generates it, also while it waits on the model. "
            "The reply ends `incomplete` with the text so far and the error code `cancelled`, and can be "
            "retried; its streams end with `reply.cancelled`. 200 with the stopped reply; 202 with the reply "
            "still `in_progress` if it did not stop within LLM_REPLY_CANCEL_WAIT_SECONDS (it stops later); "
            "409 `reply_not_in_progress` (with its `status` in `error.details`) if it is not being generated."
        ),
        request=None,
        responses={200: MessageSerializer, 202: MessageSerializer, **error_responses(400, 404, 409)},
    ),
    stream_ticket=extend_schema(
        summary="Get a short-lived ticket to follow a reply with EventSource",
        description=(
            "EventSource cannot send an Authorization header. Token clients on another origin ask for a "
            "ticket here, then open `stream_url`. The ticket is signed, valid for REPLY_STREAM_TICKET_SECONDS "
            "and for this reply of this user only; when it has expired, ask for a new one and reconnect with "
            "`last_event_id`. A message that is not an assistant reply has no stream: 409 `not_a_reply`."
        ),
        request=None,
        responses={200: StreamTicketSerializer, **error_responses(400, 404, 409)},
    ),
    retry=extend_schema(
        summary="Generate a failed or incomplete reply again",
        description=(
            "Regenerates the reply in place (same id) without repeating the user message. The body is "
            'optional: none, `{}` or `{"stream": true|false}`; malformed JSON answers 400 `parse_error`, any '
            "other field 400 `unknown_field`. Streams as posting a message does (`stream=true` in the body or "
            "the query, or `Accept: text/event-stream` alone), without `message.created`; an explicit "
            "`stream=false` answers JSON whatever `Accept` prefers, and the query parameter outranks the body."
        ),
        request=ReplyRetryInputSerializer,
        parameters=[STREAM_PARAMETER],
        responses={
            (200, "application/json"): MessageSerializer,
            (200, "text/event-stream"): EVENT_STREAM,
            **error_responses(400, 404, 406, 409, 502, 503, 504),
        },
    ),
)
@extend_schema(tags=["messages"])
class MessageViewSet(viewsets.ViewSet):
    """The messages of an interaction, with the model's replies streamed and retried."""

    lookup_value_regex = "[^/]+"
    pagination_class = ListPagination
    list_sort_field = "created_at"
    list_default_order = "asc"
    # For drf-spectacular only: list() is paginated, path ids are UUIDs.
    serializer_class = MessageSerializer
    queryset = Message.objects.none()

    # Posting and retrying spend model money: a stricter per-user limit besides the general one.
    throttle_classes = [FailOpenUserRateThrottle, MessagePostRateThrottle]

    def get_throttles(self) -> list[BaseThrottle]:
        if self.action in ("cancel", "stream_ticket"):
            # These POSTs spend nothing (a cancel saves): the general limit only, so a user who
            # posted up to the stricter limit can still stop a reply.
            return [FailOpenUserRateThrottle()]
        return super().get_throttles()

    def get_renderers(self) -> list[BaseRenderer]:
        renderers = super().get_renderers()
        if self.action in ("create", "retry", "stream"):
            # An SSE client accepts only text/event-stream: that asks for a stream (and is
            # what EventSource sends to the follow endpoint).
            renderers.append(EventStreamRenderer())
        return renderers

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        # An error found before the first byte of a stream answers JSON with its status.
        return json_unless_streamed(super().finalize_response(request, response, *args, **kwargs))

    def _interaction(self, request: Request, interaction_id: str) -> Interaction:
        # Abandoned replies are finalised before anything is read from the cache.
        return interaction_get_finalised(
            owner=request_user(request), interaction_id=parse_id(interaction_id, param="interaction_id")
        )

    def list(self, request: Request, interaction_id: str) -> HttpResponseBase:
        interaction = self._interaction(request, interaction_id)
        params = list_params_key(request)

        def page() -> dict[str, Any]:
            paginator = ListPagination()
            rows = paginator.paginate_queryset(message_list(interaction=interaction), request, view=self)
            return paginator.page_body(MessageSerializer(rows, many=True).data)

        return cached_response(
            request,
            key=f"messages:list:{interaction.pk}:{interaction.version}:{params}",
            compute=page,
            etag=version_etag(interaction.pk, interaction.version, params),
        )

    def retrieve(self, request: Request, interaction_id: str, pk: str) -> Response:
        interaction = self._interaction(request, interaction_id)
        message = message_get(interaction=interaction, message_id=parse_id(pk, param="message_id"))
        return Response(MessageSerializer(message).data)

    def create(self, request: Request, interaction_id: str) -> HttpResponseBase:
        interaction = self._interaction(request, interaction_id)
        serializer = MessageInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        streamed = _stream_requested(request, body_stream=data.get("stream"))
        posted = message_post(
            interaction=interaction,
            role=data["role"],
            content=data["content"],
            idempotency_key=_idempotency_key(request),
            stream=streamed,
        )
        if posted.claim is not None and posted.reply is not None:
            stream = ReplyEventStream(reply=posted.reply, claim=posted.claim, user_message=posted.message)
            return _event_stream_response(stream)
        if posted.replayed and posted.reply is not None and streamed:
            replayed = _event_stream_response(replayed_events(message=posted.message, reply=posted.reply))
            replayed[IDEMPOTENT_REPLAYED] = "true"
            return replayed
        return _created_response(posted)

    @action(
        detail=True,
        methods=["get"],
        authentication_classes=[StreamTicketAuthentication, TokenAuthentication, SessionAuthentication],
    )
    def stream(self, request: Request, interaction_id: str, pk: str) -> StreamingHttpResponse:
        interaction = self._interaction(request, interaction_id)
        reply = _reply_with_a_stream(interaction=interaction, message_id=pk)
        since = self._last_event_id(request)
        follower = ReplyFollower(
            reply=reply,
            since=since,
            slot=follower_slot_acquire(user_id=request_user(request).pk),
            reload=reply_reload,
            terminal_event=reply_terminal_event,
            finalise_abandoned=reply_abandoned_finalise,
        )
        return _event_stream_response(follower)

    @staticmethod
    def _last_event_id(request: Request) -> StreamPosition | None:
        # Present but empty is refused too: EventSource leaves the header out when it has no id.
        if (raw := request.headers.get("Last-Event-ID")) is not None:
            return stream_position_parse(raw)
        if (raw := request.query_params.get("last_event_id")) is not None:
            return stream_position_parse(raw, param="last_event_id")
        return None

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, interaction_id: str, pk: str) -> Response:
        interaction = self._interaction(request, interaction_id)
        reply = reply_cancel(reply=message_get(interaction=interaction, message_id=parse_id(pk, param="message_id")))
        stopped = reply.status != MessageStatus.IN_PROGRESS
        return Response(MessageSerializer(reply).data, status=200 if stopped else 202)

    @action(detail=True, methods=["post"], url_path="stream-ticket")
    def stream_ticket(self, request: Request, interaction_id: str, pk: str) -> Response:
        interaction = self._interaction(request, interaction_id)
        reply = _reply_with_a_stream(interaction=interaction, message_id=pk)
        ticket = stream_ticket_issue(user=request_user(request), reply_id=reply.pk)
        url = reverse("message-stream", kwargs={"interaction_id": str(interaction.pk), "pk": str(reply.pk)})
        body = {
            "ticket": ticket,
            "expires_in": settings.REPLY_STREAM_TICKET_SECONDS,
            "stream_url": request.build_absolute_uri(f"{url}?ticket={ticket}"),
        }
        return Response(StreamTicketSerializer(body).data)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, interaction_id: str, pk: str) -> Response | StreamingHttpResponse:
        interaction = self._interaction(request, interaction_id)
        serializer = ReplyRetryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = message_get(interaction=interaction, message_id=parse_id(pk, param="message_id"))
        if _stream_requested(request, body_stream=serializer.validated_data.get("stream")):
            reply, claim = reply_retry_start(message=message)
            return _event_stream_response(ReplyEventStream(reply=reply, claim=claim, user_message=None))
        reply = reply_retry(message=message)
        if reply.status == MessageStatus.FAILED and reply.reply_to is not None:
            raise ReplyFailed(message=reply.reply_to, reply=reply)
        return Response(MessageSerializer(reply).data)


def _reply_with_a_stream(*, interaction: Interaction, message_id: str) -> Message:
    """The reply to follow, or to issue a stream ticket for: only an assistant message has a stream."""
    reply = message_get(interaction=interaction, message_id=parse_id(message_id, param="message_id"))
    if reply.role != MessageRole.ASSISTANT:
        raise Conflict("Only assistant replies have a stream.", code="not_a_reply", param="message_id")
    return reply


def _stream_requested(request: Request, *, body_stream: bool | None) -> bool:
    """Whether to answer with an event stream: as `stream` says when it is sent (the query
    parameter, else the validated body field, `None` when absent), else when the client accepts
    only `text/event-stream`.

    An explicit `stream` outranks `Accept` and `?format=`, as `?format=` outranks `Accept`:
    `false` answers JSON (json_unless_streamed) whatever the client prefers. The query
    parameter outranks the body field, as the more explicit of the two (a client that builds
    its URL per request). Neither a conflict nor a preference answers an error: none of these
    can be told from the schema. (core.middleware has refused query values other than `true`
    and `false`; the last of repeated ones counts, as in DRF.)
    """
    query = request.query_params.get("stream")
    if query is not None:
        return query == "true"
    if body_stream is not None:
        return body_stream
    return asks_for_event_stream(request)


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


def _created_response(posted: MessagePosted) -> Response:
    replayed = {IDEMPOTENT_REPLAYED: "true"} if posted.replayed else {}
    if posted.reply is not None and posted.reply.status == MessageStatus.FAILED:
        failed = ReplyFailed(message=posted.message, reply=posted.reply)
        # A replayed failure says so, as a replayed success does.
        failed.headers.update(replayed)
        raise failed
    body = {
        "message": MessageSerializer(posted.message).data,
        "reply": MessageSerializer(posted.reply).data if posted.reply is not None else None,
    }
    return Response(body, status=status.HTTP_201_CREATED, headers=replayed)
