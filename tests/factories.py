import factory
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from interactions.models import Interaction
from messages_app.models import Message, MessageRole


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class InteractionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Interaction

    owner = factory.SubFactory(UserFactory)
    model_name = "test-model"


class MessageFactory(factory.django.DjangoModelFactory):
    """Stores history as it is: no reply is generated, even for user messages."""

    class Meta:
        model = Message

    interaction = factory.SubFactory(InteractionFactory)
    role = MessageRole.ASSISTANT
    content = factory.Sequence(lambda n: f"message {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        message = model_class(*args, **kwargs)
        message.reply_deferred = True
        message.save()
        return message


def reply_stored(*, interaction: Interaction, content: str, status: str) -> Message:
    """A user's "Hi" and the assistant's reply to it, stored as given (no model involved)."""
    question = MessageFactory(interaction=interaction, role=MessageRole.USER, content="Hi")
    return MessageFactory(
        interaction=interaction, role=MessageRole.ASSISTANT, reply_to=question, content=content, status=status
    )
