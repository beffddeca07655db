"""Claims whose finalisation failed, retried by this process until the database takes it.

After a failed write, reply_claim_abort finalises what the attempt left and frees the reply
slot. When the database fails that too (a write lock held for seconds, a failover), the claim
would keep the slot until its lease lapses (LLM_REPLY_LEASE_SECONDS, 5 minutes by default),
and every message posted to the conversation meanwhile would answer 409. So the claim is
queued here instead, and a thread of this process retries the finalisation every
LLM_REPLY_FINALISE_RETRY_SECONDS until it succeeds (the thread sleeps while nothing is
queued). Once the lease has lapsed the claim leaves the queue: any request that loads the
interaction finalises it from then on (as after a crash).
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections

from interactions.models import Interaction
from interactions.services import ReplyClaim

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    interaction: Interaction
    claim: ReplyClaim
    until: float


class ClaimFinaliser:
    """Per process: the claims left to finalise, and the thread retrying them."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._queued = threading.Event()
        self._pid = 0

    def add(self, *, interaction: Interaction, claim: ReplyClaim) -> None:
        until = time.monotonic() + settings.LLM_REPLY_LEASE_SECONDS
        with self._lock:
            if self._pid != os.getpid():
                # A fork (gunicorn worker) does not inherit the parent's thread.
                self._pending = {}
                threading.Thread(target=self._run, name="reply-claim-finaliser", daemon=True).start()
                self._pid = os.getpid()
            self._pending[claim.token] = _Pending(interaction, claim, until)
            self._queued.set()

    def clear(self) -> None:
        with self._lock:
            self._pending = {}

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def retry(self) -> None:
        """One attempt at each queued claim: finalised, or past its lease, it leaves the queue."""
        from messages_app.services import reply_claim_finalise

        with self._lock:
            pending = list(self._pending.values())
        for item in pending:
            if time.monotonic() < item.until:
                try:
                    reply_claim_finalise(interaction=item.interaction, claim=item.claim, replies_token=item.claim.token)
                except DatabaseError:
                    logger.info("finalising claim %s failed again; retrying", item.claim.token, exc_info=True)
                    continue
                logger.info("finalised claim %s after its failed write", item.claim.token)
            with self._lock:
                self._pending.pop(item.claim.token, None)

    def _run(self) -> None:
        while True:
            self._queued.wait()
            time.sleep(settings.LLM_REPLY_FINALISE_RETRY_SECONDS)
            try:
                self.retry()
            except Exception:
                logger.exception("retrying claim finalisations failed")
            finally:
                # This thread's connection is not kept between passes (nor left broken).
                connections.close_all()
            with self._lock:
                if not self._pending:
                    self._queued.clear()


claim_finaliser = ClaimFinaliser()
