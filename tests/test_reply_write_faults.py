"""A write of the message POST fails, for real, at each write in turn, in both ways it can:
it raises before it runs, or it runs (committed) and the call raises afterwards, as when
the connection is lost before the answer arrives (where duplicates come from).

The failure is injected with Django's connection.execute_wrapper around the real SQLite
database, in autocommit as in production (transactional tests). For every case:
no reply stays `in_progress` once abandoned replies are finalised, the error names what
was stored, a replay with the same Idempotency-Key converges to one user message with one
reply, a retry on the user message works without a key, and `message_count` equals the
stored rows. And once more with the database going away at that write (every later
statement fails, reads too): the answer names the ids that may have been stored, and
everything converges once it is back.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connection

from interactions.models import Interaction
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import replies_abandoned_finalise
from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db(transaction=True)

# The writes of a user message POST (not streamed), in order: (statement, table).
POST_WRITES = [
    ("UPDATE", "interactions_interaction"),  # count the message and claim the reply slot
    ("UPDATE", "interactions_interaction"),  # title from the first message
    ("UPDATE", "usage_usagebucket"),  # count the user message in the owner's bucket of the day (none yet)
    ("INSERT", "usage_usagebucket"),  # so it is created
    ("INSERT", "messages_app_message"),  # the user message
    ("UPDATE", "interactions_interaction"),  # count the reply, under the claim
    ("INSERT", "messages_app_message"),  # the reply, in_progress
    ("UPDATE", "messages_app_message"),  # the reply's outcome, under the claim
    ("UPDATE", "usage_usagebucket"),  # add the reply to the bucket
    ("UPDATE", "interactions_interaction"),  # release the slot, bump the version
]
WRITE_NAMES = [
    "claim",
    "title",
    "usage_message_update",
    "usage_message_insert",
    "user_insert",
    "reply_count",
    "reply_insert",
    "reply_final",
    "usage_reply_update",
    "release",
]


def is_write(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("INSERT", "UPDATE"))


@contextmanager
def recorded_writes() -> Iterator[list[tuple[str, str]]]:
    writes: list[tuple[str, str]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if is_write(sql):
            words = sql.replace('"', " ").split()
            table = words[2] if words[0].upper() == "INSERT" else words[1]
            writes.append((words[0].upper(), table))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield writes


@contextmanager
def write_fails(number: int, when: str) -> Iterator[None]:
    """The `number`th write (1-based) fails: `before` it runs, or `after` it committed."""
    seen = 0

    def inject(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal seen
        if is_write(sql):
            seen += 1
            if seen == number:
                if when == "before":
                    raise OperationalError("injected: database is locked")
                execute(sql, params, many, context)
                raise OperationalError("injected: connection lost after the write")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(inject):
        yield


def post(api, interaction, key=None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Hello"}, format="json", **headers)


def stored(interaction) -> list[Message]:  # type: ignore[no-untyped-def]
    return list(Message.objects.filter(interaction=interaction).order_by("created_at", "id"))


def assert_counters_equal_rows(interaction) -> None:  # type: ignore[no-untyped-def]
    rows = stored(interaction)
    interaction = Interaction.objects.get(pk=interaction.pk)
    assert interaction.message_count == len(rows)
    assert interaction.last_message_at == (max(m.created_at for m in rows) if rows else None)


def assert_error_names_what_is_stored(response, interaction) -> None:  # type: ignore[no-untyped-def]
    rows = stored(interaction)
    user = next((m for m in rows if m.role == MessageRole.USER), None)
    reply = next((m for m in rows if m.role == MessageRole.ASSISTANT), None)
    if response.status_code == 201:
        assert response.json()["reply"]["status"] == "completed"
        assert reply is not None
        assert response.json()["reply"]["id"] == str(reply.pk)
        return
    assert response.status_code == 503, response.json()
    details = response.json()["error"].get("details", {})
    assert details.get("message_id") == (str(user.pk) if user else None)
    assert details.get("reply_id") == (str(reply.pk) if reply else None)


def finalise_abandoned(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LLM_REPLY_LEASE_SECONDS = 0  # Every claim left behind has lapsed.
    replies_abandoned_finalise()
    settings.LLM_REPLY_LEASE_SECONDS = 300


def user_and_reply(interaction) -> tuple[Message | None, Message | None]:  # type: ignore[no-untyped-def]
    rows = stored(interaction)
    user = next((m for m in rows if m.role == MessageRole.USER), None)
    reply = next((m for m in rows if m.role == MessageRole.ASSISTANT), None)
    return user, reply


def assert_one_user_message_with_one_final_reply(interaction) -> tuple[Message, Message]:  # type: ignore[no-untyped-def]
    rows = stored(interaction)
    users = [m for m in rows if m.role == MessageRole.USER]
    replies = [m for m in rows if m.role == MessageRole.ASSISTANT]
    assert len(users) == 1
    assert len(replies) == 1
    assert replies[0].reply_to_id == users[0].pk
    assert replies[0].status != MessageStatus.IN_PROGRESS
    return users[0], replies[0]


@contextmanager
def database_gone(number: int, when: str) -> Iterator[None]:
    """From the `number`th write on (`before` it runs, or `after` it committed), the database
    answers nothing: every statement fails, reads too, until the block ends."""
    seen = 0
    gone = False

    def inject(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal seen, gone
        if gone:
            raise OperationalError("injected: the database went away")
        if is_write(sql):
            seen += 1
            if seen == number:
                gone = True
                if when == "after":
                    execute(sql, params, many, context)
                raise OperationalError("injected: the database went away")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(inject):
        yield


def assert_every_stored_row_is_named(error: dict[str, Any], interaction) -> None:  # type: ignore[no-untyped-def]
    """What is stored is named; what is named and not stored is listed as `may_have_been_stored`."""
    user, reply = user_and_reply(interaction)
    details = error["details"]
    unsure = set(details.get("may_have_been_stored", []))
    assert error["code"] == "database_unavailable", error
    assert unsure, "the database could not say what is stored: the answer says so"
    for name, row in (("message_id", user), ("reply_id", reply)):
        if row is not None:
            assert details.get(name) == str(row.pk), (name, error)
        elif name in details:
            assert name in unsure, (name, error)


def assert_replay_converged(replayed, interaction) -> None:  # type: ignore[no-untyped-def]
    """A replay with the same Idempotency-Key answers the one user message and its one final
    reply, or 503 `reply_abandoned` naming both."""
    user_message, reply = assert_one_user_message_with_one_final_reply(interaction)
    if replayed.status_code == 201:
        assert replayed.json()["message"]["id"] == str(user_message.pk)
        assert replayed.json()["reply"]["id"] == str(reply.pk)
    else:
        assert replayed.status_code == 503, replayed.json()
        assert replayed.json()["error"]["code"] == "reply_abandoned"
        details = replayed.json()["error"]["details"]
        assert (details["message_id"], details["reply_id"]) == (str(user_message.pk), str(reply.pk))


def test_the_writes_of_a_message_post_are_the_ones_the_fault_cases_name(api, user):
    interaction = InteractionFactory(owner=user)

    with recorded_writes() as writes:
        assert post(api, interaction).status_code == 201

    assert writes == POST_WRITES


CASES = [(number, when) for number in range(1, len(POST_WRITES) + 1) for when in ("before", "after")]
CASE_IDS = [f"{WRITE_NAMES[number - 1]}-{when}" for number, when in CASES]


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_a_failed_write_leaves_nothing_stuck_names_what_is_stored_and_a_replay_converges(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with write_fails(number, when):
        failed = post(api, interaction, key="k-1")

    assert_error_names_what_is_stored(failed, interaction)
    finalise_abandoned(settings)
    assert not [m for m in stored(interaction) if m.status == MessageStatus.IN_PROGRESS]
    assert_counters_equal_rows(interaction)

    replayed = post(api, interaction, key="k-1")

    assert_replay_converged(replayed, interaction)
    assert_counters_equal_rows(interaction)
    assert post(api, interaction).status_code == 201, "the interaction takes new messages"


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_after_a_failed_write_a_retry_on_the_user_message_gets_it_its_reply_without_a_key(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with write_fails(number, when):
        failed = post(api, interaction)
    finalise_abandoned(settings)

    message_id = failed.json()["message"]["id"] if failed.status_code == 201 else None
    message_id = message_id or failed.json()["error"].get("details", {}).get("message_id")
    if message_id is None:
        assert stored(interaction) == [], "the error named nothing, so nothing may be stored"
        assert post(api, interaction).status_code == 201
    else:
        reply_before = next((m for m in stored(interaction) if m.role == MessageRole.ASSISTANT), None)
        retried = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{message_id}/retry/")
        if reply_before is not None and reply_before.status == MessageStatus.COMPLETED:
            assert retried.status_code == 409
            assert retried.json()["error"]["code"] == "reply_not_retryable"
        else:
            assert retried.status_code == 200, retried.json()
            assert retried.json()["status"] == "completed"
            assert retried.json()["reply_to"] == message_id
    rows = stored(interaction)
    assert [m.role for m in rows] in ([], ["user", "assistant"], ["user", "assistant", "user", "assistant"])
    assert all(m.status == MessageStatus.COMPLETED for m in rows)
    assert_counters_equal_rows(interaction)


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_when_the_database_goes_away_mid_post_the_answer_names_what_may_have_been_stored_and_a_replay_converges(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with database_gone(number, when):
        failed = post(api, interaction, key="k-1")

    if failed.status_code == 201:
        assert failed.json()["reply"]["status"] == "completed", "the outcome was stored before the database went"
    else:
        assert failed.status_code == 503, failed.json()
        assert_every_stored_row_is_named(failed.json()["error"], interaction)
    finalise_abandoned(settings)
    assert not [m for m in stored(interaction) if m.status == MessageStatus.IN_PROGRESS]
    assert_counters_equal_rows(interaction)

    replayed = post(api, interaction, key="k-1")

    if failed.status_code == 201 or stored(interaction):
        assert_replay_converged(replayed, interaction)
    else:
        assert replayed.status_code == 201, "nothing stored: posted anew"
        assert_one_user_message_with_one_final_reply(interaction)
    assert_counters_equal_rows(interaction)
