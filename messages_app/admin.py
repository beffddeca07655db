from django.contrib import admin

from messages_app.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: staff inspect conversations; messages are written only through the API
    (deleting one here would leave the interaction's counters and cached pages behind;
    delete the whole interaction instead)."""

    list_display = ["created_at", "interaction", "role", "status", "model", "total_tokens", "latency_ms", "error_code"]
    list_filter = ["role", "status", "error_code"]
    search_fields = ["content", "interaction__title"]
    ordering = ["-created_at"]
    raw_id_fields = ["interaction", "reply_to"]
    list_select_related = ["interaction"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
