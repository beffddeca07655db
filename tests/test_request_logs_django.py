"""Django's own lines about an answer (`django.request`: "Not Found: …", "Bad Request: …") are
written after the request's log context is cleared; they still name the request's id, and never
the path with its query string (where a stream ticket may be)."""

import uuid

import pytest

from tests.test_observability import json_logs  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def test_djangos_not_found_line_names_the_request_id_and_not_the_path(api, json_logs):  # noqa: F811
    missing = uuid.uuid4()

    response = api.get(f"/api/v1/interactions/{missing}/?ticket=a-stream-ticket", HTTP_X_REQUEST_ID="req-404")

    assert response.status_code == 404
    (line,) = [line for line in json_logs.records() if line.get("logger") == "django.request"]
    assert line["request_id"] == "req-404"
    assert line["status_code"] == 404
    assert "a-stream-ticket" not in str(line)
