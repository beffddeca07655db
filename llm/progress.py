"""The text of a reply, stored and relayed while it is generated.

Contracts:
- Every delta is relayed at once (llm/relay.py; returns without waiting on Redis).
- The text so far is stored at most every LLM_REPLY_PROGRESS_INTERVAL_SECONDS, or sooner once
  LLM_REPLY_PROGRESS_CHARS characters arrived since the last write, and never before it grew by
  LLM_REPLY_PROGRESS_GROWTH of what is stored. Each write stores the whole text so far (one
  field, readable by any list or detail read), so the growth rule is what keeps the characters
  written per reply linear: the stored lengths grow at least geometrically, their sum stays
  under (1 + 1/growth) times the reply's length, plus the final write. A reply's progress
  writes are at most about log(length)/log(1 + growth) once its text outgrows CHARS/growth.
- A write goes through `store`, which the caller fences with its claim (it returns False once
  the claim is lost, and the reply service then stops).
"""

import time
import uuid
from collections.abc import Callable

from django.conf import settings

from llm.metrics import reply_progress_bytes_total, reply_progress_writes_total
from llm.relay import relay_publish, relay_publish_end


class ReplyProgress:
    def __init__(self, *, reply_id: uuid.UUID, attempt: str, store: Callable[[str], None]) -> None:
        self.reply_id = reply_id
        self.attempt = attempt
        self._store = store
        self._parts: list[str] = []
        self.length = 0
        self.stored_length = 0
        self._stored_at = time.monotonic()
        self.writes = 0
        self.chars_written = 0

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def add(self, delta: str) -> None:
        """Take a delta: relay it now, store the text so far if a write is due."""
        if not delta:
            return
        relay_publish(reply_id=self.reply_id, attempt=self.attempt, offset=self.length, text=delta)
        self._parts.append(delta)
        self.length += len(delta)
        if self._write_due():
            self.store()

    def store(self) -> None:
        text = self.text
        self._store(text)
        self.stored_length = len(text)
        self._stored_at = time.monotonic()
        self.writes += 1
        self.chars_written += len(text)
        reply_progress_writes_total.inc()
        reply_progress_bytes_total.inc(len(text))

    def finished(self) -> None:
        """The outcome is stored: tell followers to stop waiting for text."""
        relay_publish_end(reply_id=self.reply_id, attempt=self.attempt, offset=self.length)

    def _write_due(self) -> bool:
        new = self.length - self.stored_length
        if new < settings.LLM_REPLY_PROGRESS_GROWTH * self.stored_length:
            return False
        return (
            new >= settings.LLM_REPLY_PROGRESS_CHARS
            or time.monotonic() - self._stored_at >= settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS
        )
