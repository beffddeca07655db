"""The MongoDB commands of following, resuming and cancelling replies, proven without a server.

As in tests/test_mongodb_contract.py (tests/mongo_contract.py): a child Python starts Django
with MONGODB_URI set, and django-mongodb-backend compiles our queries for real up to the point
where it hands a finished command to pymongo, where RECORDER records it instead. Each test
checks the command's filter or update against documents (what it selects, what it writes) and
the index that serves it.
"""

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.mongo_contract import (
    RECORDER,
    apply_update,
    created_indexes,
    equality_conditions,
    matches,
    migrations_recorded,
    mongodb_env,
    run_django,
    stage,
    stage_names,
)

INTERACTION_ID = "0190f0e0-0000-7000-8000-000000000001"
REPLY_ID = "0190f0e0-0002-7000-8000-000000000003"
OTHER_REPLY_ID = "0190f0e0-0003-7000-8000-000000000004"

COMMANDS_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import timedelta

from bson import ObjectId
from django.contrib.auth.models import User

from core.models import now_stored_precision
from interactions.models import Interaction
from interactions.services import ReplyClaim
from llm.control import reply_reload
from messages_app.models import Message, MessageStatus
from messages_app.selectors import message_cancel_requested_ids
from messages_app.services import (
    message_reply_cancel_request,
    message_reply_progress_store,
    reply_cancel_finalise,
)

owner = User(pk=ObjectId("65a000000000000000000001"), username="alice")
interaction = Interaction(id=uuid.UUID(PARAMS["interaction_id"]), owner=owner, model_name="m")
claim = ReplyClaim.new(interaction_id=interaction.id, reply_id=uuid.UUID(PARAMS["reply_id"]))
reply = Message(
    id=uuid.UUID(PARAMS["reply_id"]),
    interaction=interaction,
    role="assistant",
    status=MessageStatus.IN_PROGRESS,
    claim_token=claim.token,
)

def cancel_finalise():
    # The slot as read: still held by the silent worker's claim, which lapsed a day ago.
    lapsed = {
        "id": interaction.id.hex,
        "owner_id": owner.pk,
        "model_name": "m",
        "reply_claim_token": claim.token,
        "reply_claimed_at": (now_stored_precision() - timedelta(days=1)).replace(tzinfo=None),  # as pymongo gives it
        "version": 3,
    }
    abandoned = {"id": reply.id.hex, "prompt_tokens": None, "completion_tokens": None}
    canned_results[:] = [[lapsed], [abandoned], [{"__count": 2}]]
    reply_cancel_finalise(reply=reply)

emit({
    "cancel_requested_ids": commands_of(
        lambda: message_cancel_requested_ids(
            message_ids=[uuid.UUID(PARAMS["reply_id"]), uuid.UUID(PARAMS["other_reply_id"])]
        )
    ),
    "cancel_request": commands_of(lambda: message_reply_cancel_request(reply=reply)),
    "progress_store": commands_of(
        lambda: message_reply_progress_store(reply=reply, claim=claim, content="Hello wor")
    ),
    "cancel_finalise": commands_of(cancel_finalise),
    "claim_token": claim.token,
    "reload": commands_of(lambda: reply_reload(reply)),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(
        COMMANDS_SCRIPT,
        mongodb_env(),
        interaction_id=INTERACTION_ID,
        reply_id=REPLY_ID,
        other_reply_id=OTHER_REPLY_ID,
    )


@pytest.fixture(scope="module")
def message_indexes() -> dict[str, dict[str, Any]]:
    return created_indexes(migrations_recorded(), "messages_app_message")


def hex_id(value: str) -> str:
    return value.replace("-", "")


def reply_document(**fields: Any) -> dict[str, Any]:
    return {"id": hex_id(REPLY_ID), "interaction_id": hex_id(INTERACTION_ID), "status": "in_progress", **fields}


def unique_id_index(indexes: dict[str, dict[str, Any]]) -> bool:
    return any(index["key"] == {"id": 1} and index.get("unique") for index in indexes.values())


def test_the_cancel_watcher_asks_once_for_all_its_replies_by_their_unique_ids(commands, message_indexes):
    (command,) = commands["cancel_requested_ids"]
    pipeline = command["pipeline"]
    match = stage(pipeline, "$match")
    asked = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert command["collection"] == "messages_app_message"
    assert stage_names(pipeline)[0] == "$match", "only a leading $match can use an index"
    assert unique_id_index(message_indexes)
    assert matches(reply_document(cancel_requested_at=asked), match)
    assert matches(reply_document(id=hex_id(OTHER_REPLY_ID), cancel_requested_at=asked), match)
    assert not matches(reply_document(cancel_requested_at=None), match)
    assert not matches(reply_document(), match), "a document stored before the field existed"
    assert not matches(reply_document(cancel_requested_at=asked, status="incomplete"), match)
    assert not matches(reply_document(id="e" * 32, cancel_requested_at=asked), match)


def test_a_cancel_request_is_one_conditional_update_on_a_reply_in_progress(commands):
    (command,) = commands["cancel_request"]
    written = apply_update(reply_document(cancel_requested_at=None), command["update"])

    assert command["op"] == "update_many"
    assert command["collection"] == "messages_app_message"
    assert equality_conditions(command["filter"])["id"] == hex_id(REPLY_ID)  # the unique index: one document
    assert matches(reply_document(), command["filter"])
    assert not matches(reply_document(status="completed"), command["filter"])
    assert isinstance(written["cancel_requested_at"], datetime)


def test_a_progress_write_is_fenced_by_the_claim_and_bumps_the_interaction_version(commands):
    reply_write, version_bump = commands["progress_store"]
    token = commands["claim_token"]
    written = apply_update(reply_document(content="Hello", claim_token=token), reply_write["update"])
    bumped = apply_update({"id": hex_id(INTERACTION_ID), "version": 41}, version_bump["update"])

    assert reply_write["collection"] == "messages_app_message"
    assert equality_conditions(reply_write["filter"])["id"] == hex_id(REPLY_ID)
    assert matches(reply_document(claim_token=token), reply_write["filter"])
    assert not matches(reply_document(claim_token="another attempt"), reply_write["filter"]), "a lost claim writes"
    assert not matches(reply_document(claim_token=token, status="completed"), reply_write["filter"])
    assert written["content"] == "Hello wor"
    assert version_bump["collection"] == "interactions_interaction"
    assert equality_conditions(version_bump["filter"]) == {"id": hex_id(INTERACTION_ID)}
    assert bumped["version"] == 42


def test_a_follower_rereads_its_reply_by_its_unique_id(commands, message_indexes):
    (command,) = commands["reload"]
    pipeline = command["pipeline"]

    assert stage_names(pipeline)[0] == "$match"
    assert equality_conditions(stage(pipeline, "$match")) == {"id": hex_id(REPLY_ID)}
    assert stage(pipeline, "$limit") == 1
    assert unique_id_index(message_indexes)


def test_a_canceller_finalising_for_a_dead_worker_takes_the_slot_from_its_claim_and_writes_that_attempts_reply(
    commands,
):
    token = commands["claim_token"]
    writes = [c for c in commands["cancel_finalise"] if c["op"] == "update_many"]
    take_over, cancelled = writes[0], writes[1]
    slot = {
        "id": hex_id(INTERACTION_ID),
        "reply_claim_token": token,
        "reply_claimed_at": datetime(2020, 1, 1, tzinfo=UTC),
    }

    # The slot is taken over only from the claim that lapsed: a worker that renewed it keeps it.
    assert take_over["collection"] == "interactions_interaction"
    assert equality_conditions(take_over["filter"])["id"] == hex_id(INTERACTION_ID)
    assert matches(slot, take_over["filter"])
    assert not matches({**slot, "reply_claim_token": "a newer attempt"}, take_over["filter"])
    # Then the reply is written only while that attempt's and in progress: cancelled, its text kept.
    asked = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert cancelled["collection"] == "messages_app_message"
    assert equality_conditions(cancelled["filter"])["id"] == hex_id(REPLY_ID)
    assert matches(reply_document(claim_token=token, cancel_requested_at=asked), cancelled["filter"])
    assert not matches(reply_document(claim_token="a retry", cancel_requested_at=asked), cancelled["filter"])
    assert not matches(
        reply_document(claim_token=token, cancel_requested_at=asked, status="completed"), cancelled["filter"]
    )
    written = apply_update(reply_document(claim_token=token, content="Half a"), cancelled["update"])
    assert (written["status"], written["error_code"], written["content"]) == ("incomplete", "cancelled", "Half a")


def test_compiling_these_commands_never_connected_to_a_server(commands):
    assert not commands["connected"]
