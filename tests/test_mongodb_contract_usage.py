"""Counting user messages and abandoned replies in usage, compiled for MongoDB.

The usage bucket of a (user, day, model) is added to the same way for every event: one
conditional update computed from the stored values, else an insert guarded by the unique
index, whose refusal is retried as the update (tests/test_mongodb_contract_admin.py proves it
for a finished reply). Here: a stored user message, taking back the count of one whose insert
failed, and a reply finalised as abandoned; and the migration that adds the two counters sets
them on the buckets already stored (an `$add` on a missing field would give null).
Method as in tests/test_mongodb_contract.py (tests/mongo_contract.py).
"""

from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from tests.mongo_contract import (
    OWNER_ID,
    RECORDER,
    apply_update,
    created_indexes,
    equality_conditions,
    matches,
    migrations_recorded,
    mongodb_env,
    run_django,
)

USAGE_SCRIPT = (
    RECORDER
    + """
from datetime import date

from bson import ObjectId

from usage.services import usage_message_record, usage_message_unrecord, usage_record

DAY = date(2025, 5, 4)
OWNER = ObjectId(PARAMS["owner_id"])

def message(updated, refused=False):
    update_results[:] = [updated, 1]
    insert_failures[:] = [refused]
    usage_message_record(user_id=OWNER, model="m", day=DAY)

emit({
    "message_existing": commands_of(lambda: message(1)),
    "message_new": commands_of(lambda: message(0)),
    "message_race": commands_of(lambda: message(0, refused=True)),
    "message_unrecord": commands_of(lambda: usage_message_unrecord(user_id=OWNER, model="m", day=DAY)),
    "abandoned": commands_of(lambda: usage_record(
        user_id=OWNER, model="m", status="failed", abandoned=True, prompt_tokens=5, completion_tokens=None, day=DAY
    )),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(USAGE_SCRIPT, mongodb_env(), owner_id=OWNER_ID)


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


def bucket(**fields: Any) -> dict[str, Any]:
    return {
        "user_id": ObjectId(OWNER_ID),
        "day": datetime(2025, 5, 4, tzinfo=UTC),
        "model": "m",
        "user_messages": 3,
        "replies_completed": 2,
        "replies_failed": 1,
        "replies_abandoned": 0,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        **fields,
    }


def test_a_user_message_adds_one_to_the_stored_count_of_its_bucket_in_one_update(commands, migrations):
    (update,) = commands["message_existing"]
    unique = created_indexes(migrations, "usage_usagebucket")["usage_bucket_user_day_model"]

    after = apply_update(bucket(), update["update"])

    assert update["op"] == "update_many"
    assert update["collection"] == "usage_usagebucket"
    assert set(equality_conditions(update["filter"])) == set(unique["key"]) == {"user_id", "day", "model"}
    assert unique["unique"] is True
    assert after["user_messages"] == 4
    assert {name: after[name] for name in bucket()} == {**bucket(), "user_messages": 4}, "only the message count"


def test_the_first_user_message_of_a_day_inserts_the_bucket_the_update_looks_for(commands):
    update, insert = commands["message_new"]
    (document,) = insert["documents"]

    assert insert["collection"] == "usage_usagebucket"
    assert document["user_messages"] == 1
    assert (document["replies_completed"], document["replies_failed"], document["prompt_tokens"]) == (0, 0, 0)
    assert matches(document, update["filter"])


def test_a_user_message_whose_bucket_insert_lost_a_race_is_added_to_the_winner(commands):
    first_update, refused_insert, second_update = commands["message_race"]

    assert refused_insert["op"] == "insert_many"
    assert second_update["filter"] == first_update["filter"]
    assert apply_update(bucket(), second_update["update"])["user_messages"] == 4


def test_taking_back_a_message_count_is_one_update_that_never_goes_below_zero(commands):
    (update,) = commands["message_unrecord"]

    assert update["collection"] == "usage_usagebucket"
    assert matches(bucket(), update["filter"])
    assert not matches(bucket(user_messages=0), update["filter"])
    assert apply_update(bucket(), update["update"])["user_messages"] == 2


def test_an_abandoned_reply_adds_to_failed_and_abandoned_and_its_tokens(commands):
    (update,) = commands["abandoned"]

    after = apply_update(bucket(), update["update"])

    assert (after["replies_failed"], after["replies_abandoned"]) == (2, 1)
    assert (after["prompt_tokens"], after["completion_tokens"]) == (105, 50)
    assert after["replies_completed"] == 2


def test_the_new_counters_are_set_to_zero_on_the_buckets_already_stored(migrations):
    backfills = [
        operation["update"]
        for operation in migrations["schema_operations"]
        if operation["op"] == "update_many" and operation["collection"] == "usage_usagebucket"
    ]

    assert [{"$set": {"user_messages": 0}}] in backfills
    assert [{"$set": {"replies_abandoned": 0}}] in backfills


def test_compiling_the_usage_writes_never_connected_to_a_server(commands):
    assert not commands["connected"]
