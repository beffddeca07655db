from django.urls import path

from bench.floor_views import AuthenticatedFloorView, bare_floor
from chatproject.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("bench/floor/bare/", bare_floor),
    path("bench/floor/drf/", AuthenticatedFloorView.as_view()),
    *project_urlpatterns,
]
