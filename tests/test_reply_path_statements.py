"""The message POST answers with what it stored, without reading its own writes back."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db


def test_the_reply_in_the_post_answer_is_the_stored_reply(api, interaction):
    posted = api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Hi"}, format="json").json()

    stored = api.get(f"/api/v1/interactions/{interaction.pk}/messages/{posted['reply']['id']}/").json()

    assert posted["reply"] == stored


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQL statements: SQLite only")
def test_a_post_runs_eleven_statements_and_reads_no_reply_back(api, interaction):
    # The first message of the day also titles the interaction and opens the day's usage bucket.
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Hello"}, format="json")

    with CaptureQueriesContext(connection) as queries:
        response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "Hi"}, format="json")

    assert response.status_code == 201
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # Token, interaction; claim and count, the user message's usage, insert; count, insert
    # the reply; history; the reply's outcome, usage, release. The reply is not read back
    # after its final write.
    assert (
        statements == ["SELECT", "SELECT", "UPDATE", "UPDATE", "INSERT", "UPDATE", "INSERT", "SELECT"] + ["UPDATE"] * 3
    )
