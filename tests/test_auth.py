import pytest
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_username_and_password_exchange_for_a_token_that_authenticates(client):
    UserFactory(username="bob")

    response = client.post(
        "/api/v1/auth/token/",
        {"username": "bob", "password": "correct horse battery staple"},
        content_type="application/json",
    )

    assert response.status_code == 200
    token = response.json()["token"]
    listed = client.get("/api/v1/interactions/", HTTP_AUTHORIZATION=f"Token {token}")
    assert listed.status_code == 200


def test_wrong_password_answers_400_in_the_error_shape(client):
    UserFactory(username="bob")

    response = client.post(
        "/api/v1/auth/token/", {"username": "bob", "password": "nope"}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "authorization"


def test_an_unknown_field_answers_400_naming_it_and_issues_no_token(client):
    bob = UserFactory(username="bob")

    response = client.post(
        "/api/v1/auth/token/",
        {"username": "bob", "password": "correct horse battery staple", "foo": 1},
        content_type="application/json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("unknown_field", "foo", "invalid_request_error")
    assert not Token.objects.filter(user=bob).exists()


def test_an_invalid_token_answers_401(client):
    response = client.get("/api/v1/interactions/", HTTP_AUTHORIZATION="Token not-a-real-token")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
