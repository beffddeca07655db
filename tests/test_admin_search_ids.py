"""Staff paste an id from a log line or an error's details into the admin search: it finds
the interaction or the messages by that id with index seeks, not a scan of message content
(which stays capped at the newest CONTENT_SEARCH_LIMIT matches)."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messages_app.models import MessageRole
from tests.factories import InteractionFactory, MessageFactory
from tests.test_admin_staff import INTERACTIONS, MESSAGES, listed

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):  # type: ignore[no-untyped-def]
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12))
    return client


@pytest.fixture
def conversation():  # type: ignore[no-untyped-def]
    interaction = InteractionFactory(title="Trip")
    question = MessageFactory(interaction=interaction, role=MessageRole.USER, content="where to?")
    answer = MessageFactory(interaction=interaction, role=MessageRole.ASSISTANT, content="Lisbon", reply_to=question)
    return interaction, question, answer


def test_searching_an_interaction_id_or_one_of_its_message_ids_lists_that_interaction(staff_client, conversation):
    interaction, question, answer = conversation
    InteractionFactory(title=f"mentions {interaction.pk} in its title")

    assert listed(staff_client.get(f"{INTERACTIONS}?q={interaction.pk}")) == [str(interaction.pk)]
    assert listed(staff_client.get(f"{INTERACTIONS}?q={answer.pk}")) == [str(interaction.pk)]
    assert listed(staff_client.get(f"{INTERACTIONS}?q=%20{question.pk}%20")) == [str(interaction.pk)]


def test_searching_messages_by_id_finds_the_message_its_conversation_or_its_reply(staff_client, conversation):
    interaction, question, answer = conversation
    MessageFactory(interaction=InteractionFactory(), content=f"quoting {question.pk}")

    assert listed(staff_client.get(f"{MESSAGES}?q={answer.pk}")) == [str(answer.pk)]
    assert sorted(listed(staff_client.get(f"{MESSAGES}?q={interaction.pk}"))) == sorted(
        [str(question.pk), str(answer.pk)]
    )
    assert sorted(listed(staff_client.get(f"{MESSAGES}?q={question.pk}"))) == sorted([str(question.pk), str(answer.pk)])


def test_words_are_still_searched_in_the_content(staff_client, conversation):
    interaction, _, answer = conversation

    assert listed(staff_client.get(f"{INTERACTIONS}?q=lisbon")) == [str(interaction.pk)]
    assert listed(staff_client.get(f"{MESSAGES}?q=Lisbon")) == [str(answer.pk)]


@pytest.mark.sqlite_only(reason="reads the SQL; tests/test_mongodb_contract_admin_search.py proves the MongoDB reads")
def test_an_id_search_reads_no_message_content(staff_client, conversation):
    interaction, _, answer = conversation

    for url in (f"{INTERACTIONS}?q={answer.pk}", f"{MESSAGES}?q={interaction.pk}"):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        assert not [q["sql"] for q in queries if "LIKE" in q["sql"].upper()], url


def test_the_search_box_says_what_it_searches(staff_client):
    page = staff_client.get(INTERACTIONS).content.decode()

    assert "the newest 1,000 messages that contain them" in page
    assert "the id of an interaction or of one of its messages" in page
