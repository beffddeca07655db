"""What staff can do in the admin: find conversations, read them as bounded transcripts, export
them; what they cannot do without permission; and what is recorded when they read one."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import StaffAccess
from interactions.models import Interaction
from messages_app.models import MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db

INTERACTIONS = "/admin/interactions/interaction/"
MESSAGES = "/admin/messages_app/message/"


@pytest.fixture
def superuser():
    return User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12)


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


def staff_with(client, *codenames: str):
    """A staff member (not superuser) with exactly these permissions, logged in."""
    member = UserFactory(username="clerk", is_staff=True)
    member.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(member)
    return member


def listed(response) -> list[str]:
    """The objects the changelist shows, by their ids."""
    return [str(row.pk) for row in response.context["cl"].result_list]


def conversation(*, messages: int, title: str = "Trip", failed_last: bool = True, **fields):
    interaction = InteractionFactory(title=title, **fields)
    for index in range(messages):
        role = MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT
        MessageFactory(interaction=interaction, role=role, content=f"{title} message {index}")
    if failed_last:
        MessageFactory(
            interaction=interaction,
            role=MessageRole.ASSISTANT,
            content="",
            status=MessageStatus.FAILED,
            error_code="upstream_timeout",
            error_message="the provider did not answer in time",
        )
    Interaction.objects.filter(pk=interaction.pk).update(message_count=messages + int(failed_last))
    interaction.refresh_from_db()
    return interaction


# --- The bounded transcript ------------------------------------------------------------------


def test_the_change_page_shows_the_latest_messages_and_links_to_all_of_them(staff_client, settings):
    settings.ADMIN_TRANSCRIPT_MESSAGES = 5
    interaction = conversation(messages=20)

    response = staff_client.get(f"{INTERACTIONS}{interaction.pk}/change/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "The latest 5 of 21 messages." in page
    assert f'href="{MESSAGES}?interaction={interaction.pk}"' in page
    assert "Trip message 19" in page
    assert "Trip message 15" not in page, "older messages are behind the link"
    assert page.count('class="transcript-role-') == 5


def test_a_failed_reply_stands_out_in_the_transcript(staff_client):
    interaction = conversation(messages=2)

    page = staff_client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()

    assert 'class="transcript-role-assistant transcript-problem" data-status="failed"' in page
    assert "<code>upstream_timeout</code> the provider did not answer in time" in page
    assert 'class="transcript-role-user" data-status="completed"' in page


def test_the_change_page_costs_the_same_queries_at_200_messages_as_at_5(staff_client, settings):
    settings.ADMIN_TRANSCRIPT_MESSAGES = 5
    short, long = conversation(messages=5, title="Short"), conversation(messages=200, title="Long")

    counts = []
    for interaction in (short, long):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(f"{INTERACTIONS}{interaction.pk}/change/").status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]


def test_the_messages_list_filtered_to_an_interaction_shows_its_messages_only(staff_client):
    interaction, other = conversation(messages=3), conversation(messages=2, title="Other")

    response = staff_client.get(f"{MESSAGES}?interaction={interaction.pk}")

    assert response.status_code == 200
    assert len(listed(response)) == 4
    assert all(message.interaction_id == interaction.pk for message in response.context["cl"].result_list)
    assert other.title not in response.content.decode().split("<tbody>")[1]


def test_messages_cannot_be_added_changed_or_deleted(staff_client):
    interaction = conversation(messages=1)
    message = interaction.messages.first()

    assert staff_client.get(f"{MESSAGES}add/").status_code == 403
    assert staff_client.post(f"{MESSAGES}{message.pk}/change/", {"content": "edited"}).status_code == 403
    assert staff_client.post(f"{MESSAGES}{message.pk}/delete/", {"post": "yes"}).status_code == 403
    message.refresh_from_db()
    assert message.content == "Trip message 0"


# --- Finding conversations ---------------------------------------------------------------------


def test_the_replies_filter_finds_interactions_with_failed_or_incomplete_replies(staff_client):
    failed = conversation(messages=2, title="Failed")
    healthy = conversation(messages=2, title="Healthy", failed_last=False)
    incomplete = conversation(messages=2, title="Cut", failed_last=False)
    MessageFactory(interaction=incomplete, role=MessageRole.ASSISTANT, status=MessageStatus.INCOMPLETE)

    assert listed(staff_client.get(f"{INTERACTIONS}?replies=failed")) == [str(failed.pk)]
    assert listed(staff_client.get(f"{INTERACTIONS}?replies=incomplete")) == [str(incomplete.pk)]
    assert set(listed(staff_client.get(f"{INTERACTIONS}?replies=problem"))) == {str(failed.pk), str(incomplete.pk)}
    assert str(healthy.pk) in listed(staff_client.get(INTERACTIONS))


def test_interactions_filter_by_owner_model_and_last_activity_range(staff_client):
    alice = UserFactory(username="alice")
    now = datetime.now(UTC)
    recent = conversation(messages=1, title="Recent", owner=alice, model_name="llama3.2")
    old = conversation(messages=1, title="Old", owner=alice, model_name="gpt-4o-mini")
    Interaction.objects.filter(pk=old.pk).update(last_activity_at=now - timedelta(days=40))
    someone_elses = conversation(messages=1, title="Bob's", owner=UserFactory(username="bob"))
    today = now.date().isoformat()

    assert set(listed(staff_client.get(f"{INTERACTIONS}?owner=alice"))) == {str(recent.pk), str(old.pk)}
    assert listed(staff_client.get(f"{INTERACTIONS}?model=llama3.2")) == [str(recent.pk)]
    assert set(listed(staff_client.get(f"{INTERACTIONS}?last_activity_at_from={today}"))) == {
        str(recent.pk),
        str(someone_elses.pk),
    }
    forty_days_ago = (now - timedelta(days=40)).date().isoformat()
    assert listed(
        staff_client.get(f"{INTERACTIONS}?last_activity_at_from={forty_days_ago}&last_activity_at_to={forty_days_ago}")
    ) == [str(old.pk)]


def test_a_date_that_is_not_a_day_is_refused_without_an_error_page(staff_client):
    response = staff_client.get(f"{INTERACTIONS}?last_activity_at_from=yesterday")

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_search_finds_interactions_by_title_owner_and_words_in_their_messages(staff_client):
    by_title = conversation(messages=1, title="Lisbon trip")
    by_owner = conversation(messages=1, title="Other", owner=UserFactory(username="zoe"))
    by_content = conversation(messages=0, title="Plain", failed_last=False)
    MessageFactory(interaction=by_content, role=MessageRole.USER, content="What about the pastéis de nata?")

    assert listed(staff_client.get(f"{INTERACTIONS}?q=lisbon")) == [str(by_title.pk)]
    assert listed(staff_client.get(f"{INTERACTIONS}?q=zoe")) == [str(by_owner.pk)]
    assert listed(staff_client.get(f"{INTERACTIONS}?q=pastéis")) == [str(by_content.pk)]


def test_messages_filter_by_status_role_error_code_model_and_time(staff_client):
    interaction = conversation(messages=2)
    MessageFactory(interaction=interaction, role=MessageRole.ASSISTANT, model="llama3.2", content="by llama")
    failed = interaction.messages.get(status=MessageStatus.FAILED)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    assert listed(staff_client.get(f"{MESSAGES}?status__exact=failed")) == [str(failed.pk)]
    assert listed(staff_client.get(f"{MESSAGES}?error_code=upstream_timeout")) == [str(failed.pk)]
    assert len(listed(staff_client.get(f"{MESSAGES}?role__exact=user"))) == 1
    assert [row.content for row in staff_client.get(f"{MESSAGES}?model=llama3.2").context["cl"].result_list] == [
        "by llama"
    ]
    assert listed(staff_client.get(f"{MESSAGES}?created_at_to={yesterday}")) == []
    assert len(listed(staff_client.get(f"{MESSAGES}?q=Trip+message+1"))) == 1


@pytest.mark.parametrize(("path", "rows"), [(INTERACTIONS, "interactions"), (MESSAGES, "messages")])
def test_changelists_make_the_same_number_of_queries_for_3_rows_as_for_30(staff_client, path, rows):
    def queries_for_a_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(path)
        assert response.status_code == 200
        return len(queries)

    for index in range(3):
        conversation(messages=0, title=f"First {index}")  # one failed reply each
    few = queries_for_a_page()
    for index in range(27):
        conversation(messages=0, title=f"More {index}")
    many = queries_for_a_page()

    assert few == many, f"the {rows} changelist makes a query per row"


@pytest.mark.sqlite_only(reason="reads the SQL; tests/test_mongodb_contract_admin.py proves the MongoDB counts")
def test_changelists_never_count_the_whole_table(staff_client):
    conversation(messages=3)

    for path in (INTERACTIONS, MESSAGES, "/admin/usage/usagebucket/", "/admin/audit/staffaccess/"):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(path).status_code == 200
        counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
        assert all("LIMIT" in sql.upper() for sql in counts), (path, counts)


# --- Export ---------------------------------------------------------------------------------


def test_staff_export_selected_interactions_as_json(staff_client):
    first, second = conversation(messages=2, title="First"), conversation(messages=1, title="Second")

    response = staff_client.post(
        INTERACTIONS, {"action": "export_json", "_selected_action": [str(first.pk), str(second.pk)]}
    )

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="interactions.json"'
    document = json.loads(b"".join(response.streaming_content))
    exported = {item["interaction"]["title"]: item for item in document["data"]}
    assert set(exported) == {"First", "Second"}
    assert [message["content"] for message in exported["First"]["messages"]] == [
        "First message 0",
        "First message 1",
        "",
    ]
    assert exported["First"]["messages"][-1]["error"]["code"] == "upstream_timeout"


def test_staff_export_selected_interactions_as_markdown(staff_client):
    interaction = conversation(messages=2, title="Lisbon")

    response = staff_client.post(INTERACTIONS, {"action": "export_markdown", "_selected_action": [str(interaction.pk)]})

    text = b"".join(response.streaming_content).decode()
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert text.startswith("# Lisbon\n")
    assert "> **FAILED**: `upstream_timeout`" in text


# --- The audit record ------------------------------------------------------------------------


def test_opening_a_conversation_is_recorded_and_superusers_see_the_record(staff_client, superuser):
    interaction = conversation(messages=1, title="Private")

    staff_client.get(f"{INTERACTIONS}{interaction.pk}/change/")
    staff_client.post(INTERACTIONS, {"action": "export_json", "_selected_action": [str(interaction.pk)]})

    records = list(StaffAccess.objects.order_by("at"))
    assert [(record.staff_username, record.interaction_id, record.action) for record in records] == [
        ("root", interaction.pk, "view"),
        ("root", interaction.pk, "export"),
    ]
    page = staff_client.get("/admin/audit/staffaccess/").content.decode()
    assert str(interaction.pk) in page
    assert "Private" in page


def test_a_failed_save_or_a_missing_interaction_records_no_view(staff_client):
    staff_client.get(f"{INTERACTIONS}01900000-0000-7000-8000-000000000000/change/")

    assert not StaffAccess.objects.exists()


def test_staff_who_are_not_superusers_cannot_see_the_audit_record(client):
    staff_with(client, "view_interaction", "view_staffaccess")

    assert client.get("/admin/audit/staffaccess/").status_code == 403
    assert "staffaccess" not in client.get("/admin/").content.decode()


# --- Permissions --------------------------------------------------------------------------------


def test_staff_without_the_delete_permission_cannot_delete_an_interaction(client):
    staff_with(client, "view_interaction", "change_interaction")
    interaction = conversation(messages=1)

    assert client.post(f"{INTERACTIONS}{interaction.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(
        INTERACTIONS, {"action": "delete_selected", "_selected_action": [str(interaction.pk)], "post": "yes"}
    )

    assert response.status_code == 302  # the action is not offered: back to the list, "no action selected"
    assert "delete_selected" not in client.get(INTERACTIONS).content.decode()
    assert Interaction.objects.filter(pk=interaction.pk).exists()


def test_staff_with_view_permission_only_cannot_change_settings(client):
    staff_with(client, "view_interaction")
    interaction = conversation(messages=1, title="Keep")

    response = client.post(f"{INTERACTIONS}{interaction.pk}/change/", {"title": "Changed"})

    assert response.status_code == 403
    interaction.refresh_from_db()
    assert interaction.title == "Keep"


def test_deleting_a_user_deletes_their_conversations_messages_and_usage(superuser):
    from usage.models import UsageBucket
    from usage.services import usage_record

    owner = UserFactory(username="leaving")
    interaction = conversation(messages=3, owner=owner)
    usage_record(user_id=owner.pk, model="m", status="completed", prompt_tokens=1, completion_tokens=2)
    kept = conversation(messages=1, owner=UserFactory(username="staying"))

    owner_id = owner.pk
    assert UsageBucket.objects.filter(user_id=owner_id).exists()

    owner.delete()

    assert not Interaction.objects.filter(pk=interaction.pk).exists()
    assert not interaction.messages.exists()
    assert not UsageBucket.objects.filter(user_id=owner_id).exists()
    assert kept.messages.count() == 2
