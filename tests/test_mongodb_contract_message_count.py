"""The queries that repair an interaction's message count after a failed write, under
django-mongodb-backend, proven without a server (the method of tests/mongo_contract.py, whose
helpers this uses).

After the count of a message without a reply (assistant, system) failed without telling
whether it committed, messages_app.services.interaction_message_count_repair sets the count
from the stored rows: it reads the interaction's version and slot token, checks that a slot
holder has stored its reply (along message_status_claim), counts along
message_interaction_time, and writes with ONE update conditional on that version and token
(atomic on one document, as on SQLite). After a failed insert, whether the message was stored
after all is one read of its id.
"""

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.mongo_contract import (
    INTERACTION_ID,
    OWNER_ID,
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
    uuid_hex,
)

MESSAGE_ID = "0190f0e0-0003-7000-8000-000000000004"
TOKEN = "a" * 32
NEWEST = datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)

COMMANDS_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import datetime

from bson import ObjectId
from django.contrib.auth.models import User

from interactions.models import Interaction
from llm import services as llm_services
from messages_app import services as message_services

def outcome_of(step, *results):
    # The commands `step` sends and what it returns; its reads find `results`, in order.
    recorded.clear()
    canned_results[:] = [list(documents) for documents in results]
    result = step()
    return {"commands": list(recorded), "result": result}

owner = User(pk=ObjectId(PARAMS["owner_id"]), username="alice")
interaction = Interaction(id=uuid.UUID(PARAMS["interaction_id"]), owner=owner, model_name="m")
message_id = uuid.UUID(PARAMS["message_id"])
newest = datetime.fromisoformat(PARAMS["newest"])

def stored_after_failure():
    try:
        llm_services._stored_without_reply_after_failure(
            RuntimeError("injected"), interaction=interaction, message_id=message_id
        )
    except llm_services.WriteFailed as failure:
        return failure.status_code
    return "stored"

emit({
    "repair_free": outcome_of(
        lambda: message_services.interaction_message_count_repair(interaction=interaction),
        [{"version": 7, "reply_claim_token": ""}],
        [{"__count": 2}],
        [{"created_at": newest}],
    ),
    "repair_held": outcome_of(
        lambda: message_services.interaction_message_count_repair(interaction=interaction),
        [{"version": 7, "reply_claim_token": PARAMS["token"]}],
        [{"a": 1}],
        [{"__count": 2}],
        [{"created_at": newest}],
    ),
    "stored_check": outcome_of(
        lambda: message_services._message_uncount_unless_stored(
            interaction=interaction, message_id=message_id, at=newest
        ),
        [{"a": 1}],
    ),
    "stored_read_back": outcome_of(stored_after_failure),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(
        COMMANDS_SCRIPT,
        mongodb_env(),
        owner_id=OWNER_ID,
        interaction_id=INTERACTION_ID,
        message_id=MESSAGE_ID,
        token=TOKEN,
        newest=NEWEST.replace(tzinfo=None).isoformat(),
    )


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


INTERACTION = uuid_hex(INTERACTION_ID)
MESSAGE = uuid_hex(MESSAGE_ID)


def slot(**fields: Any) -> dict[str, Any]:
    return {"id": INTERACTION, "message_count": 3, "version": 7, "reply_claim_token": "", **fields}


def match_of(command: dict[str, Any]) -> dict[str, Any]:
    assert command["op"] == "aggregate"
    assert stage_names(command["pipeline"])[0] == "$match", "only a leading $match can use an index"
    return dict(stage(command["pipeline"], "$match"))


def test_a_recount_reads_the_slot_counts_along_the_interaction_index_and_writes_one_update_on_version_and_token(
    commands, migrations
):
    read, count, newest, write = commands["repair_free"]["commands"]
    interaction_time = created_indexes(migrations, "messages_app_message")["message_interaction_time"]["key"]

    assert read["collection"] == "interactions_interaction"
    assert equality_conditions(match_of(read)) == {"id": INTERACTION}
    for along_interaction in (count, newest):
        assert along_interaction["collection"] == "messages_app_message"
        assert equality_conditions(match_of(along_interaction)) == {"interaction_id": INTERACTION}
    assert next(iter(interaction_time)) == "interaction_id"
    assert list(stage(newest["pipeline"], "$sort").items()) == [("created_at", -1), ("id", -1)]
    assert write["op"] == "update_many"
    assert matches(slot(), write["filter"])
    assert not matches(slot(version=8), write["filter"]), "a count made meanwhile would be overwritten"
    assert not matches(slot(reply_claim_token=TOKEN), write["filter"]), "a claim taken meanwhile"
    recounted = apply_update(slot(), write["update"])
    assert (recounted["message_count"], recounted["version"]) == (2, 8)
    assert recounted["last_message_at"] == NEWEST
    assert commands["repair_free"]["result"] is True


def test_a_recount_beside_a_reply_being_made_first_finds_its_reply_along_message_status_claim(commands, migrations):
    _read, holder_stored, _count, _newest, write = commands["repair_held"]["commands"]
    status_claim = created_indexes(migrations, "messages_app_message")["message_status_claim"]["key"]

    assert holder_stored["collection"] == "messages_app_message"
    assert equality_conditions(match_of(holder_stored)) == {"status": "in_progress", "claim_token": TOKEN}
    assert list(status_claim) == ["status", "claim_token"]
    assert stage(holder_stored["pipeline"], "$limit") == 1
    assert matches(slot(reply_claim_token=TOKEN), write["filter"])
    assert not matches(slot(), write["filter"]), "the reply was released meanwhile: count again"


def test_after_a_failed_insert_whether_the_message_is_stored_is_one_read_of_its_id(commands):
    (stored_check,) = commands["stored_check"]["commands"]
    (read_back,) = commands["stored_read_back"]["commands"]

    assert equality_conditions(match_of(stored_check)) == {"id": MESSAGE}
    assert stage(stored_check["pipeline"], "$limit") == 1
    assert equality_conditions(match_of(read_back)) == {"interaction_id": INTERACTION, "id": MESSAGE}
    assert commands["stored_read_back"]["result"] == 500, "not stored: nothing stored, said so"


def test_compiling_the_repair_never_connected_to_a_server(commands):
    assert not commands["connected"]
