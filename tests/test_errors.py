"""Every error answers JSON in the OpenAI envelope, also outside DRF views."""

import pytest
from django.test import Client
from django.urls import path

from chatproject import urls as project_urls


def crash(request):
    raise RuntimeError("boom")


urlpatterns = [*project_urls.urlpatterns, path("test-crash/", crash)]
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def assert_error_envelope(response, status, code=None):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"]
    if code:
        assert error["code"] == code


@pytest.mark.django_db
def test_an_unknown_url_answers_json_404(client):
    assert_error_envelope(client.get("/no/such/page"), 404, "unknown_url")


@pytest.mark.urls("tests.test_errors")
@pytest.mark.django_db
def test_a_crash_answers_json_500_not_an_html_page():
    client = Client(raise_request_exception=False)

    assert_error_envelope(client.get("/test-crash/"), 500, "server_error")


@pytest.mark.django_db
def test_a_wrong_method_answers_json_405(api):
    assert_error_envelope(api.put("/api/v1/interactions/", {}, format="json"), 405, "method_not_allowed")


DOCS_AND_SCHEMA = ["/api/docs/", "/api/redoc/", "/api/schema/"]


@pytest.mark.parametrize("path", DOCS_AND_SCHEMA)
@pytest.mark.django_db
def test_options_on_the_docs_pages_and_the_schema_answers_200_with_allow_in_json(client, path):
    response = client.options(path)

    assert response.status_code == 200
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"]


@pytest.mark.parametrize("path", DOCS_AND_SCHEMA)
@pytest.mark.django_db
def test_a_wrong_method_on_the_docs_pages_and_the_schema_answers_json_405(client, path):
    response = client.post(path)

    assert_error_envelope(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", DOCS_AND_SCHEMA)
@pytest.mark.django_db
def test_an_unknown_format_on_the_docs_pages_and_the_schema_answers_json_406(client, path):
    assert_error_envelope(client.get(path, {"format": "xml"}), 406, "not_acceptable")


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
@pytest.mark.django_db
def test_a_docs_page_asked_for_json_only_answers_json_406(client, path):
    assert_error_envelope(client.get(path, HTTP_ACCEPT="application/json"), 406, "not_acceptable")


@pytest.mark.django_db
def test_the_docs_pages_and_the_schema_still_answer_their_page_and_document(client):
    assert client.get("/api/docs/")["Content-Type"].startswith("text/html")
    assert client.get("/api/redoc/")["Content-Type"].startswith("text/html")
    assert client.get("/api/schema/")["Content-Type"].startswith("application/vnd.oai.openapi")
    assert client.get("/api/schema/", {"format": "json"}).json()["openapi"] == "3.1.0"


@pytest.mark.django_db
def test_session_post_without_csrf_token_answers_json_403(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post("/api/v1/interactions/", {}, content_type="application/json")

    assert_error_envelope(response, 403)


@pytest.mark.django_db
def test_a_post_outside_the_api_without_csrf_cookie_answers_json_403_in_one_sentence():
    response = Client(enforce_csrf_checks=True).post("/metrics")

    assert_error_envelope(response, 403, "csrf_failed")
    assert response.json()["error"]["message"] == (
        "CSRF verification failed: CSRF cookie not set. API clients should use token authentication."
    )


@pytest.mark.django_db
def test_a_disallowed_host_answers_json_400(client):
    assert_error_envelope(client.get("/api/v1/interactions/", HTTP_HOST="evil.example"), 400, "bad_request")


@pytest.mark.django_db
def test_health_reports_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
