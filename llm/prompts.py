"""The conversation sent to the model: the interaction's prompt, then the newest history
that fits the token budget.

Tokens are estimated, not counted with the model's tokenizer: tokenizers differ between
OpenAI, Llama, Qwen... models and loading one needs files from the internet. The
estimate is OpenAI's rule of thumb, about 4 characters per token, plus 4 tokens of
per-message framing; it errs on the generous side for English text.
"""

import math
from collections.abc import Iterable

from django.conf import settings

from interactions.models import Interaction
from messages_app.models import Message, MessageStatus

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


def token_estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


def conversation_build(
    *, interaction: Interaction, history_newest_first: Iterable[Message], budget_tokens: int | None = None
) -> list[dict[str, str]]:
    """The messages to send, oldest first. `history_newest_first` starts with the user
    message being answered, which is always sent.

    Failed replies and empty in-progress placeholders are left out. The newest messages
    are kept; the history is read no further than the budget reaches.
    """
    budget = settings.LLM_HISTORY_TOKEN_BUDGET if budget_tokens is None else budget_tokens
    kept: list[dict[str, str]] = []
    for message in history_newest_first:
        if message.status in (MessageStatus.FAILED, MessageStatus.IN_PROGRESS) or not message.content:
            continue
        cost = token_estimate(message.content)
        if kept and cost > budget:
            break
        budget -= cost
        kept.append({"role": str(message.role), "content": message.content})
    kept.reverse()
    if interaction.prompt:
        kept.insert(0, {"role": str(interaction.role), "content": interaction.prompt})
    return kept
