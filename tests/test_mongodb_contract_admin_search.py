"""The admin's search by id under django-mongodb-backend: index seeks, no content scan.

A UUID typed in the interactions' or the messages' search box is looked up by id (and by
interaction and reply_to on messages), never matched against message content with a regex
(the content search, capped, that words still get). Method as in tests/test_mongodb_contract.py
(tests/mongo_contract.py).
"""

from typing import Any

import pytest

from tests.mongo_contract import (
    INTERACTION_ID,
    OWNER_ID,
    RECORDER,
    equality_conditions,
    mongodb_env,
    run_django,
    stage,
    stage_names,
    uuid_hex,
)

SEARCH_SCRIPT = (
    RECORDER
    + """
from bson import ObjectId
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory

from interactions.models import Interaction
from messages_app.models import Message

staff = User(pk=ObjectId(PARAMS["owner_id"]), username="root", is_staff=True, is_superuser=True, is_active=True)

def changelist(model_class, query):
    request = RequestFactory().get("/admin/", query)
    request.user = staff
    return admin.site._registry[model_class].get_changelist_instance(request).result_list

def searched(model_class, term, *canned):
    return commands_of(lambda: list(changelist(model_class, {"q": term})), *canned)

emit({
    # The message read finds one message, of this interaction.
    "interactions_by_id": searched(Interaction, PARAMS["interaction_id"], [{"interaction_id": PARAMS["hex"]}]),
    "interactions_by_words": searched(Interaction, "lisbon"),
    "messages_by_id": searched(Message, PARAMS["interaction_id"]),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(
        SEARCH_SCRIPT, mongodb_env(), owner_id=OWNER_ID, interaction_id=INTERACTION_ID, hex=uuid_hex(INTERACTION_ID)
    )


def reads_of(commands: list[dict[str, Any]], collection: str) -> list[list[dict[str, Any]]]:
    return [c["pipeline"] for c in commands if c["op"] == "aggregate" and c["collection"] == collection]


def test_an_id_in_the_interactions_search_is_a_seek_by_id_and_reads_no_content(commands):
    (message_read,) = reads_of(commands["interactions_by_id"], "messages_app_message")
    interaction_reads = reads_of(commands["interactions_by_id"], "interactions_interaction")

    assert "Regex(" not in repr(commands["interactions_by_id"]), "no regex on content"
    assert equality_conditions(stage(message_read, "$match")) == {"id": uuid_hex(INTERACTION_ID)}
    assert stage(message_read, "$limit") == 1
    count, *pages = interaction_reads
    assert stage_names(count)[0] == "$match", "the bounded count seeks by id"
    assert pages
    for read in interaction_reads:
        assert uuid_hex(INTERACTION_ID) in repr(stage(read, "$match"))


def test_words_in_the_interactions_search_still_read_message_content_capped(commands):
    (message_read,) = reads_of(commands["interactions_by_words"], "messages_app_message")

    assert "Regex(" in repr(stage(message_read, "$match"))
    assert stage(message_read, "$limit") <= 1_000


def test_an_id_in_the_messages_search_matches_id_interaction_or_reply_to_and_no_content(commands):
    count, page = reads_of(commands["messages_by_id"], "messages_app_message")
    by_id = uuid_hex(INTERACTION_ID)
    searched = {"$or": [{"id": by_id}, {"interaction_id": by_id}, {"reply_to_id": by_id}]}

    assert "Regex(" not in repr(commands["messages_by_id"]), "no regex on content"
    # The bounded count starts with the match (each branch served by an index on its field).
    assert stage_names(count)[0] == "$match"
    assert stage(count, "$match") == searched
    assert stage(count, "$limit") <= 10_000
    # The page joins the interaction (list_select_related) and matches the same.
    assert stage(page, "$match") == searched


def test_compiling_the_search_never_connected_to_a_server(commands):
    assert not commands["connected"]
