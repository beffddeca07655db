"""What holds between this project and django-mongodb-backend, proven without a MongoDB server.

No MongoDB server can run where these tests run, and the MongoDB settings must be active
when Django starts, so each check runs a child Python with MONGODB_URI pointing at a closed
port. In the children that compile queries, Django and the backend do all their work for
real up to the point where the backend hands a finished command to pymongo: the methods
that do that (aggregate, update_many, insert_many, delete_many) record the command instead
(tests/mongo_contract.py's RECORDER, with the helpers every contract test shares), and
those children report that they never opened a connection.

What needs a live server (the planner really choosing these indexes, migrate against a
server, duplicate keys being refused) is in tests/test_mongodb_live.py.
"""

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from core.pagination import DEFAULT_LIMIT
from tests.conftest import free_port
from tests.mongo_contract import (
    ANCHOR_CREATED_AT,
    ANCHOR_ID,
    INTERACTION_ID,
    OBJECT_ID_AUTO_FIELD,
    OWNER_ID,
    RECORDER,
    apply_update,
    child_env,
    created_indexes,
    equality_conditions,
    index_serves_sort,
    matches,
    migrations_recorded,
    mongodb_env,
    only_sort_fields_reassigned_to_themselves,
    run_django,
    stage,
    stage_names,
    uuid_hex,
)

# --- Settings ----------------------------------------------------------------------------

SETTINGS_SCRIPT = """
import io
from django.apps import apps
from django.conf import settings
from django.core.management import call_command

call_command("check", fail_level="WARNING", stdout=io.StringIO())
database = settings.DATABASES["default"]
emit({
    "engine": database["ENGINE"],
    "host": database.get("HOST", ""),
    "name": database["NAME"],
    "options": database.get("OPTIONS", {}),
    "connection_name": connection.settings_dict["NAME"],
    "connection_params": connection.get_connection_params() if connection.vendor == "mongodb" else {},
    "default_auto_field": settings.DEFAULT_AUTO_FIELD,
    "installed_apps": settings.INSTALLED_APPS,
    "contrib_auto_fields": {
        label: apps.get_app_config(label).default_auto_field for label in ("admin", "auth", "contenttypes")
    },
    "migration_modules": settings.MIGRATION_MODULES,
})
"""


@pytest.fixture(scope="module")
def mongodb_settings() -> dict[str, Any]:
    env = mongodb_env()
    return {"uri": env["MONGODB_URI"], **run_django(SETTINGS_SCRIPT, env)}


@pytest.fixture(scope="module")
def mongodb_default_settings() -> dict[str, Any]:
    """MONGODB_URI with a MONGODB_NAME and nothing else of the MongoDB variables."""
    env = {**mongodb_env(MONGODB_NAME="chat_other")}
    del env["MONGODB_SERVER_SELECTION_TIMEOUT_MS"], env["MONGODB_SOCKET_TIMEOUT_MS"]
    return run_django(SETTINGS_SCRIPT, env)


def test_mongodb_uri_selects_django_mongodb_backend_on_the_database_named_in_the_uri(mongodb_settings):
    assert mongodb_settings["engine"] == "django_mongodb_backend"
    assert mongodb_settings["host"] == mongodb_settings["uri"]
    # NAME is left empty in settings; the backend takes the database from the URI's path.
    assert mongodb_settings["connection_name"] == "chat"
    assert mongodb_settings["connection_params"]["host"] == mongodb_settings["uri"]


def test_mongodb_name_overrides_the_database_named_in_the_uri(mongodb_default_settings):
    assert mongodb_default_settings["connection_name"] == "chat_other"


def test_mongodb_connections_give_up_quickly_on_an_unreachable_server(mongodb_settings, mongodb_default_settings):
    timeouts = {"serverSelectionTimeoutMS": 500, "connectTimeoutMS": 500, "socketTimeoutMS": 2000}
    assert timeouts.items() <= mongodb_settings["options"].items()
    assert timeouts.items() <= mongodb_settings["connection_params"].items()
    assert {
        "serverSelectionTimeoutMS": 3000,
        "connectTimeoutMS": 3000,
        "socketTimeoutMS": 10000,
    }.items() <= mongodb_default_settings["options"].items()


def test_mongodb_uri_gives_contrib_apps_object_id_keys_and_their_own_migrations(mongodb_settings):
    assert mongodb_settings["default_auto_field"] == OBJECT_ID_AUTO_FIELD
    contrib_labels = ("admin", "auth", "contenttypes")
    assert mongodb_settings["contrib_auto_fields"] == dict.fromkeys(contrib_labels, OBJECT_ID_AUTO_FIELD)
    assert {"django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes"}.isdisjoint(
        mongodb_settings["installed_apps"]
    )
    for label in ("admin", "auth", "contenttypes"):
        assert mongodb_settings["migration_modules"][label] == f"mongo_migrations.{label}"


def test_without_mongodb_uri_the_database_stays_sqlite(tmp_path_factory):
    database = tmp_path_factory.mktemp("sqlite") / "db.sqlite3"

    sqlite_settings = run_django(SETTINGS_SCRIPT, child_env(DATABASE_URL=f"sqlite:///{database}"))

    assert sqlite_settings["engine"] == "django.db.backends.sqlite3"
    assert sqlite_settings["name"] == str(database)
    assert sqlite_settings["default_auto_field"] == "django.db.models.BigAutoField"
    assert sqlite_settings["migration_modules"] == {}
    assert {"django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes"} <= set(
        sqlite_settings["installed_apps"]
    )


# --- Migrations ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


def test_migrations_match_the_models_under_mongodb_settings(migrations):
    assert migrations["changes"] == {}, "makemigrations would write these under MongoDB settings"


def test_every_app_with_models_has_migrations_and_contrib_ones_come_from_mongo_migrations(migrations):
    leaves = migrations["leaves"]

    assert set(migrations["apps_with_models"]) <= set(leaves)
    for label in ("admin", "auth", "contenttypes"):
        assert leaves[label].startswith(f"mongo_migrations.{label}.")
    assert leaves["interactions"].startswith("interactions.migrations.")
    assert leaves["messages_app"].startswith("messages_app.migrations.")


def test_contrib_models_get_object_id_keys_stored_as_underscore_id_and_ours_keep_uuids(migrations):
    keys = migrations["primary_keys"]

    for model in ("auth.user", "auth.group", "auth.permission", "contenttypes.contenttype", "admin.logentry"):
        assert keys[model] == ["ObjectIdAutoField", "_id"], model
    assert keys["interactions.interaction"] == ["UUIDField", "id"]
    assert keys["messages_app.message"] == ["UUIDField", "id"]
    assert keys["authtoken.token"] == ["CharField", "key"]


def test_migrate_creates_the_compound_indexes_the_list_pages_walk(migrations):
    interaction_indexes = created_indexes(migrations, "interactions_interaction")
    message_indexes = created_indexes(migrations, "messages_app_message")

    assert interaction_indexes["interaction_owner_activity"]["key"] == {"owner_id": 1, "last_activity_at": 1, "id": 1}
    assert message_indexes["message_interaction_time"]["key"] == {"interaction_id": 1, "created_at": 1, "id": 1}
    # Looking a row up by its UUID needs an index too: MongoDB only indexes its own _id.
    assert any(index["key"] == {"id": 1} and index["unique"] for index in interaction_indexes.values())
    assert any(index["key"] == {"id": 1} and index["unique"] for index in message_indexes.values())


def test_a_field_added_by_a_later_migration_is_set_on_the_documents_already_stored(migrations):
    backfills = [
        operation
        for operation in migrations["schema_operations"]
        if operation["op"] == "update_many" and operation["collection"] == "messages_app_message"
    ]

    assert {"filter": {}, "update": [{"$set": {"retry_after_seconds": None}}]} in [
        {"filter": operation["filter"], "update": operation["update"]} for operation in backfills
    ]


def test_migrate_creates_a_unique_idempotency_index_that_leaves_out_messages_without_a_key(migrations, commands):
    index = created_indexes(migrations, "messages_app_message")["message_idempotency_key_unique"]
    (stored_without_key,) = commands["user_message_create"][-1]["documents"]
    (stored_with_key,) = commands["keyed_message_create"][-1]["documents"]

    assert index["key"] == {"interaction_id": 1, "idempotency_key": 1}
    assert index["unique"] is True
    assert stored_without_key["idempotency_key"] is None
    assert not matches(stored_without_key, index["partialFilterExpression"]), "keyless messages would collide"
    assert matches(stored_with_key, index["partialFilterExpression"]), "keyed messages would not be unique"


# --- The commands the services send ---------------------------------------------------------

COMMANDS_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import datetime
from types import SimpleNamespace

from bson import ObjectId
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from core.pagination import ListPagination
from interactions.models import Interaction
from interactions.selectors import interaction_list
from interactions.services import interaction_message_recorded, interaction_reply_slot_claim
from interactions.views import InteractionViewSet
from messages_app.selectors import message_get_by_idempotency_key, message_list
from messages_app.services import message_create
from llm.views import MessageViewSet

def list_page(viewset, queryset, **query):
    view = SimpleNamespace(list_sort_field=viewset.list_sort_field, list_default_order=viewset.list_default_order)
    return ListPagination().paginate_queryset(queryset, Request(APIRequestFactory().get("/", query)), view)

owner = User(pk=ObjectId(PARAMS["owner_id"]), username="alice")
interaction = Interaction(id=uuid.UUID(PARAMS["interaction_id"]), owner=owner, model_name="m", title="Titled")

def message_page_after_anchor():
    # The anchor row as pymongo returns it: naive UTC datetime, UUID as hex string.
    anchor = {
        "created_at": datetime.fromisoformat(PARAMS["anchor_created_at"]),
        "id": uuid.UUID(PARAMS["anchor_id"]).hex,
    }
    canned_results.append([anchor])
    list_page(MessageViewSet, message_list(interaction=interaction), after=PARAMS["anchor_id"])

emit({
    "interaction_page": commands_of(lambda: list_page(InteractionViewSet, interaction_list(owner=owner))),
    "message_page_after_anchor": commands_of(message_page_after_anchor),
    "reply_slot_claim": commands_of(lambda: interaction_reply_slot_claim(interaction_id=interaction.id)),
    "message_recorded": commands_of(
        lambda: interaction_message_recorded(interaction=interaction, at=timezone.now())
    ),
    "idempotency_lookup": commands_of(
        lambda: message_get_by_idempotency_key(interaction=interaction, idempotency_key="key-1")
    ),
    "user_message_create": commands_of(
        lambda: message_create(interaction=interaction, role="user", content="Hello", reply_deferred=True)
    ),
    "keyed_message_create": commands_of(
        lambda: message_create(interaction=interaction, role="assistant", content="Hi", idempotency_key="key-1")
    ),
    "lease_seconds": settings.LLM_REPLY_LEASE_SECONDS,
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
        anchor_id=ANCHOR_ID,
        anchor_created_at=ANCHOR_CREATED_AT.replace(tzinfo=None).isoformat(),
    )


def test_interaction_list_page_matches_the_owner_and_sorts_along_interaction_owner_activity(commands, migrations):
    (command,) = commands["interaction_page"]
    pipeline = command["pipeline"]
    names = stage_names(pipeline)
    index = created_indexes(migrations, "interactions_interaction")["interaction_owner_activity"]

    assert command["collection"] == "interactions_interaction"
    assert names[0] == "$match", "only a leading $match can use an index"
    assert equality_conditions(stage(pipeline, "$match")) == {"owner_id": ObjectId(OWNER_ID)}
    assert list(stage(pipeline, "$sort").items()) == [("last_activity_at", -1), ("id", -1)]
    assert index_serves_sort(index["key"], ["owner_id"], stage(pipeline, "$sort"))
    assert only_sort_fields_reassigned_to_themselves(pipeline[1 : names.index("$sort")])
    assert names[names.index("$sort") + 1 :] == ["$limit"]
    assert stage(pipeline, "$limit") == DEFAULT_LIMIT + 1


def test_message_page_after_a_cursor_is_a_keyset_range_along_message_interaction_time(commands, migrations):
    anchor_lookup, page = commands["message_page_after_anchor"]
    pipeline = page["pipeline"]
    names = stage_names(pipeline)
    match = stage(pipeline, "$match")
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]
    interaction, anchor = uuid_hex(INTERACTION_ID), uuid_hex(ANCHOR_ID)

    def message(id_: str, created_at: datetime, interaction_id: str = interaction) -> dict[str, Any]:
        return {"interaction_id": interaction_id, "id": id_, "created_at": created_at}

    anchor_match = stage(anchor_lookup["pipeline"], "$match")
    assert equality_conditions(anchor_match) == {"interaction_id": interaction, "id": anchor}
    assert names[0] == "$match"
    assert equality_conditions(match) == {"interaction_id": interaction}
    assert list(stage(pipeline, "$sort").items()) == [("created_at", 1), ("id", 1)]
    assert index_serves_sort(index["key"], ["interaction_id"], stage(pipeline, "$sort"))
    assert only_sort_fields_reassigned_to_themselves(pipeline[1 : names.index("$sort")])
    assert stage(pipeline, "$limit") == DEFAULT_LIMIT + 1
    # The page holds exactly what comes after the anchor in (created_at, id) order.
    second = timedelta(seconds=1)
    assert not matches(message(anchor, ANCHOR_CREATED_AT), match)
    assert not matches(message("0" * 32, ANCHOR_CREATED_AT), match)
    assert matches(message("f" * 32, ANCHOR_CREATED_AT), match)
    assert not matches(message("f" * 32, ANCHOR_CREATED_AT - second), match)
    assert matches(message("0" * 32, ANCHOR_CREATED_AT + second), match)
    assert not matches(message("f" * 32, ANCHOR_CREATED_AT + second, interaction_id="e" * 32), match)


def assert_claims_only_a_free_slot(command: dict[str, Any], lease_seconds: int) -> None:
    """A lapsed claim is not taken over by a new claim: its abandoned replies are finalised
    first (tests/test_mongodb_contract_reply_lifecycle.py), which frees the slot."""
    claim_filter, update = command["filter"], command["update"]
    interaction = uuid_hex(INTERACTION_ID)
    claimed = apply_update({"id": interaction, "message_count": 0, "version": 0}, update)
    claimed_at = claimed["reply_claimed_at"]
    lease = timedelta(seconds=lease_seconds)

    def slot(**fields: Any) -> dict[str, Any]:
        return {"id": interaction, **fields}

    assert command["op"] == "update_many"
    assert command["collection"] == "interactions_interaction"
    assert equality_conditions(claim_filter) == {"id": interaction}  # unique index: at most one document
    assert isinstance(claimed_at, datetime)
    assert len(claimed["reply_claim_token"]) == 32
    assert claimed["reply_claim_host"]
    assert claimed["reply_claim_pid"] > 0
    assert matches(slot(), claim_filter)
    assert matches(slot(reply_claimed_at=None), claim_filter)
    assert not matches(slot(reply_claimed_at=claimed_at - timedelta(seconds=1)), claim_filter)
    assert not matches(slot(reply_claimed_at=claimed_at - lease - timedelta(seconds=1)), claim_filter)
    assert not matches({"id": "e" * 32, "reply_claimed_at": None}, claim_filter)


def test_reply_slot_claim_is_one_conditional_update_that_takes_only_a_free_slot(commands):
    (command,) = commands["reply_slot_claim"]

    assert_claims_only_a_free_slot(command, commands["lease_seconds"])


def test_recording_a_message_updates_the_counters_from_their_stored_values_in_one_command(commands):
    (command,) = commands["message_recorded"]
    stored = {"id": uuid_hex(INTERACTION_ID), "message_count": 41, "version": 7, "title": "Titled"}

    updated = apply_update(stored, command["update"])

    assert command["op"] == "update_many", "a read before the write would be a lost-update race"
    assert command["filter"] == {"id": uuid_hex(INTERACTION_ID)}
    # The in-memory Interaction has message_count 0: 42 can only come from the stored 41.
    assert updated["message_count"] == 42
    assert updated["version"] == 8
    assert updated["last_activity_at"] == updated["last_message_at"]
    assert updated["title"] == "Titled"


def test_idempotency_lookup_matches_everything_the_partial_unique_index_covers(commands, migrations):
    (command,) = commands["idempotency_lookup"]
    index = created_indexes(migrations, "messages_app_message")["message_idempotency_key_unique"]
    equalities = equality_conditions(stage(command["pipeline"], "$match"))

    assert stage_names(command["pipeline"])[0] == "$match"
    assert equalities == {"interaction_id": uuid_hex(INTERACTION_ID), "idempotency_key": "key-1"}
    assert set(index["key"]) <= set(equalities)
    # Whatever the lookup finds satisfies the index's filter, so the planner may use the index.
    assert matches(equalities, index["partialFilterExpression"])
    assert stage(command["pipeline"], "$limit") == 1


def test_creating_a_user_message_claims_the_slot_and_counts_it_in_one_update_then_inserts_it(commands):
    # Between them, the message is counted in its owner's usage (tests/test_mongodb_contract_usage.py).
    claim_and_count, counted_in_usage, insert = commands["user_message_create"]
    (document,) = insert["documents"]
    stored = {"id": uuid_hex(INTERACTION_ID), "message_count": 41, "version": 7, "title": "Titled"}

    counted = apply_update(stored, claim_and_count["update"])

    assert_claims_only_a_free_slot(claim_and_count, commands["lease_seconds"])
    assert counted["message_count"] == 42
    assert counted["version"] == 8
    assert counted["reply_claimed_at"] == counted["last_message_at"]
    assert counted_in_usage["collection"] == "usage_usagebucket"
    assert insert["op"] == "insert_many"
    assert insert["collection"] == "messages_app_message"
    assert document["interaction_id"] == uuid_hex(INTERACTION_ID)
    assert document["role"] == "user"
    assert document["created_at"] == counted["last_message_at"]


def test_compiling_all_of_this_never_connected_to_a_server(mongodb_settings, migrations, commands):
    assert not mongodb_settings["connected"]
    assert not migrations["connected"]
    assert not commands["connected"]


# --- An unreachable server --------------------------------------------------------------------

OUTAGE_SCRIPT = """
import time
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()  # lets the test Client's host through ALLOWED_HOSTS
client = Client()

def timed_get(path, **headers):
    started = time.monotonic()
    response = client.get(path, **headers)
    return {
        "status": response.status_code,
        "body": response.json(),
        "retry_after": response.headers.get("Retry-After"),
        "seconds": time.monotonic() - started,
    }

emit({
    "health": timed_get("/readyz"),
    # A token makes authentication read the database; without one DRF answers 401 first.
    "interactions": timed_get("/api/v1/interactions/", HTTP_AUTHORIZATION="Token " + "0" * 40),
})
"""


def test_an_unreachable_mongodb_answers_503_in_json_within_seconds():
    result = run_django(OUTAGE_SCRIPT, mongodb_env(LOG_LEVEL="CRITICAL"))
    health, interactions = result["health"], result["interactions"]

    assert health["status"] == 503
    assert health["body"]["checks"]["database"] == "unavailable"
    assert interactions["status"] == 503
    assert interactions["body"]["error"]["code"] == "database_unavailable"
    assert interactions["body"]["error"]["type"] == "api_error"
    assert interactions["retry_after"] == "5"
    assert health["seconds"] < 10
    assert interactions["seconds"] < 10


RECOVERY_SCRIPT = """
import time
from django.test import Client
from django.test.utils import setup_test_environment
from mockupdb import MockupDB

setup_test_environment()
client = Client()

def status_of(path, **headers):
    response = client.get(path, **headers)
    return [response.status_code, response.json()]

down = status_of("/readyz")

# A MongoDB wire-protocol server appears on the port: it answers the handshake, ping and
# every aggregate with an empty result, which is all that these two requests need.
server = MockupDB(port=PARAMS["port"], min_wire_version=0, max_wire_version=25, auto_ismaster=True)

def answer(request):
    if "aggregate" in request.doc:
        return request.reply(cursor={"id": 0, "firstBatch": [], "ns": "chat." + request.doc["aggregate"]})
    if "ping" in request.doc or "endSessions" in request.doc:
        return request.ok()
    return False

server.autoresponds(answer)
server.run()
started = time.monotonic()
health = status_of("/readyz")
while health[0] != 200 and time.monotonic() - started < 15:
    health = status_of("/readyz")
recovered_after = time.monotonic() - started
api = status_of("/api/v1/interactions/", HTTP_AUTHORIZATION="Token " + "0" * 40)
server.stop()
emit({"down": down, "health": health, "recovered_after": recovered_after, "api": api})
"""


def test_the_service_recovers_by_itself_when_mongodb_comes_back():
    port = free_port()
    # mockupdb listens on "localhost"; the URI names the same so both resolve alike.
    env = mongodb_env(MONGODB_URI=f"mongodb://localhost:{port}/chat", LOG_LEVEL="CRITICAL")

    result = run_django(RECOVERY_SCRIPT, env, port=port)

    assert result["down"][0] == 503
    assert result["down"][1]["checks"]["database"] == "unavailable"
    assert result["health"] == [200, {"status": "ready", "checks": {"database": "ok", "cache": "ok", "provider": "ok"}}]
    assert result["recovered_after"] < 10, "no restart, and no long wait, once the server is back"
    # The token was looked up in the database (an aggregate, answered empty): no longer 503.
    assert result["api"][0] == 401
    assert result["api"][1]["error"]["code"] == "authentication_failed"
