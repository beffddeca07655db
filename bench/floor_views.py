"""The floors the HTTP benchmark measures every row against (mounted by bench/bench_urls.py only).

- bare: a plain Django view answering a small JSON body (no authentication, no database);
  everything below the view (gunicorn, WSGI, the middleware) is in it.
- authenticated DRF: the least an API request of this project does: token authentication
  (one indexed read), the throttle, content negotiation, JSON rendering. Its POST also
  parses and validates a JSON body and writes one row, the least a stored message costs.
"""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

FLOOR_TABLE = "bench_floor_row"


def bare_floor(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"object": "floor"})


class FloorInputSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=32_000)


class AuthenticatedFloorView(APIView):
    def get(self, request: Request) -> Response:
        return Response({"object": "floor", "user": request.user.pk})

    def post(self, request: Request) -> Response:
        serializer = FloorInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {FLOOR_TABLE} (content) VALUES (%s)", [serializer.validated_data["content"]])  # noqa: S608
        return Response({"object": "floor", "user": request.user.pk}, status=status.HTTP_201_CREATED)
