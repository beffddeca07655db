"""Connected in LlmConfig.ready(): a new user message gets an assistant reply."""

from typing import Any

from llm.services import reply_generate
from messages_app.models import Message, MessageRole


def user_message_reply(
    sender: type[Message], instance: Message, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if created and not raw and instance.role == MessageRole.USER and not instance.reply_deferred:
        reply_generate(user_message=instance)
