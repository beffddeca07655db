import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker, tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(path), "--validate", "--fail-on-warn")
    return yaml.safe_load(path.read_text())


def api_routes() -> set[str]:
    """Every /api/v1/ route of the project, in OpenAPI path syntax."""
    routes: set[str] = set()

    def walk(patterns, prefix=""):
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, text)
            elif isinstance(pattern, URLPattern) and text.startswith("api/v1/"):
                routes.add(text)

    walk(get_resolver().url_patterns)
    converted = set()
    for route in routes:
        route = re.sub(r"\^|\$(?=/|$)", "", route)
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "{id}" if m[1] == "pk" else f"{{{m[1]}}}", route)
        converted.add("/" + route)
    return converted


def test_schema_is_valid_openapi_3(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_schema_lists_every_api_route(schema):
    routes = api_routes()

    assert routes, "no routes found"
    assert routes <= set(schema["paths"]), routes - set(schema["paths"])


def test_schema_documents_the_api_and_health_only_grouped_by_resource(schema):
    assert set(schema["paths"]) == api_routes() | {"/healthz", "/readyz"}, "the docs pages are not API operations"
    tags = {
        path: {tag for operation in operations.values() for tag in operation["tags"]}
        for path, operations in schema["paths"].items()
    }
    assert tags["/api/v1/interactions/"] == {"interactions"}
    assert tags["/api/v1/interactions/{interaction_id}/messages/"] == {"messages"}
    assert tags["/api/v1/auth/token/"] == {"auth"}
    # Generated clients name their methods after these.
    assert schema["paths"]["/api/v1/interactions/"]["post"]["operationId"] == "interactions_create"


def test_schema_documents_token_auth_and_error_bodies(schema):
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    create = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/"]["post"]
    for status in ("400", "404", "409", "502", "503", "504"):
        assert create["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "text/event-stream" in create["responses"]["200"]["content"]
    assert "application/json" in create["responses"]["201"]["content"]


def test_schema_documents_the_replay_header_on_replayed_successes_and_failures(schema):
    create = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/"]["post"]

    for status in ("200", "201", "502", "503", "504"):
        assert create["responses"][status]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    assert "Idempotent-Replayed" not in {p["name"] for p in create["parameters"]}, "a response header only"


def test_list_operations_document_the_openai_list_shape(schema):
    listing = schema["paths"]["/api/v1/interactions/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"limit", "order", "after", "before"} <= names
    body = listing["responses"]["200"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {
        "object",
        "data",
        "first_id",
        "last_id",
        "has_more",
    }


def keys_anywhere(node) -> set[str]:  # type: ignore[no-untyped-def]
    """Every key of every object in a schema document, at any depth."""
    if isinstance(node, dict):
        return set(node).union(*(keys_anywhere(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(keys_anywhere(value) for value in node))
    return set()


def answer_validator(schema, path: str):  # type: ignore[no-untyped-def]
    """A JSON Schema 2020-12 validator of the 200 JSON answer of GET `path`, its refs resolved in the document."""
    answer = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**answer, "components": schema["components"]})


def test_the_schema_uses_no_openapi_3_0_nullable_keyword(schema):
    """OpenAPI 3.1 is JSON Schema 2020-12, which has no `nullable`: a null is `"type": [..., "null"]`."""
    assert schema["openapi"] == "3.1.0"
    assert "nullable" not in keys_anywhere(schema)


def test_an_empty_interaction_list_validates_against_the_schema(schema, api):
    body = api.get("/api/v1/interactions/").json()

    assert (body["data"], body["first_id"], body["last_id"]) == ([], None, None)
    answer_validator(schema, "/api/v1/interactions/").validate(body)


def test_an_empty_message_list_validates_against_the_schema(schema, api, interaction):
    body = api.get(f"/api/v1/interactions/{interaction.pk}/messages/").json()

    assert (body["data"], body["first_id"], body["last_id"]) == ([], None, None)
    answer_validator(schema, "/api/v1/interactions/{interaction_id}/messages/").validate(body)


def test_schema_endpoint_and_doc_pages_answer(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.parametrize(
    "metadata",
    [
        {"k" * 64: "v"},
        {"k" * 65: "v"},
        {"k": "v" * 512},
        {"k": "v" * 513},
        {f"k{n}": "v" for n in range(16)},
        {f"k{n}": "v" for n in range(17)},
        {"k": 1},
    ],
    ids=["key64", "key65", "value512", "value513", "keys16", "keys17", "number"],
)
def test_the_schema_states_exactly_the_metadata_the_api_accepts(schema, api, metadata):
    """A client generator or fuzzer that follows the schema never gets a 400 for metadata, and
    what the schema forbids is refused (the key-length bound needs OpenAPI 3.1's propertyNames)."""
    metadata_schema = schema["components"]["schemas"]["InteractionInputRequest"]["properties"]["metadata"]
    documented = Draft202012Validator(metadata_schema).is_valid(metadata)

    response = api.post("/api/v1/interactions/", {"metadata": metadata}, format="json")

    assert response.status_code == (201 if documented else 400), response.json()


def test_the_operations_that_stream_document_stream_as_a_boolean_its_precedence_and_406(schema):
    messages = "/api/v1/interactions/{interaction_id}/messages/"
    for operation in (schema["paths"][messages]["post"], schema["paths"][messages + "{id}/retry/"]["post"]):
        stream = next(p for p in operation["parameters"] if p["name"] == "stream")
        assert stream["schema"] == {"type": "boolean"}
        assert "outranks the body" in stream["description"]
        assert "outranks" in operation["description"]
        assert operation["responses"]["406"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_retry_documents_its_optional_body_that_takes_stream_only(schema):
    retry = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/{id}/retry/"]["post"]

    body = retry["requestBody"]
    assert not body.get("required", False)
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    component = schema["components"]["schemas"][ref]
    assert set(component["properties"]) == {"stream"}
    assert component["properties"]["stream"]["type"] == "boolean"
    assert component["additionalProperties"] is False
    assert "required" not in component
