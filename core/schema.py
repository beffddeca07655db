"""Reusable OpenAPI pieces: the error envelope and the error responses of each operation."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "message": serializers.CharField(),
                "type": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
                "code": serializers.CharField(allow_null=True),
                "details": serializers.DictField(required=False),
            },
        )
    },
)


def error_responses(*status_codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid request: the field is named in `error.param`.",
        401: "Missing or invalid credentials.",
        404: "No such object, or it belongs to another user.",
        406: "None of the formats in Accept (or `format`) is offered.",
        409: "Conflict: a reply is already being generated, or the message cannot be retried.",
        413: "The request body is over the size limit.",
        422: "The Idempotency-Key was already used with a different request body.",
        429: "Too many requests.",
        502: "The model provider failed or answered garbage; the failed reply is stored.",
        503: "The model provider is rate limiting (see Retry-After), or the database is unavailable.",
        504: "The model provider timed out; the failed reply is stored.",
    }
    codes = sorted({401, 429, *status_codes})
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}
