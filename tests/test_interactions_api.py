import json
import uuid

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token

from chatproject.wsgi import application
from interactions.models import Interaction
from messages_app.models import Message, MessageRole
from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/interactions/"


def detail_url(interaction_id: object) -> str:
    return f"/api/v1/interactions/{interaction_id}/"


def test_creating_an_interaction_stores_its_settings_for_the_caller(api, user, settings):
    response = api.post(
        LIST_URL,
        {
            "title": "Trip",
            "model_name": "llama3",
            "role": "developer",
            "prompt": "Answer in French.",
            "temperature": 0.3,
            "max_tokens": 200,
            "metadata": {"source": "web"},
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["object"] == "interaction"
    assert body["model_name"] == "llama3"
    assert body["role"] == "developer"
    assert body["prompt"] == "Answer in French."
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 200
    assert body["metadata"] == {"source": "web"}
    assert body["message_count"] == 0
    assert body["last_message_at"] is None
    stored = Interaction.objects.get(pk=body["id"])
    assert stored.owner == user


def test_an_interaction_without_settings_gets_the_defaults(api, settings):
    settings.LLM_DEFAULT_MODEL = "default-model"

    body = api.post(LIST_URL, {}, format="json").json()

    assert body["model_name"] == "default-model"
    assert body["role"] == "system"
    assert body["prompt"] == ""
    assert body["temperature"] is None
    assert body["title"] == ""


def test_reverse_names_match_the_documented_urls():
    assert reverse("interaction-list") == LIST_URL
    some_id = uuid.uuid4()
    assert reverse("message-list", kwargs={"interaction_id": some_id}) == f"/api/v1/interactions/{some_id}/messages/"


def test_listing_shows_only_the_callers_interactions_most_recent_activity_first(api, user, other_user):
    older = InteractionFactory(owner=user, title="older")
    newer = InteractionFactory(owner=user, title="newer")
    InteractionFactory(owner=other_user, title="not yours")
    api.post(f"/api/v1/interactions/{older.pk}/messages/", {"content": "bump"}, format="json")

    body = api.get(LIST_URL).json()

    assert [item["title"] for item in body["data"]] == ["older", "newer"]
    assert body["object"] == "list"
    assert body["first_id"] == str(older.pk)
    assert body["last_id"] == str(newer.pk)
    assert body["has_more"] is False


def test_patch_changes_only_the_given_settings(api, interaction):
    response = api.patch(detail_url(interaction.pk), {"temperature": 1.5, "title": "Renamed"}, format="json")

    assert response.status_code == 200
    interaction.refresh_from_db()
    assert interaction.temperature == 1.5
    assert interaction.title == "Renamed"
    assert interaction.prompt == "You are terse."


def test_delete_removes_the_interaction_and_its_messages(api, interaction):
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "hi"}, format="json")

    response = api.delete(detail_url(interaction.pk))

    assert response.status_code == 204
    assert not Interaction.objects.filter(pk=interaction.pk).exists()
    assert api.get(f"/api/v1/interactions/{interaction.pk}/messages/").status_code == 404


def conversation(interaction: Interaction, exchanges: int) -> None:
    for _ in range(exchanges):
        question = MessageFactory(interaction=interaction, role=MessageRole.USER)
        MessageFactory(interaction=interaction, reply_to=question)


def test_deleting_a_long_conversation_costs_what_a_short_one_does_and_touches_no_other(
    api, user, django_assert_max_num_queries
):
    short, long, kept = (InteractionFactory(owner=user) for _ in range(3))
    conversation(short, 1)
    conversation(long, 100)
    conversation(kept, 2)

    with CaptureQueriesContext(connection) as deleting_short:
        assert api.delete(detail_url(short.pk)).status_code == 204
    with django_assert_max_num_queries(len(deleting_short)):
        assert api.delete(detail_url(long.pk)).status_code == 204

    assert not Message.objects.filter(interaction_id__in=[short.pk, long.pk]).exists()
    listed = api.get(f"/api/v1/interactions/{kept.pk}/messages/").json()["data"]
    assert len(listed) == 4
    assert all(m["reply_to"] for m in listed if m["role"] == "assistant"), "other replies keep their link"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"role": "assistant"}, "role"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"metadata": ["not", "a", "map"]}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"title": "t" * 201}, "title"),
        ({"owner": 1}, "owner"),
        ({"message_count": 5}, "message_count"),
        ({"id": str(uuid.uuid4())}, "id"),
    ],
)
def test_invalid_interaction_settings_answer_400_naming_the_field(api, payload, param):
    response = api.post(LIST_URL, payload, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert not Interaction.objects.exists()


def test_patch_with_an_invalid_value_changes_nothing(api, interaction):
    response = api.patch(detail_url(interaction.pk), {"temperature": 9, "title": "x"}, format="json")

    assert response.status_code == 400
    interaction.refresh_from_db()
    assert interaction.title == ""


def test_unknown_interaction_answers_404(api):
    response = api.get(detail_url(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_interaction_id_answers_400(api):
    response = api.get(detail_url("not-a-uuid"))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "interaction_id"


def test_put_is_not_offered(api, interaction):
    response = api.put(detail_url(interaction.pk), {"title": "x"}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_chunked_body_the_server_did_not_decode_answers_411_and_stores_nothing(user):
    # gunicorn decodes chunked bodies and core.wsgi reads them (tests/test_gunicorn_limits.py); a
    # server that passes the chunks on undecoded (no wsgi.input_terminated) leaves nothing safe to read.
    token, _ = Token.objects.get_or_create(user=user)
    environ = (
        RequestFactory()
        .post(
            "/api/v1/interactions/",
            b'{"title": "chunked"}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token.key}",
            HTTP_TRANSFER_ENCODING="chunked",
        )
        .environ
    )
    del environ["CONTENT_LENGTH"]
    statuses: list[str] = []

    body = b"".join(application(environ, lambda status, headers, *_: statuses.append(status)))

    assert statuses == ["411 Length Required"]
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "length_required")
    assert not Interaction.objects.exists()
