"""Against a live MongoDB: migrate, the services' writes, the real indexes and query plans.

The module migrates a fresh database (MONGODB_NAME=chat_test_<random>) on the server that
MONGODB_URI names and drops it afterwards. As in tests/test_mongodb_contract.py, Django
runs in child processes so that the MongoDB settings are active at startup, whatever
database this pytest session itself uses. What can be proven without a server is proven
there; the outage behaviour (503 within seconds) too.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from tests.conftest import ROOT
from tests.mongo_contract import child_env, run_django

MONGODB_URI = os.environ.get("MONGODB_URI", "")

pytestmark = [
    pytest.mark.mongodb,
    pytest.mark.skipif(
        not MONGODB_URI,
        reason="needs a live MongoDB: set MONGODB_URI (no MongoDB server can be installed on CI machines here)",
    ),
]


@pytest.fixture(scope="module")
def live_env() -> Iterator[dict[str, str]]:
    """The environment of a child Django on a freshly migrated database of its own."""
    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    # With REDIS_URL set (the code host's MongoDB job), the children cache in that Redis too.
    env = child_env(
        MONGODB_URI=MONGODB_URI,
        MONGODB_NAME=name,
        MONGODB_SERVER_SELECTION_TIMEOUT_MS="5000",
        REDIS_URL=os.environ.get("REDIS_URL", ""),
    )
    try:
        migrate = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield env
    finally:
        # Nothing to drop, and nothing to add to the failure, if the server was never reached.
        with MongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000) as client, suppress(ConnectionFailure):
            client.drop_database(name)


@pytest.fixture(scope="module")
def database(live_env) -> Iterator[Database]:
    with MongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000) as client:
        yield client[live_env["MONGODB_NAME"]]


def indexes_of(database: Database, collection: str) -> dict[str, dict[str, Any]]:
    return {index["name"]: index.to_dict() for index in database[collection].list_indexes()}


def test_migrate_creates_the_indexes_the_queries_rely_on(database):
    interactions = indexes_of(database, "interactions_interaction")
    messages = indexes_of(database, "messages_app_message")
    tokens = indexes_of(database, "authtoken_token")
    idempotency = messages["message_idempotency_key_unique"]

    assert dict(interactions["interaction_owner_activity"]["key"]) == {"owner_id": 1, "last_activity_at": 1, "id": 1}
    assert dict(messages["message_interaction_time"]["key"]) == {"interaction_id": 1, "created_at": 1, "id": 1}
    assert dict(idempotency["key"]) == {"interaction_id": 1, "idempotency_key": 1}
    assert idempotency["unique"] is True
    assert idempotency["partialFilterExpression"] == {
        "interaction_id": {"$type": "string"},
        "idempotency_key": {"$type": "string"},
    }
    assert any(dict(index["key"]) == {"id": 1} and index.get("unique") for index in interactions.values())
    assert any(dict(index["key"]) == {"user_id": 1} and index.get("unique") for index in tokens.values())
    assert "django_migrations" in database.list_collection_names()


CONVERSATION_SCRIPT = """
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment
from rest_framework.authtoken.models import Token

from core.errors import Conflict
from interactions.services import interaction_create, interaction_reply_slot_claim, interaction_reply_slot_release
from messages_app.selectors import message_list
from messages_app.services import message_create

def conflict_code(create):
    try:
        create()
    except Conflict as exc:
        return exc.code
    return None

user = User.objects.create_user(username="alice", password="correct horse battery staple")
token = Token.objects.create(user=user)
interaction = interaction_create(owner=user, prompt="Be terse.")
# The llm app's post_save receiver answers with the offline provider and frees the slot.
message_create(interaction=interaction, role="user", content="Hello there")
claim = interaction_reply_slot_claim(interaction_id=interaction.pk)
while_replying = conflict_code(lambda: message_create(interaction=interaction, role="user", content="Again"))
interaction_reply_slot_release(interaction=interaction, claim=claim)
for n in range(2):
    message_create(interaction=interaction, role="assistant", content=f"note {n}")
message_create(interaction=interaction, role="assistant", content="keyed", idempotency_key="key-1")
same_key = conflict_code(
    lambda: message_create(interaction=interaction, role="assistant", content="keyed", idempotency_key="key-1")
)
interaction.refresh_from_db()
stored = message_list(interaction=interaction).order_by("created_at", "id")

setup_test_environment()
client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
listing = client.get("/api/v1/interactions/")
page = client.get(f"/api/v1/interactions/{interaction.pk}/messages/")
emit({
    "interaction_id": str(interaction.pk),
    "title": interaction.title,
    "message_count": interaction.message_count,
    "reply_claimed_at": interaction.reply_claimed_at,
    "stored": [[message.role, message.content, message.status] for message in stored],
    "while_replying": while_replying,
    "same_key": same_key,
    "health": [client.get("/readyz").status_code, client.get("/readyz").json()["checks"]["database"]],
    "listing": [listing.status_code, [row["id"] for row in listing.json()["data"]]],
    "page": [page.status_code, [[row["role"], row["content"]] for row in page.json()["data"]]],
})
"""


def test_the_services_store_a_conversation_and_the_api_lists_it(live_env):
    result = run_django(CONVERSATION_SCRIPT, live_env)
    stored = result["stored"]

    assert result["health"] == [200, "ok"]
    assert [role for role, _, _ in stored] == ["user", "assistant", "assistant", "assistant", "assistant"]
    assert stored[0][1] == "Hello there"
    assert stored[1][2] == "completed", "the offline provider's reply was stored"
    assert result["message_count"] == len(stored)
    assert result["title"] == "Hello there"
    assert result["reply_claimed_at"] is None
    assert result["while_replying"] == "reply_in_progress"
    assert result["same_key"] == "idempotency_key_in_use"
    assert result["listing"] == [200, [result["interaction_id"]]]
    assert result["page"] == [200, [[role, content] for role, content, _ in stored]]


PLANS_SCRIPT = """
import json

from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from core.pagination import keyset_filter
from interactions.models import Interaction
from interactions.selectors import interaction_list
from interactions.services import interaction_create
from messages_app.models import Message, MessageStatus
from messages_app.selectors import message_list
from messages_app.services import message_create

def winning_plans(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "winningPlan":
                yield value
            else:
                yield from winning_plans(value)
    elif isinstance(node, list):
        for item in node:
            yield from winning_plans(item)

def summary(queryset):
    explained = json.loads(queryset.explain())
    stages, indexes, bounds = [], [], []
    def visit(node):
        if isinstance(node, dict):
            stages.extend([node["stage"]] if "stage" in node else [])
            indexes.extend([node["indexName"]] if "indexName" in node else [])
            bounds.extend([node["indexBounds"]] if "indexBounds" in node else [])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)
    for plan in winning_plans(explained):
        visit(plan)
    return {
        "stages": stages,
        "indexes": indexes,
        "bounds": bounds,
        "pipeline": [next(iter(s)) for s in explained.get("stages", [])],
    }

owner = User.objects.create_user(username="planner")
token = Token.objects.create(user=owner)
for n in range(30):
    Token.objects.create(user=User.objects.create_user(username=f"other{n}"))
interactions = [interaction_create(owner=owner, title=f"t{n}") for n in range(30)]
for n in range(30):
    message_create(interaction=interactions[0], role="assistant", content=f"m{n}", idempotency_key=f"k{n}")
messages = message_list(interaction=interactions[0])
# A cursor in the middle of each list, filtered as core.pagination's `after` does.
message_cursor = list(messages.order_by("created_at", "pk"))[15]
interaction_cursor = list(interaction_list(owner=owner).order_by("-last_activity_at", "-pk"))[15]
newest = messages.order_by("-created_at", "-pk").first()
emit({
    "message_page_after_cursor": summary(
        messages.filter(keyset_filter("created_at", message_cursor.created_at, message_cursor.pk, forward=True))
        .order_by("created_at", "pk")[:21]
    ),
    "interaction_page_after_cursor": summary(
        interaction_list(owner=owner)
        .filter(
            keyset_filter("last_activity_at", interaction_cursor.last_activity_at, interaction_cursor.pk, forward=False)
        )
        .order_by("-last_activity_at", "-pk")[:21]
    ),
    # What message_history_newest_first() reads for every reply (its queryset, before .iterator()).
    "history": summary(
        Message.objects.filter(interaction=interactions[0], created_at__lte=newest.created_at)
        .exclude(created_at=newest.created_at, id__gt=newest.id)
        .only("id", "role", "content", "status")
        .order_by("-created_at", "-id")
    ),
    # interaction_get() and message_get(), on every request about one object.
    "interaction_get": summary(Interaction.objects.filter(owner=owner, pk=interactions[7].pk)[:1]),
    "message_get": summary(messages.filter(pk=newest.pk)[:1]),
    # The filter of the reply-slot claim (an update; explained here as the read it matches).
    "slot_claim": summary(Interaction.objects.filter(pk=interactions[3].pk, reply_claimed_at__isnull=True)),
    # message_cancel_requested_ids(), polled while replies are generated.
    "cancel_poll": summary(
        Message.objects.filter(
            pk__in=[newest.pk], status=MessageStatus.IN_PROGRESS, cancel_requested_at__isnull=False
        ).values_list("pk", flat=True)
    ),
    # The querysets core.pagination.ListPagination runs (see the contract tests).
    "interaction_page": summary(interaction_list(owner=owner).order_by("-last_activity_at", "-pk")[:21]),
    "message_page": summary(messages.order_by("created_at", "pk")[:21]),
    # What message_get_by_idempotency_key()'s .first() runs.
    "idempotency_lookup": summary(messages.filter(idempotency_key="k3").order_by("pk")[:1]),
    # What DRF's TokenAuthentication runs on every request: select_related("user").get(key=...),
    # which the backend compiles to $lookup, $unwind, then the $match on the key.
    "token_lookup": summary(Token.objects.select_related("user").filter(key=token.key)[:21]),
})
"""


@pytest.fixture(scope="module")
def plans(live_env) -> dict[str, Any]:
    return run_django(PLANS_SCRIPT, live_env)


@pytest.mark.parametrize(
    ("query", "index"),
    [("interaction_page", "interaction_owner_activity"), ("message_page", "message_interaction_time")],
)
def test_list_pages_are_read_along_their_index_without_sorting_in_memory(plans, query, index):
    plan = plans[query]

    assert index in plan["indexes"], plan
    assert "IXSCAN" in plan["stages"], plan
    assert "SORT" not in plan["stages"], f"blocking sort: {plan}"
    assert "$sort" not in plan["pipeline"], f"the $sort stayed in the pipeline: {plan}"


@pytest.mark.parametrize(
    ("query", "index", "sort_field"),
    [
        ("interaction_page_after_cursor", "interaction_owner_activity", "last_activity_at"),
        ("message_page_after_cursor", "message_interaction_time", "created_at"),
    ],
)
def test_a_cursor_page_seeks_its_index_to_the_cursor_instead_of_scanning_from_the_start(
    plans, query, index, sort_field
):
    plan = plans[query]
    scans = [bounds for name, bounds in zip(plan["indexes"], plan["bounds"], strict=True) if name == index]

    assert scans, plan
    assert "SORT" not in plan["stages"], f"blocking sort: {plan}"
    # The scan is bounded on the sort field at the cursor (one side open), not [MinKey, MaxKey].
    for bounds in scans:
        assert bounds[sort_field] != ["[MinKey, MaxKey]"], plan
        assert len(bounds[sort_field]) == 1, plan


def test_the_idempotency_lookup_uses_the_partial_unique_index(plans):
    assert "message_idempotency_key_unique" in plans["idempotency_lookup"]["indexes"], plans["idempotency_lookup"]


def test_the_token_lookup_of_every_request_is_an_index_seek_not_a_join_over_all_tokens(plans):
    plan = plans["token_lookup"]

    # MongoDB moves the $match on `key` ahead of the $lookup, which does not write `key`.
    assert "IXSCAN" in plan["stages"], plan
    assert "COLLSCAN" not in plan["stages"], plan


def unique_id_index(database: Database, collection: str) -> str:
    (name,) = [name for name, index in indexes_of(database, collection).items() if dict(index["key"]) == {"id": 1}]
    return name


@pytest.mark.parametrize(
    ("query", "collection"),
    [
        ("interaction_get", "interactions_interaction"),
        ("message_get", "messages_app_message"),
        ("slot_claim", "interactions_interaction"),
        ("cancel_poll", "messages_app_message"),
    ],
)
def test_reads_and_updates_of_one_object_seek_its_unique_id_index(plans, database, query, collection):
    plan = plans[query]

    assert unique_id_index(database, collection) in plan["indexes"], plan
    assert "COLLSCAN" not in plan["stages"], plan


def test_the_history_of_every_reply_is_read_along_message_interaction_time_without_sorting(plans):
    plan = plans["history"]

    assert "message_interaction_time" in plan["indexes"], plan
    assert "SORT" not in plan["stages"], f"blocking sort: {plan}"
    assert "$sort" not in plan["pipeline"], f"the $sort stayed in the pipeline: {plan}"
