"""Assistant replies through the real openai SDK against a loopback OpenAI-compatible server."""

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from core.errors import NotFound
from interactions.models import Interaction
from interactions.services import interaction_reply_slot_claim
from llm.prompts import conversation_build
from llm.providers import retry_after_seconds
from llm.services import reply_run, reply_start
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.selectors import message_history_newest_first
from messages_app.services import message_create
from tests.factories import InteractionFactory, MessageFactory
from tests.sse import parse_sse

pytestmark = pytest.mark.django_db


def post(api, interaction, content="Hello", **extra):
    return api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": content}, format="json", **extra)


def stored(interaction):
    return list(Message.objects.filter(interaction=interaction).order_by("created_at", "id"))


def test_the_reply_is_generated_by_the_configured_model_and_stored(api, interaction, fake_llm):
    fake_llm.default.text = "Bonjour!"

    response = post(api, interaction)

    assert response.status_code == 201
    reply = response.json()["reply"]
    assert reply["content"] == "Bonjour!"
    assert reply["status"] == "completed"
    assert reply["model"] == "test-model-served"
    assert reply["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert reply["latency_ms"] >= 0
    assert reply["time_to_first_token_ms"] is None
    assert [m.role for m in stored(interaction)] == ["user", "assistant"]
    assert fake_llm.last_request["headers"]["authorization"] == "Bearer sk-test"


def test_the_model_receives_prompt_as_its_role_then_the_history_in_order(api, user, fake_llm):
    interaction = InteractionFactory(
        owner=user, model_name="llama3", role="developer", prompt="Be kind.", temperature=0.2, max_tokens=64
    )
    post(api, interaction, "first")
    post(api, interaction, "second")

    body = fake_llm.last_request["body"]

    assert body["model"] == "llama3"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 64
    assert body["messages"] == [
        {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Hello from the fake model."},
        {"role": "user", "content": "second"},
    ]


def test_output_tokens_are_capped_by_the_server_setting(api, user, fake_llm, settings):
    settings.LLM_MAX_OUTPUT_TOKENS = 50
    interaction = InteractionFactory(owner=user, max_tokens=None)

    post(api, interaction)

    assert fake_llm.last_request["body"]["max_tokens"] == 50
    assert "temperature" not in fake_llm.last_request["body"]


def test_history_over_the_budget_keeps_the_newest_messages(api, interaction, fake_llm, settings):
    for index in range(6):
        MessageFactory(
            interaction=interaction,
            role=MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT,
            content=f"old-{index} " + "x" * 400,
        )
    settings.LLM_HISTORY_TOKEN_BUDGET = 300

    post(api, interaction, "newest question")

    sent = fake_llm.last_request["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assert sent[-1] == {"role": "user", "content": "newest question"}
    kept_old = [m["content"].split(" ")[0] for m in sent[1:-1]]
    assert kept_old == ["old-4", "old-5"]


def test_a_reply_reads_the_stored_history_only_as_far_as_the_budget_reaches(interaction, settings):
    for index in range(50):
        MessageFactory(interaction=interaction, content=f"old-{index} " + "x" * 400)
    newest = MessageFactory(interaction=interaction, role=MessageRole.USER, content="newest question")
    settings.LLM_HISTORY_TOKEN_BUDGET = 300
    read = []

    def recording(rows):
        for row in rows:
            read.append(row.content.split(" ")[0])
            yield row

    history = message_history_newest_first(interaction=interaction, up_to=newest)
    sent = conversation_build(interaction=interaction, history_newest_first=recording(history))

    assert [m["content"].split(" ")[0] for m in sent[1:]] == ["old-48", "old-49", "newest"]
    assert read == ["newest", "old-49", "old-48", "old-47"], "rows past the budget were read"


def test_a_stored_message_equals_the_one_its_creator_holds(interaction):
    message = message_create(interaction=interaction, role=MessageRole.ASSISTANT, content="hi")

    # MongoDB keeps milliseconds; keyset comparisons against the in-memory message rely on this.
    assert Message.objects.get(pk=message.pk).created_at == message.created_at


def test_failed_replies_are_left_out_of_the_history(api, interaction, fake_llm):
    fake_llm.then(status=500)
    post(api, interaction, "first try")

    post(api, interaction, "second try")

    contents = [m["content"] for m in fake_llm.last_request["body"]["messages"]]
    assert contents == ["You are terse.", "first try", "second try"]


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        ({"delay_seconds": 3}, 504, "upstream_timeout"),
        ({"status": 500}, 502, "upstream_error"),
        ({"status": 503}, 502, "upstream_error"),
        ({"status": 429, "headers": {"Retry-After": "7"}}, 503, "upstream_rate_limited"),
        ({"garbage": True}, 502, "upstream_bad_response"),
        ({"empty": True}, 502, "upstream_bad_response"),
    ],
)
def test_provider_failures_store_a_failed_reply_and_answer_a_clear_error(
    api, interaction, fake_llm, behaviour, status, code
):
    fake_llm.then(**behaviour)

    response = post(api, interaction, "keep me")

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "upstream_error"
    user_message, reply = stored(interaction)
    assert user_message.content == "keep me"
    assert reply.status == MessageStatus.FAILED
    assert reply.error_code == code
    assert reply.error_message
    assert error["details"] == {
        "message_id": str(user_message.pk),
        "reply_id": str(reply.pk),
        "request_id": response["X-Request-ID"],
    }
    if status == 503:
        assert response["Retry-After"] == "7", "the provider's Retry-After is passed on"
    interaction.refresh_from_db()
    assert interaction.reply_claimed_at is None


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ([], "no choices"),
        ({"error": {"message": "overloaded"}}, "no choices"),
        ({"model": "m", "choices": {"0": {}}}, "no choices"),
        ({"model": "m", "choices": ["text"]}, "no choices"),
        ({"model": "m", "choices": [{"message": "text"}]}, "no content"),
        ({"model": "m", "choices": [{"message": {"role": "assistant", "content": None}}]}, "no content"),
        ({"model": "m", "choices": [{"message": {"content": ["text"]}}]}, "no content"),
    ],
    ids=["array", "error-object", "choices-object", "choice-text", "message-text", "content-null", "content-array"],
)
def test_an_answer_that_is_not_a_completion_is_the_providers_bad_response(api, interaction, fake_llm, answer, said):
    fake_llm.then(raw_json=answer)

    response = post(api, interaction)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"
    assert said in response.json()["error"]["message"]
    assert stored(interaction)[1].status == MessageStatus.FAILED


def test_a_completion_with_extra_fields_and_odd_usage_is_read_as_far_as_it_goes(api, interaction, fake_llm):
    fake_llm.then(
        raw_json={
            "model": "",
            "system_fingerprint": "fp",
            "choices": [{"message": {"role": "assistant", "content": "Hi", "refusal": None}, "finish_reason": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": True, "total_tokens": "5"},
        }
    )

    response = post(api, interaction)

    assert response.status_code == 201
    reply = response.json()["reply"]
    assert reply["content"] == "Hi"
    assert reply["model"] == interaction.model_name, "no model named: the one asked for"
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": None, "total_tokens": None}


def test_an_unreachable_provider_answers_502(api, interaction, fake_llm, settings):
    from tests.conftest import free_port

    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"

    response = post(api, interaction)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert stored(interaction)[1].status == MessageStatus.FAILED


def test_a_reply_cut_at_max_tokens_is_incomplete_with_its_text(api, interaction, fake_llm):
    fake_llm.then(text="Partial answer", finish_reason="length")

    response = post(api, interaction)

    assert response.status_code == 201
    assert response.json()["reply"]["status"] == "incomplete"
    assert response.json()["reply"]["content"] == "Partial answer"


def test_a_failed_reply_can_be_retried_without_repeating_the_user_message(api, interaction, fake_llm):
    fake_llm.then(status=500)
    failed = post(api, interaction, "question").json()["error"]["details"]
    fake_llm.default.text = "Second time lucky."

    response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{failed['reply_id']}/retry/")

    assert response.status_code == 200
    reply = response.json()
    assert reply["id"] == failed["reply_id"]
    assert reply["status"] == "completed"
    assert reply["content"] == "Second time lucky."
    assert reply["error"] is None
    assert [(m.role, m.status) for m in stored(interaction)] == [("user", "completed"), ("assistant", "completed")]
    assert [m["content"] for m in fake_llm.last_request["body"]["messages"]] == ["You are terse.", "question"]
    interaction.refresh_from_db()
    assert interaction.message_count == 2


def test_a_retry_that_fails_again_answers_the_error_again(api, interaction, fake_llm):
    fake_llm.default.status = 500
    reply_id = post(api, interaction).json()["error"]["details"]["reply_id"]

    response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{reply_id}/retry/")

    assert response.status_code == 502
    assert response.json()["error"]["details"]["reply_id"] == reply_id


def test_completed_replies_their_user_messages_and_imported_messages_cannot_be_retried(api, interaction, fake_llm):
    body = post(api, interaction).json()
    imported = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/", {"role": "assistant", "content": "x"}, format="json"
    ).json()["message"]

    for message_id, code in [
        (body["reply"]["id"], "reply_not_retryable"),
        (body["message"]["id"], "reply_not_retryable"),
        (imported["id"], "not_a_reply"),
    ]:
        response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{message_id}/retry/")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == code
    assert len(fake_llm.requests) == 1


def test_a_user_message_while_a_reply_is_in_flight_answers_409_and_stores_nothing(api, interaction, fake_llm):
    interaction_reply_slot_claim(interaction_id=interaction.pk)

    response = post(api, interaction)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reply_in_progress"
    assert stored(interaction) == []
    assert fake_llm.requests == []


def test_an_abandoned_reply_claim_expires(api, interaction, fake_llm, settings):
    interaction_reply_slot_claim(interaction_id=interaction.pk)
    settings.LLM_REPLY_LEASE_SECONDS = 0

    assert post(api, interaction).status_code == 201


def test_a_reply_still_streaming_past_the_lease_keeps_its_claim(api, interaction, fake_llm, settings):
    settings.LLM_REPLY_LEASE_SECONDS = 1
    fake_llm.default.text = " ".join("abcdefghijkl")
    fake_llm.default.chunk_delay_seconds = 0.2
    events = iter(stream(api, interaction, "tell me slowly").streaming_content)
    started = time.monotonic()
    while time.monotonic() - started < 1.6:
        next(events)

    meanwhile = post(api, interaction, "are you done?")
    rest = parse_sse(events)

    assert meanwhile.status_code == 409, "a claim older than the lease but still streaming was taken over"
    assert rest[-1][0] == "reply.completed"
    assert [m.content for m in stored(interaction)] == ["tell me slowly", "a b c d e f g h i j k l"]
    interaction.refresh_from_db()
    assert interaction.reply_claimed_at is None


def test_the_same_idempotency_key_returns_the_same_result_and_calls_the_model_once(api, interaction, fake_llm):
    first = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-1")
    second = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-1")

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert len(fake_llm.requests) == 1
    assert len(stored(interaction)) == 2


def test_a_replayed_failure_answers_the_same_error(api, interaction, fake_llm):
    fake_llm.then(status=500)
    first = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-f")
    second = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-f")

    assert first.status_code == second.status_code == 502
    # The same stored failure; each answer names its own request.
    first_error, second_error = first.json()["error"], second.json()["error"]
    assert first_error["details"].pop("request_id") == first["X-Request-ID"]
    assert second_error["details"].pop("request_id") == second["X-Request-ID"]
    assert first_error == second_error
    assert len(fake_llm.requests) == 1


def test_a_replayed_failure_says_it_is_replayed_as_a_replayed_success_does(api, interaction, fake_llm):
    fake_llm.then(status=500)
    first = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-f")
    second = post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-f")

    assert first.status_code == second.status_code == 502
    assert "Idempotent-Replayed" not in first
    assert second["Idempotent-Replayed"] == "true"


def test_the_same_idempotency_key_with_another_body_answers_422(api, interaction, fake_llm):
    post(api, interaction, "once", HTTP_IDEMPOTENCY_KEY="key-2")

    response = post(api, interaction, "different", HTTP_IDEMPOTENCY_KEY="key-2")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert len(stored(interaction)) == 2


def test_idempotency_keys_of_different_interactions_do_not_collide(api, user, fake_llm):
    first, second = InteractionFactory(owner=user), InteractionFactory(owner=user)

    assert post(api, first, "x", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert post(api, second, "x", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert len(fake_llm.requests) == 2


@pytest.mark.parametrize("role", ["assistant", "system"])
def test_no_model_call_for_assistant_or_system_messages(api, interaction, fake_llm, role):
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"role": role, "content": "x"}, format="json")

    assert fake_llm.requests == []


def test_no_model_call_for_another_users_interaction(other_api, interaction, fake_llm):
    assert post(other_api, interaction).status_code == 404
    assert fake_llm.requests == []


def test_a_configured_provider_that_fails_never_falls_back_to_the_offline_one(api, interaction, fake_llm):
    fake_llm.default.status = 500

    post(api, interaction)

    reply = stored(interaction)[1]
    assert reply.status == MessageStatus.FAILED
    assert "offline" not in reply.content


def stream(api, interaction, content="Hello", **extra):
    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true", {"content": content}, format="json", **extra
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    return response


def test_streaming_sends_the_user_message_deltas_and_the_stored_reply(api, interaction, fake_llm):
    fake_llm.default.text = "one two three"

    events = parse_sse(stream(api, interaction).streaming_content)

    names = [name for name, _ in events]
    assert names == ["message.created", "reply.created", "reply.delta", "reply.delta", "reply.delta", "reply.completed"]
    assert events[0][1]["content"] == "Hello"
    assert events[1][1]["status"] == "in_progress"
    assert "".join(data["delta"] for name, data in events if name == "reply.delta") == "one two three"
    final = events[-1][1]
    assert final["status"] == "completed"
    assert final["content"] == "one two three"
    assert final["usage"]["total_tokens"] == 18
    assert final["time_to_first_token_ms"] is not None
    assert fake_llm.last_request["body"]["stream"] is True
    reply = stored(interaction)[1]
    assert reply.content == "one two three"
    assert str(reply.pk) == final["id"]


def test_stream_as_a_body_field_works_too(api, interaction, fake_llm):
    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "hi", "stream": True}, format="json"
    )

    assert response["Content-Type"] == "text/event-stream"
    assert parse_sse(response.streaming_content)[-1][0] == "reply.completed"


def test_a_stream_that_breaks_keeps_the_partial_text_and_ends_with_an_error_event(api, interaction, fake_llm):
    fake_llm.then(text="alpha beta gamma delta", break_after_chunks=2)

    events = parse_sse(stream(api, interaction).streaming_content)

    name, body = events[-1]
    assert name == "error"
    assert body["error"]["code"] == "stream_interrupted"
    assert body["error"]["details"]["reply"]["status"] == "incomplete"
    reply = stored(interaction)[1]
    assert reply.status == MessageStatus.INCOMPLETE
    assert reply.content == "alpha beta "
    assert reply.error_code == "stream_interrupted"


@pytest.mark.parametrize(
    ("events", "said"),
    [
        ([{"error": {"message": "the model overloaded"}}], "the model overloaded"),
        (["not a chunk"], "not an object"),
        ([{"model": "m", "choices": {"index": 0}}], "choices are not a list of objects"),
        ([{"model": "m", "choices": [{"delta": ["text"]}]}], "delta is not an object"),
        ([{"model": "m", "choices": [{"delta": {"content": 42}}]}], "content is not a string"),
        ([{"model": ["m"], "choices": []}], "model is not a string"),
        ([{"model": "m", "choices": [], "usage": "many"}], "usage is not an object"),
    ],
    ids=["error-event", "not-object", "choices", "delta", "content", "model", "usage"],
)
def test_a_stream_that_turns_to_garbage_keeps_the_text_and_is_the_providers_bad_response(
    api, interaction, fake_llm, events, said
):
    fake_llm.then(text="alpha beta", stream_events_after_first=events)

    events = parse_sse(stream(api, interaction).streaming_content)

    assert [name for name, _ in events][-2:] == ["reply.delta", "error"]
    error = events[-1][1]["error"]
    assert error["code"] == "upstream_bad_response"
    assert said in error["message"]
    reply = stored(interaction)[1]
    assert reply.status == MessageStatus.INCOMPLETE
    assert reply.content == "alpha "
    assert reply.error_code == "upstream_bad_response"


def test_stream_chunks_with_nulls_and_unknown_fields_are_read_as_the_sdk_reads_them(api, interaction, fake_llm):
    fake_llm.then(
        text="alpha beta",
        stream_events_after_first=[
            {"model": None, "choices": [{"delta": {"content": None, "tool_calls": []}, "finish_reason": None}]},
            {"model": "m", "system_fingerprint": "fp", "choices": [{"delta": {"content": "beta"}, "logprobs": None}]},
            {"model": "m", "choices": [{"delta": {}, "finish_reason": "stop"}]},
            {"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": "2", "total_tokens": 7}},
        ],
    )

    events = parse_sse(stream(api, interaction).streaming_content)

    final = events[-1][1]
    assert events[-1][0] == "reply.completed"
    assert final["content"] == "alpha beta"
    assert final["model"] == "m"
    assert final["usage"] == {"prompt_tokens": 5, "completion_tokens": None, "total_tokens": 7}


def test_a_stream_whose_provider_fails_at_once_stores_a_failed_reply(api, interaction, fake_llm):
    fake_llm.then(status=429, headers={"Retry-After": "30"})

    events = parse_sse(stream(api, interaction).streaming_content)

    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["details"]["status"] == 503
    assert events[-1][1]["error"]["details"]["retry_after_seconds"] == 30
    assert stored(interaction)[1].status == MessageStatus.FAILED


def test_a_client_that_disconnects_mid_stream_loses_nothing(api, interaction, fake_llm):
    fake_llm.default.text = "a b c d e f g h"
    fake_llm.default.chunk_delay_seconds = 0.02
    response = stream(api, interaction)
    events = iter(response.streaming_content)
    next(events)
    next(events)
    next(events)

    response.close()

    reply = stored(interaction)[1]
    assert reply.status == MessageStatus.COMPLETED
    assert reply.content == "a b c d e f g h"
    listed = api.get(f"/api/v1/interactions/{interaction.pk}/messages/").json()["data"]
    assert listed[1]["content"] == "a b c d e f g h"
    interaction.refresh_from_db()
    assert interaction.reply_claimed_at is None


def test_deleting_the_interaction_mid_stream_ends_the_stream_with_a_404_error_event(api, interaction, fake_llm):
    fake_llm.default.text = "a b c d"
    response = stream(api, interaction)
    events = iter(response.streaming_content)
    next(events)
    next(events)

    Interaction.objects.filter(pk=interaction.pk).delete()
    name, body = parse_sse(events)[-1]

    assert name == "error"
    assert body["error"]["code"] == "interaction_deleted"
    assert body["error"]["details"] == {"status": 404}
    assert not Message.objects.filter(interaction_id=interaction.pk).exists()


def test_deleting_the_interaction_while_its_reply_is_generated_answers_404(user, fake_llm):
    interaction = InteractionFactory(owner=user)
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="Hi", reply_deferred=True)
    claim = user_message.reply_claim
    run = reply_run(reply=reply_start(user_message=user_message, claim=claim), claim=claim, stream=False)

    Interaction.objects.filter(pk=interaction.pk).delete()

    with pytest.raises(NotFound) as raised:
        list(run)
    assert raised.value.code == "interaction_deleted"


def test_a_client_that_disconnects_before_the_first_event_loses_nothing(api, interaction, fake_llm):
    response = stream(api, interaction)

    response.close()

    assert stored(interaction)[1].status == MessageStatus.COMPLETED


def test_a_failed_reply_can_be_retried_as_a_stream(api, interaction, fake_llm):
    fake_llm.then(status=500)
    reply_id = post(api, interaction).json()["error"]["details"]["reply_id"]

    response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{reply_id}/retry/?stream=true")

    events = parse_sse(response.streaming_content)
    assert events[0][0] == "reply.created"
    assert events[-1][0] == "reply.completed"
    assert events[-1][1]["id"] == reply_id


def retry(api, interaction, reply_id, body, query="", content_type="application/json"):
    path = f"/api/v1/interactions/{interaction.pk}/messages/{reply_id}/retry/{query}"
    return api.generic("POST", path, body, content_type=content_type)


def failed_reply_id(api, interaction, fake_llm):
    fake_llm.then(status=500)
    return post(api, interaction).json()["error"]["details"]["reply_id"]


def test_a_failed_reply_can_be_retried_as_a_stream_asked_for_in_the_body(api, interaction, fake_llm):
    reply_id = failed_reply_id(api, interaction, fake_llm)
    fake_llm.default.text = "Streamed again"

    response = retry(api, interaction, reply_id, '{"stream": true}')

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = parse_sse(response.streaming_content)
    assert events[0][0] == "reply.created"
    assert events[-1][0] == "reply.completed"
    assert events[-1][1]["id"] == reply_id
    assert events[-1][1]["content"] == "Streamed again"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("", "application/json"), ("{}", "application/json"), ('{"stream": false}', "application/json"), ("", "")],
)
def test_a_retry_with_no_body_an_empty_object_or_stream_false_answers_the_reply_as_json(
    api, interaction, fake_llm, body, content_type
):
    reply_id = failed_reply_id(api, interaction, fake_llm)

    response = retry(api, interaction, reply_id, body, content_type=content_type)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["id"] == reply_id
    assert response.json()["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "query", "code", "param"),
    [
        ("{bad", "", "parse_error", None),
        ('{"stream": true, "content": "again"}', "", "unknown_field", "content"),
        ('{"stream": "true"}', "", "invalid", "stream"),
        ("[]", "", "invalid", None),
    ],
)
def test_a_retry_with_a_body_it_cannot_take_is_refused_and_the_reply_is_left_as_it_was(
    api, interaction, fake_llm, body, query, code, param
):
    reply_id = failed_reply_id(api, interaction, fake_llm)
    calls = len(fake_llm.requests)

    response = retry(api, interaction, reply_id, body, query=query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert Message.objects.get(pk=reply_id).status == MessageStatus.FAILED
    assert len(fake_llm.requests) == calls


def test_the_offline_provider_streams_too(api, interaction):
    events = parse_sse(stream(api, interaction, "hi offline").streaming_content)

    final = events[-1][1]
    assert final["model"] == "offline-provider"
    assert "offline provider" in final["content"]
    assert len([e for e in events if e[0] == "reply.delta"]) > 5


def test_a_streaming_request_while_a_reply_is_in_flight_answers_409_as_json(api, interaction, fake_llm):
    interaction_reply_slot_claim(interaction_id=interaction.pk)

    response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/?stream=true", {"content": "x"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reply_in_progress"
    assert Interaction.objects.get(pk=interaction.pk).message_count == 0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7), ("0.2", 1), ("86400", 3600), ("soon", None), ("", None), (None, None)],
)
def test_a_providers_retry_after_in_seconds_is_read_as_bounded_whole_seconds(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_a_providers_retry_after_as_an_http_date_is_read_as_seconds_from_now():
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    assert 118 <= retry_after_seconds(header) <= 120
