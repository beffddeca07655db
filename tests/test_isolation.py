"""Another user's interactions and messages answer 404 on every endpoint and method, and
nothing is written."""

import pytest

from interactions.models import Interaction
from messages_app.models import Message
from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign(other_user):
    interaction = InteractionFactory(owner=other_user, title="private", prompt="secret prompt")
    message = MessageFactory(interaction=interaction, content="secret")
    return interaction, message


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/interactions/{i}/", None),
        ("patch", "/api/v1/interactions/{i}/", {"title": "mine now"}),
        ("delete", "/api/v1/interactions/{i}/", None),
        ("get", "/api/v1/interactions/{i}/messages/", None),
        ("post", "/api/v1/interactions/{i}/messages/", {"content": "hello"}),
        ("post", "/api/v1/interactions/{i}/messages/?stream=true", {"content": "hello"}),
        ("get", "/api/v1/interactions/{i}/messages/{m}/", None),
        ("post", "/api/v1/interactions/{i}/messages/{m}/retry/", None),
    ],
)
def test_another_users_data_answers_404_and_nothing_changes(api, foreign, method, path, body):
    interaction, message = foreign
    url = path.format(i=interaction.pk, m=message.pk)

    response = getattr(api, method)(url, body, format="json")

    assert response.status_code == 404
    assert "secret" not in response.content.decode()
    interaction.refresh_from_db()
    assert interaction.title == "private"
    assert Message.objects.filter(interaction=interaction).count() == 1
    assert interaction.message_count == 0


def test_another_users_interactions_are_not_listed(api, foreign):
    assert api.get("/api/v1/interactions/").json()["data"] == []


def test_a_message_id_from_another_interaction_answers_404(api, interaction, foreign):
    _, foreign_message = foreign

    response = api.get(f"/api/v1/interactions/{interaction.pk}/messages/{foreign_message.pk}/")

    assert response.status_code == 404


def test_paging_cursor_from_another_users_list_is_rejected(api, foreign):
    interaction, _ = foreign

    response = api.get(f"/api/v1/interactions/?after={interaction.pk}")

    # Not in this user's list: 404 naming the cursor, as for any object of someone else's.
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "after"


def test_every_endpoint_requires_authentication(client, foreign):
    interaction, message = foreign
    for url in [
        "/api/v1/interactions/",
        f"/api/v1/interactions/{interaction.pk}/",
        f"/api/v1/interactions/{interaction.pk}/messages/",
        f"/api/v1/interactions/{interaction.pk}/messages/{message.pk}/",
    ]:
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]["type"] == "authentication_error"
    response = client.post("/api/v1/interactions/", {}, content_type="application/json")
    assert response.status_code == 401
    assert Interaction.objects.count() == 1
