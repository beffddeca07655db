from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from core.views import OfflineRedocView, SchemaView, SwaggerUIView, TokenObtainView, health, metrics, ready

api_v1: list[URLPattern | URLResolver] = [
    path("auth/token/", TokenObtainView.as_view(), name="auth-token"),
    path("", include("interactions.urls")),
    path("", include("llm.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerUIView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", OfflineRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", health, name="health"),
    path("readyz", ready, name="ready"),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="prometheus-django-metrics"),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
