import uuid

from django.contrib.auth.models import User
from django.db.models import QuerySet

from core.errors import NotFound
from interactions.models import Interaction


def interaction_list(*, owner: User) -> QuerySet[Interaction]:
    return Interaction.objects.filter(owner=owner)


def interaction_get(*, owner: User, interaction_id: uuid.UUID) -> Interaction:
    """The owner's interaction; anyone else's, or none, is NotFound (never 403, never a leak)."""
    interaction = Interaction.objects.filter(owner=owner, pk=interaction_id).first()
    if interaction is None:
        raise NotFound(f"No interaction with id {interaction_id}.", param="interaction_id")
    return interaction
