"""JSON answers for errors raised outside DRF views (unknown URLs, crashes, CSRF); health; docs."""

import ipaddress
import secrets
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.exceptions import error_body
from core.health import READY_VALUES, readiness_checks
from core.network import client_ip
from core.parsers import SafeJSONParser
from core.renderers import SafeJSONRenderer
from core.serializers import AuthTokenInputSerializer
from core.throttling import FailOpenAnonRateThrottle

NEVER_CACHE = {"Cache-Control": "no-store"}


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body(message=f"Unknown URL: {request.path}", status_code=404, code="unknown_url"),
        status=404,
    )


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body(message="The server failed to process the request.", status_code=500, code="server_error"),
        status=500,
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body(message="The request could not be understood.", status_code=400, code="bad_request"),
        status=400,
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body(message="You do not have permission to do this.", status_code=403, code="permission_denied"),
        status=403,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    # Django's reasons are sentences that end with a period ("CSRF cookie not set.").
    reason = reason.removesuffix(".")
    return JsonResponse(
        error_body(
            message=f"CSRF verification failed: {reason}. API clients should use token authentication.",
            status_code=403,
            code="csrf_failed",
        ),
        status=403,
    )


@extend_schema(
    operation_id="health",
    summary="Liveness: the process answers",
    description="Checks nothing else (no database, no cache): a dependency outage must not get the process restarted.",
    tags=["health"],
    responses={200: inline_serializer("Health", {"status": serializers.CharField()})},
    auth=[],
)
@api_view(["GET", "HEAD"])  # Load balancers probe with HEAD.
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def health(request: Request) -> Response:
    """Liveness, for container health checks and orchestrators' liveness probes."""
    return Response({"status": "ok"}, headers=NEVER_CACHE)


@extend_schema(
    operation_id="ready",
    summary="Readiness: the database, the cache and the model provider",
    description=(
        "`status` is `ready` (200) or `not_ready` (503); `checks` says `ok`, `unavailable`, "
        "`optional_unavailable` (the cache is down and READINESS_CACHE_OPTIONAL is set) or "
        "`not_configured` for each of `database`, `cache` and `provider`."
    ),
    tags=["health"],
    responses={
        200: inline_serializer(
            "Readiness",
            {"status": serializers.CharField(), "checks": serializers.DictField(child=serializers.CharField())},
        ),
        503: inline_serializer(
            "ReadinessUnavailable",
            {"status": serializers.CharField(), "checks": serializers.DictField(child=serializers.CharField())},
        ),
    },
    auth=[],
)
@api_view(["GET", "HEAD"])  # Load balancers probe with HEAD.
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def ready(request: Request) -> Response:
    """Readiness, for load balancers: send traffic only when every dependency answers."""
    checks = readiness_checks()
    is_ready = all(value in READY_VALUES for value in checks.values())
    return Response(
        {"status": "ready" if is_ready else "not_ready", "checks": checks},
        status=200 if is_ready else 503,
        headers=NEVER_CACHE,
    )


class LockedOut(ApplicationError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "locked_out"


@extend_schema_view(
    post=extend_schema(summary="Exchange a username and password for an API token", auth=[], tags=["auth"])
)
class TokenObtainView(ObtainAuthToken):
    """Exchange a username and password for the API token (`Authorization: Token <key>`).

    django-axes counts the failures; once a username and address are locked out, the answer
    is 429 `locked_out` with Retry-After, whatever the password.
    """

    parser_classes = [SafeJSONParser]
    serializer_class = AuthTokenInputSerializer
    throttle_classes = [FailOpenAnonRateThrottle]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            # axes marks the request it was given by authenticate(): this DRF request.
            if getattr(request, "axes_locked_out", False):
                cool_off = int(settings.AXES_COOLOFF_TIME.total_seconds())
                raise LockedOut(
                    f"Too many failed logins for this username from this address; try again in {cool_off} seconds.",
                    headers={"Retry-After": str(cool_off)},
                ) from None
            raise


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    authorization = request.headers.get("Authorization", "")
    if token and secrets.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOWED_IPS)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for a bearer of METRICS_BEARER_TOKEN or an address in METRICS_ALLOWED_IPS."""
    if not _metrics_allowed(request):
        return JsonResponse(
            error_body(
                message="Metrics need `Authorization: Bearer <METRICS_BEARER_TOKEN>` or an allowed address.",
                status_code=401,
                code="metrics_unauthorized",
            ),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    response: HttpResponse = ExportToDjangoView(request)
    return response


# The docs pages inject styles at run time (Swagger UI's and Redoc's components) and Redoc
# renders in a blob: worker; everything else stays under the site-wide policy (settings).
DOCS_CSP_UPDATE = {"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]}


class JsonOutsideTheDocument(APIView):
    """The docs pages and the schema render the page or the document only; their errors (a
    wrong method, an unknown `format`, nothing acceptable) answer in the error envelope and
    OPTIONS answers JSON, as everywhere else. Their own renderers (an HTML template, YAML)
    would render an error as a page or a YAML envelope, and OPTIONS without a template at all."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and (response.exception or request.method == "OPTIONS"):
            response.accepted_renderer = SafeJSONRenderer()
            response.accepted_media_type = "application/json"
        return response


class SchemaView(JsonOutsideTheDocument, SpectacularAPIView):
    """The OpenAPI document (YAML, or JSON with `?format=json`)."""


class SwaggerUIView(JsonOutsideTheDocument, SpectacularSwaggerSplitView):
    """Swagger UI with its start-up script served from this URL too (`?script`), so that the
    page needs no inline script under the Content-Security-Policy."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response._csp_update = DOCS_CSP_UPDATE
        return response


class OfflineRedocView(JsonOutsideTheDocument, SpectacularRedocView):
    """Redoc with nothing from another host: no web fonts (the page uses the system's)."""

    template_name = "core/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response._csp_update = DOCS_CSP_UPDATE
        return response
