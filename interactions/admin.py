from django.contrib import admin

from interactions.models import Interaction
from interactions.services import interaction_delete, interaction_update
from messages_app.models import Message


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "interaction"
    fields = ("created_at", "role", "status", "content", "model", "total_tokens", "latency_ms", "error_code")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    """Staff inspect conversations and may change their settings or delete them.

    Writes go through the services, as the API's do, so that they bump `version` and
    invalidate the cached pages: an admin edit is never hidden behind a stale cache.
    Interactions are created only through the API.
    """

    list_display = ["__str__", "owner", "model_name", "message_count", "last_message_at", "created_at"]
    list_filter = ["model_name", "role"]
    search_fields = ["title", "owner__username"]
    ordering = ["-last_activity_at"]
    readonly_fields = [
        "id",
        "owner",
        "reply_claimed_at",
        "message_count",
        "last_message_at",
        "last_activity_at",
        "version",
        "created_at",
        "updated_at",
    ]
    inlines = [MessageInline]
    list_select_related = ["owner"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        interaction_update(interaction=obj, **{name: form.cleaned_data[name] for name in form.changed_data})

    def delete_model(self, request, obj):  # type: ignore[no-untyped-def]
        interaction_delete(interaction=obj)

    def delete_queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        for interaction in queryset:
            interaction_delete(interaction=interaction)
