"""Prometheus metrics at /metrics: Django's own (django-prometheus) and the reply metrics."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db


def scrape(client) -> list[tuple[str, dict[str, str], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    ]


def total(samples, name, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value for found, found_labels, value in samples if found == name and labels.items() <= found_labels.items()
    )


def test_replies_are_counted_by_provider_status_and_error(client, api, interaction, fake_llm):
    before = scrape(client)
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Hi"}, format="json")
    fake_llm.then(status=500)
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Again"}, format="json")

    after = scrape(client)

    def grew(name, **labels) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("chat_llm_replies_total", provider="openai", status="completed", error_code="") == 1
    assert grew("chat_llm_replies_total", provider="openai", status="failed", error_code="upstream_error") == 1
    assert grew("chat_llm_reply_latency_seconds_count", provider="openai") == 2
    assert grew("chat_llm_tokens_total", provider="openai", kind="completion") > 0


def test_django_requests_are_counted_per_view(client, api):
    name = "django_http_requests_total_by_view_transport_method_total"
    before = total(scrape(client), name, view="interaction-list", method="GET")

    api.get("/api/v1/interactions/")

    assert total(scrape(client), name, view="interaction-list", method="GET") == before + 1
