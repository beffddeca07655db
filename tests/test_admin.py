"""Staff edits in the admin go through the services: the API never serves a stale page after them."""

import pytest
from django.contrib.auth.models import User

from interactions.models import Interaction
from messages_app.models import Message
from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12))
    return client


def change_form(interaction, **changes):
    data = {
        "title": interaction.title,
        "model_name": interaction.model_name,
        "role": interaction.role,
        "prompt": interaction.prompt,
        "temperature": "" if interaction.temperature is None else interaction.temperature,
        "max_tokens": "" if interaction.max_tokens is None else interaction.max_tokens,
        "metadata": "{}",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
    }
    return {**data, **changes}


def test_an_admin_edit_shows_at_once_in_the_api_however_cached(staff_client, api, user):
    interaction = InteractionFactory(owner=user, title="Old title")
    detail = f"/api/v1/interactions/{interaction.pk}/"
    assert api.get(detail).json()["title"] == "Old title"
    assert api.get("/api/v1/interactions/").json()["data"][0]["title"] == "Old title"

    response = staff_client.post(
        f"/admin/interactions/interaction/{interaction.pk}/change/", change_form(interaction, title="New title")
    )

    assert response.status_code == 302
    assert api.get(detail).json()["title"] == "New title"
    assert api.get("/api/v1/interactions/").json()["data"][0]["title"] == "New title"


def test_the_admin_refuses_settings_the_api_refuses(staff_client, user):
    interaction = InteractionFactory(owner=user, temperature=0.5)

    response = staff_client.post(
        f"/admin/interactions/interaction/{interaction.pk}/change/", change_form(interaction, temperature="5")
    )

    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 2.0" in response.content.decode()
    interaction.refresh_from_db()
    assert interaction.temperature == 0.5


def test_an_admin_delete_leaves_the_api_list_at_once(staff_client, api, user):
    interaction = InteractionFactory(owner=user)
    assert len(api.get("/api/v1/interactions/").json()["data"]) == 1

    response = staff_client.post(f"/admin/interactions/interaction/{interaction.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Interaction.objects.filter(pk=interaction.pk).exists()
    assert api.get("/api/v1/interactions/").json()["data"] == []


def test_interactions_are_not_created_in_the_admin(staff_client):
    assert staff_client.get("/admin/interactions/interaction/add/").status_code == 403


def test_single_messages_are_read_only_in_the_admin(staff_client, user):
    message = MessageFactory(interaction=InteractionFactory(owner=user))

    assert staff_client.get(f"/admin/messages_app/message/{message.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/messages_app/message/{message.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()
