"""The log lines of an answer refused in content negotiation (406) name the user, as every
other answer's do: DRF negotiates before it authenticates, so the error handler does."""

import pytest

from tests.conftest import client_for
from tests.test_observability import json_logs  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["messages/", "export/"])
def test_a_406_access_line_carries_the_user_id(api, user, interaction, json_logs, path):  # noqa: F811
    response = api.get(
        f"/api/v1/interactions/{interaction.pk}/{path}", HTTP_ACCEPT="image/png", HTTP_X_REQUEST_ID="req-406"
    )

    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"
    (access,) = json_logs.events("request")
    assert access["status"] == 406
    assert access["request_id"] == "req-406"
    assert access["user_id"] == str(user.pk)


def test_a_406_for_a_bad_token_stays_a_406_naming_no_user(interaction, json_logs, user):  # noqa: F811
    stranger = client_for(user)
    stranger.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = stranger.get(f"/api/v1/interactions/{interaction.pk}/messages/", HTTP_ACCEPT="image/png")

    assert response.status_code == 406
    (access,) = json_logs.events("request")
    assert access["user_id"] is None


def test_an_anonymous_406_names_no_user(client, interaction, json_logs):  # noqa: F811
    response = client.get(f"/api/v1/interactions/{interaction.pk}/messages/", HTTP_ACCEPT="image/png")

    assert response.status_code == 406
    (access,) = json_logs.events("request")
    assert access["user_id"] is None
