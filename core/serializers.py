import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from core.text import printable


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields the client may not set, instead of silently ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is unknown or read-only and cannot be set."] for name in unknown},
                    code="unknown_field",
                )
        return super().to_internal_value(data)


@extend_schema_serializer(component_name="AuthToken")  # The name the schema has always given it.
class AuthTokenInputSerializer(StrictInputSerializer, AuthTokenSerializer):
    """The token exchange: a username and a password in, nothing else (an unknown field answers 400
    before any password is checked); the token out."""


def parse_id(value: str, *, param: str) -> uuid.UUID:
    """A path or query id as a UUID, or a 400 that names the parameter."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        shown = printable(str(value), max_chars=40)
        raise serializers.ValidationError({param: [f"“{shown}” is not a valid id."]}, code="invalid_id") from None


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A FloatField that takes JSON numbers only: not `true` (DRF reads it as 1.0), not `"0.5"`."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that takes JSON integers only (`1.0` is one): not `true`, not `"12"`."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes JSON `true` and `false` only, not `0`, `1` or `"yes"`."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data
