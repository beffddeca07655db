"""The staff admin, the usage upsert and the export under django-mongodb-backend, proven without
a server (as tests/test_mongodb_contract.py: Django starts with MONGODB_URI set and the backend
compiles every command for real; the three methods that hand one to pymongo record it instead).

What is proven: every admin changelist and filter compiles (no SQL-only feature: no
`dates()`, no `date_hierarchy`), counts are bounded, the transcript and the messages list of one
interaction walk the (interaction_id, created_at, id) index, the usage bucket is added to with one
conditional update computed from the stored values, and created with an insert guarded by a
unique index whose refusal is retried as an update; the export reads keyset chunks.
"""

from typing import Any

import pytest

from tests.mongo_contract import (
    INTERACTION_ID,
    OWNER_ID,
    RECORDER,
    apply_update,
    created_indexes,
    equality_conditions,
    index_serves_sort,
    matches,
    migrations_recorded,
    mongodb_env,
    run_django,
    stage,
    stage_names,
    uuid_hex,
)

ADMIN_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import date, datetime

from bson import ObjectId
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory
from django_mongodb_backend.query import MongoQuery

from audit.models import StaffAccess
from interactions.models import Interaction
from messages_app.export import message_chunks
from messages_app.models import Message
from messages_app.selectors import message_latest
from usage.selectors import usage_totals, usage_totals_by_model
from usage.models import UsageBucket
from usage.services import usage_record

staff = User(pk=ObjectId(PARAMS["owner_id"]), username="root", is_staff=True, is_superuser=True, is_active=True)
interaction = Interaction(id=uuid.UUID(PARAMS["interaction_id"]), owner=staff, model_name="m", title="T")

def changelist(model_class, query):
    request = RequestFactory().get("/admin/", query)
    request.user = staff
    model_admin = admin.site._registry[model_class]
    listing = model_admin.get_changelist_instance(request)
    return listing.result_list

def changelist_commands(model_class, canned=(), **query):
    return commands_of(lambda: changelist(model_class, query), *canned)

def upsert(updated, refused=False):
    update_results[:] = [updated, 1]
    insert_failures[:] = [refused]
    usage_record(
        user_id=staff.pk, model="m", status="completed", prompt_tokens=11, completion_tokens=7, day=date(2025, 5, 4)
    )

def second_export_chunk():
    anchor = {"created_at": datetime(2025, 1, 1, 12), "id": uuid.UUID(PARAMS["interaction_id"]).hex}
    chunks = message_chunks(interaction=interaction, chunk_size=2)
    # The first chunk is full (two rows), so a second one is read after its last row.
    row = {**anchor, "interaction_id": anchor["id"], "role": "user", "content": "", "status": "completed"}

    def full_first_chunk(self):
        record_aggregate(self)
        return Cursor([row] * 2 if len(recorded) == 1 else [])

    MongoQuery.get_cursor = full_first_chunk
    list(chunks)
    MongoQuery.get_cursor = record_aggregate

emit({
    "interactions": changelist_commands(Interaction),
    # The failed replies read finds one, of this interaction.
    "interactions_failed": changelist_commands(
        Interaction, canned=[[{"interaction_id": uuid.UUID(PARAMS["interaction_id"]).hex}]], replies="failed"
    ),
    "interactions_filtered": changelist_commands(
        Interaction, owner="alice", model="m", last_activity_at_from="2025-01-01", last_activity_at_to="2025-01-31"
    ),
    "interactions_search": changelist_commands(Interaction, q="lisbon"),
    "messages": changelist_commands(Message),
    "messages_of_interaction": changelist_commands(Message, interaction=PARAMS["interaction_id"]),
    "messages_filtered": changelist_commands(
        Message, status__exact="failed", role__exact="assistant", error_code="upstream_timeout", model="m",
        created_at_from="2025-01-01", created_at_to="2025-01-02",
    ),
    "usage": changelist_commands(UsageBucket, day_from="2025-05-01", day_to="2025-05-04", username="alice"),
    "usage_totals": commands_of(lambda: (
        usage_totals(buckets=UsageBucket.objects.all()), usage_totals_by_model(buckets=UsageBucket.objects.all())
    )),
    "audit": changelist_commands(StaffAccess),
    "transcript": commands_of(lambda: message_latest(interaction=interaction, limit=50)),
    "upsert_existing": commands_of(lambda: upsert(1)),
    "upsert_new": commands_of(lambda: upsert(0)),
    "upsert_race": commands_of(lambda: upsert(0, refused=True)),
    "export_second_chunk": commands_of(second_export_chunk),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(ADMIN_SCRIPT, mongodb_env(), owner_id=OWNER_ID, interaction_id=INTERACTION_ID)


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


def aggregates(commands: list[dict[str, Any]], collection: str) -> list[list[dict[str, Any]]]:
    return [command["pipeline"] for command in commands if command["collection"] == collection]


def count_pipelines(commands: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [
        command["pipeline"]
        for command in commands
        if command["op"] == "aggregate" and "'$group'" in repr(command["pipeline"])
    ]


@pytest.mark.parametrize(
    "listing",
    [
        "interactions",
        "interactions_failed",
        "interactions_filtered",
        "interactions_search",
        "messages",
        "messages_of_interaction",
        "messages_filtered",
        "usage",
        "audit",
    ],
)
def test_every_admin_changelist_compiles_and_counts_at_most_a_bounded_number_of_rows(commands, listing):
    pipelines = count_pipelines(commands[listing])

    assert commands[listing], "the changelist sent nothing"
    assert pipelines, "the changelist does not count"
    for pipeline in pipelines:
        assert "$limit" in stage_names(pipeline), "an unbounded count of the whole collection"
        assert stage(pipeline, "$limit") <= 10_000


def test_the_messages_of_one_interaction_are_listed_along_message_interaction_time(commands, migrations):
    (page,) = [
        pipeline
        for pipeline in aggregates(commands["messages_of_interaction"], "messages_app_message")
        if "$sort" in stage_names(pipeline)
    ]
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]

    assert stage_names(page)[0] == "$match"
    assert equality_conditions(stage(page, "$match")) == {"interaction_id": uuid_hex(INTERACTION_ID)}
    assert list(stage(page, "$sort").items()) == [("created_at", -1), ("id", -1)]
    assert index_serves_sort(index["key"], ["interaction_id"], stage(page, "$sort"))


def test_the_transcript_reads_the_latest_messages_along_the_index_and_stops(commands, migrations):
    (pipeline,) = aggregates(commands["transcript"], "messages_app_message")
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]

    assert stage_names(pipeline)[0] == "$match"
    assert equality_conditions(stage(pipeline, "$match")) == {"interaction_id": uuid_hex(INTERACTION_ID)}
    assert index_serves_sort(index["key"], ["interaction_id"], stage(pipeline, "$sort"))
    assert stage(pipeline, "$limit") == 50


def test_the_failed_replies_filter_reads_recent_failed_replies_along_an_index_then_matches_their_ids(
    commands, migrations
):
    failed_replies, *interaction_reads = commands["interactions_failed"]
    index = created_indexes(migrations, "messages_app_message")["message_status_time"]
    pipeline = failed_replies["pipeline"]

    assert failed_replies["collection"] == "messages_app_message"
    assert stage_names(pipeline)[0] == "$match"
    assert equality_conditions(stage(pipeline, "$match")) == {"role": "assistant", "status": "failed"}
    assert index_serves_sort(index["key"], ["status"], stage(pipeline, "$sort"))
    assert stage(pipeline, "$limit") <= 10_000
    assert interaction_reads
    for read in interaction_reads:
        assert read["collection"] == "interactions_interaction"
        assert "$lookup" not in stage_names(read["pipeline"]), "no join per interaction"
        assert stage_names(read["pipeline"])[0] == "$match"
        assert uuid_hex(INTERACTION_ID) in repr(stage(read["pipeline"], "$match"))


def test_searching_interactions_reads_owners_and_messages_first_and_joins_nothing(commands):
    reads = {command["collection"]: command["pipeline"] for command in commands["interactions_search"]}

    assert set(reads) == {"auth_user", "messages_app_message", "interactions_interaction"}
    assert stage(reads["messages_app_message"], "$limit") <= 1_000
    assert "$lookup" not in stage_names(reads["interactions_interaction"])


def test_the_usage_bucket_of_the_day_is_added_to_from_its_stored_values_in_one_update(commands):
    (update,) = commands["upsert_existing"]
    stored = {"user_id": OWNER_ID, "replies_completed": 4, "prompt_tokens": 100, "completion_tokens": 50}

    after = apply_update(stored, update["update"])

    assert update["op"] == "update_many"
    assert update["collection"] == "usage_usagebucket"
    conditions = equality_conditions(update["filter"])
    assert set(conditions) == {"user_id", "day", "model"}
    assert conditions["model"] == "m"
    assert (after["replies_completed"], after["prompt_tokens"], after["completion_tokens"]) == (5, 111, 57)


def test_a_new_bucket_is_inserted_with_the_replys_numbers_when_none_matched(commands):
    update, insert = commands["upsert_new"]
    (document,) = insert["documents"]

    assert update["op"] == "update_many"
    assert insert["op"] == "insert_many"
    assert insert["collection"] == "usage_usagebucket"
    assert (document["replies_completed"], document["prompt_tokens"], document["completion_tokens"]) == (1, 11, 7)
    assert document["replies_failed"] == 0
    assert matches(document, update["filter"]), "the inserted bucket is the one the update looks for"


def test_an_insert_refused_by_the_unique_index_is_retried_as_an_update(commands, migrations):
    first_update, refused_insert, second_update = commands["upsert_race"]
    index = created_indexes(migrations, "usage_usagebucket")["usage_bucket_user_day_model"]

    assert [first_update["op"], refused_insert["op"], second_update["op"]] == [
        "update_many",
        "insert_many",
        "update_many",
    ]
    assert second_update["filter"] == first_update["filter"]
    assert index["key"] == {"user_id": 1, "day": 1, "model": 1}
    assert index["unique"] is True


def test_usage_totals_are_one_aggregation_over_the_buckets(commands):
    totals, by_model = commands["usage_totals"]

    assert totals["collection"] == by_model["collection"] == "usage_usagebucket"
    assert "'$group'" in repr(totals["pipeline"])
    assert "'$group'" in repr(by_model["pipeline"])


def test_the_export_reads_the_next_chunk_after_the_last_row_along_the_index(commands, migrations):
    first, second = commands["export_second_chunk"]
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]
    match = stage(second["pipeline"], "$match")
    anchor = {"interaction_id": uuid_hex(INTERACTION_ID), "created_at": None}

    assert stage(first["pipeline"], "$limit") == stage(second["pipeline"], "$limit") == 2
    assert list(stage(second["pipeline"], "$sort").items()) == [("created_at", 1), ("id", 1)]
    assert index_serves_sort(index["key"], ["interaction_id"], stage(second["pipeline"], "$sort"))
    assert equality_conditions(match)["interaction_id"] == anchor["interaction_id"]
    assert "$or" in repr(match), "a keyset condition: later time, or the same time and a later id"


def test_the_new_collections_get_their_indexes(migrations):
    usage = created_indexes(migrations, "usage_usagebucket")
    audit = created_indexes(migrations, "audit_staffaccess")

    assert usage["usage_bucket_day_user"]["key"] == {"day": 1, "user_id": 1}
    assert audit["staff_access_time"]["key"] == {"at": 1, "id": 1}
    assert audit["staff_access_interaction"]["key"] == {"interaction_id": 1, "at": 1}


def test_compiling_the_admin_never_connected_to_a_server(commands):
    assert not commands["connected"]
