import datetime as dt

import pytest
from django.utils import timezone

from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ten_messages(interaction):
    start = timezone.now() - dt.timedelta(minutes=10)
    return [
        MessageFactory(interaction=interaction, content=f"m{i}", created_at=start + dt.timedelta(seconds=i))
        for i in range(10)
    ]


def page(api, interaction, **params):
    response = api.get(f"/api/v1/interactions/{interaction.pk}/messages/", params)
    assert response.status_code == 200, response.content
    return response.json()


def contents(body):
    return [m["content"] for m in body["data"]]


def test_default_page_is_oldest_first_and_says_if_more_exist(api, interaction, ten_messages, settings):
    body = page(api, interaction, limit=4)

    assert contents(body) == ["m0", "m1", "m2", "m3"]
    assert body["has_more"] is True
    assert body["first_id"] == str(ten_messages[0].pk)
    assert body["last_id"] == str(ten_messages[3].pk)


def test_after_continues_where_the_previous_page_ended(api, interaction, ten_messages):
    first = page(api, interaction, limit=4)
    second = page(api, interaction, limit=4, after=first["last_id"])
    third = page(api, interaction, limit=4, after=second["last_id"])

    assert contents(second) == ["m4", "m5", "m6", "m7"]
    assert contents(third) == ["m8", "m9"]
    assert third["has_more"] is False


def test_desc_order_and_before_walk_back(api, interaction, ten_messages):
    newest = page(api, interaction, limit=3, order="desc")
    assert contents(newest) == ["m9", "m8", "m7"]

    back = page(api, interaction, limit=3, order="desc", after=newest["last_id"])
    assert contents(back) == ["m6", "m5", "m4"]

    forward_again = page(api, interaction, limit=2, order="desc", before=back["first_id"])
    assert contents(forward_again) == ["m8", "m7"]
    assert forward_again["has_more"] is True


def test_before_in_ascending_order_returns_the_page_just_before(api, interaction, ten_messages):
    body = page(api, interaction, limit=3, before=str(ten_messages[5].pk))

    assert contents(body) == ["m2", "m3", "m4"]
    assert body["has_more"] is True


def test_polling_with_after_the_last_known_id_returns_only_new_messages(api, interaction, ten_messages):
    known = page(api, interaction, limit=100)["last_id"]
    assert page(api, interaction, after=known)["data"] == []

    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "new"}, format="json")

    new = page(api, interaction, after=known)
    assert [m["role"] for m in new["data"]] == ["user", "assistant"]
    assert new["data"][0]["content"] == "new"


def test_messages_created_in_the_same_instant_keep_their_creation_order(api, interaction):
    instant = timezone.now()
    created = [MessageFactory(interaction=interaction, content=f"t{i}", created_at=instant) for i in range(5)]

    first = page(api, interaction, limit=2)
    rest = page(api, interaction, limit=10, after=first["last_id"])

    assert contents(first) + contents(rest) == [m.content for m in created]


def test_limit_defaults_to_20_and_is_capped_at_100(api, user):
    for _ in range(25):
        InteractionFactory(owner=user)

    assert len(api.get("/api/v1/interactions/").json()["data"]) == 20
    response = api.get("/api/v1/interactions/", {"limit": 101})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "not-an-id"}, "after"),
        ({"before": "12"}, "before"),
    ],
)
def test_bad_list_parameters_answer_400_naming_the_parameter(api, interaction, params, param):
    response = api.get(f"/api/v1/interactions/{interaction.pk}/messages/", params)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("param", ["after", "before"])
def test_a_cursor_that_is_not_in_the_list_answers_404_naming_it(api, interaction, other_user, param):
    someone_elses = MessageFactory(interaction=InteractionFactory(owner=other_user))
    for cursor in ("018f0000-0000-7000-8000-000000000000", str(someone_elses.pk)):
        response = api.get(f"/api/v1/interactions/{interaction.pk}/messages/", {param: cursor})

        assert response.status_code == 404
        assert response.json()["error"]["param"] == param


def test_after_and_before_together_return_the_window_between_them(api, interaction, ten_messages):
    ascending = page(api, interaction, after=str(ten_messages[1].pk), before=str(ten_messages[6].pk))
    limited = page(api, interaction, limit=2, after=str(ten_messages[1].pk), before=str(ten_messages[6].pk))
    descending = page(api, interaction, order="desc", after=str(ten_messages[6].pk), before=str(ten_messages[1].pk))
    empty = page(api, interaction, after=str(ten_messages[6].pk), before=str(ten_messages[1].pk))

    assert contents(ascending) == ["m2", "m3", "m4", "m5"]
    assert ascending["has_more"] is False
    assert contents(limited) == ["m2", "m3"]
    assert limited["has_more"] is True
    assert contents(descending) == ["m5", "m4", "m3", "m2"]
    assert contents(empty) == []


def test_interaction_list_pages_by_activity(api, user):
    created = [InteractionFactory(owner=user, title=f"i{n}") for n in range(5)]

    first = api.get("/api/v1/interactions/", {"limit": 2}).json()
    second = api.get("/api/v1/interactions/", {"limit": 2, "after": first["last_id"]}).json()
    oldest_first = api.get("/api/v1/interactions/", {"order": "asc", "limit": 5}).json()

    assert [i["title"] for i in first["data"]] == ["i4", "i3"]
    assert [i["title"] for i in second["data"]] == ["i2", "i1"]
    assert [i["title"] for i in oldest_first["data"]] == [i.title for i in created]
