from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_save


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM replies"

    def ready(self) -> None:
        from llm.checks import reply_lease_outlasts_a_provider_call
        from llm.signals import user_message_reply
        from messages_app.models import Message

        post_save.connect(user_message_reply, sender=Message, dispatch_uid="llm.user_message_reply")
        checks.register(reply_lease_outlasts_a_provider_call)
