"""Pollers: ETag on the interaction's version, 304 for If-None-Match, and rendered pages from the cache.

An idle poll (`If-None-Match` with the ETag of the last answer) costs the authentication and the one
indexed read of the interaction row that also checks ownership: it answers 304 with no body. Any
write to the interaction bumps its version, so the next poll gets the new page.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db


def messages_url(interaction) -> str:  # type: ignore[no-untyped-def]
    return f"/api/v1/interactions/{interaction.pk}/messages/"


def test_a_message_page_carries_an_etag_and_the_same_poll_with_it_answers_304_without_a_body(api, interaction):
    MessageFactory(interaction=interaction, content="first")
    first = api.get(messages_url(interaction), {"limit": 10})
    etag = first["ETag"]

    with CaptureQueriesContext(connection) as queries:
        again = api.get(messages_url(interaction), {"limit": 10}, HTTP_IF_NONE_MATCH=etag)

    assert first.status_code == 200
    assert etag.startswith('W/"')
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    # The token and the interaction row (ownership and version), nothing else.
    assert len(queries) == 2, [q["sql"] for q in queries]


def test_after_a_new_message_the_same_poll_gets_the_new_page_and_a_new_etag(api, interaction):
    MessageFactory(interaction=interaction, content="first")
    first = api.get(messages_url(interaction))
    posted = api.post(messages_url(interaction), {"content": "second"}, format="json")

    polled = api.get(messages_url(interaction), HTTP_IF_NONE_MATCH=first["ETag"])

    assert posted.status_code == 201
    assert polled.status_code == 200
    assert polled["ETag"] != first["ETag"]
    assert [m["content"] for m in polled.json()["data"]][:2] == ["first", "second"]


def test_the_etag_differs_between_pages_of_the_same_interaction(api, interaction):
    for n in range(3):
        MessageFactory(interaction=interaction, content=f"m{n}")

    one = api.get(messages_url(interaction), {"limit": 1})
    two = api.get(messages_url(interaction), {"limit": 2})
    mismatched = api.get(messages_url(interaction), {"limit": 2}, HTTP_IF_NONE_MATCH=one["ETag"])

    assert one["ETag"] != two["ETag"]
    assert mismatched.status_code == 200
    assert len(mismatched.json()["data"]) == 2


def test_the_same_page_spelled_differently_shares_its_etag(api, interaction):
    MessageFactory(interaction=interaction, content="first")

    plain = api.get(f"{messages_url(interaction)}?limit=20&order=asc")
    spelled = api.get(f"{messages_url(interaction)}?order=asc&unknown=1&limit=020")

    assert plain["ETag"] == spelled["ETag"]
    assert spelled.json() == plain.json()


def test_someone_elses_interaction_answers_404_even_with_its_etag(api, other_api, interaction):
    etag = api.get(messages_url(interaction))["ETag"]

    response = other_api.get(messages_url(interaction), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_interaction_detail_answers_304_until_its_settings_change(api, interaction):
    url = f"/api/v1/interactions/{interaction.pk}/"
    first = api.get(url)

    unchanged = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    api.patch(url, {"title": "renamed"}, format="json")
    changed = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])

    assert unchanged.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["title"] == "renamed"


@pytest.mark.parametrize("page", ["detail", "messages"])
def test_if_none_match_star_answers_304_for_an_existing_interaction(api, interaction, page):
    """RFC 9110: `*` matches any current representation."""
    url = f"/api/v1/interactions/{interaction.pk}/" if page == "detail" else messages_url(interaction)

    response = api.get(url, HTTP_IF_NONE_MATCH="*")

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == api.get(url)["ETag"]


def test_if_none_match_star_on_someone_elses_interaction_answers_404(other_api, interaction):
    response = other_api.get(messages_url(interaction), HTTP_IF_NONE_MATCH="*")

    assert response.status_code == 404


@pytest.mark.parametrize("page", ["detail", "messages"])
def test_the_json_etag_does_not_answer_304_to_a_browser_asking_for_html(api, interaction, page):
    """JSON and HTML are two representations (Vary: Accept), each with its own ETag."""
    url = f"/api/v1/interactions/{interaction.pk}/" if page == "detail" else messages_url(interaction)
    json_etag = api.get(url)["ETag"]

    html = api.get(url, HTTP_ACCEPT="text/html", HTTP_IF_NONE_MATCH=json_etag)
    html_again = api.get(url, HTTP_ACCEPT="text/html", HTTP_IF_NONE_MATCH=html["ETag"])

    assert html.status_code == 200
    assert html["Content-Type"].startswith("text/html")
    assert "Accept" in html["Vary"]
    assert html["ETag"] != json_etag
    assert html_again.status_code == 304


def test_a_cached_page_is_served_rendered_byte_for_byte_as_the_first_answer(api, interaction):
    for n in range(5):
        MessageFactory(interaction=interaction, content=f"m{n} é")
    first = api.get(messages_url(interaction))

    with CaptureQueriesContext(connection) as queries:
        second = api.get(messages_url(interaction))

    assert second.status_code == 200
    assert second["Content-Type"] == "application/json"
    assert second.content == first.content
    assert [m["content"] for m in second.json()["data"]] == [f"m{n} é" for n in range(5)]
    assert len(queries) == 2, "a hit reads no message row"


def test_the_browsable_api_still_renders_html_for_a_browser(api, interaction):
    MessageFactory(interaction=interaction, content="shown in html")
    api.get(messages_url(interaction))  # Cached as JSON first.

    response = api.get(messages_url(interaction), HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"shown in html" in response.content


def test_invalid_list_parameters_still_answer_400(api, interaction):
    response = api.get(messages_url(interaction), {"limit": 0})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"
