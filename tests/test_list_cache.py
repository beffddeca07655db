"""The interaction list served from a cache that each gunicorn worker keeps for itself.

On embedded defaults the cache is local memory: every worker process has its own, and a write
served by one worker is invisible to the others' caches. The list is correct only if what keys
its cached page is read from the database on every request, as the detail's and the message
pages' keys are. Writes made outside this process's cache stand in for the other worker here;
the gunicorn test makes the other worker real.
"""

import pytest
from django.db.models import F

from interactions.models import Interaction
from tests.conftest import gunicorn_serving, http_json
from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/interactions/"


def titles(api) -> list[str]:  # type: ignore[no-untyped-def]
    response = api.get(LIST)
    assert response.status_code == 200
    return [interaction["title"] for interaction in response.json()["data"]]


def test_a_change_made_by_another_worker_is_listed_at_once(api, user):
    listed = InteractionFactory(owner=user, title="before")
    assert titles(api) == ["before"]

    Interaction.objects.filter(pk=listed.pk).update(title="after", version=F("version") + 1)

    assert titles(api) == ["after"]


def test_an_interaction_deleted_by_another_worker_leaves_the_list_at_once(api, user):
    kept = InteractionFactory(owner=user, title="kept")
    deleted = InteractionFactory(owner=user, title="deleted")
    assert sorted(titles(api)) == ["deleted", "kept"]

    Interaction.objects.filter(pk=deleted.pk).delete()

    assert titles(api) == [kept.title]


def test_an_interaction_created_by_another_worker_is_listed_at_once(api, user):
    InteractionFactory(owner=user, title="first")
    assert titles(api) == ["first"]

    InteractionFactory(owner=user, title="second")

    assert sorted(titles(api)) == ["first", "second"]


def test_the_list_carries_an_etag_that_answers_304_until_a_listed_interaction_changes(api, user):
    listed = InteractionFactory(owner=user, title="before")
    etag = api.get(LIST)["ETag"]

    unchanged = api.get(LIST, HTTP_IF_NONE_MATCH=etag)
    api.patch(f"{LIST}{listed.pk}/", {"title": "after"}, format="json")
    changed = api.get(LIST, HTTP_IF_NONE_MATCH=etag)

    assert unchanged.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["data"][0]["title"] == "after"
    assert changed["ETag"] != etag


def test_a_list_page_and_its_etag_depend_on_the_page_asked_for(api, user):
    InteractionFactory.create_batch(3, owner=user)

    first = api.get(LIST, {"limit": 2})
    rest = api.get(LIST, {"limit": 2, "after": first.json()["last_id"]})

    assert len(first.json()["data"]) == 2
    assert first.json()["has_more"] is True
    assert len(rest.json()["data"]) == 1
    assert rest.json()["has_more"] is False
    assert first["ETag"] != rest["ETag"]


@pytest.mark.slow
def test_every_worker_lists_a_write_at_once_on_embedded_defaults(subprocess_env):
    env = {**subprocess_env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "REDIS_URL": "", "LLM_PROVIDER": "offline"}
    with gunicorn_serving(env, "--workers", "2", "--access-logfile", "/dev/null") as served:

        def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
            # A new connection per request, so that both workers serve some of them.
            return http_json(served.port, served.token, method, path, body)

        status, created = call("POST", LIST, {"title": "before"})
        assert status == 201
        for _ in range(20):
            call("GET", LIST)

        call("PATCH", f"{LIST}{created['id']}/", {"title": "after"})
        renamed = [call("GET", LIST)[1]["data"][0]["title"] for _ in range(20)]
        call("DELETE", f"{LIST}{created['id']}/")
        after_delete = [call("GET", LIST)[1]["data"] for _ in range(20)]

    assert renamed == ["after"] * 20
    assert after_delete == [[]] * 20
