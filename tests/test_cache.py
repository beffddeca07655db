"""The response cache on a real redis-server: hits, invalidation after every write, outages."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from core.throttling import FailOpenUserRateThrottle
from messages_app.models import MessageStatus
from tests.factories import InteractionFactory, MessageFactory

pytestmark = pytest.mark.django_db


def queries_for(api, url):
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url)
    assert response.status_code == 200
    return response.json(), len(captured)


def cache_errors() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "chat_cache_errors"
        for sample in metric.samples
        if sample.name == "chat_cache_errors_total"
    )


def test_a_repeated_message_page_is_served_from_redis(api, interaction, redis_cache):
    MessageFactory(interaction=interaction, content="cached?")
    url = f"/api/v1/interactions/{interaction.pk}/messages/"

    first, first_queries = queries_for(api, url)
    second, second_queries = queries_for(api, url)

    assert first == second
    assert second_queries < first_queries


def test_a_new_message_is_visible_at_once(api, interaction, redis_cache):
    url = f"/api/v1/interactions/{interaction.pk}/messages/"
    api.get(url)

    api.post(url, {"content": "new one"}, format="json")

    assert api.get(url).json()["data"][0]["content"] == "new one"


def test_a_finished_reply_is_visible_at_once(api, interaction, fake_llm, redis_cache):
    fake_llm.then(status=500)
    url = f"/api/v1/interactions/{interaction.pk}/messages/"
    reply_id = api.post(url, {"content": "q"}, format="json").json()["error"]["details"]["reply_id"]
    assert api.get(url).json()["data"][1]["status"] == MessageStatus.FAILED

    api.post(f"{url}{reply_id}/retry/")

    assert api.get(url).json()["data"][1]["status"] == MessageStatus.COMPLETED


def test_interaction_detail_and_list_follow_every_write(api, user, redis_cache):
    interaction = InteractionFactory(owner=user, title="before")
    detail = f"/api/v1/interactions/{interaction.pk}/"
    api.get(detail)
    api.get("/api/v1/interactions/")

    api.patch(detail, {"title": "after"}, format="json")
    assert api.get(detail).json()["title"] == "after"
    assert api.get("/api/v1/interactions/").json()["data"][0]["title"] == "after"

    api.post(f"{detail}messages/", {"content": "hi"}, format="json")
    assert api.get(detail).json()["message_count"] == 2
    assert api.get("/api/v1/interactions/").json()["data"][0]["message_count"] == 2

    created = api.post("/api/v1/interactions/", {"title": "second"}, format="json").json()
    assert api.get("/api/v1/interactions/").json()["data"][0]["id"] == created["id"]

    api.delete(detail)
    assert api.get(detail).status_code == 404
    assert [i["id"] for i in api.get("/api/v1/interactions/").json()["data"]] == [created["id"]]


def test_cached_pages_are_per_user(api, other_api, user, other_user, redis_cache):
    InteractionFactory(owner=user, title="alice's")
    InteractionFactory(owner=other_user, title="mallory's")

    assert [i["title"] for i in api.get("/api/v1/interactions/").json()["data"]] == ["alice's"]
    assert [i["title"] for i in other_api.get("/api/v1/interactions/").json()["data"]] == ["mallory's"]


def test_requests_succeed_through_a_redis_outage_and_errors_are_counted(api, interaction, redis_process):
    url = f"/api/v1/interactions/{interaction.pk}/messages/"
    assert api.get(url).status_code == 200
    errors_before = cache_errors()

    redis_process.stop()
    posted = api.post(url, {"content": "during the outage"}, format="json")
    listed = api.get(url)
    redis_process.start()

    assert posted.status_code == 201
    assert listed.status_code == 200
    assert listed.json()["data"][0]["content"] == "during the outage"
    assert cache_errors() > errors_before
    assert api.get(url).json()["data"][0]["content"] == "during the outage"


@pytest.fixture
def two_requests_a_minute(monkeypatch):
    monkeypatch.setattr(FailOpenUserRateThrottle, "rate", "2/minute", raising=False)


def test_throttling_answers_429_over_the_rate(api, redis_cache, two_requests_a_minute):
    responses = [api.get("/api/v1/interactions/") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[-1].json()["error"]["type"] == "rate_limit_error"
    assert responses[-1]["Retry-After"]


def test_throttling_lets_requests_through_while_redis_is_down(api, redis_process, two_requests_a_minute):
    redis_process.stop()

    responses = [api.get("/api/v1/interactions/").status_code for _ in range(3)]

    assert responses == [200, 200, 200]
