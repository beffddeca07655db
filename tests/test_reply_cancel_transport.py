"""A cancel cuts the provider call of a reply from outside the blocked read, through the real SDK."""

import dataclasses
import threading
import time
import uuid

import pytest
from django.db import connection

from llm.cancellation import CancelScope, CancelWatcher, ReplyCancelled, reply_cancel_scope
from llm.providers import ChatRequest, provider_get
from messages_app.models import MessageStatus
from messages_app.selectors import message_cancel_requested_ids
from tests.factories import MessageFactory
from tests.fake_openai import FakeOpenAIServer

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=50)


@pytest.fixture
def patient_llm(settings):  # type: ignore[no-untyped-def]
    """A model server of this test's own: the session's shared one can still be answering
    requests of earlier tests, whose hang-ups and queued behaviours would mix with these."""
    server = FakeOpenAIServer().start()
    settings.LLM_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = server.base_url
    settings.LLM_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.LLM_TIMEOUT_SECONDS = 20
    settings.LLM_MAX_RETRIES = 2  # A cancel must not be retried.
    yield server
    server.stop()


def cancel_later(scope, seconds: float, cancelled_at: list[float], server, model: str) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Cancel `seconds` after the model server got this request (the call is then blocked on it).

    The request is recognised by its model name: a request left over from an earlier test can
    reach the shared server after its reset, and must not start the clock.
    """

    def cancel() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(r["body"].get("model") == model for r in server.requests):
            time.sleep(0.01)
        time.sleep(seconds)
        cancelled_at.append(time.monotonic())
        scope.cancel()

    thread = threading.Thread(target=cancel)
    thread.start()
    return thread


def consume(server, stream: bool, cancel_after: float) -> tuple[list[str], float]:  # type: ignore[no-untyped-def]
    received: list[str] = []
    cancelled_at: list[float] = []
    request = dataclasses.replace(REQUEST, model=f"m-{uuid.uuid4()}")
    with reply_cancel_scope(uuid.uuid4()) as scope:
        canceller = cancel_later(scope, cancel_after, cancelled_at, server, request.model)
        chunks = provider_get().chat(request, stream=stream)
        with pytest.raises(ReplyCancelled):
            received.extend(chunk.delta for chunk in chunks)
        canceller.join()
    return received, cancelled_at[0]


@pytest.mark.parametrize("stream", [True, False])
def test_a_cancel_before_the_model_answers_closes_the_connection_the_call_waits_on(patient_llm, stream):
    patient_llm.then(delay_seconds=10)

    received, cancelled_at = consume(patient_llm, stream, cancel_after=0.3)

    assert received == []
    hung_up_at = patient_llm.wait_for_hangup()
    assert hung_up_at is not None, "the model server never saw the connection closed"
    assert hung_up_at - cancelled_at < 1.0
    ours = [r for r in patient_llm.requests if r["body"].get("model", "").startswith("m-")]
    assert len(ours) == 1, "the cancelled call was retried"


def test_a_cancel_while_the_model_stalls_before_its_first_token_closes_the_stream(patient_llm):
    patient_llm.then(stall_before_first_token_seconds=10)

    received, cancelled_at = consume(patient_llm, True, cancel_after=0.3)

    assert "".join(received) == ""
    hung_up_at = patient_llm.wait_for_hangup()
    assert hung_up_at is not None, "the model server never saw the connection closed"
    assert hung_up_at - cancelled_at < 1.0


def test_a_cancel_mid_stream_stops_the_text_and_closes_the_stream(patient_llm):
    patient_llm.then(text="one two three four five six seven eight", chunk_delay_seconds=0.2)

    received, cancelled_at = consume(patient_llm, True, cancel_after=0.5)

    assert 0 < len([d for d in received if d]) < 8
    hung_up_at = patient_llm.wait_for_hangup()
    assert hung_up_at is not None, "the model server never saw the connection closed"
    assert hung_up_at - cancelled_at < 1.0


def test_calls_outside_a_cancelled_scope_keep_working_on_the_same_pool(patient_llm):
    patient_llm.then(delay_seconds=10)
    consume(patient_llm, False, cancel_after=0.2)

    chunks = list(provider_get().chat(REQUEST, stream=False))

    assert chunks[0].delta == "Hello from the fake model."


@pytest.mark.django_db
def test_the_watcher_cancels_the_scopes_of_replies_with_a_stored_cancel_request(interaction):
    asked = MessageFactory(interaction=interaction, role="assistant", status=MessageStatus.IN_PROGRESS)
    MessageFactory(interaction=interaction, role="assistant", status=MessageStatus.IN_PROGRESS)
    untouched = MessageFactory(interaction=interaction, role="assistant", status=MessageStatus.IN_PROGRESS)
    type(asked).objects.filter(pk=asked.pk).update(cancel_requested_at=asked.created_at)
    watcher = CancelWatcher(lambda ids: message_cancel_requested_ids(message_ids=ids))
    with reply_cancel_scope(asked.pk) as asked_scope, reply_cancel_scope(untouched.pk) as untouched_scope:
        watcher._scopes = {asked.pk: asked_scope, untouched.pk: untouched_scope}

        watcher.poll()

        assert asked_scope.cancelled
        assert not untouched_scope.cancelled


def test_the_watcher_keeps_watching_after_a_failed_poll_and_a_failed_reconnect(settings, caplog, django_db_blocker):
    """The watcher thread's poll fails with its database connection open, and replacing that
    connection fails too (database access is blocked again, as while the database is down).
    The thread must survive both: it is the only way cancels reach this process's replies."""
    settings.LLM_REPLY_CANCEL_POLL_SECONDS = 0.02
    polls: list[int] = []

    def find_cancelled(ids: list[uuid.UUID]) -> list[uuid.UUID]:
        polls.append(len(ids))
        if len(polls) == 1:
            with django_db_blocker.unblock():
                connection.ensure_connection()
            raise ConnectionError("the database went away")
        return ids

    watcher = CancelWatcher(find_cancelled)
    scope = CancelScope(uuid.uuid4())
    watcher.register(scope)
    try:
        deadline = time.monotonic() + 10
        while not scope.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watcher.unregister(scope)

    assert "closing the cancel watcher's database connection failed" in caplog.text
    assert scope.cancelled, "the watcher thread died with its first failure"
