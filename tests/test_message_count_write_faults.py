"""An assistant or system message (stored as given, no reply, no reply slot) whose count or
insert fails, for real: before the write runs, or after it committed (the call then raises,
as when the connection is lost before the answer arrives).

The interaction's `message_count` (and `last_message_at`) must equal the stored rows
afterwards, the answer must say truthfully whether the message is stored, and a replay with
the same Idempotency-Key converges to the message stored once.
"""

import pytest

from core.models import new_id
from interactions.models import Interaction
from interactions.services import interaction_reply_slot_claim
from llm.services import reply_start
from messages_app.models import MessageRole
from messages_app.services import interaction_message_count_repair
from tests.factories import InteractionFactory
from tests.test_reply_write_faults import assert_counters_equal_rows, recorded_writes, stored, write_fails

pytestmark = pytest.mark.django_db(transaction=True)

# The writes of posting an assistant or system message, in order.
WRITES = [
    ("UPDATE", "interactions_interaction"),  # count it
    ("INSERT", "messages_app_message"),  # store it
]
WRITE_NAMES = ["count", "insert"]
CASES = [(number, when) for number in (1, 2) for when in ("before", "after")]
CASE_IDS = [f"{WRITE_NAMES[number - 1]}-{when}" for number, when in CASES]


def post(api, interaction, *, role, key=None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/",
        {"role": role, "content": "Imported history"},
        format="json",
        **headers,
    )


def test_the_writes_of_posting_an_assistant_message_are_the_ones_the_fault_cases_name(api, user):
    interaction = InteractionFactory(owner=user)

    with recorded_writes() as writes:
        assert post(api, interaction, role="assistant").status_code == 201

    assert writes == WRITES


@pytest.mark.parametrize("role", [MessageRole.ASSISTANT, MessageRole.SYSTEM])
@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_a_failed_write_of_a_message_without_reply_leaves_the_count_equal_to_the_stored_rows(
    api, user, role, number, when
):
    interaction = InteractionFactory(owner=user)
    assert post(api, interaction, role=role).status_code == 201  # one message before

    with write_fails(number, when):
        failed = post(api, interaction, role=role, key="k-1")

    assert_counters_equal_rows(interaction)
    rows = stored(interaction)
    if failed.status_code == 201:
        assert len(rows) == 2, "answered stored: it is stored"
        assert failed.json()["message"]["id"] == str(rows[1].pk)
        assert failed.json()["reply"] is None
    else:
        assert failed.status_code == 503, failed.json()
        assert len(rows) == 1, "answered not stored: it is not"
        assert failed.json()["error"]["code"] == "database_unavailable"
        assert "Nothing was stored" in failed.json()["error"]["message"]

    replayed = post(api, interaction, role=role, key="k-1")

    assert replayed.status_code == 201
    rows = stored(interaction)
    assert [m.role for m in rows] == [role, role]
    assert replayed.json()["message"]["id"] == str(rows[1].pk)
    assert_counters_equal_rows(interaction)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_failed_count_while_a_reply_is_being_made_is_recounted_at_once(api, user, when):
    interaction = InteractionFactory(owner=user)
    assert post(api, interaction, role="user").status_code == 201
    user_message = stored(interaction)[0]
    # A retry of the user message's reply, in flight: its claim holds the slot, its reply is stored.
    claim = interaction_reply_slot_claim(interaction_id=interaction.pk, reply_id=new_id())
    reply_start(user_message=user_message, claim=claim)

    with write_fails(1, when):
        failed = post(api, interaction, role="assistant")

    assert failed.status_code == 503
    assert "Nothing was stored" in failed.json()["error"]["message"]
    assert_counters_equal_rows(interaction)
    assert Interaction.objects.get(pk=interaction.pk).reply_claim_token == claim.token, "the reply keeps its slot"


def test_a_recount_made_while_a_reply_slot_holder_has_not_stored_its_reply_waits_then_gives_up_unchanged(user):
    interaction = InteractionFactory(owner=user, message_count=5)
    interaction_reply_slot_claim(interaction_id=interaction.pk, reply_id=new_id())

    assert interaction_message_count_repair(interaction=interaction) is False

    assert Interaction.objects.get(pk=interaction.pk).message_count == 5, "the holder's count may be in flight"
