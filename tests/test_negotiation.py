"""What the Accept header and `?format=` choose, and how the answer is labelled."""

import pytest

from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "accept", ["application/json; charset=latin-1", "application/json; foo=bar", "application/json; indent=4"]
)
def test_the_answer_is_labelled_with_its_own_media_type_not_the_parameters_of_accept(api, user, accept):
    interaction = InteractionFactory(owner=user, title="café")

    for path in ("/api/v1/interactions/", f"/api/v1/interactions/{interaction.pk}/"):
        response = api.get(path, HTTP_ACCEPT=accept)

        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert "café" in response.content.decode("utf-8")


def test_a_media_range_with_q_0_is_refused_not_chosen(api):
    refused = api.get("/api/v1/interactions/", HTTP_ACCEPT="application/json;q=0")
    other_chosen = api.get("/api/v1/interactions/", HTTP_ACCEPT="application/json;q=0, */*;q=0.5")

    assert refused.status_code == 406
    assert refused.json()["error"]["code"] == "not_acceptable"
    assert other_chosen.status_code == 200
    assert other_chosen["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["", "{id}/", "{id}/messages/", "{id}/export/"])
@pytest.mark.parametrize("format_", ["xml", "md", "sse"])
def test_a_format_no_renderer_offers_answers_406_not_404(api, interaction, path, format_):
    response = api.get(f"/api/v1/interactions/{path.format(id=interaction.pk)}", {"format": format_})

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "not_acceptable"
    assert repr(format_) in error["message"]
