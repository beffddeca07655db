"""A client exports its own conversation: JSON or Markdown, chosen by Accept or ?format=, streamed
in keyset chunks."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messages_app import export
from messages_app.models import MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db

SAME_INSTANT = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def url(interaction, query: str = "") -> str:
    return f"/api/v1/interactions/{interaction.pk}/export/{query}"


def body_of(response) -> str:
    assert response.streaming, "the export is streamed"
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def conversation(interaction):
    MessageFactory(interaction=interaction, role=MessageRole.USER, content="Plan three days in Lisbon")
    MessageFactory(interaction=interaction, role=MessageRole.ASSISTANT, content="Day one: Alfama.", total_tokens=12)
    MessageFactory(interaction=interaction, role=MessageRole.USER, content="And Porto?")
    MessageFactory(
        interaction=interaction,
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.FAILED,
        error_code="upstream_timeout",
        error_message="the provider did not answer in time",
    )
    return interaction


def test_the_json_export_holds_the_interaction_and_every_message_as_the_api_shows_them(api, conversation):
    response = api.get(url(conversation))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    document = json.loads(body_of(response))
    listed = api.get(f"/api/v1/interactions/{conversation.pk}/messages/?limit=100").json()["data"]
    assert document["object"] == "interaction.export"
    assert document["interaction"] == api.get(f"/api/v1/interactions/{conversation.pk}/").json()
    assert document["messages"] == listed
    assert [message["content"] for message in document["messages"]][:3] == [
        "Plan three days in Lisbon",
        "Day one: Alfama.",
        "And Porto?",
    ]


def test_accept_text_markdown_answers_a_transcript_with_the_failed_reply_marked(api, conversation):
    response = api.get(url(conversation), HTTP_ACCEPT="text/markdown")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="interaction-{conversation.pk}.md"'
    text = body_of(response)
    assert text.startswith(f"# Interaction {conversation.pk}\n")
    assert "## user · " in text
    assert "Plan three days in Lisbon" in text
    assert "> **FAILED**: `upstream_timeout` the provider did not answer in time" in text
    assert text.index("Plan three days in Lisbon") < text.index("Day one: Alfama.") < text.index("And Porto?")


@pytest.mark.parametrize(
    ("query", "content_type"),
    [("?format=markdown", "text/markdown; charset=utf-8"), ("?format=json", "application/json; charset=utf-8")],
)
def test_the_format_parameter_chooses_the_format(api, conversation, query, content_type):
    response = api.get(url(conversation, query), HTTP_ACCEPT="*/*")

    assert response.status_code == 200
    assert response["Content-Type"] == content_type


def test_a_format_that_is_not_offered_answers_406_in_the_error_envelope(api, conversation):
    response = api.get(url(conversation), HTTP_ACCEPT="text/csv")

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_acceptable"


def test_someone_elses_interaction_answers_404_in_json_even_when_markdown_is_asked_for(other_api, conversation):
    response = other_api.get(url(conversation, "?format=markdown"))

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["param"] == "interaction_id"


def test_an_anonymous_client_cannot_export(client, conversation):
    assert client.get(url(conversation)).status_code == 401


@pytest.mark.sqlite_only(reason="reads the SQL; tests/test_mongodb_contract_admin.py proves the MongoDB chunks")
def test_the_export_reads_in_keyset_chunks_and_keeps_messages_of_the_same_instant_in_order(
    api, interaction, monkeypatch
):
    monkeypatch.setattr(export, "EXPORT_CHUNK_SIZE", 3)
    stored = [
        MessageFactory(interaction=interaction, content=f"message {index}", created_at=SAME_INSTANT)
        for index in range(10)
    ]
    InteractionFactory(owner=interaction.owner)  # another conversation stays out

    response = api.get(url(interaction))
    with CaptureQueriesContext(connection) as queries:
        document = json.loads(body_of(response))

    assert [message["id"] for message in document["messages"]] == sorted(str(message.pk) for message in stored)
    message_reads = [query for query in queries if "messages_app_message" in query["sql"]]
    assert len(message_reads) == 4, "ten messages in chunks of three: four short queries"
    assert all("LIMIT 3" in query["sql"] for query in message_reads)


def test_an_empty_conversation_exports_an_empty_list(api, interaction):
    document = json.loads(body_of(api.get(url(interaction))))

    assert document["messages"] == []


def test_the_schema_documents_the_export_in_both_formats(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    operation = schema["paths"]["/api/v1/interactions/{id}/export/"]["get"]

    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/markdown"}
    assert "406" in operation["responses"]
    assert any(parameter["name"] == "format" for parameter in operation["parameters"])
