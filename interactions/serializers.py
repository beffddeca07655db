from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictCharField, StrictFloatField, StrictInputSerializer, StrictIntegerField
from interactions.models import Interaction, PromptRole

METADATA_MAX_KEYS = 16
METADATA_KEY_MAX_CHARS = 64
METADATA_VALUE_MAX_CHARS = 512


def validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Expected an object of string keys and string values.")
    if len(value) > METADATA_MAX_KEYS:
        raise serializers.ValidationError(f"At most {METADATA_MAX_KEYS} keys are allowed.")
    for key, item in value.items():
        if not isinstance(item, str):
            raise serializers.ValidationError(f"The value of “{key}” must be a string.")
        if len(key) > METADATA_KEY_MAX_CHARS:
            raise serializers.ValidationError(f"Keys are at most {METADATA_KEY_MAX_CHARS} characters.")
        if len(item) > METADATA_VALUE_MAX_CHARS:
            raise serializers.ValidationError(f"Values are at most {METADATA_VALUE_MAX_CHARS} characters.")


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": METADATA_MAX_KEYS,
        "propertyNames": {"maxLength": METADATA_KEY_MAX_CHARS},
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX_CHARS},
        "description": (
            f"Up to {METADATA_MAX_KEYS} keys of at most {METADATA_KEY_MAX_CHARS} characters, "
            f"with string values of at most {METADATA_VALUE_MAX_CHARS} characters."
        ),
    }
)
class MetadataField(serializers.DictField):
    """An object of string keys and string values, nothing else (not an array, not a number)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=StrictCharField(allow_blank=True, trim_whitespace=False), **kwargs)


class InteractionInputSerializer(StrictInputSerializer):
    title = StrictCharField(max_length=200, required=False, allow_blank=True)
    model_name = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The model replies are generated with; blank means the server's default model.",
    )
    role = serializers.ChoiceField(
        choices=PromptRole.choices, required=False, help_text="The role the prompt is sent as."
    )
    prompt = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=settings.INTERACTION_PROMPT_MAX_CHARS,
        trim_whitespace=False,
        help_text="The system prompt, sent first with the role above.",
    )
    temperature = StrictFloatField(min_value=0.0, max_value=2.0, required=False, allow_null=True)
    max_tokens = StrictIntegerField(
        min_value=1,
        max_value=settings.LLM_MAX_OUTPUT_TOKENS,
        required=False,
        allow_null=True,
        help_text="Cap on the tokens of each reply; null means the server's cap.",
    )
    metadata = MetadataField(required=False, validators=[validate_metadata])


class InteractionSerializer(serializers.ModelSerializer[Interaction]):
    object = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())

    class Meta:
        model = Interaction
        fields = [
            "id",
            "object",
            "title",
            "model_name",
            "role",
            "prompt",
            "temperature",
            "max_tokens",
            "metadata",
            "message_count",
            "last_message_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_object(self, interaction: Interaction) -> str:
        return "interaction"
