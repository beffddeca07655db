from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning


def reply_lease_outlasts_a_provider_call(**kwargs: Any) -> list[CheckMessage]:
    """A non-streamed reply renews its claim only when the provider answers, so the lease
    must outlast the longest provider call (every attempt timing out) or a second reply
    could start beside it."""
    longest_call = (settings.LLM_CONNECT_TIMEOUT_SECONDS + settings.LLM_TIMEOUT_SECONDS) * (
        settings.LLM_MAX_RETRIES + 1
    )
    if longest_call < settings.LLM_REPLY_LEASE_SECONDS:
        return []
    return [
        Warning(
            f"LLM_REPLY_LEASE_SECONDS ({settings.LLM_REPLY_LEASE_SECONDS}) is not longer than the longest "
            f"provider call ({longest_call:g} s: connect plus read timeout, times 1 + LLM_MAX_RETRIES).",
            hint="Raise LLM_REPLY_LEASE_SECONDS, or lower the timeouts or retries.",
            id="llm.W001",
        )
    ]
