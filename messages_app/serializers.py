from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictBooleanField, StrictCharField, StrictInputSerializer
from messages_app.models import Message, MessageRole

# The `stream` body field of every operation that can stream (posting a message, retrying a reply).
STREAM_FIELD_HELP_TEXT = (
    "`true`: answer `text/event-stream` with the reply as it is generated (same as `?stream=true`); "
    "`false`: answer JSON, whatever `Accept` prefers. `?stream=` outranks it when both are sent."
)


class MessageInputSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(
        choices=MessageRole.choices,
        default=MessageRole.USER,
        help_text="Only `user` messages get an assistant reply; others are stored as given.",
    )
    content = StrictCharField(max_length=settings.MESSAGE_CONTENT_MAX_CHARS, trim_whitespace=False, allow_blank=False)
    # No default: a `false` that was sent outranks `Accept: text/event-stream`, an absent one does not.
    stream = StrictBooleanField(required=False, help_text=STREAM_FIELD_HELP_TEXT)

    def validate_content(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.", code="blank")
        return value


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)


class MessageErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer[Message]):
    object = serializers.SerializerMethodField()
    interaction_id = serializers.UUIDField(read_only=True)
    reply_to = serializers.UUIDField(source="reply_to_id", read_only=True, allow_null=True)
    usage = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "object",
            "interaction_id",
            "role",
            "content",
            "status",
            "reply_to",
            "model",
            "usage",
            "latency_ms",
            "time_to_first_token_ms",
            "finish_reason",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_object(self, message: Message) -> str:
        return "message"

    @extend_schema_field(UsageSerializer(allow_null=True))
    def get_usage(self, message: Message) -> dict[str, Any] | None:
        if message.prompt_tokens is None and message.completion_tokens is None:
            return None
        return {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.total_tokens,
        }

    @extend_schema_field(MessageErrorSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict[str, str] | None:
        if not message.error_code:
            return None
        return {"code": message.error_code, "message": message.error_message}


class MessageCreatedSerializer(serializers.Serializer):
    message = MessageSerializer(help_text="The stored message.")
    reply = MessageSerializer(
        allow_null=True, help_text="The assistant's stored reply to a user message; null for other roles."
    )
