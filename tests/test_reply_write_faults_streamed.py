"""A write of the STREAMED message POST (`?stream=true`, or `Accept: text/event-stream`)
fails, for real, at each write in turn, in both ways it can: it raises before it runs, or
it runs (committed) and the call raises afterwards (a connection lost before the answer).

The failure is injected as in tests/test_reply_write_faults.py (Django's
connection.execute_wrapper around the real SQLite database, in autocommit as in
production), and stays in place while the stream is read, since the stream makes the
reply's later writes. For every case: the request answers a JSON error naming what is
stored before the stream starts, or the stream ends with `reply.completed` or with an
`error` event naming what is stored; no reply stays `in_progress` once abandoned replies
are finalised; a replay with the same Idempotency-Key (streamed too) converges to one user
message with one reply; a streamed retry on the user message works without a key; and
`message_count` equals the stored rows. And once more with the database going away at that
write (every later statement fails, reads too): the answer then names the ids that may have
been stored, and everything converges once it is back.
"""

from dataclasses import dataclass
from typing import Any

import pytest

from messages_app.models import MessageStatus
from tests.factories import InteractionFactory
from tests.sse import parse_sse
from tests.test_reply_write_faults import (
    CASE_IDS,
    CASES,
    POST_WRITES,
    assert_counters_equal_rows,
    assert_every_stored_row_is_named,
    assert_one_user_message_with_one_final_reply,
    database_gone,
    finalise_abandoned,
    recorded_writes,
    stored,
    user_and_reply,
    write_fails,
)

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Answer:
    """What a client of the streamed POST saw: a JSON answer, or the events of a stream."""

    status: int
    json: dict[str, Any] | None
    events: list[tuple[str, Any]]

    @property
    def streamed(self) -> bool:
        return self.json is None


def answer_of(response) -> Answer:  # type: ignore[no-untyped-def]
    if not response.streaming:
        return Answer(status=response.status_code, json=response.json(), events=[])
    assert response["Content-Type"].startswith("text/event-stream")
    try:
        events = parse_sse(response.streaming_content)
    finally:
        response.close()
    return Answer(status=response.status_code, json=None, events=events)


def post_streamed(api, interaction, *, key=None, accept=False) -> Answer:  # type: ignore[no-untyped-def]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    url = f"/api/v1/interactions/{interaction.pk}/messages/"
    if accept:
        headers["HTTP_ACCEPT"] = "text/event-stream"
    else:
        url += "?stream=true"
    return answer_of(api.post(url, {"content": "Hello"}, format="json", **headers))


def retry_streamed(api, interaction, message_id) -> Answer:  # type: ignore[no-untyped-def]
    url = f"/api/v1/interactions/{interaction.pk}/messages/{message_id}/retry/?stream=true"
    return answer_of(api.post(url))


def assert_answer_names_what_is_stored(answer: Answer, interaction) -> None:  # type: ignore[no-untyped-def]
    """A JSON error (before the stream started) or the stream's last event names the stored rows."""
    user, reply = user_and_reply(interaction)
    if not answer.streamed:
        assert answer.json is not None
        assert answer.status in (500, 503), answer.json
        details = answer.json["error"].get("details", {})
        assert details.get("message_id") == (str(user.pk) if user else None), answer.json
        assert details.get("reply_id") == (str(reply.pk) if reply else None), answer.json
        return
    assert user is not None
    assert reply is not None, "a stream starts only once its reply is stored"
    names = [event for event, _ in answer.events]
    assert names[:2] == ["message.created", "reply.created"], names
    assert answer.events[0][1]["id"] == str(user.pk)
    assert answer.events[1][1]["id"] == str(reply.pk)
    last, data = answer.events[-1]
    assert last in ("reply.completed", "error"), names
    if last == "reply.completed":
        assert data["id"] == str(reply.pk)
        assert reply.status == MessageStatus.COMPLETED
        return
    details = data["error"]["details"]
    assert details["message_id"] == str(user.pk), data
    assert details["reply_id"] == str(reply.pk), data
    assert data["error"]["code"] != "reply_in_progress", "no attempt was taken over here"


def test_the_writes_of_a_streamed_message_post_are_the_ones_the_fault_cases_name(api, user):
    interaction = InteractionFactory(owner=user)

    with recorded_writes() as writes:
        answer = post_streamed(api, interaction)

    assert answer.events[-1][0] == "reply.completed"
    assert writes == POST_WRITES


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_a_failed_write_of_a_streamed_post_leaves_nothing_stuck_names_what_is_stored_and_a_replay_converges(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with write_fails(number, when):
        failed = post_streamed(api, interaction, key="k-1")

    assert_answer_names_what_is_stored(failed, interaction)
    finalise_abandoned(settings)
    assert not [m for m in stored(interaction) if m.status == MessageStatus.IN_PROGRESS]
    assert_counters_equal_rows(interaction)

    replayed = post_streamed(api, interaction, key="k-1")

    user_message, reply = assert_one_user_message_with_one_final_reply(interaction)
    if replayed.streamed:
        names = [event for event, _ in replayed.events]
        assert names[:2] == ["message.created", "reply.created"]
        assert (replayed.events[0][1]["id"], replayed.events[1][1]["id"]) == (str(user_message.pk), str(reply.pk))
        last, data = replayed.events[-1]
        if last == "error":
            assert data["error"]["code"] == "reply_abandoned"
            assert data["error"]["details"]["reply_id"] == str(reply.pk)
            assert data["error"]["details"]["message_id"] == str(user_message.pk)
        else:
            assert last == "reply.completed"
            assert reply.status == MessageStatus.COMPLETED
    else:
        assert replayed.json is not None
        assert replayed.status == 503, replayed.json
        assert replayed.json["error"]["code"] == "reply_abandoned"
        details = replayed.json["error"]["details"]
        assert (details["message_id"], details["reply_id"]) == (str(user_message.pk), str(reply.pk))
    assert_counters_equal_rows(interaction)
    again = post_streamed(api, interaction)
    assert again.streamed, "the interaction takes new messages"
    assert again.events[-1][0] == "reply.completed"
    assert_counters_equal_rows(interaction)


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_after_a_failed_write_of_a_streamed_post_a_streamed_retry_on_the_user_message_gets_its_reply_without_a_key(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with write_fails(number, when):
        failed = post_streamed(api, interaction, accept=True)
    finalise_abandoned(settings)

    if failed.streamed:
        message_id = failed.events[0][1]["id"]
    else:
        assert failed.json is not None
        message_id = failed.json["error"].get("details", {}).get("message_id")
    if message_id is None:
        assert stored(interaction) == [], "the error named nothing, so nothing may be stored"
        assert post_streamed(api, interaction).events[-1][0] == "reply.completed"
    else:
        _, reply_before = user_and_reply(interaction)
        retried = retry_streamed(api, interaction, message_id)
        if reply_before is not None and reply_before.status == MessageStatus.COMPLETED:
            assert retried.status == 409
            assert retried.json is not None
            assert retried.json["error"]["code"] == "reply_not_retryable"
        else:
            assert retried.streamed, retried.json
            last, data = retried.events[-1]
            assert last == "reply.completed", retried.events
            assert data["reply_to"] == message_id
            if reply_before is not None:
                assert data["id"] == str(reply_before.pk), "retried in place"
    rows = stored(interaction)
    assert [m.role for m in rows] in ([], ["user", "assistant"], ["user", "assistant", "user", "assistant"])
    assert all(m.status == MessageStatus.COMPLETED for m in rows)
    assert_counters_equal_rows(interaction)


# A streamed reply renews its claim while text arrives (every LLM_REPLY_LEASE_SECONDS / 3):
# with a lease of 0 it renews after every chunk, so its first renewal comes just before the
# write of the reply's outcome.
REPLY_OUTCOME = POST_WRITES.index(("UPDATE", "messages_app_message"))
RENEWAL = REPLY_OUTCOME + 1


def test_a_streamed_reply_renews_its_claim_as_text_arrives(api, user, settings):
    settings.LLM_REPLY_LEASE_SECONDS = 0
    interaction = InteractionFactory(owner=user)

    with recorded_writes() as writes:
        answer = post_streamed(api, interaction)

    assert answer.events[-1][0] == "reply.completed"
    assert writes[:REPLY_OUTCOME] == POST_WRITES[:REPLY_OUTCOME]
    deltas = sum(1 for event, _ in answer.events if event == "reply.delta")
    after_renewals = POST_WRITES[REPLY_OUTCOME:]
    renewals = writes[REPLY_OUTCOME : -len(after_renewals)]
    assert len(renewals) >= deltas, "one renewal after each chunk"
    assert set(renewals) == {("UPDATE", "interactions_interaction")}
    assert writes[-len(after_renewals) :] == after_renewals


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_failed_renewal_does_not_end_a_streamed_reply(api, user, settings, when):
    settings.LLM_REPLY_LEASE_SECONDS = 0
    interaction = InteractionFactory(owner=user)

    with write_fails(RENEWAL, when):
        answer = post_streamed(api, interaction, key="k-1")
    settings.LLM_REPLY_LEASE_SECONDS = 300

    assert_answer_names_what_is_stored(answer, interaction)
    last, data = answer.events[-1]
    assert last == "reply.completed", data
    user_message, reply = assert_one_user_message_with_one_final_reply(interaction)
    assert reply.status == MessageStatus.COMPLETED
    assert reply.content == "".join(d["delta"] for event, d in answer.events if event == "reply.delta")
    assert_counters_equal_rows(interaction)
    replayed = post_streamed(api, interaction, key="k-1")
    assert [replayed.events[0][1]["id"], replayed.events[-1][1]["id"]] == [str(user_message.pk), str(reply.pk)]
    assert_one_user_message_with_one_final_reply(interaction)


@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_when_the_database_goes_away_mid_stream_the_answer_names_what_may_have_been_stored_and_a_replay_converges(
    api, user, settings, number, when
):
    interaction = InteractionFactory(owner=user)

    with database_gone(number, when):
        failed = post_streamed(api, interaction, key="k-1")

    if failed.streamed:
        last, data = failed.events[-1]
        if last == "error":
            assert_every_stored_row_is_named(data["error"], interaction)
        else:
            assert last == "reply.completed", "the outcome was stored before the database went away"
    else:
        assert failed.json is not None
        assert failed.status == 503, failed.json
        assert_every_stored_row_is_named(failed.json["error"], interaction)
    finalise_abandoned(settings)
    assert not [m for m in stored(interaction) if m.status == MessageStatus.IN_PROGRESS]
    assert_counters_equal_rows(interaction)

    replayed = post_streamed(api, interaction, key="k-1")

    if stored(interaction):
        user_message, _ = assert_one_user_message_with_one_final_reply(interaction)
        first_id = (
            replayed.events[0][1]["id"]
            if replayed.streamed
            else (replayed.json or {})["error"]["details"]["message_id"]
        )
        assert first_id == str(user_message.pk)
    else:
        assert replayed.streamed, "nothing stored: posted anew"
        assert replayed.events[-1][0] == "reply.completed"
        assert_one_user_message_with_one_final_reply(interaction)
    assert_counters_equal_rows(interaction)
