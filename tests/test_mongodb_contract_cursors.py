"""Cursor pages under django-mongodb-backend start with a range on the index they walk.

`after`/`before` pages filter on the tie-break `sort > v OR (sort = v AND id > p)`. MongoDB
cannot bound an index scan with an `$or` that sits beside the equality: without more, the
planner reads the whole list from its start. core.pagination puts a plain `sort >= v` (or
`<=`) beside it; these tests compile every cursor page as the API builds it and prove the
`$match` the backend emits begins with the equality on the index's first field and that
range on its second, so that the planner can seek straight to the cursor, and that the
page still holds exactly the rows after the cursor. The plan the live planner chooses is
asserted in tests/test_mongodb_live.py.
"""

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from tests.mongo_contract import (
    ANCHOR_CREATED_AT,
    ANCHOR_ID,
    INTERACTION_ID,
    OWNER_ID,
    created_indexes,
    index_serves_sort,
    matches,
    migrations_recorded,
    mongodb_env,
    run_django,
    stage,
    stage_names,
    uuid_hex,
)
from tests.test_mongodb_contract import COMMANDS_SCRIPT

# The recording set-up of the contract tests (every command the backend would send is
# recorded, nothing is sent), then one cursor page per direction and list.
CURSORS_SCRIPT = (
    COMMANDS_SCRIPT[: COMMANDS_SCRIPT.index("emit({")]
    + """
def page_command(viewset, queryset, sort_field, **query):
    # The cursor's row as pymongo returns it: naive UTC datetime, UUID as hex string.
    row = {sort_field: datetime.fromisoformat(PARAMS["anchor_created_at"]), "id": uuid.UUID(PARAMS["anchor_id"]).hex}
    commands = commands_of(lambda: list_page(viewset, queryset, **query), [row])
    assert len(commands) == 2, commands  # the cursor's row, then the page
    return commands[1]

messages = message_list(interaction=interaction)
interactions = interaction_list(owner=owner)
cursor = PARAMS["anchor_id"]
emit({
    "messages_after": page_command(MessageViewSet, messages, "created_at", after=cursor),
    "messages_before": page_command(MessageViewSet, messages, "created_at", before=cursor),
    "messages_desc_after": page_command(MessageViewSet, messages, "created_at", after=cursor, order="desc"),
    "interactions_after": page_command(InteractionViewSet, interactions, "last_activity_at", after=cursor),
    "interactions_before": page_command(InteractionViewSet, interactions, "last_activity_at", before=cursor),
})
"""
)


@pytest.fixture(scope="module")
def pages() -> dict[str, Any]:
    return run_django(
        CURSORS_SCRIPT,
        mongodb_env(),
        owner_id=OWNER_ID,
        interaction_id=INTERACTION_ID,
        anchor_id=ANCHOR_ID,
        anchor_created_at=ANCHOR_CREATED_AT.replace(tzinfo=None).isoformat(),
    )


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    """The schema operations `migrate` would send (the indexes these pages walk)."""
    return migrations_recorded()


def conjuncts(match: dict[str, Any]) -> list[dict[str, Any]]:
    """The clauses every matched document must satisfy, in order, with nested `$and`s flattened."""
    if set(match) == {"$and"}:
        return [clause for part in match["$and"] for clause in conjuncts(part)]
    return [match]


MESSAGE_PAGES = {
    # page: (comparison that bounds the scan, sort direction walked)
    "messages_after": ("$gte", 1),
    "messages_before": ("$lte", -1),
    "messages_desc_after": ("$lte", -1),
}
INTERACTION_PAGES = {
    "interactions_after": ("$lte", -1),
    "interactions_before": ("$gte", 1),
}


@pytest.mark.parametrize(("page", "walk"), MESSAGE_PAGES.items())
def test_a_message_cursor_page_matches_the_interaction_then_a_range_from_the_cursor_on_created_at(
    pages, migrations, page, walk
):
    bound, direction = walk
    pipeline = pages[page]["pipeline"]
    clauses = conjuncts(stage(pipeline, "$match"))
    index = created_indexes(migrations, "messages_app_message")["message_interaction_time"]

    assert pages[page]["collection"] == "messages_app_message"
    assert stage_names(pipeline)[0] == "$match", "only a leading $match can use an index"
    # Equality on the index's first field, then the range on its second: the planner's bounds.
    assert clauses[:2] == [
        {"interaction_id": uuid_hex(INTERACTION_ID)},
        {"created_at": {bound: ANCHOR_CREATED_AT}},
    ]
    assert list(stage(pipeline, "$sort").items()) == [("created_at", direction), ("id", direction)]
    assert index_serves_sort(index["key"], ["interaction_id"], stage(pipeline, "$sort"))


@pytest.mark.parametrize(("page", "walk"), INTERACTION_PAGES.items())
def test_an_interaction_cursor_page_matches_the_owner_then_a_range_from_the_cursor_on_last_activity_at(
    pages, migrations, page, walk
):
    bound, direction = walk
    pipeline = pages[page]["pipeline"]
    clauses = conjuncts(stage(pipeline, "$match"))
    index = created_indexes(migrations, "interactions_interaction")["interaction_owner_activity"]

    assert pages[page]["collection"] == "interactions_interaction"
    assert stage_names(pipeline)[0] == "$match"
    assert clauses[:2] == [
        {"owner_id": ObjectId(OWNER_ID)},
        {"last_activity_at": {bound: ANCHOR_CREATED_AT}},
    ]
    assert list(stage(pipeline, "$sort").items()) == [("last_activity_at", direction), ("id", direction)]
    assert index_serves_sort(index["key"], ["owner_id"], stage(pipeline, "$sort"))


def test_the_range_keeps_exactly_the_rows_after_the_cursor_in_time_then_id_order(pages):
    after = stage(pages["messages_after"]["pipeline"], "$match")
    before = stage(pages["messages_before"]["pipeline"], "$match")
    interaction, anchor, second = uuid_hex(INTERACTION_ID), uuid_hex(ANCHOR_ID), timedelta(seconds=1)

    def message(id_: str, created_at: datetime) -> dict[str, Any]:
        return {"interaction_id": interaction, "id": id_, "created_at": created_at}

    assert not matches(message(anchor, ANCHOR_CREATED_AT), after)
    assert matches(message("f" * 32, ANCHOR_CREATED_AT), after)  # same instant, later id
    assert not matches(message("0" * 32, ANCHOR_CREATED_AT), after)
    assert matches(message("0" * 32, ANCHOR_CREATED_AT + second), after)
    assert not matches(message("f" * 32, ANCHOR_CREATED_AT - second), after)

    assert not matches(message(anchor, ANCHOR_CREATED_AT), before)
    assert matches(message("0" * 32, ANCHOR_CREATED_AT), before)
    assert not matches(message("f" * 32, ANCHOR_CREATED_AT), before)
    assert matches(message("f" * 32, ANCHOR_CREATED_AT - second), before)
    assert not matches(message("0" * 32, ANCHOR_CREATED_AT + second), before)
