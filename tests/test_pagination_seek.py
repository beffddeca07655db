"""Cursor pages seek: `after`/`before` start the index scan at the cursor, not at the start of the list.

The plan is read from SQLite itself (EXPLAIN QUERY PLAN) for the very query the API ran. The
MongoDB side of the same promise is in tests/test_mongodb_contract_cursors.py (and the live
explain in tests/test_mongodb_live.py).
"""

import datetime as dt
from contextlib import contextmanager

import pytest
from django.db import connection
from django.utils import timezone

from messages_app.models import Message
from tests.factories import InteractionFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sqlite_only(reason="reads SQLite's EXPLAIN QUERY PLAN (MongoDB's side: the contract tests)"),
]


@contextmanager
def captured_selects(table: str):
    """(sql, params) of every SELECT reading `table`, as Django sent them to SQLite."""
    statements: list[tuple[str, tuple]] = []

    def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if sql.lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in sql:
            statements.append((sql, tuple(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        yield statements


def query_plan(sql: str, params: tuple) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return [row[-1] for row in cursor.fetchall()]


def the_page_query(statements: list[tuple[str, tuple]]) -> tuple[str, tuple]:
    """The page read, not the cursor's own row (a primary-key lookup) nor the look-up of
    abandoned reply claims that precedes a list (messages_app.services)."""
    pages = [
        statement
        for statement in statements
        if "LIMIT 1" not in statement[0].upper() and '"reply_claimed_at" <' not in statement[0]
    ]
    assert len(pages) == 1, statements
    return pages[0]


@pytest.fixture
def long_conversation(interaction):
    start = timezone.now() - dt.timedelta(days=1)
    Message.objects.bulk_create(
        Message(interaction=interaction, role="user", content=f"m{i}", created_at=start + dt.timedelta(seconds=i))
        for i in range(300)
    )
    # Another conversation's messages share the index.
    other = InteractionFactory(owner=interaction.owner)
    Message.objects.bulk_create(
        Message(interaction=other, role="user", content="x", created_at=start + dt.timedelta(seconds=i))
        for i in range(50)
    )
    return list(Message.objects.filter(interaction=interaction).order_by("created_at", "id"))


@pytest.mark.parametrize(
    ("params", "seek"),
    [
        ({"after": 150}, "created_at>?"),
        ({"before": 150}, "created_at<?"),
        ({"after": 150, "order": "desc"}, "created_at<?"),
        ({"before": 150, "order": "desc"}, "created_at>?"),
    ],
)
def test_a_message_page_after_or_before_a_cursor_seeks_the_index_to_the_cursor(
    api, interaction, long_conversation, params, seek
):
    query = {**params, "limit": 5}
    for name in ("after", "before"):
        if name in query:
            query[name] = str(long_conversation[query[name]].pk)

    with captured_selects("messages_app_message") as statements:
        response = api.get(f"/api/v1/interactions/{interaction.pk}/messages/", query)
    plan = query_plan(*the_page_query(statements))

    assert response.status_code == 200
    assert len(response.json()["data"]) == 5
    # Straight to the cursor along the (interaction, created_at, id) index, in index order.
    assert any(
        step.startswith("SEARCH messages_app_message USING INDEX message_interaction_time")
        and f"(interaction_id=? AND {seek})" in step
        for step in plan
    ), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_the_cursor_page_is_the_same_as_without_the_seek_bound(api, interaction, long_conversation):
    # Rows sharing the cursor's instant are split by id: the bound keeps them, the tie-break orders them.
    same_instant = long_conversation[150].created_at
    Message.objects.filter(pk__in=[m.pk for m in long_conversation[151:154]]).update(created_at=same_instant)
    ordered = list(Message.objects.filter(interaction=interaction).order_by("created_at", "id"))
    cursor = ordered.index(next(m for m in ordered if m.created_at == same_instant))

    after = api.get(
        f"/api/v1/interactions/{interaction.pk}/messages/", {"after": str(ordered[cursor].pk), "limit": 6}
    ).json()
    before = api.get(
        f"/api/v1/interactions/{interaction.pk}/messages/", {"before": str(ordered[cursor + 2].pk), "limit": 4}
    ).json()

    assert [m["id"] for m in after["data"]] == [str(m.pk) for m in ordered[cursor + 1 : cursor + 7]]
    assert [m["id"] for m in before["data"]] == [str(m.pk) for m in ordered[cursor - 2 : cursor + 2]]


def test_an_interaction_page_after_a_cursor_seeks_the_owner_index_to_the_cursor(api, user):
    start = timezone.now() - dt.timedelta(days=1)
    interactions = [InteractionFactory(owner=user, last_activity_at=start + dt.timedelta(seconds=i)) for i in range(40)]
    newest_first = sorted(interactions, key=lambda i: (i.last_activity_at, i.pk), reverse=True)

    with captured_selects("interactions_interaction") as statements:
        response = api.get("/api/v1/interactions/", {"after": str(newest_first[10].pk), "limit": 5})
    plan = query_plan(*the_page_query(statements))

    assert [i["id"] for i in response.json()["data"]] == [str(i.pk) for i in newest_first[11:16]]
    assert any(
        step.startswith("SEARCH interactions_interaction USING INDEX interaction_owner_activity")
        and "(owner_id=? AND last_activity_at<?)" in step
        for step in plan
    ), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
