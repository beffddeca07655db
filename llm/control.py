"""Replies the user stays in control of: stopping one, and what a follower reads.

reply_cancel() is the cancel endpoint's service. The cancel is stored on the reply; the
process generating it notices within LLM_REPLY_CANCEL_POLL_SECONDS (llm/cancellation.py),
cuts its provider call and stores the outcome itself under its claim, as for any other
ending: the reply becomes `incomplete` with the text so far and the error code
`cancelled`, retryable, and the reply slot is released. If that worker is gone (its claim
lapsed), the canceller finalises the reply itself, fenced by the claim it takes over.
"""

import time

from django.conf import settings

from core.errors import Conflict
from interactions.models import Interaction
from llm.metrics import reply_cancels_total
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import (
    interaction_abandoned_replies_finalise,
    message_reply_cancel_request,
    reply_cancel_finalise,
)

CANCEL_CHECK_SECONDS = 0.05


def reply_cancel(*, reply: Message) -> Message:
    """Stop a reply being generated; return it as stored.

    Conflict (409 `reply_not_in_progress`, with its status) if it is not being generated.
    The returned reply is final (`incomplete`, `cancelled`) unless its worker did not answer
    within LLM_REPLY_CANCEL_WAIT_SECONDS; then it is still `in_progress` and stops later.
    """
    if reply.role != MessageRole.ASSISTANT or reply.reply_to_id is None:
        raise Conflict("Only assistant replies can be cancelled.", code="not_a_reply", param="message_id")
    if reply.status != MessageStatus.IN_PROGRESS or not message_reply_cancel_request(reply=reply):
        reply.refresh_from_db()
        reply_cancels_total.labels("not_in_progress").inc()
        raise Conflict(
            f"Only a reply being generated can be cancelled; this one is {reply.status}.",
            code="reply_not_in_progress",
            param="message_id",
            details={"status": reply.status, "reply_id": str(reply.pk)},
        )
    deadline = time.monotonic() + settings.LLM_REPLY_CANCEL_WAIT_SECONDS
    while True:
        stored = reply_reload(reply)
        if stored is None or stored.status != MessageStatus.IN_PROGRESS:
            reply_cancels_total.labels("stopped").inc()
            return stored or reply
        if reply_cancel_finalise(reply=stored):
            reply_cancels_total.labels("finalised").inc()
            return reply_reload(stored) or stored
        if time.monotonic() >= deadline:
            reply_cancels_total.labels("pending").inc()
            return stored
        time.sleep(CANCEL_CHECK_SECONDS)


def reply_reload(reply: Message) -> Message | None:
    """The reply as stored now; None if it is gone (its interaction was deleted)."""
    return Message.objects.filter(pk=reply.pk).first()


def reply_abandoned_finalise(reply: Message) -> None:
    """Finalise the reply's interaction's abandoned replies (a follower that waits long does
    what any request loading the interaction does); costs one read unless the claim lapsed."""
    interaction = Interaction.objects.filter(pk=reply.interaction_id).first()
    if interaction is not None:
        interaction_abandoned_replies_finalise(interaction=interaction)
