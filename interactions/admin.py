from django.contrib import admin

from interactions.models import Interaction
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
    list_display = ["__str__", "owner", "model_name", "message_count", "last_message_at", "created_at"]
    list_filter = ["model_name", "role"]
    search_fields = ["title", "owner__username"]
    ordering = ["-last_activity_at"]
    readonly_fields = [
        "id",
        "message_count",
        "last_message_at",
        "last_activity_at",
        "version",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["owner"]
    inlines = [MessageInline]
    list_select_related = ["owner"]
