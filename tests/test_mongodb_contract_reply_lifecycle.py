"""The reply lifecycle's queries under django-mongodb-backend, proven without a server.

Owned claims (renew, release, takeover), fenced reply writes, and the finalisation of
abandoned replies compile to single conditional updates (atomic on one document, as on
SQLite) and to reads that an index created by `migrate` serves. Same method as
tests/test_mongodb_contract.py, with the helpers of tests/mongo_contract.py.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from tests.mongo_contract import (
    INTERACTION_ID,
    OWNER_ID,
    RECORDER,
    apply_update,
    created_indexes,
    equality_conditions,
    matches,
    migrations_recorded,
    mongodb_env,
    run_django,
    stage,
    stage_names,
    uuid_hex,
)

REPLY_ID = "0190f0e0-0002-7000-8000-000000000003"
TOKEN_A = "a" * 32
TOKEN_B = "b" * 32

COMMANDS_SCRIPT = (
    RECORDER
    + """
import uuid
from datetime import timedelta

from bson import ObjectId
from django.contrib.auth.models import User

from core.models import now_stored_precision
from interactions.models import Interaction
from interactions.services import (
    ReplyClaim,
    interaction_message_recorded,
    interaction_reply_slot_release,
    interaction_reply_slot_renew,
    interaction_reply_slot_take_over,
)
from messages_app.models import Message
from messages_app import services as message_services

def finalise_claim():
    # The read finds one abandoned reply of the claim; then the recount's answer.
    abandoned = {"id": uuid.UUID(PARAMS["reply_id"]).hex, "prompt_tokens": 5, "completion_tokens": None}
    canned_results[:] = [[abandoned], [{"__count": 0}]]
    # Not cancelled and no text stored: the cancelled and the incomplete update match nothing.
    update_results[:] = [0, 0]
    message_services.reply_claim_finalise(interaction=interaction, claim=claim_a, replies_token=PARAMS["token_b"])

owner = User(pk=ObjectId(PARAMS["owner_id"]), username="alice")
interaction_id = uuid.UUID(PARAMS["interaction_id"])
interaction = Interaction(id=interaction_id, owner=owner, model_name="m", title="Titled")
claim_a = ReplyClaim(interaction_id=interaction_id, token=PARAMS["token_a"], host="web-1", pid=41)
lapsed = Interaction(
    id=interaction_id,
    owner=owner,
    model_name="m",
    reply_claimed_at=now_stored_precision() - timedelta(days=1),
    reply_claim_token=PARAMS["token_a"],
    reply_claim_host="web-1",
    reply_claim_pid=41,
)
reply = Message(id=uuid.UUID(PARAMS["reply_id"]), interaction=interaction, role="assistant", status="failed")
stale_before = now_stored_precision() - timedelta(seconds=300)
UNCOUNTED_AT = now_stored_precision()

emit({
    "renew": commands_of(lambda: interaction_reply_slot_renew(claim=claim_a)),
    "release": commands_of(lambda: interaction_reply_slot_release(interaction=interaction, claim=claim_a)),
    "take_over": commands_of(lambda: interaction_reply_slot_take_over(interaction=lapsed)),
    "take_over_dead": commands_of(
        lambda: interaction_reply_slot_take_over(interaction=lapsed, dead_host="web-1", dead_pid=41)
    ),
    "fenced_count": commands_of(
        lambda: interaction_message_recorded(interaction=interaction, at=now_stored_precision(), fenced_by=claim_a)
    ),
    "reply_update": commands_of(
        lambda: message_services.message_reply_update(reply=reply, claim=claim_a, content="Hel")
    ),
    "reply_restart": commands_of(lambda: message_services.message_reply_restart(reply=reply, claim=claim_a)),
    "claim_finalise": commands_of(finalise_claim),
    "owner_lapsed": commands_of(
        lambda: list(Interaction.objects.filter(owner=owner, reply_claimed_at__lt=stale_before))
    ),
    "all_lapsed": commands_of(lambda: list(Interaction.objects.filter(reply_claimed_at__lt=stale_before))),
    "holder": commands_of(
        lambda: list(Interaction.objects.filter(reply_claim_host="web-1", reply_claim_pid=41))
    ),
    "in_progress_replies": commands_of(message_services._unclaimed_in_progress_replies_finalise),
    "uncount": commands_of(lambda: message_services._message_uncount(interaction=interaction, at=UNCOUNTED_AT)),
})
"""
)


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return run_django(
        COMMANDS_SCRIPT,
        mongodb_env(),
        owner_id=OWNER_ID,
        interaction_id=INTERACTION_ID,
        reply_id=REPLY_ID,
        token_a=TOKEN_A,
        token_b=TOKEN_B,
    )


@pytest.fixture(scope="module")
def migrations() -> dict[str, Any]:
    return migrations_recorded()


LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
INTERACTION = uuid_hex(INTERACTION_ID)
REPLY = uuid_hex(REPLY_ID)


def slot(**fields: Any) -> dict[str, Any]:
    return {"id": INTERACTION, "message_count": 3, "version": 7, **fields}


def held_by(token: str, **fields: Any) -> dict[str, Any]:
    return slot(reply_claim_token=token, reply_claimed_at=fields.pop("at", None) or LONG_AGO, **fields)


def index_key(migrations: dict[str, Any], collection: str, name: str) -> dict[str, int]:
    return created_indexes(migrations, collection)[name]["key"]


def match_of(command: dict[str, Any]) -> dict[str, Any]:
    assert command["op"] == "aggregate"
    assert stage_names(command["pipeline"])[0] == "$match", "only a leading $match can use an index"
    return stage(command["pipeline"], "$match")


def test_renewing_a_claim_is_one_update_conditional_on_its_token(commands):
    (command,) = commands["renew"]

    assert command["op"] == "update_many"
    assert matches(held_by(TOKEN_A), command["filter"])
    assert not matches(held_by(TOKEN_B), command["filter"]), "a late worker would revive a newer claim"
    assert not matches(slot(reply_claim_token=""), command["filter"])
    assert set(apply_update(held_by(TOKEN_A), command["update"])) >= {"reply_claimed_at"}
    assert apply_update(held_by(TOKEN_A), command["update"])["reply_claimed_at"] > LONG_AGO


def test_releasing_frees_the_slot_only_for_its_own_claim_and_bumps_the_version_in_the_same_update(commands):
    release, *rest = commands["release"]

    released = apply_update(held_by(TOKEN_A), release["update"])
    assert matches(held_by(TOKEN_A), release["filter"])
    assert not matches(held_by(TOKEN_B), release["filter"]), "a late worker would free a newer claim"
    assert released["reply_claimed_at"] is None
    assert released["reply_claim_token"] == ""
    assert released["version"] == 8
    assert rest == [], "the release matched, so no separate version bump is sent"


def test_taking_over_a_lapsed_claim_is_one_update_on_its_token_and_its_age_or_its_dead_worker(commands):
    (lapsed,) = commands["take_over"]
    (dead,) = commands["take_over_dead"]
    recent = datetime.now(UTC) - timedelta(seconds=5)

    assert matches(held_by(TOKEN_A), lapsed["filter"])
    assert not matches(held_by(TOKEN_A, at=recent), lapsed["filter"]), "a live claim would be taken"
    assert not matches(held_by(TOKEN_B), lapsed["filter"]), "renewed or replaced meanwhile"
    assert matches(held_by(TOKEN_A, at=recent, reply_claim_host="web-1", reply_claim_pid=41), dead["filter"])
    assert not matches(held_by(TOKEN_A, at=recent, reply_claim_host="web-1", reply_claim_pid=42), dead["filter"])
    taken = apply_update(held_by(TOKEN_A), lapsed["update"])
    assert taken["reply_claim_token"] not in ("", TOKEN_A)
    assert taken["reply_claimed_at"] > recent


def test_a_reply_is_counted_only_while_its_claim_holds_the_slot(commands):
    (command,) = commands["fenced_count"]

    assert matches(held_by(TOKEN_A), command["filter"])
    assert not matches(held_by(TOKEN_B), command["filter"])
    assert apply_update(held_by(TOKEN_A), command["update"])["message_count"] == 4


def test_a_write_to_a_reply_is_one_update_on_its_id_its_claim_token_and_in_progress(commands, migrations):
    write, *bump = commands["reply_update"]

    def reply(**fields: Any) -> dict[str, Any]:
        return {"id": REPLY, "interaction_id": INTERACTION, "status": "in_progress", "claim_token": TOKEN_A, **fields}

    assert write["collection"] == "messages_app_message"
    assert equality_conditions(write["filter"])["id"] == REPLY  # the unique id index: one document
    assert matches(reply(), write["filter"])
    assert not matches(reply(claim_token=TOKEN_B), write["filter"]), "a late worker would overwrite a retry"
    assert not matches(reply(status="failed"), write["filter"]), "a late worker would undo the finalisation"
    assert apply_update(reply(), write["update"])["content"] == "Hel"
    assert [command["collection"] for command in bump] == ["interactions_interaction"]


def test_a_retry_restarts_only_a_failed_or_incomplete_reply_and_gives_it_the_new_token(commands):
    restart, _bump = commands["reply_restart"]

    def reply(status: str) -> dict[str, Any]:
        return {"id": REPLY, "status": status, "claim_token": TOKEN_B}

    assert matches(reply("failed"), restart["filter"])
    assert matches(reply("incomplete"), restart["filter"])
    assert not matches(reply("in_progress"), restart["filter"]), "two retries would both run"
    assert not matches(reply("completed"), restart["filter"])
    restarted = apply_update(reply("failed"), restart["update"])
    assert (restarted["status"], restarted["claim_token"], restarted["content"]) == ("in_progress", TOKEN_A, "")


def test_finalising_a_claim_fails_its_in_progress_replies_recounts_and_releases(commands, migrations):
    read, cancel, keep, fail, counted_in_usage, count, newest, release, *rest = commands["claim_finalise"]
    status_claim = index_key(migrations, "messages_app_message", "message_status_claim")
    interaction_time = index_key(migrations, "messages_app_message", "message_interaction_time")

    def reply(**fields: Any) -> dict[str, Any]:
        return {"id": REPLY, "interaction_id": INTERACTION, "status": "in_progress", "claim_token": TOKEN_B, **fields}

    # The claim's in_progress replies are read along message_status_claim, then each is
    # failed by an update conditional on still being in_progress under that claim.
    assert read["collection"] == "messages_app_message"
    assert equality_conditions(match_of(read)) == {
        "interaction_id": INTERACTION,
        "status": "in_progress",
        "claim_token": TOKEN_B,
    }
    assert matches(reply(), fail["filter"])
    assert not matches(reply(claim_token=TOKEN_A), fail["filter"])
    assert not matches(reply(status="completed"), fail["filter"])
    assert not matches(reply(status="failed"), fail["filter"]), "a second finaliser would count it again"
    assert not matches(reply(id="e" * 32), fail["filter"])
    failed = apply_update(reply(), fail["update"])
    assert (failed["status"], failed["error_code"]) == ("failed", "reply_abandoned")
    # Before failing it: a reply the user asked to stop ends cancelled, with whatever text it has;
    # then one with text stored while it was generated keeps it and is incomplete. (Here
    # neither update matched, so the reply was failed.)
    asked = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert matches(reply(cancel_requested_at=asked), cancel["filter"])
    assert not matches(reply(cancel_requested_at=None), cancel["filter"])
    assert not matches(reply(), cancel["filter"]), "a document stored before the field existed"
    assert not matches(reply(cancel_requested_at=asked, claim_token=TOKEN_A), cancel["filter"])
    assert not matches(reply(cancel_requested_at=asked, status="incomplete"), cancel["filter"])
    stopped = apply_update(reply(cancel_requested_at=asked, content=""), cancel["update"])
    assert (stopped["status"], stopped["error_code"], stopped["content"]) == ("incomplete", "cancelled", "")
    assert set(status_claim) <= set(equality_conditions(cancel["filter"]))
    assert matches(reply(content="Half a"), keep["filter"])
    assert not matches(reply(content=""), keep["filter"])
    assert not matches(reply(content="Half a", claim_token=TOKEN_A), keep["filter"])
    kept = apply_update(reply(content="Half a"), keep["update"])
    assert (kept["status"], kept["error_code"], kept["content"]) == ("incomplete", "reply_abandoned", "Half a")
    assert set(status_claim) <= set(equality_conditions(keep["filter"]))
    assert list(status_claim) == ["status", "claim_token"]
    assert set(status_claim) <= set(equality_conditions(fail["filter"]))
    # The finaliser whose update changed the reply counts it in the owner's usage bucket.
    assert counted_in_usage["collection"] == "usage_usagebucket"
    bucket = {"replies_failed": 2, "replies_abandoned": 0, "prompt_tokens": 10, "completion_tokens": 3}
    after = apply_update(bucket, counted_in_usage["update"])
    assert (after["replies_failed"], after["replies_abandoned"], after["prompt_tokens"]) == (3, 1, 15)
    assert after["completion_tokens"] == 3
    # The recount and the newest message time read along message_interaction_time.
    for read in (count, newest):
        assert equality_conditions(match_of(read)) == {"interaction_id": INTERACTION}
        assert next(iter(interaction_time)) == "interaction_id"
    assert list(stage(newest["pipeline"], "$sort").items()) == [("created_at", -1), ("id", -1)]
    assert matches(held_by(TOKEN_A), release["filter"])
    assert not matches(held_by(TOKEN_B), release["filter"])
    assert apply_update(held_by(TOKEN_A), release["update"])["message_count"] == 0  # canned empty count
    assert rest == []


def test_finding_abandoned_claims_is_served_by_an_index_for_each_way_of_looking(commands, migrations):
    indexes = created_indexes(migrations, "interactions_interaction")

    owner_match = match_of(commands["owner_lapsed"][0])
    all_match = match_of(commands["all_lapsed"][0])
    holder_match = match_of(commands["holder"][0])

    assert indexes["interaction_owner_reply_claim"]["key"] == {"owner_id": 1, "reply_claimed_at": 1}
    assert equality_conditions(owner_match) == {"owner_id": ObjectId(OWNER_ID)}
    assert indexes["interaction_reply_claimed_at"]["key"] == {"reply_claimed_at": 1}
    assert indexes["interaction_reply_claim_holder"]["key"] == {"reply_claim_host": 1, "reply_claim_pid": 1}
    assert equality_conditions(holder_match) == {"reply_claim_host": "web-1", "reply_claim_pid": 41}
    for match in (owner_match, all_match):
        assert matches(slot(owner_id=ObjectId(OWNER_ID), reply_claimed_at=LONG_AGO), match)
        assert not matches(slot(owner_id=ObjectId(OWNER_ID), reply_claimed_at=None), match)
        assert not matches(slot(owner_id=ObjectId(OWNER_ID), reply_claimed_at=datetime.now(UTC)), match)


def test_the_sweep_of_in_progress_replies_reads_along_message_status_claim(commands, migrations):
    (sweep,) = commands["in_progress_replies"]

    assert sweep["collection"] == "messages_app_message"
    assert equality_conditions(match_of(sweep)) == {"status": "in_progress"}
    assert next(iter(index_key(migrations, "messages_app_message", "message_status_claim"))) == "status"


def test_compiling_the_lifecycle_never_connected_to_a_server(commands):
    assert not commands["connected"]


def test_undoing_the_count_of_a_message_never_stored_moves_last_message_at_back_only_if_it_is_still_ours(commands):
    uncount, newest, last_message = commands["uncount"]
    ours = slot(message_count=4, last_message_at=datetime(2025, 1, 1, 12, tzinfo=UTC))

    assert uncount["filter"] == {"id": INTERACTION}
    assert apply_update(ours, uncount["update"])["message_count"] == 3
    assert list(stage(newest["pipeline"], "$sort").items()) == [("created_at", -1), ("id", -1)]
    later = slot(last_message_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert not matches(later, last_message["filter"]), "a message counted since would lose its time"
    at = equality_conditions(last_message["filter"])["last_message_at"]
    assert matches(slot(last_message_at=at), last_message["filter"])
    assert apply_update(slot(last_message_at=at), last_message["update"])["last_message_at"] is None  # none stored
