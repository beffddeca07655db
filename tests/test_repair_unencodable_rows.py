"""Rows poisoned before the API refused unencodable text are repaired by a data migration
(interactions/migrations/0004_repair_unencodable_text.py), after which every page renders.

The poison is stored the way it got there, bypassing validation: a lone surrogate in the
metadata JSON (the escape the old code let through on SQLite), and bytes that are not UTF-8
in text columns (a CESU-8 surrogate, a stray byte), as other tools can write them.
"""

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from interactions.models import Interaction
from messages_app.models import Message, MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sqlite_only(reason="the poison is SQLite's: a MongoDB document cannot hold it"),
]

MIGRATION = "0004_repair_unencodable_text"
repair_migration = importlib.import_module(f"interactions.migrations.{MIGRATION}")
FFFD = "\ufffd"


@pytest.fixture
def staff_client(client):  # type: ignore[no-untyped-def]
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12))
    return client


def poison(interaction: Interaction, message: Message) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE interactions_interaction SET metadata = %s, title = CAST(X'5472697020EDA080' AS TEXT) "
            "WHERE id = %s",
            ['{"k": "\\ud800", "\\udc01key": ["ok", "x\\udfff"], "fine": "\\ud83d\\ude00"}', interaction.pk.hex],
        )
        cursor.execute(
            "UPDATE messages_app_message SET content = CAST(X'48656C6C6FFF21' AS TEXT) WHERE id = %s",
            [message.pk.hex],
        )


def run_the_repair() -> None:
    repair_migration.repair(apps, SimpleNamespace(connection=connection))


@pytest.fixture
def poisoned(user):  # type: ignore[no-untyped-def]
    interaction = InteractionFactory(owner=user, title="Trip")
    message = MessageFactory(interaction=interaction, role=MessageRole.USER, content="Hello!")
    MessageFactory(interaction=interaction, role=MessageRole.ASSISTANT, content="Hi 😀", reply_to=message)
    poison(interaction, message)
    return interaction


def admin_pages(interaction: Interaction) -> list[str]:
    message = Message.objects.filter(interaction=interaction).order_by("created_at", "id").first()
    assert message is not None
    return [
        "/admin/interactions/interaction/",
        f"/admin/interactions/interaction/{interaction.pk}/change/",
        f"/admin/messages_app/message/?interaction={interaction.pk}",
        f"/admin/messages_app/message/{message.pk}/change/",
        "/admin/messages_app/message/?q=Hello",
    ]


def test_the_repair_is_a_migration_that_migrate_applied(db):
    loader = MigrationLoader(connection)
    migration = loader.get_migration("interactions", MIGRATION)

    assert ("interactions", MIGRATION) in MigrationRecorder(connection).applied_migrations()
    assert [operation.code for operation in migration.operations] == [repair_migration.repair]


def test_a_poisoned_row_breaks_the_admin_before_the_repair(staff_client, poisoned, user):
    only_metadata = InteractionFactory(owner=user, title="Only metadata")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE interactions_interaction SET metadata = %s WHERE id = %s",
            ['{"k": "\\ud800"}', only_metadata.pk.hex],
        )
    staff_client.raise_request_exception = False

    assert staff_client.get(f"/admin/interactions/interaction/{poisoned.pk}/change/").status_code >= 500
    assert staff_client.get("/admin/interactions/interaction/").status_code >= 500
    assert staff_client.get(f"/admin/interactions/interaction/{only_metadata.pk}/change/").status_code >= 500


def test_after_the_repair_every_admin_page_and_export_and_the_api_render_the_poisoned_rows(staff_client, api, poisoned):
    updated_at = Interaction.objects.filter(pk=poisoned.pk).values_list("updated_at", flat=True).get()

    run_the_repair()

    repaired = Interaction.objects.get(pk=poisoned.pk)
    assert repaired.metadata == {"k": FFFD, f"{FFFD}key": ["ok", f"x{FFFD}"], "fine": "😀"}
    assert repaired.title == f"Trip {FFFD}"
    assert repaired.updated_at == updated_at, "nothing else changed"
    assert repaired.version == poisoned.version
    contents = list(Message.objects.filter(interaction=poisoned).order_by("created_at", "id").values_list("content"))
    assert contents == [(f"Hello{FFFD}!",), ("Hi 😀",)]

    for page in admin_pages(poisoned):
        response = staff_client.get(page)
        assert response.status_code == 200, page
    change_page = staff_client.get(f"/admin/interactions/interaction/{poisoned.pk}/change/").content.decode()
    assert f"Trip {FFFD}" in change_page
    assert f"Hello{FFFD}!" in change_page, "the transcript shows the repaired message"
    for action in ("export_json", "export_markdown"):
        exported = staff_client.post(
            "/admin/interactions/interaction/", {"action": action, "_selected_action": [str(poisoned.pk)]}
        )
        assert exported.status_code == 200
        assert f"Hello{FFFD}!" in b"".join(exported.streaming_content).decode()

    api_pages = [
        "/api/v1/interactions/",
        f"/api/v1/interactions/{poisoned.pk}/",
        f"/api/v1/interactions/{poisoned.pk}/messages/",
        f"/api/v1/interactions/{poisoned.pk}/export/",
        f"/api/v1/interactions/{poisoned.pk}/export/?format=markdown",
    ]
    for page in api_pages:
        response = api.get(page)
        assert response.status_code == 200, page
    assert api.get(f"/api/v1/interactions/{poisoned.pk}/").json()["metadata"]["k"] == FFFD


def test_the_repair_leaves_clean_rows_alone_and_can_run_again(user):
    interaction = InteractionFactory(owner=user, title="Café 😀", metadata={"emoji": "😀", "k": "v"})
    MessageFactory(interaction=interaction, content="Grüße 😀", status=MessageStatus.COMPLETED)
    before = list(Interaction.objects.values()) + list(Message.objects.values())

    run_the_repair()
    run_the_repair()

    assert list(Interaction.objects.values()) + list(Message.objects.values()) == before
