from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from core.admin_filters import BoundedCountPaginator, date_range_filter, input_filter, uuid_or_none
from messages_app.models import Message, ReplyErrorCode


class ErrorCodeFilter(admin.SimpleListFilter):
    """The known error codes (not every distinct value in the table: that would scan it)."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(code.value), str(code.value)) for code in ReplyErrorCode]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        value = self.value()
        return queryset.filter(error_code=value) if value else queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: staff inspect conversations; messages are written only through the API
    (deleting one here would leave the interaction's counters and cached pages behind;
    delete the whole interaction instead).

    `?interaction=<id>` lists one conversation (the transcript's "all messages" link), along
    the (interaction, created_at, id) index.
    """

    list_display = ["created_at", "interaction", "role", "status", "model", "total_tokens", "latency_ms", "error_code"]
    list_filter = [
        "status",
        "role",
        ErrorCodeFilter,
        input_filter("model", "model", "model"),
        date_range_filter("created_at", "time"),
        input_filter("interaction", "interaction id", "interaction_id"),
    ]
    search_fields = ["content"]
    ordering = ["-created_at", "-id"]
    raw_id_fields = ["interaction", "reply_to"]
    list_select_related = ["interaction"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator

    search_help_text = (
        "Words in the message, or the id of a message, of its interaction or of the message it replies to."
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        searched_id = uuid_or_none(search_term.strip())
        if searched_id is None:
            return super().get_search_results(request, queryset, search_term)
        # An id is looked up along the indexes on id, interaction and reply_to: no content scan.
        matched = Q(pk=searched_id) | Q(interaction_id=searched_id) | Q(reply_to_id=searched_id)
        return queryset.filter(matched), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
