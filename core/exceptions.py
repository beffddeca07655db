"""One exception handler: every API error answers with the OpenAI error envelope.

    {"error": {"message": str, "type": str, "param": str | null, "code": str | null}}

Field errors name the field in `param` and carry every field's messages in `details`.
"""

import logging
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from core.database import is_database_unavailable
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "invalid_request_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    414: "invalid_request_error",
    415: "invalid_request_error",
    417: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
}


def error_type_for(status_code: int) -> str:
    return ERROR_TYPES.get(status_code, "api_error")


def error_body(
    *,
    message: str,
    status_code: int,
    code: str | None,
    param: str | None = None,
    error_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": error_type or error_type_for(status_code),
        "param": param,
        "code": code,
    }
    if status_code >= 500:
        # Server-side failures name the request, so that a client's report finds its log lines.
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            details = {**(details or {}), "request_id": request_id}
    if details:
        error["details"] = details
    return {"error": error}


def database_unavailable_body() -> dict[str, Any]:
    return error_body(
        message="The database is unavailable. Try again shortly.", status_code=503, code="database_unavailable"
    )


DATABASE_UNAVAILABLE_HEADERS = {"Retry-After": "5"}


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str | None]:
    """Return (param, message, code) of the first error in a DRF error tree."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            param = f"{prefix}.{name}" if prefix and name else (name or prefix)
            found_param, message, code = _first_field_error(value, param)
            return found_param or None, message, code
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_field_error(value, f"{prefix}[{index}]")
            if value:
                return prefix or None, str(value), getattr(value, "code", None)
    return prefix or None, str(detail), getattr(detail, "code", None)


def _validation_response(exc: exceptions.ValidationError) -> Response:
    param, message, code = _first_field_error(exc.detail)
    text = f"{param}: {message}" if param else message
    body = error_body(
        message=text,
        status_code=400,
        code=code or "invalid",
        param=param,
        details={"fields": exc.detail} if isinstance(exc.detail, dict) else None,
    )
    return Response(body, status=400)


def application_error_body(exc: ApplicationError, **extra_details: Any) -> dict[str, Any]:
    return error_body(
        message=exc.message,
        status_code=exc.status_code,
        code=exc.code,
        param=exc.param,
        error_type=exc.error_type,
        details={**exc.details, **extra_details},
    )


def _request_user_identify(request: Any) -> None:
    """Authenticate a request answered with an error before DRF authenticated it.

    DRF negotiates the response's format before it authenticates (APIView.initial), so a
    406 is answered for a user nobody looked up, and its log lines (the access line) would
    name no user, unlike every other answer. Authenticating here names the user; a failed
    authentication changes nothing of the answer, which stays the error being handled.
    """
    if not isinstance(request, Request) or hasattr(request, "_user"):
        return
    try:
        user = request.user  # Sets the Django request's user too, which the access line reads.
    except exceptions.APIException:
        return
    structlog.contextvars.bind_contextvars(user_id=str(user.pk) if user.is_authenticated else None)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    _request_user_identify(context.get("request"))
    if isinstance(exc, ApplicationError):
        return Response(application_error_body(exc), status=exc.status_code, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                message="The request body is larger than the server accepts.",
                status_code=413,
                code="request_too_large",
            ),
            status=413,
        )
    if is_database_unavailable(exc):
        logger.exception("Database error while handling %s", context.get("request"))
        return Response(database_unavailable_body(), status=503, headers=DATABASE_UNAVAILABLE_HEADERS)
    if isinstance(exc, DjangoValidationError):
        # A model's full_clean() in a service: the client's input was invalid, not our code.
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc)

    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    code = getattr(detail, "code", None) or getattr(exc, "default_code", None)
    response.data = error_body(message=str(detail), status_code=response.status_code, code=code)
    return response
