"""`manage.py finalise_abandoned_replies`: what an operator runs from cron while the service runs."""

import io
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from core.models import now_stored_precision
from interactions.models import Interaction
from llm.services import reply_start
from messages_app import services
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import message_create
from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db


def reply_in_progress(user):  # type: ignore[no-untyped-def]
    interaction = InteractionFactory(owner=user)
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="Hi", reply_deferred=True)
    return interaction, reply_start(user_message=user_message, claim=user_message.reply_claim)


def finalise(*arguments: str) -> str:
    output = io.StringIO()
    call_command("finalise_abandoned_replies", *arguments, stdout=output)
    return output.getvalue()


def status_of(reply) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    stored = Message.objects.get(pk=reply.pk)
    return stored.status, stored.error_code


def test_it_finalises_lapsed_claims_and_leaves_live_ones_alone(user, settings):
    live_interaction, live = reply_in_progress(user)
    lapsed_interaction, lapsed = reply_in_progress(user)
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=lapsed_interaction.pk).update(reply_claimed_at=past)

    output = finalise()

    assert status_of(lapsed) == (MessageStatus.FAILED, "reply_abandoned")
    assert status_of(live) == (MessageStatus.IN_PROGRESS, "")
    assert Interaction.objects.get(pk=lapsed_interaction.pk).reply_claimed_at is None
    assert Interaction.objects.get(pk=live_interaction.pk).reply_claimed_at is not None
    assert "on 1 interaction(s)" in output


def test_it_finalises_at_once_the_claims_of_a_worker_named_dead_and_no_other(user):
    _, dead = reply_in_progress(user)
    other_interaction, other = reply_in_progress(user)
    slot = Interaction.objects.get(pk=dead.interaction_id)
    Interaction.objects.filter(pk=other_interaction.pk).update(reply_claim_pid=slot.reply_claim_pid + 1)

    finalise("--dead-holder", f"{slot.reply_claim_host}:{slot.reply_claim_pid}")

    assert status_of(dead) == (MessageStatus.FAILED, "reply_abandoned")
    assert status_of(other) == (MessageStatus.IN_PROGRESS, "")


def test_it_finalises_in_progress_replies_that_no_slot_holds(user):
    interaction, orphan = reply_in_progress(user)
    # As left by a version without claim tokens: the slot was freed, the reply never finished.
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=None, reply_claim_token="")
    Message.objects.filter(pk=orphan.pk).update(claim_token="")
    version = Interaction.objects.get(pk=interaction.pk).version

    finalise()

    assert status_of(orphan) == (MessageStatus.FAILED, "reply_abandoned")
    assert Interaction.objects.get(pk=interaction.pk).version > version, "cached pages would show it in_progress"


def test_a_malformed_dead_holder_is_refused():
    with pytest.raises(CommandError):
        finalise("--dead-holder", "no-pid-here")


def test_a_worker_that_exited_but_is_not_reaped_yet_counts_as_dead():
    # Killed with its master, a worker is reparented to init, which may take a second or more to
    # reap it: meanwhile signal 0 still reaches it, and --dead-local at start-up would skip its claims.
    exited = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{exited.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)

    try:
        assert not services._process_exists(exited.pid)
        assert services._process_exists(os.getpid())
    finally:
        exited.wait()
