"""Input that cannot be stored and answered back safely is refused before anything is written.

Lone surrogates (`"\\ud800"`, valid JSON, not encodable as UTF-8) and NUL characters in any
string or key of a body, JSON nested deeper than core.parsers.JSON_MAX_DEPTH, over-long query
values and ids, and an Idempotency-Key that is not visible ASCII: each answers 400 in the
envelope, naming the parameter, and stores nothing. Rows stored before these checks existed
still render.
"""

import json

import pytest
from django.db import connection

from core.parsers import JSON_MAX_DEPTH
from interactions.models import Interaction
from messages_app.models import Message
from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db

LONE_SURROGATE = "\ud800"
INTERACTIONS = "/api/v1/interactions/"


def post_json(api, path, body, **headers):
    # Sent as text the way a client's JSON library escapes it: "\ud800" stays an escape.
    return api.generic("POST", path, json.dumps(body), content_type="application/json", **headers)


def patch_json(api, path, body):
    return api.generic("PATCH", path, json.dumps(body), content_type="application/json")


def assert_refused(response, *, code, param):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    return error


def test_the_reported_request_a_lone_surrogate_in_metadata_is_refused_and_nothing_is_stored(api):
    response = post_json(api, INTERACTIONS, {"metadata": {"k": "\ud800"}})

    assert_refused(response, code="invalid_string", param="metadata.k")
    assert not Interaction.objects.exists()
    assert api.get(INTERACTIONS).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"title": f"a{LONE_SURROGATE}b"}, "title"),
        ({"model_name": LONE_SURROGATE}, "model_name"),
        ({"prompt": f"You are {LONE_SURROGATE}"}, "prompt"),
        ({"role": LONE_SURROGATE}, "role"),
        ({"metadata": {"k": LONE_SURROGATE}}, "metadata.k"),
        ({"metadata": {f"k{LONE_SURROGATE}": "v"}}, "metadata.k\ufffd"),
        ({"metadata": {"k": "nul\x00"}}, "metadata.k"),
        ({"title": "nul\x00"}, "title"),
        ({"metadata": {"k": ["\udfff"]}}, "metadata.k[0]"),
    ],
)
def test_every_interaction_field_refuses_unstorable_text_on_create(api, body, param):
    assert_refused(post_json(api, INTERACTIONS, body), code="invalid_string", param=param)
    assert not Interaction.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"metadata": {"k": "\ud800"}}, "metadata.k"),
        ({"title": "\udc00"}, "title"),
        ({"prompt": "\udbff\x00"}, "prompt"),
    ],
)
def test_patching_an_interaction_with_unstorable_text_is_refused_and_changes_nothing(api, user, body, param):
    interaction = InteractionFactory(owner=user, title="kept", metadata={"k": "kept"})

    assert_refused(patch_json(api, f"{INTERACTIONS}{interaction.pk}/", body), code="invalid_string", param=param)

    interaction.refresh_from_db()
    assert (interaction.title, interaction.metadata, interaction.version) == ("kept", {"k": "kept"}, 0)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"content": f"hello {LONE_SURROGATE}"}, "content"),
        ({"content": "hello", "role": LONE_SURROGATE}, "role"),
        ({"content": "nul \x00"}, "content"),
        ({"content": "hi", "stream": LONE_SURROGATE}, "stream"),
    ],
)
def test_posting_a_message_with_unstorable_text_is_refused_and_stores_nothing(api, interaction, body, param):
    response = post_json(api, f"{INTERACTIONS}{interaction.pk}/messages/", body)

    assert_refused(response, code="invalid_string", param=param)
    assert not Message.objects.exists()
    interaction.refresh_from_db()
    assert interaction.message_count == 0


def test_a_surrogate_in_the_token_exchange_is_refused_in_the_envelope(client):
    response = client.post(
        "/api/v1/auth/token/",
        json.dumps({"username": "\ud800", "password": "x"}),
        content_type="application/json",
    )

    assert_refused(response, code="invalid_string", param="username")


def test_bytes_that_are_not_utf8_are_a_parse_error(api):
    # An UTF-8 encoded surrogate is not UTF-8 either.
    response = api.generic("POST", INTERACTIONS, b'{"title": "\xed\xa0\x80"}', content_type="application/json")

    assert_refused(response, code="parse_error", param=None)
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib_codec", "uu", "punycode", "undefined"])
def test_a_charset_that_is_not_a_text_encoding_is_a_parse_error(api, client, charset):
    content_type = f"application/json; charset={charset}"

    created = api.generic("POST", INTERACTIONS, b'{"title": "t"}', content_type=content_type)
    # The token exchange needs no credentials: anyone could send this one.
    token = client.generic(
        "POST", "/api/v1/auth/token/", b'{"username": "u", "password": "p"}', content_type=content_type
    )

    assert_refused(created, code="parse_error", param=None)
    assert_refused(token, code="parse_error", param=None)
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api, constant):
    response = api.generic("POST", INTERACTIONS, f'{{"temperature": {constant}}}', content_type="application/json")

    assert_refused(response, code="parse_error", param=None)


def deep(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize(
    "body",
    [
        # The reported shapes: ~100 KB of brackets at the top level, in content, in metadata.
        "[" * 100_000,
        deep(50_000),
        '{"content": ' + deep(50_000) + "}",
        '{"metadata": {"k": ' + deep(50_000) + "}}",
        # Just over the limit.
        deep(JSON_MAX_DEPTH + 1),
    ],
    ids=["unclosed-100k", "closed-100k", "in-content", "in-metadata", "limit-plus-one"],
)
def test_json_nested_deeper_than_the_limit_is_invalid_json_not_a_crash(api, interaction, body):
    for path in (INTERACTIONS, f"{INTERACTIONS}{interaction.pk}/messages/"):
        response = api.generic("POST", path, body, content_type="application/json")

        error = assert_refused(response, code="invalid_json", param=None)
        assert f"at most {JSON_MAX_DEPTH}" in error["message"]
    assert Interaction.objects.count() == 1
    assert not Message.objects.exists()


def test_nesting_up_to_the_limit_parses_and_brackets_inside_strings_do_not_count(api):
    at_limit = deep(JSON_MAX_DEPTH)
    response = api.generic("POST", INTERACTIONS, at_limit, content_type="application/json")
    # Parsed (a list is not an object): the serializer answers, not the parser.
    assert response.json()["error"]["code"] != "invalid_json"

    brackets_in_text = {"title": "[" * 150, "prompt": "{[" * 5000, "metadata": {"k": "]]]]"}}
    response = post_json(api, INTERACTIONS, brackets_in_text)
    assert response.status_code == 201
    assert response.json()["prompt"] == "{[" * 5000


def test_a_row_stored_before_the_checks_with_a_lone_surrogate_still_renders(api, user):
    poisoned = InteractionFactory(owner=user, title="poisoned")
    # What the old code let through on SQLite: the JSON column keeps the escape.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE interactions_interaction SET metadata = %s WHERE id = %s",
            ['{"k": "\\ud800"}', poisoned.pk.hex],
        )
    InteractionFactory(owner=user, title="clean")

    listing = api.get(INTERACTIONS)
    detail = api.get(f"{INTERACTIONS}{poisoned.pk}/")

    assert listing.status_code == 200
    assert [item["title"] for item in listing.json()["data"]] == ["clean", "poisoned"]
    assert listing.json()["data"][1]["metadata"] == {"k": "\ufffd"}
    assert detail.status_code == 200
    assert detail.json()["metadata"] == {"k": "\ufffd"}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"after": "a" * 5000}, "after"),
        ({"order": "x" * 201}, "order"),
        ({"unknown": "y" * 5000}, "unknown"),
    ],
)
def test_over_long_query_values_answer_400_naming_the_parameter(api, query, param):
    error = assert_refused(api.get(INTERACTIONS, query), code="query_value_too_long", param=param)
    assert "at most 200 characters" in error["message"]


def test_a_query_value_that_is_not_utf8_is_replaced_not_stored_and_refused_by_its_field(api):
    response = api.get(f"{INTERACTIONS}?order=%ED%A0%80")

    assert_refused(response, code="invalid_choice", param="order")


def test_empty_list_parameters_are_refused(api):
    for query in ("after=", "before=", "order=", "limit="):
        assert api.get(f"{INTERACTIONS}?{query}").status_code == 400, query


def test_a_5kb_id_answers_400_in_the_envelope(api, interaction):
    long_id = "a" * 5000
    for path, param in [
        (f"{INTERACTIONS}{long_id}/", "interaction_id"),
        (f"{INTERACTIONS}{interaction.pk}/messages/{long_id}/", "message_id"),
    ]:
        error = assert_refused(api.get(path), code="invalid_id", param=param)
        assert len(error["message"]) < 200


@pytest.mark.parametrize("key", ["caf\u00e9", "two words", "tab\tkey", ""])
def test_an_idempotency_key_that_is_not_visible_ascii_is_refused_and_nothing_is_stored(api, interaction, key):
    response = post_json(api, f"{INTERACTIONS}{interaction.pk}/messages/", {"content": "hi"}, HTTP_IDEMPOTENCY_KEY=key)

    assert_refused(response, code="invalid_idempotency_key", param="Idempotency-Key")
    assert not Message.objects.exists()


# `stream` is spelt as the body field takes it (JSON `true`/`false`): no case variants, no `1`/`0`.
@pytest.mark.parametrize("value", ["null", "-2.5", "yes", "", "1", "0", "TRUE", "True", "False"])
def test_a_stream_query_value_that_is_not_a_boolean_is_refused_and_nothing_is_stored(api, interaction, value):
    response = post_json(api, f"{INTERACTIONS}{interaction.pk}/messages/?stream={value}", {"content": "hi"})

    assert_refused(response, code="invalid_boolean", param="stream")
    assert not Message.objects.exists()


def test_a_stream_query_value_repeated_is_refused_if_any_of_its_values_is_not_a_boolean(api, interaction):
    response = post_json(api, f"{INTERACTIONS}{interaction.pk}/messages/?stream=1&stream=true", {"content": "hi"})

    assert_refused(response, code="invalid_boolean", param="stream")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"content": "hi", "stream": 0}, "stream"),
        ({"content": "hi", "stream": "true"}, "stream"),
    ],
)
def test_message_fields_take_json_types_only(api, interaction, body, param):
    assert_refused(post_json(api, f"{INTERACTIONS}{interaction.pk}/messages/", body), code="invalid", param=param)
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": False}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "12"}, "max_tokens"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
    ],
)
def test_interaction_fields_take_json_types_only(api, body, param):
    response = post_json(api, INTERACTIONS, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not Interaction.objects.exists()
