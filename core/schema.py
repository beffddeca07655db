"""Reusable OpenAPI pieces: the error envelope and the error responses of each operation."""

from typing import Any

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


NOT_MODIFIED = OpenApiResponse(
    description="Not modified: `If-None-Match` holds the answer's current `ETag` (it changes with every write "
    "to the interaction, and differs per media type) or `*`. No body."
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


HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
UUID_SCHEMA = {"type": "string", "format": "uuid"}
# What core.middleware.ApiInputMiddleware and the message views accept.
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]+$"}
# One event of a reply's stream (OpenAPI before 3.2 describes each event of an event stream).
REPLY_EVENT_TYPES = ["message.created", "reply.created", "reply.delta", "reply.completed", "error"]
SERVER_SENT_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": REPLY_EVENT_TYPES},
        "data": {
            "type": "string",
            "description": (
                "JSON: `message.created` the stored user message, `reply.created` the stored in-progress "
                'reply, `reply.delta` `{"id", "delta"}` text as it arrives, `reply.completed` the stored '
                "reply, `error` the error envelope (the stored reply in `error.details.reply`)."
            ),
        },
    },
}
EVERY_OPERATION_ERRORS = {
    400: "Invalid request: the field or parameter is named in `error.param`.",
    401: "Missing or invalid credentials.",
    429: "Too many requests (rate limit, or a login locked out after failed attempts).",
}
BODY_ERRORS = {
    413: "The request body is over the size limit.",
    415: "The request body is not JSON.",
}


def postprocess_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Make the schema say what the server does, for everything the views cannot say one by one.

    - Path ids are UUIDs (anything else answers 400 naming the id).
    - Every API operation may answer 400, 401 and 429 in the error envelope; one with a body
      also 413 and 415; one on an object also 404.
    - Input objects allow no other property (unknown fields answer 400).
    - An event stream is described event by event: its event types, and what each one's data is;
      errors are JSON only, also where the success may stream.
    - Idempotency-Key is 1 to 255 visible ASCII characters.
    """
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in result["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            parameters = operation.get("parameters", [])
            for parameter in parameters:
                if parameter["in"] == "path" and (parameter["name"] == "id" or parameter["name"].endswith("_id")):
                    parameter["schema"] = dict(UUID_SCHEMA)
                if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
                    parameter["schema"] = dict(IDEMPOTENCY_KEY_SCHEMA)
            errors = dict(EVERY_OPERATION_ERRORS)
            if "requestBody" in operation:
                errors.update(BODY_ERRORS)
            if any(parameter["in"] == "path" or parameter["name"] in ("after", "before") for parameter in parameters):
                errors[404] = "No such object (or a list cursor not in the list), or it belongs to another user."
            for status_code, response in operation["responses"].items():
                content = response.get("content", {})
                if "text/event-stream" not in content:
                    continue
                if str(status_code).startswith("2"):
                    content["text/event-stream"]["schema"] = dict(SERVER_SENT_EVENT)
                else:
                    # Errors found before the first event answer JSON, also to an SSE client.
                    del content["text/event-stream"]
            for status_code, description in errors.items():
                operation["responses"].setdefault(
                    str(status_code), {"description": description, "content": {"application/json": {"schema": error}}}
                )
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
