"""Every other query the services, selectors and commands send, compiled for MongoDB.

tests/test_mongodb_contract.py proves the list pages, the reply-slot claim with the
counters, the idempotency lookup and the message insert; this module covers the rest of the
queries in the code when it was written: single-object reads, the reply lookup, the
history read of every reply, the cancel poll, the interaction's updates, the title,
deleting an interaction, what demo_user and token authentication read, and a user's
usage since a day. (The admin, export and usage-bucket writes are in
tests/test_mongodb_contract_admin.py, the cursor pages in tests/test_mongodb_contract_cursors.py,
the reply claims and their writes in tests/test_mongodb_contract_reply_lifecycle.py.) Each
test names the index that serves its query (created by the migrations, as the `migrations`
fixture records them) and checks that the query's conditions are what that index needs. A
new query gets its test in a module of its own (tests/test_mongodb_contract_<topic>.py), as
the README's contributor rule says.

Same technique as there: a child Django with MONGODB_URI on a closed port, where the
backend's hand-over to pymongo records the command instead of sending it.
"""

import ast
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from tests.mongo_contract import (
    ANCHOR_CREATED_AT,
    ANCHOR_ID,
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

OTHER_ID = "0190f0e0-0002-7000-8000-000000000003"

QUERIES_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import date, datetime

from bson import ObjectId
from django.contrib.auth.models import User
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.authtoken.models import Token

from interactions.models import Interaction
from interactions.selectors import interaction_get
from interactions.services import (
    interaction_delete,
    interaction_message_recorded,
    interaction_messages_changed,
    interaction_update,
)
from messages_app.models import Message
from messages_app.selectors import (
    message_cancel_requested_ids,
    message_get,
    message_history_newest_first,
    message_reply_get,
)
from usage.selectors import usage_for_user

# Deleting runs in transaction.atomic(), which opens the connection: a MongoClient that is
# never sent a command (its first, the server version check, is skipped here).
connection.init_connection_state = lambda: None

def commands_of_any(step, *results):
    # A selector that finds nothing in the canned results raises: what it sent still counts.
    try:
        return commands_of(step, *results)
    except Exception:
        import traceback
        return [*recorded, {"op": "raised", "error": traceback.format_exc()[:6000]}]

owner = User(pk=ObjectId(PARAMS["owner_id"]), username="alice")
interaction = Interaction(id=uuid.UUID(PARAMS["interaction_id"]), owner=owner, model_name="m", title="")
anchor = Message(
    id=uuid.UUID(PARAMS["anchor_id"]),
    interaction=interaction,
    role="user",
    content="Hello",
    created_at=datetime.fromisoformat(PARAMS["anchor_created_at"]),
)
reply = Message(id=uuid.UUID(PARAMS["other_id"]), interaction=interaction, role="assistant", reply_to=anchor)
for loaded in (interaction, anchor, reply):  # as if read from the database
    loaded._state.adding = False

def token_authenticate():
    try:
        TokenAuthentication().authenticate_credentials("0" * 40)
    except AuthenticationFailed:
        pass

emit({
    "interaction_get": commands_of_any(lambda: interaction_get(owner=owner, interaction_id=interaction.id)),
    "message_get": commands_of_any(lambda: message_get(interaction=interaction, message_id=anchor.id)),
    "reply_get": commands_of_any(lambda: message_reply_get(message=anchor)),
    "history": commands_of_any(lambda: next(message_history_newest_first(interaction=interaction, up_to=anchor), None)),
    "cancel_poll": commands_of_any(lambda: message_cancel_requested_ids(message_ids=[anchor.id, reply.id])),
    "messages_changed": commands_of_any(lambda: interaction_messages_changed(interaction=interaction)),
    "titled": commands_of_any(
        lambda: interaction_message_recorded(interaction=interaction, at=anchor.created_at, title_hint="Hello  there")
    ),
    # full_clean() first checks that the owner exists (the canned row says it does).
    "interaction_update": commands_of_any(
        lambda: interaction_update(interaction=interaction, title="Renamed"), [{"a": 1}]
    ),
    "interaction_delete": commands_of_any(lambda: interaction_delete(interaction=interaction)),
    "demo_user": commands_of_any(lambda: User.objects.get_or_create(username="demo")),
    "usage_for_user": commands_of_any(lambda: usage_for_user(user_id=owner.pk, since=date(2025, 1, 1))),
    "token_authenticate": commands_of_any(token_authenticate),
})
"""
)


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    """What `migrate` would send (the indexes, as tests/test_mongodb_contract.py records them)."""
    return migrations_recorded()


@pytest.fixture(scope="module")
def queries() -> dict[str, Any]:
    return run_django(
        QUERIES_SCRIPT,
        mongodb_env(),
        owner_id=OWNER_ID,
        interaction_id=INTERACTION_ID,
        anchor_id=ANCHOR_ID,
        other_id=OTHER_ID,
        anchor_created_at=ANCHOR_CREATED_AT.replace(tzinfo=None).isoformat(),
    )


def only(commands: list[dict[str, Any]], op: str) -> dict[str, Any]:
    (command,) = [command for command in commands if command["op"] == op]
    return command


def unique_id_index(migrations: dict[str, Any], collection: str) -> dict[str, Any]:
    (index,) = [index for index in created_indexes(migrations, collection).values() if index["key"] == {"id": 1}]
    assert index["unique"] is True
    return index


def assert_served_by_the_unique_id_index(match: dict[str, Any], migrations, collection: str, id_: str) -> None:
    """An equality on `id`: the unique index finds at most one document, and the value is
    of the type its partial filter covers, so the planner may use it."""
    index = unique_id_index(migrations, collection)
    assert equality_conditions(match)["id"] == uuid_hex(id_)
    assert matches({"id": uuid_hex(id_)}, index["partialFilterExpression"])


# --- Reads -------------------------------------------------------------------------------


def test_an_owners_interaction_is_read_by_its_unique_id_and_the_owner(queries, migrations):
    command = only(queries["interaction_get"], "aggregate")
    match = stage(command["pipeline"], "$match")

    assert command["collection"] == "interactions_interaction"
    assert stage_names(command["pipeline"])[0] == "$match"
    assert equality_conditions(match) == {"owner_id": ObjectId(OWNER_ID), "id": uuid_hex(INTERACTION_ID)}
    assert_served_by_the_unique_id_index(match, migrations, "interactions_interaction", INTERACTION_ID)
    assert stage(command["pipeline"], "$limit") == 1


def test_a_message_is_read_by_its_unique_id_within_its_interaction(queries, migrations):
    command = only(queries["message_get"], "aggregate")
    match = stage(command["pipeline"], "$match")

    assert command["collection"] == "messages_app_message"
    assert equality_conditions(match) == {"interaction_id": uuid_hex(INTERACTION_ID), "id": uuid_hex(ANCHOR_ID)}
    assert_served_by_the_unique_id_index(match, migrations, "messages_app_message", ANCHOR_ID)


def test_the_reply_to_a_message_is_found_through_the_reply_to_index(queries, migrations):
    command = only(queries["reply_get"], "aggregate")
    pipeline = command["pipeline"]
    match = stage(pipeline, "$match")
    indexes = created_indexes(migrations, "messages_app_message").values()
    (reply_to_index,) = [index for index in indexes if index["key"] == {"reply_to_id": 1}]

    assert stage_names(pipeline)[0] == "$match"
    assert equality_conditions(match) == {
        "interaction_id": uuid_hex(INTERACTION_ID),
        "reply_to_id": uuid_hex(ANCHOR_ID),
        "role": "assistant",
    }
    # A message has one reply (retries rewrite it in place), so the reply_to index leaves at
    # most a few documents to sort; the newest is taken.
    assert reply_to_index["key"] == {"reply_to_id": 1}
    assert list(stage(pipeline, "$sort").items()) == [("created_at", -1), ("id", -1)]
    assert stage(pipeline, "$limit") == 1


def test_the_history_of_a_reply_is_read_newest_first_along_message_interaction_time(queries, migrations):
    command = only(queries["history"], "aggregate")
    pipeline = command["pipeline"]
    match = stage(pipeline, "$match")
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]
    interaction = uuid_hex(INTERACTION_ID)

    def message(id_: str, created_at: datetime, interaction_id: str = interaction) -> dict[str, Any]:
        return {"interaction_id": interaction_id, "id": id_, "created_at": created_at}

    assert stage_names(pipeline)[0] == "$match"
    assert equality_conditions(match) == {"interaction_id": interaction}
    assert list(stage(pipeline, "$sort").items()) == [("created_at", -1), ("id", -1)]
    assert index_serves_sort(index["key"], ["interaction_id"], stage(pipeline, "$sort"))
    # Up to and including the message being answered, in (created_at, id) order.
    second = timedelta(seconds=1)
    anchor = uuid_hex(ANCHOR_ID)
    assert matches(message(anchor, ANCHOR_CREATED_AT), match)
    assert matches(message("0" * 32, ANCHOR_CREATED_AT), match)
    assert not matches(message("f" * 32, ANCHOR_CREATED_AT), match)
    assert matches(message("f" * 32, ANCHOR_CREATED_AT - second), match)
    assert not matches(message("0" * 32, ANCHOR_CREATED_AT + second), match)
    assert not matches(message(anchor, ANCHOR_CREATED_AT, interaction_id="e" * 32), match)


def test_the_cancel_poll_reads_the_replies_it_watches_by_their_unique_ids(queries, migrations):
    command = only(queries["cancel_poll"], "aggregate")
    match = stage(command["pipeline"], "$match")
    index = unique_id_index(migrations, "messages_app_message")
    in_progress = {"id": uuid_hex(ANCHOR_ID), "status": "in_progress", "cancel_requested_at": datetime.now(UTC)}

    assert command["collection"] == "messages_app_message"
    assert stage_names(command["pipeline"])[0] == "$match"
    assert matches(in_progress, match)
    assert not matches({**in_progress, "cancel_requested_at": None}, match)
    assert not matches({**in_progress, "status": "completed"}, match)
    assert not matches({**in_progress, "id": "e" * 32}, match)
    # An $in over ids of the type the partial unique index covers: one seek per id.
    assert matches({"id": uuid_hex(OTHER_ID)}, index["partialFilterExpression"])
    assert {"$in": [uuid_hex(ANCHOR_ID), uuid_hex(OTHER_ID)]} in _conditions_on(match, "id")


def _conditions_on(match: dict[str, Any], field: str) -> list[Any]:
    clauses = match["$and"] if set(match) == {"$and"} else [match]
    return [clause[field] for clause in clauses if field in clause]


def test_demo_user_and_token_authentication_read_by_their_unique_keys(queries, migrations):
    demo_user = next(command for command in queries["demo_user"] if command["op"] == "aggregate")
    token = only(queries["token_authenticate"], "aggregate")
    username_index = created_indexes(migrations, "auth_user")["auth_user_username_6821ab7c_uniq"]
    key_index = created_indexes(migrations, "authtoken_token")["authtoken_token_key_10f0b77e_uniq"]

    assert demo_user["collection"] == "auth_user"
    assert equality_conditions(stage(demo_user["pipeline"], "$match")) == {"username": "demo"}
    assert username_index["key"] == {"username": 1}
    assert username_index["unique"] is True
    assert token["collection"] == "authtoken_token"
    # MongoDB moves this $match ahead of the $lookup of the user (tests/test_mongodb_live.py).
    assert equality_conditions(stage(token["pipeline"], "$match")) == {"key": "0" * 40}
    assert key_index["key"] == {"key": 1}
    assert matches({"key": "0" * 40}, key_index["partialFilterExpression"])


# --- Writes -------------------------------------------------------------------------------


def updated(command: dict[str, Any], **stored: Any) -> dict[str, Any]:
    return apply_update({"id": uuid_hex(INTERACTION_ID), **stored}, command["update"])


def test_recording_a_change_to_a_message_bumps_the_version_by_id(queries, migrations):
    (changed,) = queries["messages_changed"]

    assert changed["op"] == "update_many"
    assert changed["filter"] == {"id": uuid_hex(INTERACTION_ID)}
    assert_served_by_the_unique_id_index(changed["filter"], migrations, "interactions_interaction", INTERACTION_ID)
    assert updated(changed, version=3, reply_claimed_at=ANCHOR_CREATED_AT) == {
        "id": uuid_hex(INTERACTION_ID),
        "version": 4,
        "reply_claimed_at": ANCHOR_CREATED_AT,
    }


def test_the_title_is_set_from_the_first_message_only_while_it_is_empty(queries):
    counters, title = queries["titled"]

    assert counters["filter"] == {"id": uuid_hex(INTERACTION_ID)}
    assert equality_conditions(title["filter"]) == {"id": uuid_hex(INTERACTION_ID), "title": ""}
    assert not matches({"id": uuid_hex(INTERACTION_ID), "title": "Chosen"}, title["filter"]), "a title is kept"
    assert updated(title, title="", version=3) == {"id": uuid_hex(INTERACTION_ID), "title": "Hello there", "version": 4}


def test_an_interaction_update_checks_the_owner_by_its_key_then_writes_only_the_changed_fields_by_id(
    queries, migrations
):
    # Then it reads the row back by id (here the canned results have none: the update answers 404).
    owner_check, write, read_back, *_ = queries["interaction_update"]
    stored = {"id": uuid_hex(INTERACTION_ID), "title": "Old", "message_count": 5, "version": 1}

    # full_clean() validates the owner foreign key: one read by _id (the collection's own index).
    assert owner_check["collection"] == "auth_user"
    assert stage(owner_check["pipeline"], "$match") == {"_id": ObjectId(OWNER_ID)}
    assert write["op"] == "update_many"
    assert write["filter"] == {"id": uuid_hex(INTERACTION_ID)}
    assert_served_by_the_unique_id_index(write["filter"], migrations, "interactions_interaction", INTERACTION_ID)
    written = apply_update(stored, write["update"])
    assert written["title"] == "Renamed"
    assert written["message_count"] == 5, "counters are not written back from memory"
    assert written["version"] == 2, "the version is bumped in the database, not from memory"
    assert set(written) - set(stored) == {"updated_at"}
    assert read_back["collection"] == "interactions_interaction"
    assert stage(read_back["pipeline"], "$match") == {"id": uuid_hex(INTERACTION_ID)}


def test_deleting_an_interaction_deletes_its_messages_by_interaction_without_reading_them(queries, migrations):
    delete_messages, delete_interaction = queries["interaction_delete"]
    indexes = created_indexes(migrations, "messages_app_message")

    # Its messages, in one delete by interaction_id (the first field of message_interaction_time):
    # none is read first (reply_to is DO_NOTHING: a reply is deleted with the message it answers).
    assert (delete_messages["op"], delete_messages["collection"]) == ("delete_many", "messages_app_message")
    assert delete_messages["filter"] == {"interaction_id": {"$in": [uuid_hex(INTERACTION_ID)]}}
    assert next(iter(indexes["message_interaction_time"]["key"])) == "interaction_id"
    # Then the interaction, by its unique id.
    assert (delete_interaction["op"], delete_interaction["collection"]) == ("delete_many", "interactions_interaction")
    assert delete_interaction["filter"] == {"id": {"$in": [uuid_hex(INTERACTION_ID)]}}


def test_a_users_usage_since_a_day_is_one_aggregation_along_the_unique_bucket_index(queries, migrations):
    command = only(queries["usage_for_user"], "aggregate")
    pipeline = command["pipeline"]
    match = stage(pipeline, "$match")
    index = created_indexes(migrations, "usage_usagebucket")["usage_bucket_user_day_model"]
    since = datetime(2025, 1, 1, tzinfo=UTC)

    def bucket(day: datetime, user_id: str = OWNER_ID) -> dict[str, Any]:
        return {"user_id": ObjectId(user_id), "day": day, "model": "m"}

    assert command["collection"] == "usage_usagebucket"
    assert stage_names(pipeline)[0] == "$match", "only a leading $match can use an index"
    assert "'$group'" in repr(pipeline), "summed by the server, not in Python"
    # Equality on user_id, then a range on day: a prefix of the unique (user, day, model) index.
    assert equality_conditions(match) == {"user_id": ObjectId(OWNER_ID)}
    assert list(index["key"])[:2] == ["user_id", "day"]
    assert matches(bucket(since), match)
    assert matches(bucket(since + timedelta(days=3)), match)
    assert not matches(bucket(since - timedelta(days=1)), match)
    assert not matches(bucket(since, user_id="65a0000000000000000000ff"), match)


# --- The live module's scripts ---------------------------------------------------------------

LIVE_IMPORTS_SCRIPT = """
for source in PARAMS["imports"]:
    exec(source, {})
emit({"imported": len(PARAMS["imports"])})
"""


def test_the_live_modules_scripts_import_only_what_exists():
    """tests/test_mongodb_live.py runs only where a server is; a renamed service would
    otherwise be found there first. Its child scripts' imports run here, under MONGODB_URI."""
    import tests.test_mongodb_live as live

    imports = [
        ast.unparse(node)
        for name, script in vars(live).items()
        if name.endswith("_SCRIPT")
        for node in ast.parse(script).body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]

    result = run_django(LIVE_IMPORTS_SCRIPT, mongodb_env(), imports=imports)

    assert result["imported"] == len(imports) > 5
    assert not result["connected"]
